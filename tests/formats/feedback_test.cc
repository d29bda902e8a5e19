// The error-feedback encoder (QuantizeRowsFeedback) against mixq's best on
// random row blocks whose inputs are correlated: the output error
// tr(ΔW H ΔWᵀ) must be lower for every type that has one. With uncorrelated
// inputs there is nothing to feed forward, and the result must be best's
// scales with nearest rounding: never a larger weighted error than best's,
// which also checks that each format's grid and packing decode as assumed.
#include "formats/feedback.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "formats/formats.h"

namespace mixq::formats {
namespace {

constexpr double kDamp = 0.01;

struct Problem {
  int64_t rows = 0;
  int64_t n = 0;
  std::vector<float> w;           // rows x n
  std::vector<double> h;          // n x n
  std::vector<float> importance;  // diag(h) / tokens
};

// Inputs like a transformer's: per-column scales spread over two decades and
// a few strong shared directions (activations are far from isotropic).
Problem MakeProblem(int64_t rows, int64_t n, int64_t tokens, int n_factors, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Problem p;
  p.rows = rows;
  p.n = n;
  p.w.resize(static_cast<size_t>(rows * n));
  for (float& v : p.w) v = 0.02f * normal(rng) * (rng() % 64 == 0 ? 4.0f : 1.0f);
  std::vector<float> scale(n), loading(static_cast<size_t>(n_factors * n));
  for (float& s : scale) s = std::exp(1.2f * normal(rng));
  for (float& c : loading) c = 1.5f * normal(rng);
  std::vector<float> x(static_cast<size_t>(tokens * n));
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> u(n_factors);
    for (float& v : u) v = normal(rng);
    for (int64_t j = 0; j < n; ++j) {
      float v = normal(rng);
      for (int f = 0; f < n_factors; ++f) v += u[f] * loading[f * n + j];
      x[t * n + j] = scale[j] * v;
    }
  }
  p.h.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* xt = x.data() + t * n;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) p.h[i * n + j] += static_cast<double>(xt[i]) * xt[j];
    }
  }
  p.importance.resize(n);
  for (int64_t j = 0; j < n; ++j) p.importance[j] = static_cast<float>(p.h[j * n + j] / static_cast<double>(tokens));
  return p;
}

// Σ over rows of Δwᵀ H Δw, Δw the decoded row minus the original.
double OutputError(const Format& f, const Problem& p, const std::vector<uint8_t>& q) {
  std::vector<float> y(p.w.size());
  EXPECT_TRUE(DequantizeRows(f, q.data(), y.data(), p.rows, p.n, 1).ok());
  double total = 0;
  std::vector<double> d(p.n);
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t j = 0; j < p.n; ++j) d[j] = static_cast<double>(y[r * p.n + j]) - p.w[r * p.n + j];
    for (int64_t i = 0; i < p.n; ++i) {
      double s = 0;
      for (int64_t j = 0; j < p.n; ++j) s += p.h[i * p.n + j] * d[j];
      total += d[i] * s;
    }
  }
  return total;
}

std::vector<uint8_t> Best(const Format& f, const Problem& p) {
  std::vector<uint8_t> q(static_cast<size_t>(*RowBytes(f, p.n) * p.rows));
  EXPECT_TRUE(QuantizeRows(f, QuantMethod::kBest, p.w.data(), q.data(), p.rows, p.n, p.importance.data(), 2).ok());
  return q;
}

std::vector<uint8_t> Feedback(const Format& f, const Problem& p, int n_threads = 2) {
  auto u = FeedbackFactor(p.h, p.n, kDamp);
  EXPECT_TRUE(u.has_value());
  std::vector<uint8_t> q(static_cast<size_t>(*RowBytes(f, p.n) * p.rows));
  Status s = QuantizeRowsFeedback(f, p.w.data(), q.data(), p.rows, p.n, p.importance.data(), *u, n_threads);
  EXPECT_TRUE(s.ok()) << s.message();
  return q;
}

std::vector<const Format*> FeedbackFormats() {
  std::vector<const Format*> out;
  for (const Format& f : AllFormats()) {
    if (f.can_feedback()) out.push_back(&f);
  }
  return out;
}

TEST(FeedbackTest, TheTypesThatHaveIt) {
  std::string names;
  for (const Format* f : FeedbackFormats()) names += std::string(f->name) + " ";
  EXPECT_EQ(names, "Q4_0 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS ");
}

// Checks that u is upper triangular with (Uᵀ U) (H + damp·mean·I) = I.
void ExpectInvertsTheDampedCovariance(const Problem& p, const FeedbackMatrices& f, double tolerance) {
  const int64_t n = p.n;
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += p.h[i * n + i] / n;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < i; ++j) ASSERT_EQ(f.u[i * n + j], 0.0f);
    ASSERT_GT(f.u[i * n + i], 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      const double damped = p.h[i * n + j] + (i == j ? kDamp * mean : 0.0);
      ASSERT_NEAR(f.h[i * n + j], damped, 1e-6 * std::fabs(damped)) << i << "," << j;
    }
  }
  std::vector<double> inv(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t k = 0; k <= std::min(i, j); ++k) inv[i * n + j] += double(f.u[k * n + i]) * f.u[k * n + j];
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += inv[i * n + k] * (p.h[k * n + j] + (k == j ? kDamp * mean : 0.0));
      ASSERT_NEAR(s, i == j ? 1.0 : 0.0, tolerance) << i << "," << j;
    }
  }
}

TEST(FeedbackTest, FactorInvertsTheDampedCovariance) {
  Problem p = MakeProblem(1, 64, 200, 4, 3);
  auto u = FeedbackFactor(p.h, p.n, kDamp);
  ASSERT_TRUE(u.has_value());
  ExpectInvertsTheDampedCovariance(p, *u, 1e-4);
  EXPECT_EQ(u->tokens, 0.0);
  // The token count travels with the matrices to the refinement.
  auto counted = FeedbackFactor(p.h, p.n, kDamp, 1, 123.5);
  ASSERT_TRUE(counted.has_value());
  EXPECT_EQ(counted->tokens, 123.5);
  EXPECT_EQ(counted->h, u->h);
}

// 300 columns span three of the factor's column blocks (the last one partial),
// so the blocked products, the row solves and the column blocks of the
// inverse all run; the result must not depend on how many threads share them.
TEST(FeedbackTest, BlockedFactorIsTheSameAtAnyThreadCount) {
  Problem p = MakeProblem(1, 300, 900, 6, 5);
  auto one = FeedbackFactor(p.h, p.n, kDamp, 1);
  ASSERT_TRUE(one.has_value());
  ExpectInvertsTheDampedCovariance(p, *one, 1e-3);
  for (int threads : {2, 3, 0}) {
    auto many = FeedbackFactor(p.h, p.n, kDamp, threads);
    ASSERT_TRUE(many.has_value());
    EXPECT_EQ(many->u, one->u) << threads << " threads";
    EXPECT_EQ(many->h, one->h) << threads << " threads";
  }
}

TEST(FeedbackTest, FactorEdgeCases) {
  std::vector<double> zero(16, 0.0);
  auto u = FeedbackFactor(zero, 4, kDamp);
  ASSERT_TRUE(u.has_value());
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(u->u[i * 4 + j], i == j ? 1.0f : 0.0f);
      EXPECT_EQ(u->h[i * 4 + j], i == j ? 1.0f : 0.0f);
    }
  }
  // Eigenvalues -999 and 1001: no damping within a thousand times mean(diag) cures it.
  std::vector<double> indefinite = {1, 1000, 1000, 1};
  auto bad = FeedbackFactor(indefinite, 2, kDamp);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().kind(), StatusKind::kCorruption);
  std::vector<double> nan = {NAN, 0, 0, 1};
  EXPECT_FALSE(FeedbackFactor(nan, 2, kDamp).has_value());
  EXPECT_FALSE(FeedbackFactor(zero, 3, kDamp).has_value());  // 16 values are not 3 x 3
}

TEST(FeedbackTest, LowerOutputErrorThanBestWithCorrelatedInputs) {
  Problem p = MakeProblem(24, 512, 700, 8, 1);
  for (const Format* f : FeedbackFormats()) {
    const double best = OutputError(*f, p, Best(*f, p));
    const double feedback = OutputError(*f, p, Feedback(*f, p));
    std::printf("%-7s tr(dW H dW^T): best %.4g, feedback %.4g (%.3f)\n", std::string(f->name).c_str(), best, feedback,
                feedback / best);
    EXPECT_LT(feedback, 0.9 * best) << f->name;
  }
}

TEST(FeedbackTest, UncorrelatedInputsGiveBestScalesWithNearestRounding) {
  Problem p = MakeProblem(8, 512, 700, 0, 2);
  for (int64_t i = 0; i < p.n; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      if (i != j) p.h[i * p.n + j] = 0;
    }
  }
  for (const Format* f : FeedbackFormats()) {
    // best block by block, as the feedback encoder calls it (the legacy
    // types' ggml start, which best refines, depends on the whole row).
    const int64_t be = f->block_elems;
    std::vector<uint8_t> best(static_cast<size_t>(*RowBytes(*f, p.n) * p.rows));
    for (int64_t b = 0; b < p.rows * p.n / be; ++b) {
      ASSERT_TRUE(QuantizeRows(*f, QuantMethod::kBest, p.w.data() + b * be, best.data() + b * f->block_bytes, 1, be,
                               p.importance.data() + b * be % p.n, 1)
                      .ok());
    }
    std::vector<float> yb(p.w.size()), yf(p.w.size());
    ASSERT_TRUE(DequantizeRows(*f, best.data(), yb.data(), p.rows, p.n, 1).ok());
    ASSERT_TRUE(DequantizeRows(*f, Feedback(*f, p).data(), yf.data(), p.rows, p.n, 1).ok());
    for (int64_t b = 0; b < p.rows * p.n / be; ++b) {
      double eb = 0, ef = 0;
      for (int64_t j = b * be; j < (b + 1) * be; ++j) {
        const double w = p.importance[j % p.n];
        eb += w * (yb[j] - p.w[j]) * (yb[j] - p.w[j]);
        ef += w * (yf[j] - p.w[j]) * (yf[j] - p.w[j]);
      }
      EXPECT_LE(ef, eb * (1 + 1e-6)) << f->name << " block " << b;
    }
  }
}

// Importance-weighted error of nearest rounding of v at one group's scale and offset.
double GroupError(const FeedbackCodec& c, float scale, float offset, const std::vector<float>& v,
                  const std::vector<float>& importance) {
  double e = 0;
  for (int j = 0; j < c.group_size; ++j) {
    double y = INFINITY;  // the grid value nearest to v[j]
    for (int q = c.qmin; q <= c.qmax; ++q) {
      const double level = c.levels != nullptr ? c.levels[q - c.qmin] : q;
      const double candidate = static_cast<double>(scale) * level - offset;
      if (std::fabs(candidate - v[j]) < std::fabs(y - v[j])) y = candidate;
    }
    e += importance[j] * (v[j] - y) * (v[j] - y);
  }
  return e;
}

// The super-block types' group step: after the block search saw one set of
// weights, each group's weights move as the feedback would move them (scaled
// up or down, shifted, plus noise); the re-chosen scale and offset must never
// round them worse than the block's, must be what the block then decodes
// with, and must round them clearly better overall.
TEST(FeedbackTest, GroupRechoiceFitsTheUpdatedWeights) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Format* f : FeedbackFormats()) {
    const FeedbackCodec& c = *f->feedback;
    if (c.set_group == nullptr) continue;
    double before = 0, after = 0;
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> w(f->block_elems), importance(f->block_elems);
      for (float& v : w) v = 0.02f * normal(rng);
      for (float& v : importance) v = std::exp(normal(rng));
      std::vector<uint8_t> block(f->block_bytes);
      ASSERT_TRUE(
          QuantizeRows(*f, QuantMethod::kBest, w.data(), block.data(), 1, f->block_elems, importance.data(), 1).ok());
      float scale[16], offset[16];
      c.read_grid(block.data(), scale, offset);
      for (int g = 0; g < f->block_elems / c.group_size; ++g) {
        const float gain = std::exp(0.4f * normal(rng)), shift = 0.005f * normal(rng);
        std::vector<float> v(c.group_size),
            imp(importance.begin() + g * c.group_size, importance.begin() + (g + 1) * c.group_size);
        for (int j = 0; j < c.group_size; ++j) v[j] = gain * w[g * c.group_size + j] + shift + 0.003f * normal(rng);
        const double old_error = GroupError(c, scale[g], offset[g], v, imp);
        float s = scale[g], o = offset[g];
        internal::RechooseGroup(c, block.data(), g, v.data(), imp.data(), &s, &o);
        const double new_error = GroupError(c, s, o, v, imp);
        EXPECT_LE(new_error, old_error) << f->name << " group " << g;
        float grid_scale[16], grid_offset[16];
        c.read_grid(block.data(), grid_scale, grid_offset);
        EXPECT_EQ(grid_scale[g], s) << f->name;
        EXPECT_EQ(grid_offset[g], o) << f->name;
        before += old_error;
        after += new_error;
      }
    }
    std::printf("%-7s group rounding error: block search's scales %.4g, re-chosen %.4g (%.3f)\n",
                std::string(f->name).c_str(), before, after, after / before);
    EXPECT_LT(after, 0.8 * before) << f->name;
  }
}

// (w − y)ᵀ h (w − y) of one row.
double RowError(const float* w, const float* y, const std::vector<float>& h, int64_t n) {
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += static_cast<double>(h[i * n + j]) * (w[j] - y[j]);
    e += (w[i] - y[i]) * s;
  }
  return e;
}

// The refinement after the feedback pass, per row on correlated inputs: the
// output error with the damped H never rises above the pass's and falls
// overall; the blocks' f16 multipliers stay as the pass left them (and every
// scale and offset, for the types without groups).
TEST(FeedbackTest, RefinementNeverRaisesTheRowError) {
  Problem p = MakeProblem(12, 512, 700, 8, 6);
  auto m = FeedbackFactor(p.h, p.n, kDamp);
  ASSERT_TRUE(m.has_value());
  for (const Format* f : FeedbackFormats()) {
    const FeedbackCodec& c = *f->feedback;
    const int64_t row_bytes = *RowBytes(*f, p.n);
    std::vector<uint8_t> pass(static_cast<size_t>(row_bytes * p.rows)), refined(pass.size());
    internal::QuantizeRowsWithFeedback(*f, p.w.data(), pass.data(), p.rows, p.n, row_bytes, p.importance.data(),
                                       m->u.data(), nullptr);
    internal::QuantizeRowsWithFeedback(*f, p.w.data(), refined.data(), p.rows, p.n, row_bytes, p.importance.data(),
                                       m->u.data(), m->h.data());
    for (size_t b = 0; b < pass.size() / f->block_bytes; ++b) {
      const uint8_t* b0 = pass.data() + b * f->block_bytes;
      const uint8_t* b1 = refined.data() + b * f->block_bytes;
      if (c.set_group != nullptr) {
        EXPECT_EQ(std::memcmp(b0 + c.d_at, b1 + c.d_at, 2), 0) << f->name;
        if (c.dmin_at >= 0) {
          EXPECT_EQ(std::memcmp(b0 + c.dmin_at, b1 + c.dmin_at, 2), 0) << f->name;
        }
        continue;
      }
      float s0[16], o0[16], s1[16], o1[16];
      c.read_grid(b0, s0, o0);
      c.read_grid(b1, s1, o1);
      EXPECT_EQ(s0[0], s1[0]) << f->name;
      EXPECT_EQ(o0[0], o1[0]) << f->name;
    }
    std::vector<float> y0(p.w.size()), y1(p.w.size());
    ASSERT_TRUE(DequantizeRows(*f, pass.data(), y0.data(), p.rows, p.n, 1).ok());
    ASSERT_TRUE(DequantizeRows(*f, refined.data(), y1.data(), p.rows, p.n, 1).ok());
    double before = 0, after = 0;
    for (int64_t r = 0; r < p.rows; ++r) {
      const float* w = p.w.data() + r * p.n;
      const double e0 = RowError(w, y0.data() + r * p.n, m->h, p.n);
      const double e1 = RowError(w, y1.data() + r * p.n, m->h, p.n);
      EXPECT_LE(e1, e0 * (1 + 1e-9)) << f->name << " row " << r;
      before += e0;
      after += e1;
    }
    std::printf("%-7s (w-y)^T H (w-y): feedback pass %.4g, refined %.4g (%.3f)\n", std::string(f->name).c_str(), before,
                after, after / before);
    EXPECT_LT(after, 0.995 * before) << f->name;
  }
}

// RefineRow from random codes at random scales: codes stay in range, the
// error never rises, and once a call changes nothing the row is a coordinate
// minimum: no single code, tried exhaustively, lowers the error.
// h with its off-diagonal entries times `cross`: the matrix RefineRow and
// RefitGroups work with when given that factor.
std::vector<float> CrossScaled(const std::vector<float>& h, int64_t n, double cross) {
  std::vector<float> out(h);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (i != j) out[i * n + j] = static_cast<float>(h[i * n + j] * cross);
    }
  }
  return out;
}

// With cross < 1 (a shrunk off-diagonal) the minimum is that of the shrunk matrix.
TEST(FeedbackTest, RefineRowReachesACoordinateMinimum) {
  Problem p = MakeProblem(1, 256, 300, 4, 7);
  auto full = FeedbackFactor(p.h, p.n, kDamp);
  ASSERT_TRUE(full.has_value());
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const double cross : {1.0, 0.4})
    for (const Format* f : FeedbackFormats()) {
      const std::vector<float> h = CrossScaled(full->h, p.n, cross);  // the matrix the refinement minimizes
      const FeedbackCodec& c = *f->feedback;
      const int64_t groups = p.n / c.group_size;
      std::vector<float> scale(groups), offset(groups);
      for (int64_t g = 0; g < groups; ++g) {
        scale[g] = 0.04f * std::exp(0.3f * normal(rng)) / static_cast<float>(c.qmax - c.qmin);
        offset[g] = c.qmin < 0 ? 0.0f : 0.02f * std::exp(0.3f * normal(rng));
      }
      std::vector<int> codes(p.n);
      for (int& q : codes) q = c.qmin + static_cast<int>(rng() % (c.qmax - c.qmin + 1));
      const auto decode = [&](const std::vector<int>& q) {
        std::vector<float> y(p.n);
        for (int64_t j = 0; j < p.n; ++j) {
          const float level = c.levels != nullptr ? c.levels[q[j] - c.qmin] : static_cast<float>(q[j]);
          y[j] = scale[j / c.group_size] * level - offset[j / c.group_size];
        }
        return y;
      };
      double e = RowError(p.w.data(), decode(codes).data(), h, p.n);
      int calls = 0;
      for (int64_t changed = 1; changed > 0 && calls < 2000; ++calls) {
        changed =
            internal::RefineRow(c, p.w.data(), p.n, full->h.data(), scale.data(), offset.data(), codes.data(), cross);
        for (int q : codes) ASSERT_TRUE(q >= c.qmin && q <= c.qmax) << f->name << " code " << q;
        const double next = RowError(p.w.data(), decode(codes).data(), h, p.n);
        EXPECT_LE(next, e * (1 + 1e-9)) << f->name;
        e = next;
      }
      ASSERT_LT(calls, 2000) << f->name;
      std::printf("%-7s cross %.1f: coordinate minimum after %d calls\n", std::string(f->name).c_str(), cross, calls);
      // Moving y_j by δ changes the error by δ² h_jj − 2 δ (h (w − y))_j.
      const std::vector<float> y = decode(codes);
      for (int64_t j = 0; j < p.n; ++j) {
        double r = 0;
        for (int64_t k = 0; k < p.n; ++k) r += static_cast<double>(h[j * p.n + k]) * (p.w[k] - y[k]);
        const double hjj = h[j * p.n + j];
        for (int q = c.qmin; q <= c.qmax; ++q) {
          const float level = c.levels != nullptr ? c.levels[q - c.qmin] : static_cast<float>(q);
          const double delta = static_cast<double>(scale[j / c.group_size] * level - offset[j / c.group_size]) - y[j];
          EXPECT_GE(delta * delta * hjj - 2 * delta * r, -1e-9 * e) << f->name << " col " << j << " code " << q;
        }
      }
    }
}

// RefitGroups after RefineRow, from best's blocks with nearest codes: the
// error never rises, falls overall, d and dmin stay, and the row's bytes
// decode to the returned codes at the re-chosen scales (set_group's packing).
TEST(FeedbackTest, RefitGroupsLowersTheRowError) {
  Problem p = MakeProblem(6, 512, 700, 8, 9);
  auto full = FeedbackFactor(p.h, p.n, kDamp);
  ASSERT_TRUE(full.has_value());
  for (const double cross : {1.0, 0.4})
    for (const Format* f : FeedbackFormats()) {
      const std::vector<float> h = CrossScaled(full->h, p.n, cross);  // the matrix the refinement minimizes
      const FeedbackCodec& c = *f->feedback;
      if (c.set_group == nullptr) continue;
      const int64_t row_bytes = *RowBytes(*f, p.n), groups = p.n / c.group_size;
      std::vector<uint8_t> q = Best(*f, p);
      double refined = 0, refit = 0;
      for (int64_t r = 0; r < p.rows; ++r) {
        const float* w = p.w.data() + r * p.n;
        uint8_t* row = q.data() + r * row_bytes;
        std::vector<float> scale(groups), offset(groups);
        for (int64_t b = 0; b < p.n / f->block_elems; ++b) {
          c.read_grid(row + b * f->block_bytes, &scale[b * f->block_elems / c.group_size],
                      &offset[b * f->block_elems / c.group_size]);
        }
        std::vector<int> codes(p.n);
        for (int64_t j = 0; j < p.n; ++j) {
          double nearest = INFINITY;
          for (int k = c.qmin; k <= c.qmax; ++k) {
            const float level = c.levels != nullptr ? c.levels[k - c.qmin] : static_cast<float>(k);
            const double d = std::fabs(scale[j / c.group_size] * level - offset[j / c.group_size] - w[j]);
            if (d < nearest) nearest = d, codes[j] = k;
          }
        }
        internal::RefineRow(c, w, p.n, full->h.data(), scale.data(), offset.data(), codes.data(), cross);
        for (int64_t b = 0; b < p.n / f->block_elems; ++b) {
          c.store_codes(&codes[b * f->block_elems], row + b * f->block_bytes);
        }
        const std::vector<uint8_t> before(row, row + row_bytes);
        std::vector<float> y(p.n);
        ASSERT_TRUE(DequantizeRows(*f, row, y.data(), 1, p.n, 1).ok());
        const double e0 = RowError(w, y.data(), h, p.n);
        internal::RefitGroups(c, w, p.n, full->h.data(), f->block_elems, f->block_bytes, row, codes.data(), cross);
        for (int64_t b = 0; b < p.n / f->block_elems; ++b) {
          EXPECT_EQ(std::memcmp(&before[b * f->block_bytes + c.d_at], row + b * f->block_bytes + c.d_at, 2), 0);
          c.store_codes(&codes[b * f->block_elems], row + b * f->block_bytes);
          c.read_grid(row + b * f->block_bytes, &scale[b * f->block_elems / c.group_size],
                      &offset[b * f->block_elems / c.group_size]);
        }
        ASSERT_TRUE(DequantizeRows(*f, row, y.data(), 1, p.n, 1).ok());
        for (int64_t j = 0; j < p.n; ++j) {
          const float level = c.levels != nullptr ? c.levels[codes[j] - c.qmin] : static_cast<float>(codes[j]);
          EXPECT_FLOAT_EQ(y[j], scale[j / c.group_size] * level - offset[j / c.group_size]) << f->name << " " << j;
        }
        const double e1 = RowError(w, y.data(), h, p.n);
        EXPECT_LE(e1, e0 * (1 + 1e-9)) << f->name << " row " << r;
        refined += e0;
        refit += e1;
      }
      std::printf("%-7s cross %.1f: (w-y)^T H (w-y): refined %.4g, groups refit %.4g (%.3f)\n",
                  std::string(f->name).c_str(), cross, refined, refit, refit / refined);
      EXPECT_LT(refit, 0.999 * refined) << f->name;
    }
}

// The shrinkage of the cross terms, for a row rounded by best: none without a
// token count, all of it with too few tokens to tell the cross terms from
// noise, falling as 1 / tokens in between (its amount follows n / tokens)
// and vanishing with many tokens.
TEST(FeedbackTest, CrossTermShrinkageFollowsTheTokenCount) {
  Problem p = MakeProblem(1, 256, 2000, 6, 10);
  auto m = FeedbackFactor(p.h, p.n, kDamp);
  ASSERT_TRUE(m.has_value());
  const Format& f = *FindFormatByName("Q2_K");
  std::vector<float> y(p.n);
  ASSERT_TRUE(DequantizeRows(f, Best(f, p).data(), y.data(), 1, p.n, 1).ok());
  const auto alpha = [&](double tokens) {
    return internal::CrossTermShrinkage(m->h.data(), p.n, p.w.data(), y.data(), tokens);
  };
  EXPECT_EQ(alpha(0), 0.0);
  EXPECT_EQ(alpha(1), 1.0);
  double last = 1.0;
  for (double tokens = 10; tokens <= 1e12; tokens *= 10) {
    const double a = alpha(tokens);
    EXPECT_LE(a, last) << tokens;
    EXPECT_GE(a, 0.0) << tokens;
    if (a < 1 && last < 1) {
      EXPECT_NEAR(a * tokens, last * tokens / 10, 1e-9 * a * tokens) << tokens;
    }
    last = a;
  }
  EXPECT_LT(last, 1e-6);
  EXPECT_GT(alpha(2000), 0.0);
  EXPECT_LT(alpha(2000), 1.0);
}

// With too few tokens (α = 1) the refinement works with H's diagonal alone:
// the same bytes as refining with diag(H) given as exact.
TEST(FeedbackTest, FewTokensRefineWithTheDiagonal) {
  Problem p = MakeProblem(4, 256, 300, 4, 11);
  auto m = FeedbackFactor(p.h, p.n, kDamp, 1, 1.0);
  ASSERT_TRUE(m.has_value());
  const std::vector<float> diagonal = CrossScaled(m->h, p.n, 0.0);
  for (const Format* f : FeedbackFormats()) {
    const int64_t row_bytes = *RowBytes(*f, p.n);
    std::vector<uint8_t> shrunk(static_cast<size_t>(row_bytes * p.rows)), exact(shrunk.size());
    internal::QuantizeRowsWithFeedback(*f, p.w.data(), shrunk.data(), p.rows, p.n, row_bytes, p.importance.data(),
                                       m->u.data(), m->h.data(), m->tokens);
    internal::QuantizeRowsWithFeedback(*f, p.w.data(), exact.data(), p.rows, p.n, row_bytes, p.importance.data(),
                                       m->u.data(), diagonal.data());
    EXPECT_EQ(shrunk, exact) << f->name;
  }
}

TEST(FeedbackTest, BytesDoNotDependOnThreads) {
  Problem p = MakeProblem(40, 256, 300, 4, 4);
  for (const Format* f : FeedbackFormats()) EXPECT_EQ(Feedback(*f, p, 1), Feedback(*f, p, 3)) << f->name;
}

TEST(FeedbackTest, RejectsWhatItCannotEncode) {
  Problem p = MakeProblem(2, 256, 300, 2, 5);
  auto u = FeedbackFactor(p.h, p.n, kDamp);
  ASSERT_TRUE(u.has_value());
  std::vector<uint8_t> q(4096);
  Status s = QuantizeRowsFeedback(*FindFormatByName("Q4_1"), p.w.data(), q.data(), 2, 256, nullptr, *u, 1);
  EXPECT_EQ(s.kind(), StatusKind::kNotSupported);
  s = QuantizeRowsFeedback(*FindFormatByName("Q4_K"), p.w.data(), q.data(), 1, 512, nullptr, *u, 1);
  EXPECT_EQ(s.kind(), StatusKind::kInvalidArgument);
  p.w[256 + 9] = NAN;
  s = QuantizeRowsFeedback(*FindFormatByName("Q4_K"), p.w.data(), q.data(), 2, 256, nullptr, *u, 1);
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("row 1, element 9"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace mixq::formats
