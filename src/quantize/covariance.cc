// InputCovariance helpers.
#include <algorithm>
#include <cmath>

#include "quantize/quantize.h"

namespace mixq::quantize {

std::vector<float> InputCovariance::MeanDiagonal() const {
  std::vector<float> d(static_cast<size_t>(n_in));
  const double scale = n_tokens > 0 ? 1.0 / static_cast<double>(n_tokens) : 0.0;
  for (int64_t j = 0; j < n_in; ++j) d[j] = static_cast<float>(sums[j * n_in + j] * scale);
  return d;
}

// Batch means (a variance estimate that holds for dependent samples when the
// batches are long enough to be nearly independent of each other): with S =
// H / T and B_b = G_b / t_b, Var(S_ij) ≈ Σ_b t_b (B_b,ij − S_ij)² / ((K − 1) T),
// and Σ_b t_b ‖off(B_b − S)‖² = Σ_b ‖off G_b‖² / t_b − ‖off H‖² / T. For T
// independent zero-mean Gaussian tokens Var(S_ij) = (S_ii S_jj + S_ij²) / T
// (Wishart): summed over i ≠ j, ((tr H)² − Σ H_ii² + ‖off H‖²) / T³. Setting
// the two sums equal gives the token count returned.
double EffectiveTokens(std::span<const double> sums, int64_t n, int64_t n_tokens, int64_t n_batches,
                       double batch_spread) {
  const auto t = static_cast<double>(n_tokens);
  if (n_batches < 2 || n_tokens <= 0 || n < 2 || static_cast<int64_t>(sums.size()) != n * n) return t;
  double trace = 0, diag_sq = 0, off_sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double* row = sums.data() + i * n;
    trace += row[i];
    diag_sq += row[i] * row[i];
    for (int64_t j = 0; j < n; ++j) off_sq += j == i ? 0.0 : row[j] * row[j];
  }
  const double spread = batch_spread - off_sq / t;
  if (!(spread > 0)) return t;
  const double effective = (trace * trace - diag_sq + off_sq) * static_cast<double>(n_batches - 1) / (t * spread);
  return std::isfinite(effective) ? std::clamp(effective, 1.0, t) : t;
}

}  // namespace mixq::quantize
