// The error-feedback (GPTQ/OBQ) encoder: formats.h describes it. Notation:
// H the damped input second moment, U upper triangular with Uᵀ U = H⁻¹. With
// the columns quantized in order, the weight update that keeps the output
// error least after column c is rounded to y is
//   w[c+1..] -= ((w[c] - y) / U[c][c]) · U[c][c+1..]
// (GPTQ's Cholesky form of OBQ's update). Updates within a 256-column batch
// are applied at once; the rest of the row gets the batch's errors in one
// sweep at its end ("lazy batch"), so U's rows are read once per batch and
// tile of rows rather than once per column and row. After the pass, each
// row's codes, and then its groups' integer scales, are refined on the exact
// objective with H itself (RefineRow, RefitGroups).
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

// A super-block's f16 multipliers d and dmin (0 for the types without mins).
void ReadMultipliers(const FeedbackCodec& c, const uint8_t* block, float* d, float* dmin) {
  uint16_t bits;
  std::memcpy(&bits, block + c.d_at, sizeof bits);
  *d = internal::HalfToFloat(bits);
  *dmin = 0;
  if (c.dmin_at >= 0) {
    std::memcpy(&bits, block + c.dmin_at, sizeof bits);
    *dmin = internal::HalfToFloat(bits);
  }
}

std::vector<float> Identity(int64_t n) {
  std::vector<float> u(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) u[i * n + i] = 1.0f;
  return u;
}

float Level(const FeedbackCodec& c, int q) {
  return c.levels != nullptr ? static_cast<float>(c.levels[q - c.qmin]) : static_cast<float>(q);
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
  const float t = scale != 0 ? (v + offset) / scale : 0.0f;
  float best = INFINITY;
  for (int k = c.qmin; k <= c.qmax; ++k) {
    const float d = std::fabs(t - static_cast<float>(c.levels[k - c.qmin]));
    if (d < best) best = d, q = k;
  }
  *y = scale * static_cast<float>(c.levels[q - c.qmin]) - offset;
  return q;
}

}  // namespace

Result<FeedbackMatrices> FeedbackFactor(std::span<const double> h, int64_t n, double damp, int n_threads,
                                        double tokens) {
  if (n <= 0 || static_cast<int64_t>(h.size()) != n * n) {
    return Status::InvalidArgument("covariance of " + std::to_string(h.size()) + " values is not " + std::to_string(n) +
                                   " x " + std::to_string(n));
  }
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) mean_diag += h[i * n + i];
  mean_diag /= static_cast<double>(n);
  if (!std::isfinite(mean_diag)) return Status::Corruption("the input covariance is not finite");
  if (mean_diag <= 0) return FeedbackMatrices{.u = Identity(n), .h = Identity(n), .tokens = 0};
  for (int attempt = 0; attempt < 4; ++attempt, damp *= 10) {
    std::vector<double> a(h.begin(), h.end());
    for (int64_t i = 0; i < n; ++i) a[i * n + i] += damp * mean_diag;
    FeedbackMatrices out{.u = {}, .h = std::vector<float>(a.begin(), a.end()), .tokens = tokens};
    if (internal::InverseUpperFactor(a, n, n_threads, &out.u)) return out;
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
// inside the batch; err receives each column's scaled error, codes the
// block's codes.
void QuantizeBlock(const Format& f, float* w, int64_t col0, int64_t batch_end, int64_t n, const float* importance,
                   const float* u, uint8_t* block, float* err, int* codes) {
  const FeedbackCodec& c = *f.feedback;
  const int be = f.block_elems;
  f.quantize_row_best(w + col0, block, be, importance != nullptr ? importance + col0 : nullptr);
  float scale[kQKK / 16], offset[kQKK / 16];
  c.read_grid(block, scale, offset);
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

// r = h_x (w − y), h_x = h with its off-diagonal entries times `cross`, as a
// sum of h's rows (h is symmetric): element-wise updates, which vectorize,
// in double so that the many incremental updates of the refinement do not
// drift.
std::vector<double> Residual(const float* h, const float* w, const std::vector<float>& y, int64_t n, double cross = 1) {
  std::vector<double> r(static_cast<size_t>(n), 0.0);
  for (int64_t k = 0; k < n; ++k) {
    const double d = static_cast<double>(w[k]) - y[k];
    if (d == 0) continue;
    const float* hk = h + k * n;
    for (int64_t i = 0; i < n; ++i) r[i] += d * hk[i];
  }
  if (cross != 1) {
    for (int64_t k = 0; k < n; ++k) {
      r[k] = cross * r[k] + (1 - cross) * h[k * n + k] * (static_cast<double>(w[k]) - y[k]);
    }
  }
  return r;
}

// r −= δ · column j of h_x (Residual's h_x): y_j moved by δ.
void MoveResidual(const float* h, int64_t n, double cross, int64_t j, double delta, std::vector<double>* r) {
  const float* hj = h + j * n;
  const double step = delta * cross;
  double* out = r->data();
  for (int64_t i = 0; i < n; ++i) out[i] -= step * hj[i];
  out[j] -= delta * (1 - cross) * hj[j];
}

// Coordinate steps of the re-choice's search (RechooseGroup).
constexpr int kRechoice = 8;
// Steps of sc and m around a group's own that RefitGroups tries.
constexpr int kRefit = 2;

}  // namespace

void RechooseGroup(const FeedbackCodec& c, uint8_t* block, int g, const float* v, const float* importance, float* scale,
                   float* offset) {
  float d, dmin;
  ReadMultipliers(c, block, &d, &dmin);
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

double CrossTermShrinkage(const float* h, int64_t n, const float* w, const float* y, double tokens) {
  if (!(tokens > 0)) return 0;
  std::vector<float> yv(y, y + n);
  const std::vector<double> r = Residual(h, w, yv, n);
  double trace = 0, weighted = 0, cross_sq = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double hkk = h[k * n + k], d = static_cast<double>(w[k]) - y[k];
    trace += hkk;
    weighted += hkk * d * d;
    const double c = r[k] - hkk * d;
    cross_sq += c * c;
  }
  const double noise = trace * weighted / tokens;
  if (!(noise > 0)) return 0;
  return cross_sq > noise ? noise / cross_sq : 1.0;
}

int64_t RefineRow(const FeedbackCodec& c, const float* w, int64_t n, const float* h, const float* scale,
                  const float* offset, int* codes, double cross) {
  std::vector<float> y(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const int64_t g = j / c.group_size;
    y[j] = scale[g] * Level(c, codes[j]) - offset[g];
  }
  std::vector<double> r = Residual(h, w, y, n, cross);
  int64_t changes = 0;
  for (int sweep = 0; sweep < kRefineSweeps; ++sweep) {
    int64_t changed = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float* hj = h + j * n;
      const double hjj = hj[j];
      if (!(hjj > 0)) continue;
      const int64_t g = j / c.group_size;
      float candidate;
      const int q = RoundToGrid(c, scale[g], offset[g], static_cast<float>(y[j] + r[j] / hjj), &candidate);
      if (q == codes[j]) continue;
      // E falls by 2 δ r_j − δ² h_jj when y_j grows by δ.
      const double delta = static_cast<double>(candidate) - y[j];
      if (!(2 * delta * r[j] - delta * delta * hjj > 0)) continue;
      codes[j] = q;
      y[j] = candidate;
      MoveResidual(h, n, cross, j, delta, &r);
      ++changed;
    }
    changes += changed;
    if (changed == 0) break;
  }
  return changes;
}

int64_t RefitGroups(const FeedbackCodec& c, const float* w, int64_t n, const float* h, int64_t block_elems,
                    int64_t block_bytes, uint8_t* row, int* codes, double cross) {
  const int gs = c.group_size;
  const int64_t groups = n / gs, per_block = block_elems / gs;
  std::vector<float> scale(static_cast<size_t>(groups)), offset(scale.size());
  for (int64_t b = 0; b < n / block_elems; ++b) {
    c.read_grid(row + b * block_bytes, scale.data() + b * per_block, offset.data() + b * per_block);
  }
  std::vector<float> y(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) y[j] = scale[j / gs] * Level(c, codes[j]) - offset[j / gs];
  std::vector<double> r = Residual(h, w, y, n, cross);
  int64_t moved = 0;
  std::vector<double> hg(static_cast<size_t>(gs * gs)), dy(gs), rg(gs), best_dy(gs);
  std::vector<int> q(gs), best_q(gs);
  std::vector<float> yg(gs);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t j0 = g * gs;
    uint8_t* block = row + j0 / block_elems * block_bytes;
    const int gb = static_cast<int>((j0 % block_elems) / gs);
    float d, dmin;
    ReadMultipliers(c, block, &d, &dmin);
    if (d == 0 || !std::isfinite(d) || !std::isfinite(dmin)) continue;
    const int sc = static_cast<int>(std::lround(scale[g] / d));
    const int m = dmin != 0 ? static_cast<int>(std::lround(offset[g] / dmin)) : 0;
    for (int a = 0; a < gs; ++a) {
      for (int b = 0; b < gs; ++b) hg[a * gs + b] = h[(j0 + a) * n + j0 + b] * (a == b ? 1.0 : cross);
    }
    double best_gain = 0;
    int best_sc = sc, best_m = m;
    for (int sc2 = std::max(c.sc_min, sc - kRefit); sc2 <= std::min(c.sc_max, sc + kRefit); ++sc2) {
      const int m_lo = dmin != 0 ? std::max(0, m - kRefit) : m, m_hi = dmin != 0 ? std::min(c.m_max, m + kRefit) : m;
      for (int m2 = m_lo; m2 <= m_hi; ++m2) {
        if (sc2 == sc && m2 == m) continue;
        const float s2 = d * static_cast<float>(sc2), o2 = dmin * static_cast<float>(m2);
        for (int a = 0; a < gs; ++a) {
          q[a] = codes[j0 + a];
          yg[a] = s2 * Level(c, q[a]) - o2;
          dy[a] = static_cast<double>(yg[a]) - y[j0 + a];
        }
        // The error falls by 2 Δyᵀ r_G − Δyᵀ h_GG Δy when the group's values
        // move by Δy with its codes held (only the group's block of h is
        // needed); then its codes are refined at the new scales, given all
        // other columns, through the group's part of the moved residual rg.
        double gain = 0;
        for (int a = 0; a < gs; ++a) {
          double hdy = 0;
          for (int b = 0; b < gs; ++b) hdy += hg[a * gs + b] * dy[b];
          gain += dy[a] * (2 * r[j0 + a] - hdy);
          rg[a] = r[j0 + a] - hdy;
        }
        for (int sweep = 0; sweep < kRefineSweeps; ++sweep) {
          bool changed = false;
          for (int a = 0; a < gs; ++a) {
            const double haa = hg[a * gs + a];
            if (!(haa > 0)) continue;
            float candidate;
            const int qa = RoundToGrid(c, s2, o2, static_cast<float>(yg[a] + rg[a] / haa), &candidate);
            if (qa == q[a]) continue;
            const double delta = static_cast<double>(candidate) - yg[a];
            const double step = 2 * delta * rg[a] - delta * delta * haa;
            if (!(step > 0)) continue;
            q[a] = qa;
            yg[a] = candidate;
            dy[a] += delta;
            gain += step;
            for (int b = 0; b < gs; ++b) rg[b] -= delta * hg[b * gs + a];
            changed = true;
          }
          if (!changed) break;
        }
        if (gain > best_gain) {
          best_gain = gain, best_sc = sc2, best_m = m2;
          best_q = q;
          best_dy = dy;
        }
      }
    }
    if (best_gain <= 0) continue;
    // The row's residual follows the group's move (O(n · group_size)).
    c.set_group(block, gb, best_sc, best_m);
    float bs[kQKK / 16], bo[kQKK / 16];
    c.read_grid(block, bs, bo);
    scale[g] = bs[gb];
    offset[g] = bo[gb];
    for (int a = 0; a < gs; ++a) {
      codes[j0 + a] = best_q[a];
      y[j0 + a] = scale[g] * Level(c, best_q[a]) - offset[g];
      MoveResidual(h, n, cross, j0 + a, best_dy[a], &r);
    }
    ++moved;
  }
  return moved;
}

void QuantizeRowsWithFeedback(const Format& f, const float* src, uint8_t* dst, int64_t n_rows, int64_t n,
                              int64_t row_bytes, const float* importance, const float* u, const float* h,
                              double tokens) {
  std::vector<float> w(src, src + n_rows * n);
  std::vector<float> err(static_cast<size_t>(n_rows * kBatch));
  std::vector<int> codes(static_cast<size_t>(n_rows * n));
  for (int64_t b0 = 0; b0 < n; b0 += kBatch) {
    const int64_t b1 = std::min(n, b0 + kBatch);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t col0 = b0; col0 < b1; col0 += f.block_elems) {
        QuantizeBlock(f, w.data() + r * n, col0, b1, n, importance, u,
                      dst + r * row_bytes + col0 / f.block_elems * f.block_bytes, err.data() + r * kBatch + (col0 - b0),
                      codes.data() + r * n + col0);
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
  if (h == nullptr) return;
  const FeedbackCodec& c = *f.feedback;
  const int64_t groups_per_block = f.block_elems / c.group_size;
  std::vector<float> scale(static_cast<size_t>(n / c.group_size)), offset(scale.size()), y(static_cast<size_t>(n));
  for (int64_t r = 0; r < n_rows; ++r) {
    uint8_t* row = dst + r * row_bytes;
    for (int64_t b = 0; b < n / f.block_elems; ++b) {
      c.read_grid(row + b * f.block_bytes, scale.data() + b * groups_per_block, offset.data() + b * groups_per_block);
    }
    int* rc = codes.data() + r * n;
    for (int64_t j = 0; j < n; ++j) y[j] = scale[j / c.group_size] * Level(c, rc[j]) - offset[j / c.group_size];
    const double cross = 1 - CrossTermShrinkage(h, n, src + r * n, y.data(), tokens);
    int64_t changes = RefineRow(c, src + r * n, n, h, scale.data(), offset.data(), rc, cross);
    if (c.set_group != nullptr && RefitGroups(c, src + r * n, n, h, f.block_elems, f.block_bytes, row, rc, cross) > 0) {
      for (int64_t b = 0; b < n / f.block_elems; ++b) {
        c.read_grid(row + b * f.block_bytes, scale.data() + b * groups_per_block, offset.data() + b * groups_per_block);
      }
      changes += 1 + RefineRow(c, src + r * n, n, h, scale.data(), offset.data(), rc, cross);
    }
    if (changes == 0) continue;
    for (int64_t b = 0; b < n / f.block_elems; ++b) c.store_codes(rc + b * f.block_elems, row + b * f.block_bytes);
  }
}

}  // namespace internal
}  // namespace mixq::formats
