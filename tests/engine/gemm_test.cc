// Every GEMM kernel this CPU supports against a plain double-precision
// product, over shapes that exercise every edge (partial row blocks, partial
// panels, k blocks, k prefixes of a packed B).
#include "engine/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace mixq::engine {
namespace {

struct Shape {
  int64_t m, n, k;
};

class GemmTest : public ::testing::TestWithParam<GemmIsa> {};

TEST_P(GemmTest, MatchesReferenceProduct) {
  const GemmIsa isa = GetParam();
  if (!IsaSupported(isa)) GTEST_SKIP() << "CPU lacks " << IsaName(isa);
  const uint32_t seed = 20240611;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (Shape s : {Shape{1, 1, 1}, Shape{2, 7, 3}, Shape{7, 33, 9}, Shape{8, 32, 256}, Shape{9, 31, 257},
                  Shape{13, 65, 300}, Shape{33, 100, 600}, Shape{64, 128, 64}}) {
    std::vector<float> a(s.m * s.k), b(s.n * s.k);
    for (float& x : a) x = dist(rng);
    for (float& x : b) x = dist(rng);
    std::vector<float> packed(PackedFloats(s.n, s.k, isa));
    for (int64_t r = 0; r < s.n; ++r) PackRow(b.data() + r * s.k, r, s.k, packed.data(), isa);
    const int64_t ldc = s.n + 3;
    std::vector<float> c(s.m * ldc, 7.0f);
    Gemm(s.m, s.n, s.k, a.data(), s.k, packed.data(), s.k, c.data(), ldc, isa);
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) {
        double want = 0, mag = 0;
        for (int64_t t = 0; t < s.k; ++t) {
          want += double(a[i * s.k + t]) * b[j * s.k + t];
          mag += std::fabs(double(a[i * s.k + t]) * b[j * s.k + t]);
        }
        ASSERT_NEAR(c[i * ldc + j], want, 1e-6 * mag + 1e-7)
            << IsaName(isa) << " seed " << seed << " m" << s.m << " n" << s.n << " k" << s.k << " at " << i << "," << j;
      }
      for (int64_t j = s.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], 7.0f) << "wrote past n";
    }
  }
}

// Attention multiplies by a prefix of the keys and by Vᵀ packed from rows.
TEST_P(GemmTest, PrefixOfPackedKAndTransposedB) {
  const GemmIsa isa = GetParam();
  if (!IsaSupported(isa)) GTEST_SKIP() << "CPU lacks " << IsaName(isa);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t rows = 70, d = 40, ldv = 50;
  std::vector<float> v(rows * ldv);
  for (float& x : v) x = dist(rng);
  std::vector<float> packed(PackedFloats(d, rows, isa));
  PackTransposed(v.data(), ldv, rows, d, packed.data(), isa);
  const int64_t m = 5, k = 37;  // use only the first 37 rows of V
  std::vector<float> a(m * k), c(m * d);
  for (float& x : a) x = dist(rng);
  Gemm(m, d, k, a.data(), k, packed.data(), rows, c.data(), d, isa);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      double want = 0;
      for (int64_t t = 0; t < k; ++t) want += double(a[i * k + t]) * v[t * ldv + j];
      ASSERT_NEAR(c[i * d + j], want, 1e-5) << IsaName(isa);
    }
  }
}

TEST_P(GemmTest, SoftmaxRowMatchesExpAndSumsToOne) {
  const GemmIsa isa = GetParam();
  if (!IsaSupported(isa)) GTEST_SKIP() << "CPU lacks " << IsaName(isa);
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-30.0f, 30.0f);
  for (int64_t n : {1, 2, 15, 16, 17, 100, 513}) {
    std::vector<float> row(n);
    for (float& x : row) x = dist(rng);
    std::vector<float> got = row;
    SoftmaxRow(got.data(), n, 0.125f, isa);
    double max = -1e30, sum = 0;
    for (float x : row) max = std::max(max, 0.125 * x);
    for (float x : row) sum += std::exp(0.125 * x - max);
    double total = 0;
    for (int64_t j = 0; j < n; ++j) {
      const double want = std::exp(0.125 * row[j] - max) / sum;
      ASSERT_NEAR(got[j], want, 2e-6 * want + 1e-12) << IsaName(isa) << " n " << n << " j " << j;
      total += got[j];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

TEST(Gemm, ActiveKernelIsBaseActiveIsa) { EXPECT_EQ(ActiveGemmIsa(), ActiveIsa()); }

INSTANTIATE_TEST_SUITE_P(Isas, GemmTest, ::testing::Values(GemmIsa::kScalar, GemmIsa::kAvx2, GemmIsa::kAvx512),
                         [](const auto& info) { return std::string(IsaName(info.param)); });

}  // namespace
}  // namespace mixq::engine
