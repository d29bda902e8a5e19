// quantize_row_best against quantize_row_ggml on real weights (the ref-dev
// model): per block, the importance-weighted squared error of the decoded
// values (weight 1 without importance) is never larger, and the totals are
// printed as ratios. Set MIXQ_BEST_ALL_TENSORS=1 to use every 2-D tensor
// instead of layer 0 and a slice of token_embd (the numbers in docs/formats.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "formats/formats.h"
#include "formats/gguf_tensors.h"
#include "test_support.h"

namespace mixq::formats {
namespace {

using testing::GgufTensor;
using testing::GgufTensors;

struct Matrix {
  std::string name;
  std::vector<float> x;
  int64_t n_rows;
  int64_t n_cols;
};

const std::vector<Matrix>& Matrices() {
  static const std::vector<Matrix>* matrices = [] {
    auto* out = new std::vector<Matrix>;
    bool all = std::getenv("MIXQ_BEST_ALL_TENSORS") != nullptr;
    GgufTensors model(mixq::testing::RefDevModel());
    for (const GgufTensor& t : model.tensors()) {
      if (!IsMatrixWeight(t)) continue;
      bool sample = t.name.starts_with("blk.0.") || t.name == "token_embd.weight";
      if (!all && !sample) continue;
      Matrix m{t.name, ToFloat(t), t.n_rows(), t.row_length()};
      if (!all && t.name == "token_embd.weight") {
        m.n_rows = 512;
        m.x.resize(m.n_rows * m.n_cols);
      }
      out->push_back(std::move(m));
    }
    return out;
  }();
  return *matrices;
}

// A stand-in imatrix (mean squared activation per column): positive, spread
// over two decades, a few columns much larger, as real ones are.
std::vector<float> SyntheticImportance(int64_t n) {
  std::vector<float> v(n);
  for (int64_t j = 0; j < n; ++j) {
    v[j] = static_cast<float>(1 + (j * 37) % 64) / 16.0f;
    if (j % 64 == 7) v[j] *= 16.0f;
  }
  return v;
}

struct Totals {
  double ggml = 0;
  double best = 0;
  int64_t blocks = 0;
  int64_t improved = 0;
  int64_t worse = 0;
};

void Accumulate(const Format& f, const Matrix& m, const float* importance, Totals* totals) {
  int64_t row_bytes = RowBytes(f, m.n_cols).value();
  std::vector<uint8_t> qg(row_bytes * m.n_rows), qb(row_bytes * m.n_rows);
  ASSERT_TRUE(QuantizeRows(f, QuantMethod::kGgml, m.x.data(), qg.data(), m.n_rows, m.n_cols, importance, 2).ok());
  ASSERT_TRUE(QuantizeRows(f, QuantMethod::kBest, m.x.data(), qb.data(), m.n_rows, m.n_cols, importance, 2).ok());
  std::vector<float> yg(m.x.size()), yb(m.x.size());
  ASSERT_TRUE(DequantizeRows(f, qg.data(), yg.data(), m.n_rows, m.n_cols, 2).ok());
  ASSERT_TRUE(DequantizeRows(f, qb.data(), yb.data(), m.n_rows, m.n_cols, 2).ok());
  const int64_t n_block = f.block_elems;
  for (int64_t start = 0; start < static_cast<int64_t>(m.x.size()); start += n_block) {
    double eg = 0, eb = 0;
    for (int64_t j = start; j < start + n_block; ++j) {
      double w = importance != nullptr ? importance[j % m.n_cols] : 1.0;
      double dg = static_cast<double>(m.x[j]) - yg[j];
      double db = static_cast<double>(m.x[j]) - yb[j];
      eg += w * dg * dg;
      eb += w * db * db;
    }
    totals->ggml += eg;
    totals->best += eb;
    ++totals->blocks;
    if (eb < eg) ++totals->improved;
    if (eb > eg) ++totals->worse;
  }
}

class BestTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BestTest, NeverWorseThanGgmlPerBlock) {
  const Format& f = *FindFormatByName(GetParam());
  for (bool with_importance : {false, true}) {
    if (!with_importance && f.needs_imatrix) continue;
    Totals totals;
    for (const Matrix& m : Matrices()) {
      if (!RowFits(f, m.n_cols)) continue;
      std::vector<float> importance = SyntheticImportance(m.n_cols);
      ASSERT_NO_FATAL_FAILURE(Accumulate(f, m, with_importance ? importance.data() : nullptr, &totals));
    }
    ASSERT_GT(totals.blocks, 0);
    EXPECT_EQ(totals.worse, 0) << totals.worse << " blocks got worse";
    EXPECT_LE(totals.best, totals.ggml);
    std::printf("[ best/ggml ] %-7s %-6s error ratio %.4f, %lld of %lld blocks improved\n", std::string(f.name).c_str(),
                with_importance ? "imat" : "noimat", totals.best / totals.ggml, static_cast<long long>(totals.improved),
                static_cast<long long>(totals.blocks));
  }
}

// Random rows of the shapes that reach the encoders' corners: Gaussian,
// heavy-tailed with outliers, exact-zero runs of 32 and 16 (groups the IQ
// types store as zeros), tiny values, and constant rows.
Matrix RandomRows() {
  constexpr int64_t kRows = 24;
  constexpr int64_t kCols = 1024;
  Matrix m{"random", std::vector<float>(kRows * kCols), kRows, kCols};
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> heavy(2.0f);
  for (int64_t r = 0; r < kRows; ++r) {
    float* x = &m.x[r * kCols];
    const float scale = std::pow(10.0f, static_cast<float>(r % 6) - 4);
    for (int64_t j = 0; j < kCols; ++j) x[j] = scale * (r % 3 == 1 ? heavy(rng) : normal(rng));
    if (r % 4 == 2) std::fill(x + 32, x + 64, 0.0f);
    if (r % 4 == 3) std::fill(x + 272, x + 288, 0.0f);
    if (r % 8 == 5) std::fill(x, x + kCols, 0.25f);
    if (r % 8 == 7) x[100] = 50 * scale;
  }
  return m;
}

TEST_P(BestTest, NeverWorseThanGgmlOnRandomRows) {
  const Format& f = *FindFormatByName(GetParam());
  const Matrix m = RandomRows();
  for (bool with_importance : {false, true}) {
    if (!with_importance && f.needs_imatrix) continue;
    std::vector<float> importance = SyntheticImportance(m.n_cols);
    Totals totals;
    ASSERT_NO_FATAL_FAILURE(Accumulate(f, m, with_importance ? importance.data() : nullptr, &totals));
    EXPECT_EQ(totals.worse, 0) << totals.worse << " blocks got worse";
    EXPECT_LE(totals.best, totals.ggml);
  }
}

std::vector<std::string> QuantizedEncodableTypes() {
  std::vector<std::string> names;
  for (const Format& f : AllFormats()) {
    if (f.can_encode() && f.quantized) names.emplace_back(f.name);
  }
  return names;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, BestTest, ::testing::ValuesIn(QuantizedEncodableTypes()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace mixq::formats
