#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "gguf/gguf.h"
#include "test_support.h"

namespace mixq::gguf {
namespace {

using testing::RefDevModel;
using testing::RefVectorPath;

TEST(GgufReader, ReadsEveryValueTypeOfTheGgmlWrittenFile) {
  auto file = GgufFile::Open(RefVectorPath("gguf/tiny-align32.gguf"));
  ASSERT_TRUE(file.has_value()) << file.error().message();
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  EXPECT_EQ(file->metadata().size(), 17u);
  EXPECT_EQ(file->GetString("general.architecture"), "refvec");
  EXPECT_EQ(file->GetInt("test.u8"), 200);
  EXPECT_EQ(file->GetInt("test.i8"), -100);
  EXPECT_EQ(file->GetInt("test.u16"), 60000);
  EXPECT_EQ(file->GetInt("test.i16"), -30000);
  EXPECT_EQ(file->GetInt("test.u32"), 4000000000LL);
  EXPECT_EQ(file->GetInt("test.i32"), -2000000000LL);
  EXPECT_EQ(file->GetFloat("test.f32"), 3.25);
  EXPECT_EQ(file->Find("test.bool")->u64, 1u);
  EXPECT_EQ(file->GetString("test.str"), "h\xc3\xa9llo");
  EXPECT_EQ(file->Find("test.u64")->u64, 18000000000000000000ull);
  EXPECT_EQ(file->GetInt("test.i64"), -9000000000000000000LL);
  EXPECT_EQ(file->GetFloat("test.f64"), -0.125);
  const Value* arr = file->Find("test.arr_str");
  ASSERT_NE(arr, nullptr);
  ASSERT_EQ(arr->array.size(), 3u);
  EXPECT_EQ(arr->array[2].str, "xyz");
  EXPECT_EQ(file->Find("test.arr_i32")->array[1].i64, -2);
  EXPECT_EQ(file->Find("test.arr_bool")->array[1].u64, 0u);

  ASSERT_EQ(file->tensors().size(), 4u);
  EXPECT_EQ(file->data_offset(), 768u);
  const TensorInfo* q4 = file->FindTensor("t.q4_0_64x2");
  ASSERT_NE(q4, nullptr);
  EXPECT_EQ(q4->format->name, "Q4_0");
  EXPECT_EQ(q4->offset, 64u);
  EXPECT_EQ(q4->n_bytes, 72u);
  const TensorInfo* f32_3d = file->FindTensor("t.f32_2x1x3");
  EXPECT_EQ(f32_3d->n_dims, 3u);
  auto data = file->TensorData(*f32_3d);
  float last;
  std::memcpy(&last, data.data() + data.size() - 4, 4);
  EXPECT_EQ(last, 1.25f);
}

TEST(GgufReader, HonoursAlignmentKey) {
  auto file = GgufFile::Open(RefVectorPath("gguf/tiny-align64.gguf"));
  ASSERT_TRUE(file.has_value()) << file.error().message();
  EXPECT_EQ(file->alignment(), 64u);
  EXPECT_EQ(file->data_offset(), 384u);
  EXPECT_EQ(file->tensors()[1].offset, 64u);
}

TEST(GgufReader, RejectsFileWhoseOffsetsIgnoreItsAlignment) {
  auto file = GgufFile::Open(RefVectorPath("gguf/invalid-ggml-align64.gguf"));
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(file.error().message().find("t.f16_3x2"), std::string::npos) << file.error().message();
}

TEST(GgufReader, ReadsRefDevModel) {
  auto file = GgufFile::Open(RefDevModel());
  ASSERT_TRUE(file.has_value()) << file.error().message();
  EXPECT_EQ(file->GetString("general.architecture"), "llama");
  EXPECT_EQ(file->GetInt("llama.block_count"), 6);
  int64_t n_weights = 0;
  for (const auto& t : file->tensors()) n_weights += t.n_elems();
  EXPECT_EQ(n_weights, 6819072);  // train.json "params"
}

// ReleasePages lets go of a mapped file's pages and keeps its bytes
// readable; a Parse()d image is the caller's memory and is left alone (a
// dropped anonymous page would read back as zeros).
TEST(GgufReader, ReleasePagesDropsMappedPagesAndKeepsTheBytes) {
  auto file = GgufFile::Open(RefDevModel());
  ASSERT_TRUE(file.has_value()) << file.error().message();
  const TensorInfo* largest = &file->tensors().front();
  for (const TensorInfo& t : file->tensors()) {
    if (t.n_bytes > largest->n_bytes) largest = &t;
  }
  const std::span<const uint8_t> data = file->TensorData(*largest);
  const std::vector<uint8_t> copy(data.begin(), data.end());
  const int64_t present = testing::PresentPages(data);
  if (present < 0) GTEST_SKIP() << "/proc/self/pagemap cannot be read here";
  EXPECT_GT(present, 16);
  file->ReleasePages(data);
  EXPECT_EQ(testing::PresentPages(data), 0);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), copy.begin()));

  const std::vector<uint8_t> image = testing::ReadFileBytes(RefDevModel());
  auto parsed = GgufFile::Parse(image);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  const std::span<const uint8_t> in_memory = parsed->TensorData(*parsed->FindTensor(largest->name));
  parsed->ReleasePages(in_memory);
  EXPECT_TRUE(std::equal(in_memory.begin(), in_memory.end(), copy.begin()));
}

TEST(GgufReader, MissingFileIsIOError) {
  auto file = GgufFile::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().kind(), StatusKind::kIOError);
}

}  // namespace
}  // namespace mixq::gguf
