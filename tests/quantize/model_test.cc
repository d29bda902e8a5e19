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
  EXPECT_EQ(report.error().kind(), StatusKind::kInvalidArgument);
}

// IQ2_XS needs an imatrix in ggml: without one, or with one that misses a
// tensor the type is asked for, quantization stops before writing, naming the
// tensor and the type.
TEST(QuantizeModel, TypeThatNeedsAnImatrixIsRefusedWithoutOne) {
  auto in = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  testing::TempDir dir;
  auto options = Options("Q8_0");
  options.rules.overrides.push_back({"blk\\.1\\.attn_k", formats::FindFormatByName("IQ2_XS")});
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
