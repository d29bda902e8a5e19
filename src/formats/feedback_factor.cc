// The factor of the error-feedback encoder (FeedbackFactor, formats.h): U
// upper triangular with Uᵀ U = H⁻¹, from H = V Vᵀ (V upper triangular,
// Cholesky from the last index down) and U = V⁻¹.
//
// Both steps are blocked by columns so that the O(n³) work is products of
// row panels, done in parallel over independent blocks. A 14336-wide input
// (an 8B model's FFN-down) is ~2·10¹² operations: minutes on one core, so the
// work has to spread over all of them. Every value is computed by the same
// operations in the same order whichever thread computes it and however many
// there are (sums run over k ascending within fixed blocks), so U does not
// depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "base/parallel.h"
#include "formats/feedback.h"

namespace mixq::formats::internal {
namespace {

// Columns per block. Fixed (never derived from the thread count), since the
// blocking decides the order of the sums.
constexpr int64_t kBlock = 128;
// Rows that share one pass over the right-hand panel in AccumulateProducts.
constexpr int64_t kRowGroup = 8;

// acc[r][c] += Σ_k a[r·lda + k] · b[k·ldb + c] for r < rows, c < width, k <
// depth, each sum in k order. Groups of rows share each loaded row of b; the
// sum of every element is the same sequence of operations however rows are
// grouped.
void AccumulateProducts(double* acc, int64_t width, const double* a, int64_t lda, int64_t rows, const double* b,
                        int64_t ldb, int64_t depth) {
  for (int64_t r0 = 0; r0 < rows; r0 += kRowGroup) {
    const int64_t r1 = std::min(rows, r0 + kRowGroup);
    for (int64_t k = 0; k < depth; ++k) {
      const double* bk = b + k * ldb;
      for (int64_t r = r0; r < r1; ++r) {
        const double f = a[r * lda + k];
        double* out = acc + r * width;
        for (int64_t c = 0; c < width; ++c) out[c] += f * bk[c];
      }
    }
  }
}

// d = V Vᵀ for the w x w block d (row major, upper triangle read), V upper
// triangular, in place; false when a pivot is not positive.
bool FactorDiagonalBlock(double* d, int64_t w) {
  for (int64_t j = w - 1; j >= 0; --j) {
    const double* vj = d + j * w;
    double s = vj[j];
    for (int64_t k = j + 1; k < w; ++k) s -= vj[k] * vj[k];
    if (!(s > 0)) return false;
    const double pivot = std::sqrt(s);
    d[j * w + j] = pivot;
    for (int64_t i = 0; i < j; ++i) {
      const double* vi = d + i * w;
      double t = vi[j];
      for (int64_t k = j + 1; k < w; ++k) t -= vi[k] * vj[k];
      d[i * w + j] = t / pivot;
    }
  }
  return true;
}

// Overwrites the upper triangle of a (n x n, row major, holding H) with V,
// H = V Vᵀ, one column block at a time from the last. For block J (columns
// j0..j1) and the columns after it already holding V:
//   V_JJ V_JJᵀ = H_JJ − Σ_{K>J} V_JK V_JKᵀ          (factored in one piece)
//   V_IJ V_JJᵀ = H_IJ − Σ_{K>J} V_IK V_JKᵀ, I < J   (solved row by row, in parallel)
bool FactorUpper(std::vector<double>& a, int64_t n, int n_threads) {
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> panel;  // V_J,after transposed: (n - j1) x w
  std::vector<double> diag;   // the w x w diagonal block
  for (int64_t jb = n_blocks - 1; jb >= 0; --jb) {
    const int64_t j0 = jb * kBlock, j1 = std::min(n, j0 + kBlock), w = j1 - j0, depth = n - j1;
    panel.assign(static_cast<size_t>(depth * w), 0.0);
    for (int64_t j = 0; j < w; ++j) {
      for (int64_t k = 0; k < depth; ++k) panel[k * w + j] = a[(j0 + j) * n + j1 + k];
    }
    diag.assign(static_cast<size_t>(w * w), 0.0);
    AccumulateProducts(diag.data(), w, a.data() + j0 * n + j1, n, w, panel.data(), w, depth);
    for (int64_t i = 0; i < w; ++i) {
      for (int64_t j = i; j < w; ++j) diag[i * w + j] = a[(j0 + i) * n + j0 + j] - diag[i * w + j];
    }
    if (!FactorDiagonalBlock(diag.data(), w)) return false;
    for (int64_t i = 0; i < w; ++i) {
      for (int64_t j = i; j < w; ++j) a[(j0 + i) * n + j0 + j] = diag[i * w + j];
    }
    // Rows above the block, kBlock at a time.
    RunTasks(jb, n_threads, [&](int64_t ib, int) {
      const int64_t i0 = ib * kBlock, rows = kBlock;
      std::vector<double> c(static_cast<size_t>(rows * w), 0.0);
      AccumulateProducts(c.data(), w, a.data() + i0 * n + j1, n, rows, panel.data(), w, depth);
      for (int64_t r = 0; r < rows; ++r) {
        double* out = a.data() + (i0 + r) * n + j0;
        const double* cr = c.data() + r * w;
        for (int64_t j = w - 1; j >= 0; --j) {
          double t = out[j] - cr[j];
          const double* dj = diag.data() + j * w;
          for (int64_t l = j + 1; l < w; ++l) t -= dj[l] * out[l];
          out[j] = t / dj[j];
        }
      }
    });
  }
  return true;
}

// Column block J of U = V⁻¹ (rows 0..j1), into u (float). Row r of V U = I
// gives U[r][J] = (e_r − Σ_{k>r} V[r][k] U[k][J]) / V[r][r], rows from the
// last up; kRowGroup rows at a time take the part of their sums beyond the
// group in one pass over the rows below, then finish inside the group.
void InvertColumnBlock(const std::vector<double>& a, int64_t n, int64_t jb, float* u) {
  const int64_t j0 = jb * kBlock, j1 = std::min(n, j0 + kBlock), w = j1 - j0;
  std::vector<double> col(static_cast<size_t>(j1 * w), 0.0);
  std::vector<double> acc(static_cast<size_t>(kRowGroup * w));
  for (int64_t g1 = j1; g1 > 0; g1 -= kRowGroup) {
    const int64_t g0 = std::max<int64_t>(0, g1 - kRowGroup), rows = g1 - g0;
    std::fill(acc.begin(), acc.end(), 0.0);
    AccumulateProducts(acc.data(), w, a.data() + g0 * n + g1, n, rows, col.data() + g1 * w, w, j1 - g1);
    for (int64_t r = g1 - 1; r >= g0; --r) {
      double* sum = acc.data() + (r - g0) * w;
      const double* vr = a.data() + r * n;
      for (int64_t k = r + 1; k < g1; ++k) {
        const double f = vr[k];
        const double* ck = col.data() + k * w;
        for (int64_t c = 0; c < w; ++c) sum[c] += f * ck[c];
      }
      double* out = col.data() + r * w;
      for (int64_t c = 0; c < w; ++c) out[c] = ((j0 + c == r ? 1.0 : 0.0) - sum[c]) / vr[r];
      for (int64_t c = 0; c < w && j0 + c < r; ++c) out[c] = 0.0;
    }
  }
  for (int64_t r = 0; r < j1; ++r) {
    for (int64_t c = 0; c < w; ++c) u[r * n + j0 + c] = static_cast<float>(col[r * w + c]);
  }
}

}  // namespace

bool InverseUpperFactor(std::vector<double>& a, int64_t n, int n_threads, std::vector<float>* u) {
  if (!FactorUpper(a, n, n_threads)) return false;
  u->assign(static_cast<size_t>(n * n), 0.0f);
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  // The last blocks hold the most rows: they go first.
  RunTasks(n_blocks, n_threads, [&](int64_t t, int) { InvertColumnBlock(a, n, n_blocks - 1 - t, u->data()); });
  return true;
}

}  // namespace mixq::formats::internal
