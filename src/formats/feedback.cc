// The error-feedback (GPTQ/OBQ) encoder: formats.h describes it. Notation:
// H the damped input second moment, U upper triangular with Uᵀ U = H⁻¹. With
// the columns quantized in order, the weight update that keeps the output
// error least after column c is rounded to y is
//   w[c+1..] -= ((w[c] - y) / U[c][c]) · U[c][c+1..]
// (GPTQ's Cholesky form of OBQ's update). Updates within a 256-column batch
// are applied at once; the rest of the row gets the batch's errors in one
// sweep at its end ("lazy batch"), so U's rows are read once per batch and
// tile of rows rather than once per column and row.
#include "formats/feedback.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "formats/formats.h"

namespace mixq::formats {
namespace {

std::vector<float> Identity(int64_t n) {
  std::vector<float> u(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) u[i * n + i] = 1.0f;
  return u;
}

// The code nearest to v among the group's values, and the value it decodes to.
int RoundToGrid(const FeedbackCodec& c, float scale, float offset, float v, float* y) {
  int q = std::clamp(0, c.qmin, c.qmax);
  if (c.levels == nullptr) {
    if (scale != 0) {
      const float r = std::clamp((v + offset) / scale, static_cast<float>(c.qmin), static_cast<float>(c.qmax));
      q = static_cast<int>(std::nearbyint(r));
    }
    *y = scale * static_cast<float>(q) - offset;
    return q;
  }
  const float t = scale != 0 ? v / scale : 0.0f;
  float best = INFINITY;
  for (int k = c.qmin; k <= c.qmax; ++k) {
    const float d = std::fabs(t - static_cast<float>(c.levels[k - c.qmin]));
    if (d < best) best = d, q = k;
  }
  *y = scale * static_cast<float>(c.levels[q - c.qmin]) - offset;
  return q;
}

}  // namespace

Result<std::vector<float>> FeedbackFactor(std::span<const double> h, int64_t n, double damp, int n_threads) {
  if (n <= 0 || static_cast<int64_t>(h.size()) != n * n) {
    return Status::InvalidArgument("covariance of " + std::to_string(h.size()) + " values is not " + std::to_string(n) +
                                   " x " + std::to_string(n));
  }
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) mean_diag += h[i * n + i];
  mean_diag /= static_cast<double>(n);
  if (!std::isfinite(mean_diag)) return Status::Corruption("the input covariance is not finite");
  if (mean_diag <= 0) return Identity(n);
  for (int attempt = 0; attempt < 4; ++attempt, damp *= 10) {
    std::vector<double> a(h.begin(), h.end());
    for (int64_t i = 0; i < n; ++i) a[i * n + i] += damp * mean_diag;
    std::vector<float> u;
    if (internal::InverseUpperFactor(a, n, n_threads, &u)) return u;
  }
  return Status::Corruption("the input covariance is not positive definite even with damping " +
                            std::to_string(damp / 10));
}

namespace internal {
namespace {

// Columns per lazy batch: whole blocks of every format (32 or 256).
constexpr int64_t kBatch = kQKK;

// One block of one row: scales from the current weights w (block_elems of
// them, updated so far), then column by column rounding with the update
// inside the batch; err receives each column's scaled error.
void QuantizeBlock(const Format& f, float* w, int64_t col0, int64_t batch_end, int64_t n, const float* importance,
                   const float* u, uint8_t* block, float* err) {
  const FeedbackCodec& c = *f.feedback;
  const int be = f.block_elems;
  f.quantize_row_best(w + col0, block, be, importance != nullptr ? importance + col0 : nullptr);
  float scale[kQKK / 16], offset[kQKK / 16];
  c.read_grid(block, scale, offset);
  int codes[kQKK];
  for (int j = 0; j < be; ++j) {
    const int64_t col = col0 + j;
    const int g = j / c.group_size;
    if (c.set_group != nullptr && j % c.group_size == 0) {
      RechooseGroup(c, block, g, w + col, importance != nullptr ? importance + col : nullptr, &scale[g], &offset[g]);
    }
    float y;
    codes[j] = RoundToGrid(c, scale[g], offset[g], w[col], &y);
    const float* uc = u + col * n;
    const float e = (w[col] - y) / uc[col];
    err[j] = e;
    for (int64_t k = col + 1; k < batch_end; ++k) w[k] -= e * uc[k];
  }
  c.store_codes(codes, block);
}

// Coordinate steps of the re-choice's search (RechooseGroup).
constexpr int kRechoice = 8;

}  // namespace

void RechooseGroup(const FeedbackCodec& c, uint8_t* block, int g, const float* v, const float* importance, float* scale,
                   float* offset) {
  uint16_t bits;
  std::memcpy(&bits, block + c.d_at, sizeof bits);
  const float d = HalfToFloat(bits);
  float dmin = 0;
  if (c.dmin_at >= 0) {
    std::memcpy(&bits, block + c.dmin_at, sizeof bits);
    dmin = HalfToFloat(bits);
  }
  if (d == 0 || !std::isfinite(d) || !std::isfinite(dmin)) return;
  const auto error = [&](int sc, int m) {
    const float s = d * static_cast<float>(sc), o = dmin * static_cast<float>(m);
    double e = 0;
    for (int j = 0; j < c.group_size; ++j) {
      float y;
      RoundToGrid(c, s, o, v[j], &y);
      e += static_cast<double>(importance != nullptr ? importance[j] : 1.0f) * (v[j] - y) * (v[j] - y);
    }
    return e;
  };
  int sc = static_cast<int>(std::lround(*scale / d));
  int m = dmin != 0 ? static_cast<int>(std::lround(*offset / dmin)) : 0;
  double least = error(sc, m);
  bool moved = false;
  for (bool again = true; again;) {
    again = false;
    for (int k = std::max(c.sc_min, sc - kRechoice); k <= std::min(c.sc_max, sc + kRechoice); ++k) {
      const double e = error(k, m);
      if (e < least) least = e, sc = k, again = true;
    }
    for (int k = std::max(0, m - kRechoice); dmin != 0 && k <= std::min(c.m_max, m + kRechoice); ++k) {
      const double e = error(sc, k);
      if (e < least) least = e, m = k, again = true;
    }
    moved |= again;
    if (dmin == 0) break;
  }
  if (!moved) return;
  c.set_group(block, g, sc, m);
  float scales[kQKK / 16], offsets[kQKK / 16];
  c.read_grid(block, scales, offsets);
  *scale = scales[g];
  *offset = offsets[g];
}

void QuantizeRowsWithFeedback(const Format& f, const float* src, uint8_t* dst, int64_t n_rows, int64_t n,
                              int64_t row_bytes, const float* importance, const float* u) {
  std::vector<float> w(src, src + n_rows * n);
  std::vector<float> err(static_cast<size_t>(n_rows * kBatch));
  for (int64_t b0 = 0; b0 < n; b0 += kBatch) {
    const int64_t b1 = std::min(n, b0 + kBatch);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t col0 = b0; col0 < b1; col0 += f.block_elems) {
        QuantizeBlock(f, w.data() + r * n, col0, b1, n, importance, u,
                      dst + r * row_bytes + col0 / f.block_elems * f.block_bytes,
                      err.data() + r * kBatch + (col0 - b0));
      }
    }
    // The batch's errors reach the columns after it.
    for (int64_t col = b0; col < b1; ++col) {
      const float* uc = u + col * n;
      for (int64_t r = 0; r < n_rows; ++r) {
        const float e = err[r * kBatch + (col - b0)];
        float* wr = w.data() + r * n;
        for (int64_t k = b1; k < n; ++k) wr[k] -= e * uc[k];
      }
    }
  }
}

}  // namespace internal
}  // namespace mixq::formats
