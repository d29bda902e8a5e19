// Tie rules of the legacy reference encoders that random data rarely hits
// (ggml-formats.md §2.4): the first element wins ties, and which zero is the
// minimum is visible in the stored f16 offset.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "formats/formats.h"

namespace mixq::formats {
namespace {

uint16_t FirstHalf(const std::vector<uint8_t>& bytes, int offset) {
  uint16_t h;
  std::memcpy(&h, bytes.data() + offset, 2);
  return h;
}

std::vector<uint8_t> Encode(const char* type, const std::vector<float>& x) {
  const Format& f = *FindFormatByName(type);
  std::vector<uint8_t> out(RowBytes(f, static_cast<int64_t>(x.size())).value());
  EXPECT_TRUE(
      QuantizeRows(f, QuantMethod::kGgml, x.data(), out.data(), 1, static_cast<int64_t>(x.size()), nullptr, 1).ok());
  return out;
}

TEST(LegacyTest, MinimumKeepsTheFirstZerosSign) {
  // "min = smallest x ... strict <": among equal zeros the first one stays.
  std::vector<float> x(32, 0.5f);
  x[3] = 0.0f;
  x[17] = -0.0f;
  EXPECT_EQ(FirstHalf(Encode("Q4_1", x), 2), 0x0000);
  EXPECT_EQ(FirstHalf(Encode("Q5_1", x), 2), 0x0000);
  x[3] = -0.0f;
  x[17] = 0.0f;
  EXPECT_EQ(FirstHalf(Encode("Q4_1", x), 2), 0x8000);
  EXPECT_EQ(FirstHalf(Encode("Q5_1", x), 2), 0x8000);
}

TEST(LegacyTest, LargestMagnitudeKeepsTheFirstSign) {
  // d = max / -8 with max the first element of largest |x|: -2 then +2 gives d = 0.25.
  std::vector<float> x(32, 0.1f);
  x[5] = -2.0f;
  x[9] = 2.0f;
  EXPECT_EQ(F16ToF32(FirstHalf(Encode("Q4_0", x), 0)), 0.25f);
  EXPECT_EQ(F16ToF32(FirstHalf(Encode("Q5_0", x), 0)), 0.125f);
  x[5] = 2.0f;
  x[9] = -2.0f;
  EXPECT_EQ(F16ToF32(FirstHalf(Encode("Q4_0", x), 0)), -0.25f);
  EXPECT_EQ(F16ToF32(FirstHalf(Encode("Q5_0", x), 0)), -0.125f);
}

TEST(LegacyTest, AllZeroBlocks) {
  std::vector<float> x(32, 0.0f);
  EXPECT_EQ(FirstHalf(Encode("Q4_0", x), 0), 0x8000);  // -0/-8: the spec's all-zero case
  std::vector<uint8_t> q41 = Encode("Q4_1", x);
  EXPECT_EQ(FirstHalf(q41, 0), 0x0000);
  EXPECT_EQ(FirstHalf(q41, 2), 0x0000);
}

}  // namespace
}  // namespace mixq::formats
