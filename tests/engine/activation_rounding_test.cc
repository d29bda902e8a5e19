// The engine's inline F16/BF16 rounding against the format library's
// conversions, and the Q8 block roundings' basic properties.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "engine/internal.h"

namespace mixq::engine {
namespace {

bool SameFloat(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (a != a && b != b);
}

TEST(ActivationRounding, HalfAndBFloat16MatchTheFormatConversions) {
  // Every 97th bit pattern covers all exponents, subnormals, ties and overflow.
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 97) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(u));
    const float want_half = formats::F16ToF32(formats::F32ToF16(x));
    ASSERT_TRUE(SameFloat(RoundToHalf(x), want_half)) << std::hex << u;
    const float want_bf16 = formats::BF16ToF32(formats::F32ToBF16(x));
    ASSERT_TRUE(SameFloat(RoundToBFloat16(x), want_bf16)) << std::hex << u;
  }
  for (float x : {65504.0f, 65519.0f, 65520.0f, -65520.0f, 5.9604645e-08f, 2.9802322e-08f, 8.940697e-08f}) {
    EXPECT_TRUE(SameFloat(RoundToHalf(x), formats::F16ToF32(formats::F32ToF16(x)))) << x;
  }
}

TEST(ActivationRounding, Q8BlocksKeepTheLargestValueAndAtMost255Levels) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(512), y(512);
  for (float& v : x) v = dist(rng);
  for (ActRounding r : {ActRounding::kQ8_0, ActRounding::kQ8_K}) {
    RoundActivations(r, x.data(), 1, 512, y.data());
    const int block = r == ActRounding::kQ8_0 ? 32 : 256;
    for (int b = 0; b < 512; b += block) {
      float amax = 0, step = INFINITY;
      for (int j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b + j]));
      for (int j = 0; j < block; ++j) {
        EXPECT_LE(std::fabs(y[b + j] - x[b + j]), amax / 127.0f * 0.51f + 1e-3f * amax) << b + j;
        if (y[b + j] != 0) step = std::min(step, std::fabs(y[b + j]));
      }
      EXPECT_GT(step, amax / 128.0f);
    }
  }
  std::vector<float> zeros(256, 0.0f), out(256, 1.0f);
  RoundActivations(ActRounding::kQ8_K, zeros.data(), 1, 256, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(ActivationRounding, FormatsMapToGgmlDotTypes) {
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("F32")), ActRounding::kNone);
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("F16")), ActRounding::kF16);
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("BF16")), ActRounding::kBF16);
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("Q8_0")), ActRounding::kQ8_0);
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("Q4_1")), ActRounding::kQ8_0);
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("IQ4_NL")), ActRounding::kQ8_0);
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("Q4_K")), ActRounding::kQ8_K);
  EXPECT_EQ(RoundingFor(*formats::FindFormatByName("IQ4_XS")), ActRounding::kQ8_K);
}

}  // namespace
}  // namespace mixq::engine
