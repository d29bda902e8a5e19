// The IQ4 codebook lookup table against ggml's binary search (§2.8), densely
// around every switch point and bin edge, and on random floats.
#include "formats/iq4_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>

namespace mixq::formats::internal {
namespace {

// The compare form of the index the search lanes use (kIQ4Steps).
int StepCount(float v) {
  int n = 0;
  for (float step : kIQ4Steps) n += v >= step ? 1 : 0;
  return n;
}

// Checks n floats either side of v (in float order), both forms.
void CheckAround(float v, int n) {
  float lo = v;
  float hi = v;
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(IQ4BestIndex(lo), IQ4BestIndexReference(lo)) << lo;
    ASSERT_EQ(IQ4BestIndex(hi), IQ4BestIndexReference(hi)) << hi;
    ASSERT_EQ(StepCount(lo), IQ4BestIndexReference(lo)) << lo;
    ASSERT_EQ(StepCount(hi), IQ4BestIndexReference(hi)) << hi;
    lo = std::nextafter(lo, -1e9f);
    hi = std::nextafter(hi, 1e9f);
  }
}

TEST(IQ4IndexTest, MatchesReferenceNearSwitchPointsAndBinEdges) {
  for (int k = 0; k < 15; ++k) CheckAround((kIQ4Values[k] + kIQ4Values[k + 1]) / 2.0f, 20000);
  for (float step : kIQ4Steps) CheckAround(step, 2000);
  for (int k = -130; k <= 130; ++k) CheckAround(static_cast<float>(k), 2000);
  CheckAround(0.0f, 100000);
}

TEST(IQ4IndexTest, MatchesReferenceOnRandomFloats) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> wide(-200.0f, 200.0f);
  for (int i = 0; i < 3000000; ++i) {
    float v = wide(rng);
    ASSERT_EQ(IQ4BestIndex(v), IQ4BestIndexReference(v)) << v;
    ASSERT_EQ(StepCount(v), IQ4BestIndexReference(v)) << v;
  }
  for (int i = 0; i < 1000000; ++i) {
    float v = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(v)) continue;
    ASSERT_EQ(IQ4BestIndex(v), IQ4BestIndexReference(v)) << v;
  }
}

// Where the table form clamps (infinities; NaN, which IQ4BestIndex's clamp
// sends to the lowest bin), the compare form gives the same index.
TEST(IQ4IndexTest, StepCountAgreesAtTheEnds) {
  EXPECT_EQ(StepCount(INFINITY), 15);
  EXPECT_EQ(StepCount(-INFINITY), 0);
  EXPECT_EQ(StepCount(NAN), 0);
  EXPECT_EQ(std::min(127.5f, std::max(-127.5f, NAN)), -127.5f);  // so IQ4BestIndex(NaN) would be 0 as well
  EXPECT_EQ(StepCount(1e30f), IQ4BestIndexReference(1e30f));
  EXPECT_EQ(StepCount(-1e30f), IQ4BestIndexReference(-1e30f));
}

}  // namespace
}  // namespace mixq::formats::internal
