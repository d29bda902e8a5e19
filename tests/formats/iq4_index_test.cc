// The IQ4 codebook lookup table against ggml's binary search (§2.8), densely
// around every switch point and bin edge, and on random floats.
#include "formats/iq4_index.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

namespace mixq::formats::internal {
namespace {

// Checks n floats either side of v (in float order).
void CheckAround(float v, int n) {
  float lo = v;
  float hi = v;
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(IQ4BestIndex(lo), IQ4BestIndexReference(lo)) << lo;
    ASSERT_EQ(IQ4BestIndex(hi), IQ4BestIndexReference(hi)) << hi;
    lo = std::nextafter(lo, -1e9f);
    hi = std::nextafter(hi, 1e9f);
  }
}

TEST(IQ4IndexTest, MatchesReferenceNearSwitchPointsAndBinEdges) {
  for (int k = 0; k < 15; ++k) CheckAround((kIQ4Values[k] + kIQ4Values[k + 1]) / 2.0f, 20000);
  for (int k = -130; k <= 130; ++k) CheckAround(static_cast<float>(k), 2000);
  CheckAround(0.0f, 100000);
}

TEST(IQ4IndexTest, MatchesReferenceOnRandomFloats) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> wide(-200.0f, 200.0f);
  for (int i = 0; i < 3000000; ++i) {
    float v = wide(rng);
    ASSERT_EQ(IQ4BestIndex(v), IQ4BestIndexReference(v)) << v;
  }
  for (int i = 0; i < 1000000; ++i) {
    float v = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(v)) continue;
    ASSERT_EQ(IQ4BestIndex(v), IQ4BestIndexReference(v)) << v;
  }
}

}  // namespace
}  // namespace mixq::formats::internal
