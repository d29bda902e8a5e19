#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::quantize {
namespace {

QuantizeOptions Options(const char* type) {
  QuantizeOptions o;
  o.rules.default_format = formats::FindFormatByName(type);
  o.n_threads = 2;
  return o;
}

TEST(QuantizeModel, WritesEveryTensorWithPreservedMetadata) {
  auto in = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  testing::TempDir dir;
  auto report = QuantizeModel(*in, dir.File("q.gguf"), Options("Q4_K"));
  ASSERT_TRUE(report.has_value()) << report.error().message();
  auto out = gguf::GgufFile::Open(dir.File("q.gguf"));
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(report->file_bytes, out->file_size());
  for (const auto& kv : in->metadata()) {
    if (kv.key == "general.file_type") continue;
    const gguf::Value* v = out->Find(kv.key);
    ASSERT_NE(v, nullptr) << kv.key;
    EXPECT_TRUE(*v == kv.value) << kv.key;
  }
  EXPECT_EQ(out->GetInt("general.file_type"), 15);  // Q4_K dominant -> MOSTLY_Q4_K_M
  EXPECT_EQ(out->GetString("mixq.version"), MIXQ_VERSION);
  ASSERT_EQ(out->tensors().size(), in->tensors().size());
  EXPECT_EQ(out->FindTensor("output.weight")->format->name, "Q6_K");
  EXPECT_EQ(out->FindTensor("blk.0.attn_norm.weight")->format->name, "F32");
  EXPECT_EQ(out->FindTensor("blk.3.ffn_down.weight")->format->name, "Q4_K");
}

TEST(QuantizeModel, NanWeightIsRejectedAndNothingIsWritten) {
  auto bytes = testing::ReadFileBytes(testing::RefDevModel());
  auto in = gguf::GgufFile::Parse(bytes);
  ASSERT_TRUE(in.has_value());
  const gguf::TensorInfo* t = in->FindTensor("blk.2.attn_q.weight");
  ASSERT_EQ(t->format->name, "F16");
  uint16_t f16_nan = 0x7e00;
  std::memcpy(bytes.data() + in->data_offset() + t->offset + 2 * 777, &f16_nan, 2);
  testing::TempDir dir;
  auto report = QuantizeModel(*in, dir.File("q.gguf"), Options("Q8_0"));
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(report.error().message().find("blk.2.attn_q.weight"), std::string::npos) << report.error().message();
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

// The finiteness check runs once per tensor and file: a second check of a
// finite tensor is remembered, a tensor with NaN is refused every time.
TEST(CheckTensorFinite, RemembersFiniteTensorsOnly) {
  auto bytes = testing::ReadFileBytes(testing::RefDevModel());
  auto in = gguf::GgufFile::Parse(bytes);
  ASSERT_TRUE(in.has_value());
  const gguf::TensorInfo* good = in->FindTensor("blk.1.attn_q.weight");
  const gguf::TensorInfo* bad = in->FindTensor("blk.2.attn_q.weight");
  uint16_t f16_nan = 0x7e00;
  std::memcpy(bytes.data() + in->data_offset() + bad->offset + 2 * 777, &f16_nan, 2);
  EXPECT_FALSE(in->KnownFinite(*good));
  EXPECT_TRUE(CheckTensorFinite(*in, *good, 1).ok());
  EXPECT_TRUE(in->KnownFinite(*good));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(CheckTensorFinite(*in, *bad, 1).kind(), StatusKind::kCorruption);
    EXPECT_FALSE(in->KnownFinite(*bad));
  }
}

// The dominant type names the file: the quantized type with the most weights
// even when a float type has more, else the float type with the most.
TEST(FileTypeOf, DominantQuantizedElseFloatType) {
  auto file_type = [](std::vector<std::pair<const char*, int64_t>> types) {
    std::vector<TensorReport> tensors;
    for (const auto& [type, n] : types) tensors.push_back({"t", type, n, 0});
    return FileTypeOf(tensors);
  };
  EXPECT_EQ(file_type({{"F16", 1000}, {"F32", 10}}), 1u);
  EXPECT_EQ(file_type({{"F32", 10}, {"BF16", 600}, {"BF16", 600}, {"F16", 1000}}), 32u);
  EXPECT_EQ(file_type({{"F32", 10}, {"F32", 20}}), 0u);
  EXPECT_EQ(file_type({{"F16", 5000}, {"Q8_0", 10}, {"F32", 10}}), 7u);
  EXPECT_EQ(file_type({{"Q4_K", 600}, {"Q6_K", 500}, {"Q6_K", 200}, {"F32", 10}}), 18u);
  EXPECT_EQ(file_type({{"Q4_K", 600}, {"IQ4_XS", 500}}), 15u);
  EXPECT_EQ(file_type({{"IQ2_XXS", 600}, {"F16", 500}}), 19u);
  EXPECT_EQ(file_type({{"Q8_K", 600}, {"F16", 500}}), std::nullopt);  // no llama_ftype
}

// What QuantizeModel writes: float outputs keep their F32 norms but are named
// by the type of their matrices.
TEST(QuantizeModel, FileTypeIsThatOfTheDominantType) {
  auto in = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  testing::TempDir dir;
  for (const auto& [type, file_type] : {std::pair{"F16", 1}, {"BF16", 32}, {"F32", 0}, {"Q8_0", 7}}) {
    auto report = QuantizeModel(*in, dir.File("q.gguf"), Options(type));
    ASSERT_TRUE(report.has_value()) << report.error().message();
    auto out = gguf::GgufFile::Open(dir.File("q.gguf"));
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ(out->GetInt("general.file_type"), file_type) << type;
  }
}

TEST(QuantizeModel, ImatrixOfWrongShapeIsRejected) {
  auto in = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  Imatrix im;
  im.entries["blk.0.attn_q.weight"] = {std::vector<float>(100, 1.0f), {1.0f}};
  auto options = Options("Q4_K");
  options.imatrix = &im;
  testing::TempDir dir;
  auto report = QuantizeModel(*in, dir.File("q.gguf"), options);
  ASSERT_FALSE(report.has_value());
  // Bad input data, not a bad flag: exit 3, and nothing written.
  EXPECT_EQ(report.error().kind(), StatusKind::kCorruption);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

// IQ2_XS needs an imatrix in ggml: without one, or with one that misses a
// tensor the type is asked for, quantization stops before writing, naming the
// tensor and the type.
TEST(QuantizeModel, TypeThatNeedsAnImatrixIsRefusedWithoutOne) {
  auto in = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  testing::TempDir dir;
  auto options = Options("Q8_0");
  options.rules.overrides.push_back(*ParseTensorTypeOverride("blk\\.1\\.attn_k=IQ2_XS"));
  auto report = QuantizeModel(*in, dir.File("q.gguf"), options);
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().kind(), StatusKind::kNotSupported);
  EXPECT_NE(report.error().message().find("tensor 'blk.1.attn_k.weight': type IQ2_XS needs an importance matrix"),
            std::string::npos)
      << report.error().message();

  Imatrix im;
  im.entries["blk.0.attn_k.weight"] = {std::vector<float>(256, 1.0f), {1.0f}};
  options.imatrix = &im;
  report = QuantizeModel(*in, dir.File("q.gguf"), options);
  ASSERT_FALSE(report.has_value());
  EXPECT_NE(report.error().message().find("the imatrix has no entry"), std::string::npos) << report.error().message();
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  im.entries["blk.1.attn_k.weight"] = {std::vector<float>(256, 1.0f), {1.0f}};
  report = QuantizeModel(*in, dir.File("q.gguf"), options);
  ASSERT_TRUE(report.has_value()) << report.error().message();
  auto out = gguf::GgufFile::Open(dir.File("q.gguf"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->FindTensor("blk.1.attn_k.weight")->format->name, "IQ2_XS");
}

}  // namespace
}  // namespace mixq::quantize
