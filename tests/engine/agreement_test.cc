// The paired statistics that the oracle tests judge agreement with.
#include "agreement.h"

#include <gtest/gtest.h>

#include <random>

namespace mixq::engine::test {
namespace {

TEST(PairedDifferenceTest, ConstantOffsetHasNoErrorAndFailsBeyondTheMargin) {
  std::vector<double> a(512), b(512);
  for (size_t i = 0; i < a.size(); ++i) {
    b[i] = 0.01 * double(i % 7);
    a[i] = b[i] + 0.5;
  }
  const PairedDiff d = PairedDifference(a, b, 256, 16);
  EXPECT_NEAR(d.mean, 0.5, 1e-12);
  EXPECT_NEAR(d.std_error, 0.0, 1e-12);
  EXPECT_EQ(d.n_batches, 32);
  EXPECT_NE(JudgeAgreement("x", d, 4, 0.1), "");
  EXPECT_EQ(JudgeAgreement("x", d, 4, 0.6), "");
}

TEST(PairedDifferenceTest, IndependentNoiseGivesTheTextbookError) {
  std::mt19937 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> a(20 * 255), b(a.size(), 0.0);
  for (double& x : a) x = normal(rng);
  const PairedDiff d = PairedDifference(a, b, 255, 16);
  EXPECT_EQ(d.n_batches, 20 * 15);  // 255 = 15 batches of 16, the last one 15 longer
  const double textbook = 1.0 / std::sqrt(double(a.size()));
  EXPECT_NEAR(d.std_error / textbook, 1.0, 0.2);
  EXPECT_EQ(JudgeAgreement("x", d, 4, 0.0), "");
}

// A flipped rounding shifts a whole run of positions: batch means see that,
// the per-position error would not.
TEST(PairedDifferenceTest, RunsOfCorrelatedPositionsWidenTheError) {
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> a(8 * 256), b(a.size(), 0.0);
  for (size_t run = 0; run < a.size(); run += 16) {
    const double shift = normal(rng);
    for (size_t i = run; i < run + 16; ++i) a[i] = shift;
  }
  const PairedDiff d = PairedDifference(a, b, 256, 16);
  const double per_position = 1.0 / std::sqrt(double(a.size()));
  EXPECT_GT(d.std_error, 3 * per_position);
}

}  // namespace
}  // namespace mixq::engine::test
