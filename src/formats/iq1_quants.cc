// ggml's encoders for IQ1_S and IQ1_M (ggml-formats.md §2.9), operation for
// operation. Per group, ggml sorts the elements (by value: qsort, which in
// glibc is a stable merge sort for arrays this small, so equal values keep
// their order: std::stable_sort reproduces it), tries every split of the
// sorted order into the three values -1, 0, 1 (plus the shift delta) with
// prefix sums, keeps the split that explains most of the group, and moves each
// 8-element vector that is not a grid point onto the best of the grid points
// listed for it. Floats are combined in ggml's order; the searches run four
// candidates at a time, one per lane, each lane doing the scalar steps.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/iq1_common.h"
#include "formats/iq_lattice.h"
#include "formats/lanes.h"

namespace mixq::formats::internal {

const float* IQ1ShiftedTable() {
  static const std::vector<float> table = [] {
    const LatticeIndex& lattice = GgmlLattice(Grid::kIQ1);
    std::vector<float> t(static_cast<size_t>(lattice.n_points()) * 16);
    for (int q = 0; q < lattice.n_points(); ++q) {
      for (int k = 0; k < 8; ++k) {
        t[16 * q + k] = kIQ1Shifted.plus[lattice.Levels(q)[k]];
        t[16 * q + 8 + k] = kIQ1Shifted.minus[lattice.Levels(q)[k]];
      }
    }
    return t;
  }();
  return table.data();
}

namespace {

constexpr float kIQ1SEps = 1e-12f;
constexpr float kIQ1MEps = 1e-7f;

// ggml's iq1_find_best_neighbour2: the listed point of least
// sum w*(scale*(g+delta) - x)^2, the first of equals; lanes as in iq_grid_common.cc.
int NearestListedIQ1(const LatticeIndex& lattice, uint32_t code, const float* x, const float* w, float scale,
                     bool plus) {
  std::span<const uint16_t> list = lattice.Neighbours(code);
  const float* table = IQ1ShiftedTable();
  const int n = static_cast<int>(list.size());
  Lanes4 best = Broadcast(FLT_MAX);
  Mask4 best_pos = {};
  for (int j = 0; j < n; j += 4) {
    const float* rows[4];
    for (int i = 0; i < 4; ++i) rows[i] = IQ1Values(table, list[std::min(j + i, n - 1)], plus);
    Lanes4 d2 = {};
    for (int h = 0; h < 8; h += 4) {
      Lanes4 q[4];
      Transpose4(Load4(rows[0] + h), Load4(rows[1] + h), Load4(rows[2] + h), Load4(rows[3] + h), q);
      for (int k = 0; k < 4; ++k) {
        Lanes4 diff = scale * q[k] - x[h + k];
        d2 += w[h + k] * diff * diff;
      }
    }
    Mask4 smaller = d2 < best;
    best = smaller ? d2 : best;
    best_pos = smaller ? j + Mask4{0, 1, 2, 3} : best_pos;
  }
  const int lane = FirstMinimumLane(best, best_pos);
  // ggml's fallback past this point reads outside its arrays; only overflowing inputs reach it.
  if (!(best[lane] < FLT_MAX)) return list.front();
  return list[std::min(best_pos[lane], n - 1)];
}

// Element order by value, equal values in index order (glibc's qsort here):
// each element's rank counts the smaller values and the equal ones before it,
// four comparisons at a time and without branches.
template <int kN>
void SortedOrder(const float* x, int* order) {
  for (int i = 0; i < kN; ++i) {
    const float xi = x[i];
    Mask4 rank = {};
    for (int j = 0; j < kN; j += 4) {
      const Lanes4 xj = Load4(x + j);
      const Mask4 before = j + Mask4{0, 1, 2, 3} < i;
      rank -= (xj < xi) | ((xj == xi) & before);  // a true lane is -1
    }
    order[(rank[0] + rank[1]) + (rank[2] + rank[3])] = i;
  }
}

// The split ggml keeps: sorted positions below i1 get level 0, below i2 level 1, the rest 2.
struct Split {
  int i1 = -1;
  int i2 = -1;
  int shift = 0;  // IQ1_S: +1 / -1 (delta's sign), IQ1_M: 0..3; meaningless when i1 < 0
  float scale = 0;
};

bool Better(float sumqx, float sumq2, float* best, float* scale) {
  if (!(sumq2 > 0 && sumqx * sumqx > *best * sumq2)) return false;
  *scale = sumqx / sumq2;
  *best = *scale * sumqx;
  return true;
}

// The lanes that pass Better's test against `best`. Until a candidate is taken
// `best` stays, so when no lane passes, the scalar pass over these candidates
// would take none: it can be skipped without changing the result.
Mask4 Passing(Lanes4 sumqx, Lanes4 sumq2, float best) { return (sumq2 > 0.0f) & (sumqx * sumqx > best * sumq2); }

bool Any(Mask4 m) {
  uint64_t half[2];
  std::memcpy(half, &m, sizeof(half));
  return (half[0] | half[1]) != 0;
}

// IQ1_S: one delta for the group of 32; sumx/sumw are prefix sums in sorted order
// (padded by 3 so that four i2 at a time can be loaded).
Split SplitIQ1S(const float* sumx, const float* sumw, float max) {
  constexpr int kN = 32;
  const float* xp = kIQ1Shifted.plus;
  const float* xm = kIQ1Shifted.minus;
  Split s;
  s.scale = max;
  float best = -FLT_MAX;
  for (int i1 = 0; i1 <= kN; ++i1) {
    const float below_x = sumx[i1] - sumx[0];
    const float below_w = sumw[i1] - sumw[0];
    for (int i2 = i1; i2 <= kN; i2 += 4) {
      const Lanes4 sx = Load4(sumx + i2);
      const Lanes4 sw = Load4(sumw + i2);
      const Lanes4 mid_x = sx - sumx[i1], top_x = sumx[kN] - sx;
      const Lanes4 mid_w = sw - sumw[i1], top_w = sumw[kN] - sw;
      const Lanes4 qx_p = below_x * xp[0] + mid_x * xp[1] + top_x * xp[2];
      const Lanes4 q2_p = below_w * xp[0] * xp[0] + mid_w * xp[1] * xp[1] + top_w * xp[2] * xp[2];
      const Lanes4 qx_m = below_x * xm[0] + mid_x * xm[1] + top_x * xm[2];
      const Lanes4 q2_m = below_w * xm[0] * xm[0] + mid_w * xm[1] * xm[1] + top_w * xm[2] * xm[2];
      if (!Any(Passing(qx_p, q2_p, best) | Passing(qx_m, q2_m, best))) continue;
      for (int lane = 0; lane < 4 && i2 + lane <= kN; ++lane) {
        if (Better(qx_p[lane], q2_p[lane], &best, &s.scale)) s = {i1, i2 + lane, 1, s.scale};
        if (Better(qx_m[lane], q2_m[lane], &best, &s.scale)) s = {i1, i2 + lane, -1, s.scale};
      }
    }
  }
  return s;
}

// IQ1_M: each half of the group of 16 has its own delta (shift k: bit 1 the
// first half's minus sign, bit 0 the second's); prefix sums per half.
Split SplitIQ1M(const float (*px)[20], const float (*pw)[20], float max) {
  constexpr int kN = 16;
  const float* xp = kIQ1Shifted.plus;
  const float* xm = kIQ1Shifted.minus;
  const float p2 = xp[2], m2 = xm[2];
  const float cp1 = xp[0] * xp[0] - xp[1] * xp[1];
  const float cp2 = xp[1] * xp[1] - xp[2] * xp[2];
  const float cm1 = xm[0] * xm[0] - xm[1] * xm[1];
  const float cm2 = xm[1] * xm[1] - xm[2] * xm[2];
  const float txs[2] = {px[0][kN], px[1][kN]};
  const float tws[2] = {pw[0][kN], pw[1][kN]};
  Split s;
  s.scale = max;
  float best = -FLT_MAX;
  for (int i1 = 0; i1 <= kN; ++i1) {
    for (int i2 = i1; i2 <= kN; i2 += 4) {
      Lanes4 qx_p[2], qx_m[2], q2_p[2], q2_m[2];
      for (int h = 0; h < 2; ++h) {
        const Lanes4 sx = px[h][i1] + Load4(&px[h][i2]);
        qx_p[h] = txs[h] * p2 - sx;
        qx_m[h] = txs[h] * m2 - sx;
        q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + Load4(&pw[h][i2]) * cp2;
        q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + Load4(&pw[h][i2]) * cm2;
      }
      const Lanes4 sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
      const Lanes4 sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
      if (!Any(Passing(sumqx[0], sumq2[0], best) | Passing(sumqx[1], sumq2[1], best) |
               Passing(sumqx[2], sumq2[2], best) | Passing(sumqx[3], sumq2[3], best))) {
        continue;
      }
      for (int lane = 0; lane < 4 && i2 + lane <= kN; ++lane) {
        for (int k = 0; k < 4; ++k) {
          if (Better(sumqx[k][lane], sumq2[k][lane], &best, &s.scale)) s = {i1, i2 + lane, k, s.scale};
        }
      }
    }
  }
  return s;
}

// Levels (0, 1, 2) from the split, in element order.
template <int kN>
void SplitLevels(const Split& s, const int* order, int8_t* L) {
  for (int j = 0; j < kN; ++j) L[order[j]] = static_cast<int8_t>(j < s.i1 ? 0 : j < s.i2 ? 1 : 2);
}

// Moves each vector onto the grid (writing its point); false when any was off it.
bool OntoGrid(const float* x, const float* w, float scale, const bool* plus, int n_vectors, int8_t* L,
              uint16_t* index) {
  const LatticeIndex& lattice = GgmlLattice(Grid::kIQ1);
  bool all_on_grid = true;
  for (int k = 0; k < n_vectors; ++k) {
    uint32_t code = lattice.Code(L + 8 * k);
    int p = lattice.Find(code);
    if (p < 0) {
      all_on_grid = false;
      p = NearestListedIQ1(lattice, code, x + 8 * k, w + 8 * k, scale, plus[k]);
      for (int i = 0; i < 8; ++i) L[8 * k + i] = static_cast<int8_t>(lattice.Levels(p)[i]);
    }
    index[k] = static_cast<uint16_t>(p);
  }
  return all_on_grid;
}

// The least-squares scale of the chosen points (ggml keeps it only when positive).
float RefitScale(const float* x, const float* w, const bool* plus, int n_vectors, const uint16_t* index, float scale) {
  const float* table = IQ1ShiftedTable();
  float sumqx = 0, sumq2 = 0;
  for (int k = 0; k < n_vectors; ++k) {
    const float* q = IQ1Values(table, index[k], plus[k]);
    for (int j = 0; j < 8; ++j) {
      float wj = w[8 * k + j];
      sumqx += wj * q[j] * x[8 * k + j];
      sumq2 += wj * q[j] * q[j];
    }
  }
  return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

float MaxAbs(const float* x, int n) {
  float max = std::fabs(x[0]);
  for (int i = 1; i < n; ++i) max = max > std::fabs(x[i]) ? max : std::fabs(x[i]);
  return max;
}

void GroupWeights(const float* x, const float* qw, float sigma2, int n, float* w) {
  for (int i = 0; i < n; ++i) w[i] = qw != nullptr ? qw[i] * std::sqrt(sigma2 + x[i] * x[i]) : x[i] * x[i];
}

float Sigma2(const float* x) {
  float sum = 0;
  for (int i = 0; i < kQKK; ++i) sum += x[i] * x[i];
  return 2 * sum / kQKK;
}

// One IQ1_S group of 32: writes its points into b, returns the scale (0 for a zero group).
float EncodeIQ1SGroup(const float* x, const float* w, int g, BlockIQ1S* b, int* shift) {
  *shift = 1;
  const float max = MaxAbs(x, 32);
  if (max < kIQ1SEps) return 0;
  int order[32];
  SortedOrder<32>(x, order);
  float sumx[36], sumw[36];
  sumx[0] = sumw[0] = 0;
  for (int j = 0; j < 32; ++j) {
    sumx[j + 1] = sumx[j] + w[order[j]] * x[order[j]];
    sumw[j + 1] = sumw[j] + w[order[j]];
  }
  std::fill(sumx + 33, sumx + 36, sumx[32]);
  std::fill(sumw + 33, sumw + 36, sumw[32]);
  Split s = SplitIQ1S(sumx, sumw, max);
  if (s.i1 < 0) return 0;  // no split explained anything
  int8_t L[32];
  SplitLevels<32>(s, order, L);
  if (s.scale < 0) {
    for (int8_t& l : L) l = static_cast<int8_t>(2 - l);
    s.scale = -s.scale;
    s.shift = -s.shift;
  }
  const bool plus[4] = {s.shift == 1, s.shift == 1, s.shift == 1, s.shift == 1};
  uint16_t index[4];
  if (!OntoGrid(x, w, s.scale, plus, 4, L, index)) s.scale = RefitScale(x, w, plus, 4, index, s.scale);
  uint16_t h = 0;
  for (int k = 0; k < 4; ++k) {
    b->qs[4 * g + k] = static_cast<uint8_t>(index[k] & 255);
    h |= static_cast<uint16_t>((index[k] >> 8) << (3 * k));
  }
  b->qh[g] = h;
  *shift = s.shift;
  return s.scale;
}

// One IQ1_M group of 16: writes its points into b, returns the scale.
float EncodeIQ1MGroup(const float* x, const float* w, int g, BlockIQ1M* b, int* shift) {
  *shift = 0;
  const float max = MaxAbs(x, 16);
  if (max < kIQ1MEps) return 0;
  int order[16];
  SortedOrder<16>(x, order);
  float px[2][20], pw[2][20];
  px[0][0] = px[1][0] = pw[0][0] = pw[1][0] = 0;
  for (int j = 0; j < 16; ++j) {
    const int i = order[j];
    const int h = i < 8 ? 0 : 1;
    px[h][j + 1] = px[h][j] + w[i] * x[i];
    px[1 - h][j + 1] = px[1 - h][j];
    pw[h][j + 1] = pw[h][j] + w[i];
    pw[1 - h][j + 1] = pw[1 - h][j];
  }
  for (int h = 0; h < 2; ++h) {
    std::fill(px[h] + 17, px[h] + 20, px[h][16]);
    std::fill(pw[h] + 17, pw[h] + 20, pw[h][16]);
  }
  Split s = SplitIQ1M(px, pw, max);
  if (s.i1 < 0) return 0;
  int8_t L[16];
  SplitLevels<16>(s, order, L);
  if (s.scale < 0) {
    for (int8_t& l : L) l = static_cast<int8_t>(2 - l);
    s.scale = -s.scale;
    s.shift = 3 - s.shift;
  }
  const bool plus[2] = {s.shift < 2, s.shift % 2 == 0};
  uint16_t index[2];
  if (!OntoGrid(x, w, s.scale, plus, 2, L, index)) s.scale = RefitScale(x, w, plus, 2, index, s.scale);
  b->qs[2 * g] = static_cast<uint8_t>(index[0] & 255);
  b->qs[2 * g + 1] = static_cast<uint8_t>(index[1] & 255);
  b->qh[g] = static_cast<uint8_t>((index[0] >> 8) | ((index[1] >> 8) << 4));
  *shift = s.shift;
  return s.scale;
}

int Iq1ScaleCode(float id, float scale) { return std::clamp(NearestInt(0.5f * (id * scale - 1)), 0, 7); }

void EncodeIQ1SBlock(const float* x, const float* qw, BlockIQ1S* b) {
  const float sigma2 = Sigma2(x);
  float scales[8];
  int shifts[8];
  float max_scale = 0;
  for (int g = 0; g < 8; ++g) {
    float w[32];
    GroupWeights(x + 32 * g, qw + 32 * g, sigma2, 32, w);
    scales[g] = EncodeIQ1SGroup(x + 32 * g, w, g, b, &shifts[g]);
    max_scale = max_scale > scales[g] ? max_scale : scales[g];
  }
  if (max_scale == 0) return;
  const float d = max_scale / 15;
  b->d = FloatToHalf(d * 1.125f);
  const float id = 1 / d;
  for (int g = 0; g < 8; ++g) {
    int l = Iq1ScaleCode(id, scales[g]) | (shifts[g] == -1 ? 8 : 0);
    b->qh[g] |= static_cast<uint16_t>(l << 12);
  }
}

void EncodeIQ1MBlock(const float* x, const float* qw, BlockIQ1M* b) {
  constexpr uint8_t kShiftBits[4] = {0x00, 0x80, 0x08, 0x88};
  const float sigma2 = Sigma2(x);
  float scales[16];
  int shifts[16];
  float max_scale = 0;
  for (int g = 0; g < 16; ++g) {
    float w[16];
    GroupWeights(x + 16 * g, qw != nullptr ? qw + 16 * g : nullptr, sigma2, 16, w);
    scales[g] = EncodeIQ1MGroup(x + 16 * g, w, g, b, &shifts[g]);
    max_scale = max_scale > scales[g] ? max_scale : scales[g];
  }
  if (max_scale == 0) return;
  uint16_t sc[4] = {};
  float d = max_scale / 15;
  const float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int g = 0; g < 16; ++g) {
    const int l = Iq1ScaleCode(id, scales[g]);
    sc[g / 4] |= static_cast<uint16_t>(l << (3 * (g % 4)));
    b->qh[g] |= kShiftBits[shifts[g]];
    float w[16];
    GroupWeights(x + 16 * g, qw != nullptr ? qw + 16 * g : nullptr, sigma2, 16, w);
    for (int k = 0; k < 2; ++k) {
      const bool plus = k == 0 ? shifts[g] < 2 : shifts[g] % 2 == 0;
      const int p = b->qs[2 * g + k] | ((b->qh[g] << (8 - 4 * k)) & 0x700);
      const float* v = IQ1Values(IQ1ShiftedTable(), p, plus);
      for (int j = 0; j < 8; ++j) {
        float q = v[j] * static_cast<float>(2 * l + 1);
        sumqx += w[8 * k + j] * q * x[16 * g + 8 * k + j];
        sumq2 += w[8 * k + j] * q * q;
      }
    }
  }
  if (sumq2 > 0) d = sumqx / sumq2;
  // The f16 super-block scale goes into the top nibbles of the four scale words.
  const uint16_t d16 = FloatToHalf(d * 1.1125f);
  for (int k = 0; k < 4; ++k) sc[k] |= static_cast<uint16_t>((d16 >> (4 * k)) & 0xF) << 12;
  std::memcpy(b->scales, sc, sizeof(sc));
}

}  // namespace

void quantize_iq1_s_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockIQ1S b;
    std::memset(&b, 0, sizeof(b));
    // ggml needs importance for IQ1_S; without it mixq uses ones (llama-quantize --imatrix-ones).
    EncodeIQ1SBlock(src + i * kQKK, importance != nullptr ? importance + i * kQKK : UnitWeights(), &b);
    StoreBlock(b, dst, i);
  }
}

void quantize_iq1_m_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockIQ1M b;
    std::memset(&b, 0, sizeof(b));
    EncodeIQ1MBlock(src + i * kQKK, importance != nullptr ? importance + i * kQKK : nullptr, &b);
    StoreBlock(b, dst, i);
  }
}

}  // namespace mixq::formats::internal
