// EffectiveTokens: batches of independent Gaussian tokens are worth about as
// many tokens as they hold; batches of repeated tokens (each drawn once and
// seen k times, as neighbouring tokens of a text are alike) about 1 / k of
// them; one batch, or none of the spread it needs, gives the plain count.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "quantize/quantize.h"

namespace mixq::quantize {
namespace {

struct Sums {
  std::vector<double> h;
  double spread = 0;
  int64_t tokens = 0;
};

// n_batches batches of `distinct` draws each, every draw seen `repeat` times;
// inputs with a shared factor (correlated columns) and unequal column scales.
Sums Draw(int64_t n, int64_t n_batches, int64_t distinct, int repeat, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> scale(n), loading(n);
  for (int64_t j = 0; j < n; ++j) scale[j] = 0.5 + static_cast<double>(j % 5), loading[j] = normal(rng);
  Sums s;
  s.h.assign(static_cast<size_t>(n * n), 0.0);
  std::vector<double> g(s.h.size()), x(n);
  for (int64_t b = 0; b < n_batches; ++b) {
    std::fill(g.begin(), g.end(), 0.0);
    for (int64_t t = 0; t < distinct; ++t) {
      const double f = normal(rng);
      for (int64_t j = 0; j < n; ++j) x[j] = scale[j] * (normal(rng) + f * loading[j]);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < n; ++j) g[i * n + j] += repeat * x[i] * x[j];
      }
    }
    const int64_t tokens = distinct * repeat;
    double off_sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        s.h[i * n + j] += g[i * n + j];
        if (i != j) off_sq += g[i * n + j] * g[i * n + j];
      }
    }
    s.spread += off_sq / static_cast<double>(tokens);
    s.tokens += tokens;
  }
  return s;
}

TEST(EffectiveTokens, IndependentTokensCountInFull) {
  const Sums s = Draw(24, 40, 200, 1, 1);
  const double e = EffectiveTokens(s.h, 24, s.tokens, 40, s.spread);
  EXPECT_GT(e, 0.7 * static_cast<double>(s.tokens));
  EXPECT_LE(e, static_cast<double>(s.tokens));
}

TEST(EffectiveTokens, RepeatedTokensCountOnce) {
  const Sums s = Draw(24, 40, 100, 8, 2);
  const double e = EffectiveTokens(s.h, 24, s.tokens, 40, s.spread);
  EXPECT_GT(e, 0.7 * static_cast<double>(s.tokens) / 8);
  EXPECT_LT(e, 1.3 * static_cast<double>(s.tokens) / 8);
}

TEST(EffectiveTokens, WithoutASpreadThePlainCount) {
  const Sums s = Draw(8, 1, 50, 1, 3);
  EXPECT_EQ(EffectiveTokens(s.h, 8, s.tokens, 1, s.spread), 50.0);
  // Batches that agree exactly (no spread) leave nothing to estimate from.
  EXPECT_EQ(EffectiveTokens(s.h, 8, 100, 2, 0.0), 100.0);
  EXPECT_EQ(EffectiveTokens(s.h, 8, 0, 2, s.spread), 0.0);
}

}  // namespace
}  // namespace mixq::quantize
