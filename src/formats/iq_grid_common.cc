#include "formats/iq_grid_common.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/lanes.h"
#include "formats/quant_search.h"

namespace mixq::formats::internal {
namespace {

// xval = |x|; with even_signs, an odd set of negatives keeps its element of
// least w*x*x negative (the first such), so that 7 sign bits suffice.
void FoldSigns(const float* x, const float* weight, int n, bool even_signs, float* xval, uint8_t* signs) {
  for (int k = 0; k < n / 8; ++k) {
    uint8_t s = 0;
    int n_negative = 0;
    for (int i = 0; i < 8; ++i) {
      float v = x[8 * k + i];
      if (v >= 0) {
        xval[8 * k + i] = v;
      } else {
        xval[8 * k + i] = -v;
        s |= static_cast<uint8_t>(1 << i);
        ++n_negative;
      }
    }
    if (even_signs && n_negative % 2 != 0) {
      int imin = 0;
      float min = weight[8 * k] * x[8 * k] * x[8 * k];
      for (int i = 1; i < 8; ++i) {
        float a = weight[8 * k + i] * x[8 * k + i] * x[8 * k + i];
        if (a < min) {
          min = a;
          imin = i;
        }
      }
      xval[8 * k + imin] = -xval[8 * k + imin];
      s ^= static_cast<uint8_t>(1 << imin);
    }
    signs[k] = even_signs ? s & 127 : s;
  }
}

// The listed grid point nearest to xval under scale: the first of the
// smallest distances below FLT_MAX, as ggml's scan finds it. Four points at a
// time, one per lane, each distance summed in element order as ggml's scalar
// loop does; lane i keeps the first minimum of list positions i, i+4, ...,
// and the lanes' minima are joined by value and, among equals, by position.
template <int kDims>
int NearestListed(const LatticeIndex& lattice, uint32_t code, const float* xval, const float* waux, float scale) {
  std::span<const uint16_t> list = lattice.Neighbours(code);
  const float* columns = lattice.NeighbourColumns(code);
  const int n = static_cast<int>(list.size());
  Lanes4 best = Broadcast(FLT_MAX);
  Mask4 best_pos = {};
  for (int j = 0; j < n; j += 4, columns += 4 * kDims) {
    Lanes4 d2 = {};
    for (int k = 0; k < kDims; ++k) {
      Lanes4 diff = scale * Load4(columns + 4 * k) - xval[k];
      d2 += waux[k] * diff * diff;
    }
    Mask4 smaller = d2 < best;
    best = smaller ? d2 : best;
    best_pos = smaller ? j + Mask4{0, 1, 2, 3} : best_pos;
  }
  const int lane = FirstMinimumLane(best, best_pos);
  // ggml aborts when no distance is below FLT_MAX (overflowing inputs).
  if (!(best[lane] < FLT_MAX)) return list.front();
  return list[std::min(best_pos[lane], n - 1)];
}

// Rounds one vector to levels at inverse scale id and moves it onto the grid:
// returns the grid point, *on_grid when the rounding was one.
template <int kDims>
int ProjectVector(const LatticeIndex& lattice, int n_levels, float id, float scale, const float* xval,
                  const float* waux, bool* on_grid) {
  int8_t l[kDims];
  for (int i = 0; i < kDims; ++i) {
    l[i] = static_cast<int8_t>(std::clamp(NearestInt(0.5f * (id * xval[i] - 1)), 0, n_levels - 1));
  }
  uint32_t code = lattice.Code(l);
  int p = lattice.Find(code);
  *on_grid = p >= 0;
  return p >= 0 ? p : NearestListed<kDims>(lattice, code, xval, waux, scale);
}

// The same rounding for four inverse scales at once: the codes, one per lane.
template <int kDims>
Mask4 RoundedCodes(int bits, int n_levels, Lanes4 id, const float* xval) {
  const Mask4 zero = {};
  const Mask4 top = zero + (n_levels - 1);
  Mask4 code = {};
  for (int i = 0; i < kDims; ++i) {
    Mask4 l = NearestIntLanes(0.5f * (id * xval[i] - 1.0f));
    l = top < l ? top : l;
    l = l < zero ? zero : l;
    code |= l << (bits * i);
  }
  return code;
}

// ggml's sum_i w x q and sum_i w q q of a group, q = 2l+1 of its grid points, in element order.
template <int kDims, int kGroup>
void OddSums(const LatticeIndex& lattice, const uint16_t* points, const float* xval, const float* weight, float* sumqx,
             float* sumq2) {
  *sumqx = 0;
  *sumq2 = 0;
  for (int i = 0; i < kGroup; ++i) {
    float w = weight[i];
    float q = lattice.Odd(points[i / kDims])[i % kDims];
    *sumqx += w * xval[i] * q;
    *sumq2 += w * q * q;
  }
}

// Four of ggml's tries at once, one per lane; each lane's arithmetic is the
// scalar try's, in the same order.
template <int kVectors>
struct FourTries {
  uint16_t point[4][kVectors];
  bool on_grid[4][kVectors];
  Lanes4 sumqx = {};
  Lanes4 sumq2 = {};
};

template <int kDims, int kGroup>
void RunFourTries(const LatticeIndex& lattice, int n_levels, Lanes4 id, int n_lanes, const float* xval,
                  const float* waux, const float* weight, FourTries<kGroup / kDims>* out) {
  const Lanes4 scale = 1.0f / id;
  for (int k = 0; k < kGroup / kDims; ++k) {
    Mask4 codes = RoundedCodes<kDims>(lattice.bits(), n_levels, id, xval + kDims * k);
    for (int lane = 0; lane < 4; ++lane) {
      // Lanes past the last try repeat the first one's points; their sums are not used.
      if (lane >= n_lanes) {
        out->point[lane][k] = out->point[0][k];
        continue;
      }
      uint32_t code = static_cast<uint32_t>(codes[lane]);
      int p = lattice.Find(code);
      out->on_grid[lane][k] = p >= 0;
      if (p < 0) p = NearestListed<kDims>(lattice, code, xval + kDims * k, waux + kDims * k, scale[lane]);
      out->point[lane][k] = static_cast<uint16_t>(p);
    }
  }
  for (int k = 0; k < kGroup / kDims; ++k) {
    for (int h = 0; h < kDims; h += 4) {
      Lanes4 q[4];
      Transpose4(Load4(lattice.Odd(out->point[0][k]) + h), Load4(lattice.Odd(out->point[1][k]) + h),
                 Load4(lattice.Odd(out->point[2][k]) + h), Load4(lattice.Odd(out->point[3][k]) + h), q);
      for (int j = 0; j < 4; ++j) {
        const int i = kDims * k + h + j;
        out->sumqx += weight[i] * xval[i] * q[j];
        out->sumq2 += weight[i] * q[j] * q[j];
      }
    }
  }
}

}  // namespace

float SumOfSquares(const float* x, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

template <int kDims, int kGroup>
void GgmlGridGroup(const GridSearchRule& rule, const float* x, const float* weight, GridGroup* out) {
  constexpr int kVectors = kGroup / kDims;
  const LatticeIndex& lattice = GgmlLattice(rule.grid);
  *out = GridGroup{};
  float xval[kGroup];
  float waux[kGroup];
  for (int i = 0; i < kGroup; ++i) waux[i] = std::sqrt(weight[i]);
  uint8_t signs[kGroup / 8];
  FoldSigns(x, weight, kGroup, rule.even_signs, xval, signs);
  float max = xval[0];
  for (int i = 1; i < kGroup; ++i) max = max > xval[i] ? max : xval[i];
  if (max < rule.eps) return;
  const int odd_max = 2 * rule.n_levels - 1;
  float top = max;
  float scale = max / static_cast<float>(odd_max);
  if (rule.qp_start) {
    uint8_t unused[kGroup];
    scale = MakeQpQuants(kGroup, rule.n_levels + 1, xval, unused, weight);
    top = scale * static_cast<float>(rule.n_levels);
    if (top <= 0) return;
  }
  // Grid point 0 is all level 0 in every grid: ggml's zeroed levels.
  uint16_t points[kVectors] = {};
  bool on_grid[kVectors];
  std::fill(on_grid, on_grid + kVectors, rule.start_on_grid);
  float best = 0;
  for (int t0 = rule.first_try; t0 <= rule.last_try; t0 += 4) {
    const int n_lanes = std::min(4, rule.last_try - t0 + 1);
    const Lanes4 t = static_cast<float>(t0) + kLaneIndex;
    const Lanes4 id = (static_cast<float>(odd_max) + t * rule.try_step) / top;
    FourTries<kVectors> four;
    RunFourTries<kDims, kGroup>(lattice, rule.n_levels, id, n_lanes, xval, waux, weight, &four);
    for (int lane = 0; lane < n_lanes; ++lane) {
      float sumqx = four.sumqx[lane];
      float sumq2 = four.sumq2[lane];
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        scale = sumqx / sumq2;
        best = scale * sumqx;
        std::copy(four.point[lane], four.point[lane] + kVectors, points);
        std::copy(four.on_grid[lane], four.on_grid[lane] + kVectors, on_grid);
      }
    }
  }
  const bool any_off_grid = std::find(on_grid, on_grid + kVectors, false) != on_grid + kVectors;
  if (scale > 0 && (rule.refit_always || any_off_grid)) {
    float id = 1 / scale;
    for (int k = 0; k < kVectors; ++k) {
      if (!rule.refit_all && on_grid[k]) continue;
      bool unused;
      points[k] = static_cast<uint16_t>(
          ProjectVector<kDims>(lattice, rule.n_levels, id, scale, xval + kDims * k, waux + kDims * k, &unused));
    }
    float sumqx, sumq2;
    OddSums<kDims, kGroup>(lattice, points, xval, weight, &sumqx, &sumq2);
    if (sumq2 > 0) scale = sumqx / sumq2;
  }
  if (scale < 0) {
    scale = -scale;
    for (int k = 0; k < kGroup / 8; ++k) signs[k] = rule.even_signs ? ~signs[k] & 127 : ~signs[k];
  }
  std::copy(points, points + kVectors, out->index);
  std::copy(signs, signs + kGroup / 8, out->signs);
  out->scale = scale;
  out->skipped = false;
}

template void GgmlGridGroup<8, 32>(const GridSearchRule&, const float*, const float*, GridGroup*);
template void GgmlGridGroup<8, 16>(const GridSearchRule&, const float*, const float*, GridGroup*);
template void GgmlGridGroup<4, 32>(const GridSearchRule&, const float*, const float*, GridGroup*);

}  // namespace mixq::formats::internal
