// QuantizeRows / DequantizeRows: checks on shapes and inputs, and output that
// does not depend on the thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "formats/formats.h"

namespace mixq::formats {
namespace {

std::vector<float> RandomRows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

TEST(RowsTest, OutputDoesNotDependOnThreadCount) {
  constexpr int64_t kRows = 37;
  constexpr int64_t kCols = 512;
  std::vector<float> x = RandomRows(kRows * kCols, 1);
  std::vector<float> imatrix = RandomRows(kCols, 2);
  for (float& v : imatrix) v = std::fabs(v) * 100;
  for (const Format& f : AllFormats()) {
    if (!f.can_encode()) continue;
    for (QuantMethod method : {QuantMethod::kGgml, QuantMethod::kBest}) {
      SCOPED_TRACE(std::string(f.name));
      int64_t bytes = RowBytes(f, kCols).value() * kRows;
      std::vector<uint8_t> one(bytes), four(bytes);
      ASSERT_TRUE(QuantizeRows(f, method, x.data(), one.data(), kRows, kCols, imatrix.data(), 1).ok());
      ASSERT_TRUE(QuantizeRows(f, method, x.data(), four.data(), kRows, kCols, imatrix.data(), 4).ok());
      EXPECT_EQ(one, four);
      std::vector<float> y1(kRows * kCols), y4(kRows * kCols);
      ASSERT_TRUE(DequantizeRows(f, one.data(), y1.data(), kRows, kCols, 1).ok());
      ASSERT_TRUE(DequantizeRows(f, one.data(), y4.data(), kRows, kCols, 3).ok());
      EXPECT_EQ(y1, y4);
    }
  }
}

TEST(RowsTest, NonFiniteWeightIsCorruptionNamingTheRow) {
  constexpr int64_t kRows = 40;
  constexpr int64_t kCols = 256;
  const Format& f = *FindFormatByName("Q4_K");
  std::vector<float> x = RandomRows(kRows * kCols, 3);
  x[33 * kCols + 5] = std::numeric_limits<float>::quiet_NaN();
  x[17 * kCols + 200] = std::numeric_limits<float>::infinity();
  std::vector<uint8_t> out(RowBytes(f, kCols).value() * kRows);
  for (int threads : {1, 2, 8}) {
    Status s = QuantizeRows(f, QuantMethod::kBest, x.data(), out.data(), kRows, kCols, nullptr, threads);
    EXPECT_EQ(s.kind(), StatusKind::kCorruption);
    EXPECT_NE(s.message().find("row 17"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("element 200"), std::string::npos) << s.message();
  }
}

TEST(RowsTest, ShapeErrorsAreInvalidArgument) {
  const Format& q4k = *FindFormatByName("Q4_K");
  std::vector<float> x(1024, 0.5f);
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(QuantizeRows(q4k, QuantMethod::kGgml, x.data(), out.data(), 2, 100, nullptr, 1).kind(),
            StatusKind::kInvalidArgument);
  EXPECT_EQ(QuantizeRows(q4k, QuantMethod::kGgml, x.data(), out.data(), -1, 256, nullptr, 1).kind(),
            StatusKind::kInvalidArgument);
  EXPECT_EQ(QuantizeRows(q4k, QuantMethod::kGgml, x.data(), out.data(), 1, 0, nullptr, 1).kind(),
            StatusKind::kInvalidArgument);
  EXPECT_EQ(QuantizeRows(q4k, QuantMethod::kGgml, nullptr, out.data(), 1, 256, nullptr, 1).kind(),
            StatusKind::kInvalidArgument);
  EXPECT_EQ(DequantizeRows(q4k, out.data(), x.data(), 1, 255, 1).kind(), StatusKind::kInvalidArgument);
  std::vector<float> bad_importance(256, 1.0f);
  bad_importance[9] = -1.0f;
  EXPECT_EQ(QuantizeRows(q4k, QuantMethod::kGgml, x.data(), out.data(), 1, 256, bad_importance.data(), 1).kind(),
            StatusKind::kInvalidArgument);
  EXPECT_TRUE(QuantizeRows(q4k, QuantMethod::kGgml, x.data(), out.data(), 0, 256, nullptr, 1).ok());
}

TEST(RowsTest, TypesWithoutCodecAreNotSupported) {
  // Q8_K is only ever an activation type: ggml has no row quantizer for it in files.
  const Format& q8k = *FindFormatByName("Q8_K");
  std::vector<float> x(256, 0.5f);
  std::vector<uint8_t> block(292);
  EXPECT_EQ(QuantizeRows(q8k, QuantMethod::kGgml, x.data(), block.data(), 1, 256, x.data(), 1).kind(),
            StatusKind::kNotSupported);
  EXPECT_EQ(DequantizeRows(q8k, block.data(), x.data(), 1, 256, 1).kind(), StatusKind::kNotSupported);
}

// ggml cannot encode IQ2_XXS, IQ2_XS and IQ1_S without importance; neither
// does mixq, whichever method.
TEST(RowsTest, TypeThatNeedsAnImatrixIsRefusedWithoutOne) {
  std::vector<float> x = RandomRows(256, 4);
  std::vector<uint8_t> out(256);
  int checked = 0;
  for (const Format& f : AllFormats()) {
    if (!f.can_encode() || !f.needs_imatrix) continue;
    for (QuantMethod method : {QuantMethod::kGgml, QuantMethod::kBest}) {
      Status s = QuantizeRows(f, method, x.data(), out.data(), 1, 256, nullptr, 1);
      EXPECT_EQ(s.kind(), StatusKind::kNotSupported) << f.name;
      EXPECT_NE(s.message().find(std::string(f.name) + " needs an importance matrix"), std::string::npos)
          << s.message();
    }
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

}  // namespace
}  // namespace mixq::formats
