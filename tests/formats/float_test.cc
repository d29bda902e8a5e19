// F16 / BF16 conversions (ggml-formats.md §2.2) against independent judges: the
// CPU's F16C instructions where present, and exhaustive round trips.
#include <cpuid.h>
#include <gtest/gtest.h>
#include <immintrin.h>

#include <bit>
#include <cmath>
#include <random>

#include "formats/formats.h"

namespace mixq::formats {
namespace {

__attribute__((target("f16c"))) uint16_t HardwareF32ToF16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float HardwareF16ToF32(uint16_t h) { return _cvtsh_ss(h); }

// CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports has no "f16c").
bool HasF16C() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
}

TEST(FloatTest, EveryHalfWidensExactlyAndRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = F16ToF32(static_cast<uint16_t>(h));
    bool nan = ((h >> 10) & 31) == 31 && (h & 0x3FF) != 0;
    if (nan) {
      EXPECT_TRUE(std::isnan(f)) << h;
      continue;
    }
    EXPECT_EQ(F32ToF16(f), h) << h;
    if (HasF16C()) {
      EXPECT_EQ(std::bit_cast<uint32_t>(f), std::bit_cast<uint32_t>(HardwareF16ToF32(h))) << h;
    }
  }
}

TEST(FloatTest, NarrowingMatchesHardwareRoundToNearestEven) {
  if (!HasF16C()) GTEST_SKIP() << "CPU has no F16C";
  std::mt19937 rng(12345);
  // Random bit patterns cover every exponent; halfway cases are constructed below.
  for (int i = 0; i < 2000000; ++i) {
    float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), HardwareF32ToF16(f)) << std::bit_cast<uint32_t>(f);
  }
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    uint32_t bits = std::bit_cast<uint32_t>(F16ToF32(static_cast<uint16_t>(h)));
    // The value halfway to the next half, and one float either side of it.
    float next = F16ToF32(static_cast<uint16_t>(h + 1));
    float mid = (F16ToF32(static_cast<uint16_t>(h)) + next) / 2;
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), -mid, std::bit_cast<float>(bits + 1)}) {
      ASSERT_EQ(F32ToF16(f), HardwareF32ToF16(f)) << h;
    }
  }
  EXPECT_EQ(F32ToF16(65519.996f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);
  EXPECT_EQ(F32ToF16(1e30f), 0x7C00);
  EXPECT_EQ(F32ToF16(-1e30f), 0xFC00);
}

TEST(FloatTest, NanAndSignedZero) {
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(std::nanf("")), 0x7E00);
  EXPECT_EQ(F32ToF16(-std::nanf("")), 0xFE00);
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x7F800001u)), 0x7FC0);  // quieted, payload's top bits kept
}

TEST(FloatTest, BF16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // halfway, even stays
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // halfway, odd rounds up
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x3F808001u)), 0x3F81);
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x00000001u)), 0x0000);  // subnormals are rounded, not flushed
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x00008000u)), 0x0000);
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x00018000u)), 0x0002);
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x7F7FFFFFu)), 0x7F80);  // rounds up to inf
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = BF16ToF32(static_cast<uint16_t>(h));
    EXPECT_EQ(std::bit_cast<uint32_t>(f), h << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(F32ToBF16(f), h);
    }
  }
}

}  // namespace
}  // namespace mixq::formats
