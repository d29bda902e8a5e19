// Converting Flux-shaped checkpoints: the facts document's checklist on every
// variant, the reference toolchain's type counts, streaming and bad inputs,
// and gguf-oracle (ggml itself) decoding our blocks exactly as we do.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "diffusion/diffusion.h"
#include "flux_checklist.h"
#include "gguf/gguf.h"
#include "test_support.h"

namespace mixq::diffusion {
namespace {

using testing::Expectation;
using testing::ExpectComfyChecklist;
using testing::Generate;
using testing::TempDir;

Result<quantize::QuantizeReport> ConvertFile(const std::string& in, const std::string& out,
                                             const ConvertOptions& options = {}) {
  auto checkpoint = safetensors::Checkpoint::Open(in);
  MIXQ_TRY(checkpoint);
  auto model = Inspect(*checkpoint);
  MIXQ_TRY(model);
  return Convert(*checkpoint, *model, out, options);
}

std::map<std::string, int> TypeCounts(const std::string& gguf_path) {
  std::map<std::string, int> counts;
  auto file = gguf::GgufFile::Open(gguf_path);
  EXPECT_TRUE(file.has_value());
  if (file) {
    for (const auto& t : file->tensors()) ++counts[std::string(t.format->name)];
  }
  return counts;
}

ConvertOptions Quantized(const char* type) {
  ConvertOptions o;
  o.rules.default_format = formats::FindFormatByName(type);
  return o;
}

class TinyFlux : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    Generate(dir_->File("tiny.safetensors"));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string Tiny() { return dir_->File("tiny.safetensors"); }
  static TempDir* dir_;
  TempDir out_;
};
TempDir* TinyFlux::dir_ = nullptr;

TEST_F(TinyFlux, Bf16StageOneMatchesTheReferenceConverter) {
  auto report = ConvertFile(Tiny(), out_.File("bf16.gguf"));
  ASSERT_TRUE(report.has_value()) << report.error().message();
  // comfyui-gguf.md §6 reference results: 48 F32 + 36 BF16 tensors, 3 KVs, file_type 32.
  EXPECT_EQ(TypeCounts(out_.File("bf16.gguf")), (std::map<std::string, int>{{"BF16", 36}, {"F32", 48}}));
  auto file = gguf::GgufFile::Open(out_.File("bf16.gguf"));
  ASSERT_TRUE(file.has_value());
  ASSERT_EQ(file->metadata().size(), 3u);
  EXPECT_EQ(file->metadata()[0].key, "general.architecture");
  EXPECT_EQ(file->GetInt("general.file_type"), 32);
  EXPECT_EQ(report->file_bytes, std::filesystem::file_size(out_.File("bf16.gguf")));
  EXPECT_EQ(report->n_weights, 7'397'952);  // §6 "Expected counts"
  // Tensor order is plain string order, as convert.py writes it.
  std::vector<std::string> names;
  for (const auto& t : file->tensors()) names.push_back(t.name);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  ExpectComfyChecklist(out_.File("bf16.gguf"), {Tiny(), [](const std::string&) { return "BF16"; }});
}

TEST_F(TinyFlux, QuantizedTypesMatchTheReferenceCounts) {
  // §6: Q4_K_S = 26 Q4_K + 10 BF16 + 48 F32; Q8_0 = 26 Q8_0 + 10 BF16 + 48 F32.
  for (const char* type : {"Q4_K", "Q8_0", "Q2_K", "Q5_K", "Q6_K", "Q3_K", "IQ4_XS", "IQ4_NL", "Q5_1", "Q4_0"}) {
    SCOPED_TRACE(type);
    const std::string out = out_.File(std::string(type) + ".gguf");
    auto report = ConvertFile(Tiny(), out, Quantized(type));
    ASSERT_TRUE(report.has_value()) << report.error().message();
    EXPECT_EQ(TypeCounts(out), (std::map<std::string, int>{{"BF16", 10}, {"F32", 48}, {type, 26}}));
    ExpectComfyChecklist(out, {Tiny(), [&](const std::string&) { return type; }});
  }
}

TEST_F(TinyFlux, PrefixedShardedAndRecodedSourcesGiveTheSameFile) {
  auto reference = ConvertFile(Tiny(), out_.File("ref.gguf"), Quantized("Q4_K"));
  ASSERT_TRUE(reference.has_value());
  const auto ref_bytes = mixq::testing::ReadFileBytes(out_.File("ref.gguf"));
  // The same weights with the ComfyUI prefix and a VAE tensor, and split into 3 shards.
  Generate(out_.File("prefixed.safetensors"), "--extra");
  Generate(out_.File("sharded.safetensors"), "--shards 3");
  ASSERT_TRUE(std::filesystem::exists(out_.File("sharded-00003-of-00003.safetensors")));
  for (const std::string& source : {out_.File("prefixed.safetensors"), out_.File("sharded.safetensors.index.json")}) {
    SCOPED_TRACE(source);
    auto checkpoint = safetensors::Checkpoint::Open(source);
    ASSERT_TRUE(checkpoint.has_value()) << checkpoint.error().message();
    auto model = Inspect(*checkpoint);
    ASSERT_TRUE(model.has_value()) << model.error().message();
    EXPECT_TRUE(model->layout_notes.empty());
    auto report = Convert(*checkpoint, *model, out_.File("x.gguf"), Quantized("Q4_K"));
    ASSERT_TRUE(report.has_value()) << report.error().message();
    EXPECT_EQ(mixq::testing::ReadFileBytes(out_.File("x.gguf")), ref_bytes);
    ExpectComfyChecklist(out_.File("x.gguf"), {source, [](const std::string&) { return "Q4_K"; }});
  }
  auto prefixed = safetensors::Checkpoint::Open(out_.File("prefixed.safetensors"));
  auto model = Inspect(*prefixed);
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->prefix, "model.diffusion_model.");
  EXPECT_EQ(model->n_dropped, 1);
}

TEST_F(TinyFlux, SourceDtypesFollowTheStageOneRules) {
  // F16 and F8 sources become F16 (convert.py upcasts F8); F32 sources put 2-D tensors in F16.
  // mixq stores every 1-D tensor in F32, which the checklist prefers to city96's F16.
  for (const char* dtype : {"F16", "F32", "F8_E4M3", "F8_E5M2"}) {
    SCOPED_TRACE(dtype);
    const std::string src = out_.File(std::string(dtype) + ".safetensors");
    Generate(src, std::string("--dtype ") + dtype);
    auto report = ConvertFile(src, out_.File("o.gguf"));
    ASSERT_TRUE(report.has_value()) << report.error().message();
    EXPECT_EQ(TypeCounts(out_.File("o.gguf")), (std::map<std::string, int>{{"F16", 36}, {"F32", 48}}));
    auto file = gguf::GgufFile::Open(out_.File("o.gguf"));
    EXPECT_EQ(file->GetInt("general.file_type"), 1);
    ExpectComfyChecklist(out_.File("o.gguf"), {src, [](const std::string&) { return "F16"; }});
  }
}

TEST_F(TinyFlux, FloatTypeChoosesTheStorageOfEverything2D) {
  ConvertOptions o;
  o.float_format = formats::FindFormatByName("F16");
  ASSERT_TRUE(ConvertFile(Tiny(), out_.File("f16.gguf"), o).has_value());
  EXPECT_EQ(TypeCounts(out_.File("f16.gguf")), (std::map<std::string, int>{{"F16", 36}, {"F32", 48}}));
  o.float_format = formats::FindFormatByName("F32");
  ASSERT_TRUE(ConvertFile(Tiny(), out_.File("f32.gguf"), o).has_value());
  EXPECT_EQ(TypeCounts(out_.File("f32.gguf")), (std::map<std::string, int>{{"F32", 84}}));
  ExpectComfyChecklist(out_.File("f32.gguf"), {Tiny(), [](const std::string&) { return "F32"; }});
  o.float_format = formats::FindFormatByName("Q8_0");
  EXPECT_EQ(ConvertFile(Tiny(), out_.File("bad.gguf"), o).status().kind(), StatusKind::kInvalidArgument);
}

TEST_F(TinyFlux, SchnellAndOddWidthsFollowThePolicy) {
  Generate(out_.File("schnell.safetensors"), "--no-guidance");
  ASSERT_TRUE(ConvertFile(out_.File("schnell.safetensors"), out_.File("s.gguf"), Quantized("Q4_K")).has_value());
  auto counts = TypeCounts(out_.File("s.gguf"));
  EXPECT_EQ(counts["BF16"] + counts["F32"] + counts["Q4_K"], 80);  // 84 minus guidance_in's 4
  ExpectComfyChecklist(out_.File("s.gguf"),
                       {out_.File("schnell.safetensors"), [](const std::string&) { return "Q4_K"; }});

  // H = 384: rows of 384 and 1920 do not fit K-quant blocks of 256. Our policy: the
  // nearest 32-block type of at least the same bits (Q4_K -> Q5_0), never F16 bloat.
  Generate(out_.File("h384.safetensors"), "--hidden 384");
  ASSERT_TRUE(ConvertFile(out_.File("h384.safetensors"), out_.File("h.gguf"), Quantized("Q4_K")).has_value());
  auto file = gguf::GgufFile::Open(out_.File("h.gguf"));
  ASSERT_TRUE(file.has_value());
  int q4k = 0, q50 = 0;
  for (const auto& t : file->tensors()) {
    if (t.n_dims != 2 || BlockOf(t.name).empty()) continue;
    const std::string type(t.format->name);
    EXPECT_EQ(type, t.ne[0] % 256 == 0 ? "Q4_K" : "Q5_0") << t.name << " row " << t.ne[0];
    (type == "Q4_K" ? q4k : q50)++;
  }
  EXPECT_EQ(q4k, 4);   // the four mlp.2 weights (rows of 1536), as city96's run
  EXPECT_EQ(q50, 22);  // where city96 writes F16
}

TEST_F(TinyFlux, StreamingLeavesNothingOnErrorAndNamesNanTensors) {
  // Corrupt one weight of the checkpoint into a NaN: conversion fails naming it, no output appears.
  auto bytes = mixq::testing::ReadFileBytes(Tiny());
  auto file = safetensors::SafetensorsFile::Parse(bytes, "x");
  ASSERT_TRUE(file.has_value());
  const auto* t = file->Find("single_blocks.1.linear2.weight");
  ASSERT_NE(t, nullptr);
  bytes[t->file_offset + 2 * 1000] = 0xC0;  // BF16 element 1000: low byte of a NaN
  bytes[t->file_offset + 2 * 1000 + 1] = 0x7F;
  mixq::testing::WriteFileBytes(out_.File("nan.safetensors"), bytes);
  for (const char* type : {"BF16", "Q4_K"}) {
    ConvertOptions o;
    if (std::string(type) == "Q4_K") o = Quantized("Q4_K");
    auto r = ConvertFile(out_.File("nan.safetensors"), out_.File("nan.gguf"), o);
    ASSERT_FALSE(r.has_value()) << type;
    EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
    EXPECT_NE(r.error().message().find("single_blocks.1.linear2.weight"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("1000"), std::string::npos) << r.error().message();
    EXPECT_FALSE(std::filesystem::exists(out_.File("nan.gguf")));
  }
  for (const auto& entry : std::filesystem::directory_iterator(out_.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

TEST_F(TinyFlux, GgmlDecodesOurBlocksExactlyAsWeDo) {
  const std::string oracle = mixq::testing::OraclePath();
  if (oracle.empty()) GTEST_SKIP() << "no gguf-oracle configured";
  // One file holding every encodable quantized type ComfyUI reads fast, one per block
  // weight, so that one oracle run checks them all.
  const std::vector<std::string> types = {"Q8_0", "Q6_K", "Q5_K",   "Q5_1",   "Q5_0", "Q4_K",
                                          "Q4_1", "Q4_0", "IQ4_NL", "IQ4_XS", "Q3_K", "Q2_K"};
  ConvertOptions o;
  auto checkpoint = safetensors::Checkpoint::Open(Tiny());
  auto model = Inspect(*checkpoint);
  ASSERT_TRUE(model.has_value());
  size_t k = 0;
  for (const auto& t : model->tensors) {
    if (t.source->shape.size() == 2 && !BlockOf(t.name).empty()) {
      o.rules.exact[t.name] = formats::FindFormatByName(types[k++ % types.size()]);
    }
  }
  ASSERT_TRUE(Convert(*checkpoint, *model, out_.File("mix.gguf"), o).has_value());

  // The reference: our own decoding of every tensor, stored as F32.
  auto ours = gguf::GgufFile::Open(out_.File("mix.gguf"));
  ASSERT_TRUE(ours.has_value());
  std::vector<gguf::TensorSpec> specs;
  for (const auto& t : ours->tensors()) specs.push_back({t.name, t.ne, t.n_dims, formats::FindFormatByName("F32")});
  auto writer = gguf::GgufWriter::Begin(out_.File("decoded.gguf"), ours->metadata(), specs);
  ASSERT_TRUE(writer.has_value());
  std::set<std::string> used;
  for (const auto& t : ours->tensors()) {
    used.insert(std::string(t.format->name));
    std::vector<float> f(static_cast<size_t>(t.n_elems()));
    ASSERT_TRUE(formats::DequantizeRows(*t.format, ours->TensorData(t).data(), f.data(), t.n_rows(), t.ne[0], 1).ok());
    ASSERT_TRUE(writer->WriteTensor({reinterpret_cast<const uint8_t*>(f.data()), f.size() * 4}).ok());
  }
  ASSERT_TRUE(writer->Finish().ok());
  for (const auto& type : types) EXPECT_TRUE(used.contains(type)) << type;

  auto r =
      mixq::testing::RunCommand(oracle + " tensors " + out_.File("mix.gguf") + " --ref " + out_.File("decoded.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["all_valid"].get<bool>());
  ASSERT_EQ(j["tensors"].size(), ours->tensors().size());
  for (const auto& t : j["tensors"]) {
    EXPECT_TRUE(t["valid"].get<bool>()) << t["name"];
    EXPECT_EQ(t["max_abs_err"].get<double>(), 0.0) << t["name"] << " (" << t["type"] << ")";
  }
}

}  // namespace
}  // namespace mixq::diffusion
