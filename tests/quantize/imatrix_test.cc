#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::quantize {
namespace {

Imatrix SampleImatrix() {
  Imatrix im;
  im.datasets = {"calib.txt"};
  im.chunk_count = 7;
  im.chunk_size = 512;
  ImatrixEntry e;
  for (int j = 0; j < 256; ++j) e.in_sum2.push_back(0.5f * static_cast<float>(j + 1));
  e.counts = {100.0f};
  im.entries["blk.0.attn_q.weight"] = e;
  e.counts = {0.0f};
  im.entries["blk.0.attn_k.weight"] = e;
  return im;
}

template <typename T>
void Append(std::vector<uint8_t>& out, T v) {
  size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}
void AppendI32(std::vector<uint8_t>& out, int32_t v) { Append(out, v); }

TEST(Imatrix, GgufRoundTripGivesMeans) {
  testing::TempDir dir;
  ASSERT_TRUE(SaveImatrix(SampleImatrix(), dir.File("im.gguf")).ok());
  auto im = LoadImatrix(dir.File("im.gguf"));
  ASSERT_TRUE(im.has_value()) << im.error().message();
  EXPECT_EQ(im->chunk_count, 7u);
  EXPECT_EQ(im->datasets, std::vector<std::string>{"calib.txt"});
  auto q = im->Importance("blk.0.attn_q.weight", 256);
  ASSERT_TRUE(q.has_value());
  ASSERT_TRUE(q->has_value());
  EXPECT_FLOAT_EQ((**q)[9], 0.05f);
  // A matrix that saw no tokens gets uniform importance, as llama.cpp does.
  auto k = im->Importance("blk.0.attn_k.weight", 256);
  EXPECT_EQ((**k)[100], 1.0f);
  auto missing = im->Importance("blk.9.attn_q.weight", 256);
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
  auto wrong = im->Importance("blk.0.attn_q.weight", 512);
  EXPECT_FALSE(wrong.has_value());
}

// What LoadImatrix refuses is never written: a NaN entry fails, naming it,
// and leaves no file behind.
TEST(Imatrix, SaveRefusesNonFiniteValues) {
  testing::TempDir dir;
  Imatrix im = SampleImatrix();
  im.entries["blk.0.attn_k.weight"].in_sum2[17] = std::nanf("");
  Status s = SaveImatrix(im, dir.File("im.gguf"));
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_EQ(s.message(), "imatrix entry 'blk.0.attn_k.weight' has a non-finite value at index 17");
  EXPECT_FALSE(std::filesystem::exists(dir.File("im.gguf")));
}

// 3-D expert tensors: one slice of sums and one count per expert, each
// slice divided by its own count; experts no token reached get 1.
TEST(Imatrix, ExpertSlicesUseTheirOwnCounts) {
  Imatrix im;
  ImatrixEntry e;
  for (int m = 0; m < 3; ++m) {
    for (int j = 0; j < 4; ++j) e.in_sum2.push_back(static_cast<float>(10 * m + j));
  }
  e.counts = {2.0f, 0.0f, 5.0f};
  im.entries["blk.0.ffn_up_exps.weight"] = e;
  auto v = im.Importance("blk.0.ffn_up_exps.weight", 4, 3);
  ASSERT_TRUE(v.has_value() && v->has_value()) << (v.has_value() ? "" : v.error().message());
  EXPECT_EQ(**v, (std::vector<float>{0.0f, 0.5f, 1.0f, 1.5f, 1, 1, 1, 1, 4.0f, 4.2f, 4.4f, 4.6f}));
  // As a dense weight of 12 columns, or with 4 experts: a size mismatch.
  EXPECT_FALSE(im.Importance("blk.0.ffn_up_exps.weight", 12).has_value());
  EXPECT_FALSE(im.Importance("blk.0.ffn_up_exps.weight", 3, 4).has_value());
  // One count for every expert (legacy files) divides every slice.
  im.entries["blk.0.ffn_up_exps.weight"].counts = {10.0f};
  auto shared = im.Importance("blk.0.ffn_up_exps.weight", 4, 3);
  ASSERT_TRUE(shared.has_value() && shared->has_value());
  EXPECT_FLOAT_EQ((**shared)[9], 2.1f);
}

TEST(Imatrix, ReadsLegacyDatFormat) {
  std::vector<uint8_t> dat;
  AppendI32(dat, 1);
  std::string name = "blk.0.ffn_up.weight";
  AppendI32(dat, static_cast<int32_t>(name.size()));
  dat.insert(dat.end(), name.begin(), name.end());
  AppendI32(dat, 4);   // ncall
  AppendI32(dat, 32);  // nval
  for (int j = 0; j < 32; ++j) {
    Append(dat, 4.0f * static_cast<float>(j));
  }
  AppendI32(dat, 9);
  AppendI32(dat, 3);
  for (char c : std::string("abc")) Append(dat, c);
  testing::TempDir dir;
  testing::WriteFileBytes(dir.File("im.dat"), dat);
  auto im = LoadImatrix(dir.File("im.dat"));
  ASSERT_TRUE(im.has_value()) << im.error().message();
  EXPECT_EQ(im->chunk_count, 9u);
  auto v = im->Importance(name, 32);
  ASSERT_TRUE(v.has_value() && v->has_value());
  EXPECT_FLOAT_EQ((**v)[5], 5.0f);

  // Truncated and non-finite variants are errors.
  auto cut = dat;
  cut.resize(40);
  testing::WriteFileBytes(dir.File("cut.dat"), cut);
  EXPECT_EQ(LoadImatrix(dir.File("cut.dat")).error().kind(), StatusKind::kCorruption);
  auto nan = dat;
  float qnan = NAN;
  std::memcpy(nan.data() + 4 + 4 + name.size() + 8 + 4 * 3, &qnan, 4);
  testing::WriteFileBytes(dir.File("nan.dat"), nan);
  auto r = LoadImatrix(dir.File("nan.dat"));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("non-finite"), std::string::npos);
}

// A sum of squares below zero is corruption, like NaN: as an importance
// weight it made the quantizers' weighted searches produce non-finite or
// failed rows (found by imatrix_fuzz; seed tests/fuzz/seeds/imatrix/negative-sum.dat).
// A legacy .dat imatrix of one entry: 256 values of 2 from 512 calls, but
// `value` at `index`.
std::vector<uint8_t> OneEntryDat(const std::string& name, int index, float value) {
  std::vector<uint8_t> dat;
  AppendI32(dat, 1);
  AppendI32(dat, static_cast<int32_t>(name.size()));
  dat.insert(dat.end(), name.begin(), name.end());
  AppendI32(dat, 512);  // ncall
  AppendI32(dat, 256);  // nval
  for (int j = 0; j < 256; ++j) Append(dat, j == index ? value : 2.0f);
  return dat;
}

TEST(Imatrix, NegativeValuesAreRefused) {
  Imatrix im = SampleImatrix();
  im.entries["blk.0.attn_q.weight"].in_sum2[3] = -1.5f;
  testing::TempDir dir;
  const Status saved = SaveImatrix(im, dir.File("neg.gguf"));
  ASSERT_FALSE(saved.ok());
  EXPECT_NE(saved.message().find("negative value"), std::string::npos) << saved.message();

  const std::string name = "blk.0.attn_k.weight";
  testing::WriteFileBytes(dir.File("neg.dat"), OneEntryDat(name, 3, -1.5f));
  auto r = LoadImatrix(dir.File("neg.dat"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  EXPECT_EQ(r.error().message(), "invalid imatrix '" + dir.File("neg.dat") + "': imatrix entry '" + name +
                                     "' has a negative value (-1.500000) at index 3; sums of squared activations "
                                     "and token counts are never negative");
}

// A finite but absurd importance (found by imatrix_fuzz: 2e35) overflowed the
// block searches into non-finite weights; such a file is refused on reading.
TEST(Imatrix, ImportancesBeyondAnyModelAreRefused) {
  testing::TempDir dir;
  const std::string name = "blk.0.attn_k.weight";
  testing::WriteFileBytes(dir.File("huge.dat"), OneEntryDat(name, 7, 1e35f));
  auto r = LoadImatrix(dir.File("huge.dat"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(r.error().message().find("at index 7, beyond any model's (limit 1e20)"), std::string::npos)
      << r.error().message();

  Imatrix im = SampleImatrix();
  im.entries["blk.0.attn_q.weight"].in_sum2[3] = 1e30f;
  ASSERT_TRUE(SaveImatrix(im, dir.File("huge.gguf")).ok());
  auto g = LoadImatrix(dir.File("huge.gguf"));
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error().kind(), StatusKind::kCorruption);
}

}  // namespace
}  // namespace mixq::quantize
