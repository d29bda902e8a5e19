#include <gtest/gtest.h>

#include <filesystem>

#include "gguf/gguf.h"
#include "test_support.h"

namespace mixq::gguf {
namespace {

using testing::TempDir;

std::vector<TensorSpec> SpecsOf(const GgufFile& file) {
  std::vector<TensorSpec> specs;
  for (const auto& t : file.tensors()) specs.push_back({t.name, t.ne, t.n_dims, t.format});
  return specs;
}

Status CopyGguf(const GgufFile& in, const std::string& path) {
  auto writer = GgufWriter::Begin(path, in.metadata(), SpecsOf(in));
  MIXQ_TRY(writer);
  for (const auto& t : in.tensors()) MIXQ_TRY(writer->WriteTensor(in.TensorData(t)));
  return writer->Finish();
}

TEST(GgufWriter, RoundTripIsByteIdenticalToGgmlOwnWriter) {
  const std::string src = testing::RefVectorPath("gguf/tiny-align32.gguf");
  auto in = GgufFile::Open(src);
  ASSERT_TRUE(in.has_value());
  TempDir dir;
  ASSERT_TRUE(CopyGguf(*in, dir.File("copy.gguf")).ok());
  EXPECT_EQ(testing::ReadFileBytes(dir.File("copy.gguf")), testing::ReadFileBytes(src));
}

TEST(GgufWriter, RoundTripOfRefDevKeepsMetadataAndTensorBytes) {
  auto in = GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  TempDir dir;
  ASSERT_TRUE(CopyGguf(*in, dir.File("copy.gguf")).ok());
  auto out = GgufFile::Open(dir.File("copy.gguf"));
  ASSERT_TRUE(out.has_value()) << out.error().message();
  ASSERT_EQ(out->metadata().size(), in->metadata().size());
  for (size_t i = 0; i < in->metadata().size(); ++i) {
    EXPECT_EQ(out->metadata()[i].key, in->metadata()[i].key);
    EXPECT_TRUE(out->metadata()[i].value == in->metadata()[i].value) << in->metadata()[i].key;
  }
  ASSERT_EQ(out->tensors().size(), in->tensors().size());
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    auto a = in->TensorData(in->tensors()[i]);
    auto b = out->TensorData(out->tensors()[i]);
    ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << in->tensors()[i].name;
  }
  auto predicted = GgufWriter::FileSize(in->metadata(), SpecsOf(*in));
  ASSERT_TRUE(predicted.has_value());
  EXPECT_EQ(*predicted, std::filesystem::file_size(dir.File("copy.gguf")));
}

TEST(GgufWriter, RealignsA64ByteAlignedFileTo32) {
  auto in = GgufFile::Open(testing::RefVectorPath("gguf/tiny-align64.gguf"));
  ASSERT_TRUE(in.has_value());
  TempDir dir;
  ASSERT_TRUE(CopyGguf(*in, dir.File("copy.gguf")).ok());
  auto out = GgufFile::Open(dir.File("copy.gguf"));
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(out->alignment(), 32u);
  EXPECT_EQ(out->Find("general.alignment"), nullptr);
}

TEST(GgufWriter, NestedArraysRoundTrip) {
  Value inner = Value::StringArray({"a", "bc"});
  Value outer;
  outer.type = ValueType::kArray;
  outer.array_type = ValueType::kArray;
  outer.array = {inner, Value::StringArray({})};
  std::vector<KeyValue> kvs = {{"general.architecture", Value::String("test")}, {"test.nested", outer}};
  TempDir dir;
  auto writer = GgufWriter::Begin(dir.File("n.gguf"), kvs, {});
  ASSERT_TRUE(writer.has_value());
  ASSERT_TRUE(writer->Finish().ok());
  auto in = GgufFile::Open(dir.File("n.gguf"));
  ASSERT_TRUE(in.has_value()) << in.error().message();
  EXPECT_TRUE(*in->Find("test.nested") == outer);
}

TEST(GgufWriter, UnfinishedWriterLeavesNoFile) {
  auto in = GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  TempDir dir;
  {
    auto writer = GgufWriter::Begin(dir.File("partial.gguf"), in->metadata(), SpecsOf(*in));
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE(writer->WriteTensor(in->TensorData(in->tensors()[0])).ok());
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(GgufWriter, FinishFailsWhenTensorsAreMissing) {
  auto in = GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(in.has_value());
  TempDir dir;
  auto writer = GgufWriter::Begin(dir.File("partial.gguf"), in->metadata(), SpecsOf(*in));
  ASSERT_TRUE(writer.has_value());
  EXPECT_FALSE(writer->Finish().ok());
  EXPECT_FALSE(std::filesystem::exists(dir.File("partial.gguf")));
}

TEST(GgufWriter, UnwritableDirectoryIsIOError) {
  auto writer = GgufWriter::Begin("/nonexistent-dir/x.gguf", {}, {});
  ASSERT_FALSE(writer.has_value());
  EXPECT_EQ(writer.error().kind(), StatusKind::kIOError);
}

}  // namespace
}  // namespace mixq::gguf
