// The search lanes at every ISA the CPU has (lanes.h): each wider kernel must
// give the baseline's bytes exactly, for every type and both methods, so that
// a file does not depend on the machine that quantized it.
#include "formats/lanes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "formats/best_common.h"
#include "formats/formats.h"

namespace mixq::formats {
namespace {

using internal::LaneIsa;
using internal::SetLaneIsa;

// Selects an ISA for the lanes for the scope of a test, then restores the previous.
class ScopedLaneIsa {
 public:
  explicit ScopedLaneIsa(Isa isa) : previous_(LaneIsa()) { SetLaneIsa(isa); }
  ~ScopedLaneIsa() { SetLaneIsa(previous_); }
  ScopedLaneIsa(const ScopedLaneIsa&) = delete;
  ScopedLaneIsa& operator=(const ScopedLaneIsa&) = delete;

 private:
  Isa previous_;
};

std::vector<Isa> WiderIsas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (IsaSupported(isa)) out.push_back(isa);
  }
  return out;
}

// Rows shaped like weights: Gaussian or heavy-tailed at several scales, with
// zero runs, a constant row and outliers, so that the searches take their
// clipping, degenerate and zero-group paths as well as the common one.
std::vector<float> WeightLikeRows(int64_t n_rows, int64_t n_cols) {
  std::vector<float> x(static_cast<size_t>(n_rows * n_cols));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> heavy(2.5f);
  for (int64_t r = 0; r < n_rows; ++r) {
    float* row = &x[static_cast<size_t>(r * n_cols)];
    const float scale = std::pow(10.0f, static_cast<float>(r % 4) - 3);
    for (int64_t j = 0; j < n_cols; ++j) row[j] = scale * (r % 2 == 1 ? heavy(rng) : normal(rng));
    if (r % 5 == 2) std::fill(row + 32, row + 64, 0.0f);
    if (r % 7 == 3) std::fill(row, row + n_cols, 0.125f);
    if (r % 3 == 0) row[17] = 40 * scale;
  }
  return x;
}

std::vector<float> UnevenImportance(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) v[j] = static_cast<float>(1 + (j * 29) % 61) / 8.0f * (j % 37 == 0 ? 0.0f : 1.0f);
  return v;
}

TEST(Lanes, EveryTypeEncodesTheSameBytesAtEveryIsa) {
  const std::vector<Isa> wider = WiderIsas();
  if (wider.empty()) GTEST_SKIP() << "CPU has only the baseline ISA";
  constexpr int64_t kRows = 12;
  constexpr int64_t kCols = 512;
  const std::vector<float> x = WeightLikeRows(kRows, kCols);
  const std::vector<float> importance = UnevenImportance(kCols);
  int compared = 0;
  for (const Format& f : AllFormats()) {
    if (!f.can_encode() || !RowFits(f, kCols)) continue;
    const int64_t bytes = RowBytes(f, kCols).value() * kRows;
    for (bool with_importance : {false, true}) {
      if (!with_importance && f.needs_imatrix) continue;
      const float* imp = with_importance ? importance.data() : nullptr;
      for (QuantMethod method : {QuantMethod::kGgml, QuantMethod::kBest}) {
        std::vector<uint8_t> scalar(static_cast<size_t>(bytes));
        {
          ScopedLaneIsa at(Isa::kScalar);
          ASSERT_TRUE(QuantizeRows(f, method, x.data(), scalar.data(), kRows, kCols, imp, 2).ok());
        }
        for (Isa isa : wider) {
          std::vector<uint8_t> got(static_cast<size_t>(bytes), 0xA5);
          ScopedLaneIsa at(isa);
          ASSERT_TRUE(QuantizeRows(f, method, x.data(), got.data(), kRows, kCols, imp, 2).ok());
          EXPECT_EQ(got, scalar) << f.name << (with_importance ? " imat " : " noimat ")
                                 << (method == QuantMethod::kBest ? "best " : "ggml ") << IsaName(isa);
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(compared, 50);
}

// The group kernels directly, on the group sizes the encoders use and on ones
// the wide kernels do not divide (which take the four-lane path), with codes.
TEST(Lanes, GroupErrorsAndCodesAreBitIdentical) {
  const std::vector<Isa> wider = WiderIsas();
  if (wider.empty()) GTEST_SKIP() << "CPU has only the baseline ISA";
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> positive(0.0f, 4.0f);
  for (int n : {4, 12, 16, 24, 32, 48, 256}) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> x(static_cast<size_t>(n)), w(static_cast<size_t>(n));
      for (int j = 0; j < n; ++j) {
        x[j] = normal(rng);
        w[j] = positive(rng);
      }
      const float a = 0.05f + positive(rng) / 8, b = normal(rng) / 4;
      std::vector<uint8_t> affine(static_cast<size_t>(n));
      std::vector<int8_t> symmetric(static_cast<size_t>(n));
      float e_affine, e_symmetric;
      {
        ScopedLaneIsa at(Isa::kScalar);
        e_affine = internal::AffineGroupError(x.data(), w.data(), n, a, b, 15, affine.data());
        e_symmetric = internal::SymmetricGroupError(x.data(), w.data(), n, a, -32, 31, symmetric.data());
      }
      for (Isa isa : wider) {
        ScopedLaneIsa at(isa);
        std::vector<uint8_t> affine_got(static_cast<size_t>(n));
        std::vector<int8_t> symmetric_got(static_cast<size_t>(n));
        const float ea = internal::AffineGroupError(x.data(), w.data(), n, a, b, 15, affine_got.data());
        const float es = internal::SymmetricGroupError(x.data(), w.data(), n, a, -32, 31, symmetric_got.data());
        ASSERT_EQ(std::bit_cast<uint32_t>(ea), std::bit_cast<uint32_t>(e_affine)) << IsaName(isa) << " n " << n;
        ASSERT_EQ(std::bit_cast<uint32_t>(es), std::bit_cast<uint32_t>(e_symmetric)) << IsaName(isa) << " n " << n;
        ASSERT_EQ(affine_got, affine) << IsaName(isa) << " n " << n;
        ASSERT_EQ(symmetric_got, symmetric) << IsaName(isa) << " n " << n;
      }
    }
  }
}

// Batches of every length (so that the wide ISAs' short last batches are
// covered): each error equals the single-group kernel's at the baseline.
TEST(Lanes, BatchedGroupErrorsEqualSingleOnes) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> positive(0.0f, 4.0f);
  std::vector<Isa> isas = WiderIsas();
  isas.insert(isas.begin(), Isa::kScalar);
  for (int n : {16, 32}) {
    for (int count = 1; count <= 11; ++count) {
      std::vector<float> x(static_cast<size_t>(n * count)), w(x.size());
      for (size_t j = 0; j < x.size(); ++j) {
        x[j] = normal(rng);
        w[j] = positive(rng);
      }
      std::vector<internal::AffineTry> affine;
      std::vector<internal::SymmetricTry> symmetric;
      std::vector<float> want_affine, want_symmetric;
      {
        ScopedLaneIsa at(Isa::kScalar);
        for (int k = 0; k < count; ++k) {
          const float* xk = &x[static_cast<size_t>(k * n)];
          const float* wk = &w[static_cast<size_t>(k * n)];
          const float a = k == 3 ? 0.0f : 0.05f + positive(rng) / 8, b = normal(rng) / 4;
          affine.push_back({xk, wk, a, b});
          symmetric.push_back({xk, wk, a});
          want_affine.push_back(internal::AffineGroupError(xk, wk, n, a, b, 31, nullptr));
          want_symmetric.push_back(internal::SymmetricGroupError(xk, wk, n, a, -4, 3, nullptr));
        }
      }
      for (Isa isa : isas) {
        ScopedLaneIsa at(isa);
        std::vector<float> got_affine(static_cast<size_t>(count)), got_symmetric(static_cast<size_t>(count));
        internal::AffineGroupErrors(affine.data(), count, n, 31, got_affine.data());
        internal::SymmetricGroupErrors(symmetric.data(), count, n, -4, 3, got_symmetric.data());
        for (int k = 0; k < count; ++k) {
          ASSERT_EQ(std::bit_cast<uint32_t>(got_affine[k]), std::bit_cast<uint32_t>(want_affine[k]))
              << IsaName(isa) << " n " << n << " count " << count << " try " << k;
          ASSERT_EQ(std::bit_cast<uint32_t>(got_symmetric[k]), std::bit_cast<uint32_t>(want_symmetric[k]))
              << IsaName(isa) << " n " << n << " count " << count << " try " << k;
        }
      }
    }
  }
}

TEST(Lanes, StartsAtTheActiveIsa) {
  // Unless an earlier test in this process left another one set (they restore it).
  EXPECT_EQ(LaneIsa(), ActiveIsa());
}

}  // namespace
}  // namespace mixq::formats
