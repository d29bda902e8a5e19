#include "formats/quant_search.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/lanes.h"

namespace mixq::formats::internal {
namespace {

// The signed value of largest magnitude (first one on ties) and its magnitude.
void SignedMax(int n, const float* x, float* max, float* amax) {
  *max = 0;
  *amax = 0;
  for (int i = 0; i < n; ++i) {
    float ax = std::fabs(x[i]);
    if (ax > *amax) {
      *amax = ax;
      *max = x[i];
    }
  }
}

int ClampSym(int l, int nmax) { return std::max(-nmax, std::min(nmax - 1, l)); }

}  // namespace

namespace {

// The searches below try many scales on one group. ggml runs the tries one
// after another, each summing over the elements in order. Here every try is a
// lane: one pass over the elements updates all lanes, each lane still summing
// in element order with the same operations, so every sum is bit-identical
// while the lanes' independent additions overlap (and vectorize). Lane counts
// are padded to a multiple of 8; the extra lanes are computed and ignored.
constexpr int kMaxGroup = 32;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23, as NearestInt

// NearestInt(v) as a float, for |v| <= 2^22 (all the searches stay far below).
inline float RoundToIntegral(float v) { return (v + kRoundMagic) - kRoundMagic; }

constexpr int kQxLanes = 24;  // 1 first guess + 18 tries, padded

}  // namespace

namespace {

// The body of MakeQxQuants. Its loops over the tries are plain arrays that the
// compiler vectorizes, each try one lane, so the wider ISAs' builds of it
// (below) give the same floats.
[[gnu::always_inline]] inline float MakeQxQuantsBody(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  assert(n <= kMaxGroup);
  float max, amax;
  SignedMax(n, x, &max, &amax);
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale[kQxLanes];
  iscale[0] = -fnmax / max;
  for (int t = 1; t < kQxLanes; ++t) {
    int is = t <= 9 ? t - 10 : t - 9;  // -9..-1, 1..9, then padding
    iscale[t] = -(fnmax + 0.1f * static_cast<float>(is)) / max;
  }
  float sumlx[kQxLanes] = {};
  float suml2[kQxLanes] = {};
  float lq[kMaxGroup][kQxLanes];
  float w[kMaxGroup];
  for (int i = 0; i < n; ++i) w[i] = qw != nullptr ? qw[i] : x[i] * x[i];
  for (int i = 0; i < n; ++i) {
    float wx = w[i] * x[i];
    for (int t = 0; t < kQxLanes; ++t) {
      float l = std::min(std::max(RoundToIntegral(iscale[t] * x[i]), -fnmax), fnmax - 1);
      lq[i][t] = l;
      sumlx[t] += wx * l;
      suml2[t] += w[i] * l * l;
    }
  }
  int chosen = 0;
  float scale = suml2[0] != 0 ? sumlx[0] / suml2[0] : 0.0f;
  float best = scale * sumlx[0];
  for (int t = 1; t <= 18; ++t) {
    if (suml2[t] > 0 && sumlx[t] * sumlx[t] > best * suml2[t]) {
      chosen = t;
      scale = sumlx[t] / suml2[t];
      best = scale * sumlx[t];
    }
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(static_cast<int>(lq[i][chosen]) + nmax);
  return scale;
}

MIXQ_TARGET_AVX2 float MakeQxQuantsAvx2(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  return MakeQxQuantsBody(n, nmax, x, L, qw);
}

}  // namespace

float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  // 24 tries are three AVX2 vectors; AVX-512 machines run that build too.
  if (LaneIsa() >= Isa::kAvx2) return MakeQxQuantsAvx2(n, nmax, x, L, qw);
  return MakeQxQuantsBody(n, nmax, x, L, qw);
}

float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
  float max, amax;
  SignedMax(n, x, &max, &amax);
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.0f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  if (!do_rmse) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(ClampSym(NearestInt(iscale * x[i]), nmax) + nmax);
    return 1 / iscale;
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = ClampSym(NearestInt(iscale * x[i]), nmax);
    L[i] = static_cast<int8_t>(l);
    float w = x[i] * x[i];
    float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = x[i] * x[i];
      float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        int new_l = ClampSym(NearestInt(x[i] * sl2 / slx), nmax);
        if (new_l != L[i]) {
          float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

namespace {

// The tries of make_qkx2/3_quants, kBlock at a time from try `first`, for a
// given offset `min`. ggml's tries are not independent: an accepted try
// replaces `min`, which the later tries use. So a block is evaluated with the
// current min and evaluated again from the next try whenever an accepted try
// changes it; each try's numbers are then exactly those of ggml's try. Blocks
// of 8 keep the re-evaluation cheap and still give 8 independent sums.
struct QkxBlock {
  static constexpr int kBlock = 8;
  int first = 0;
  float lq[kMaxGroup][kBlock];  // quants of each try, as floats
  float D[kBlock];
  float scale[kBlock];
  float min[kBlock];
  float error[kBlock];

  uint8_t LaneQuant(int i, int k) const { return static_cast<uint8_t>(lq[i][k]); }
};

// Evaluates the block's tries, kLaneCount<V> per vector; the lanes are
// independent, so every width gives each try the same numbers.
template <typename V, bool kUseMad>
[[gnu::always_inline]] inline void EvaluateTries(QkxBlock* block, int first_try, int n, float fnmax, const float* x,
                                                 const float* w, float sum_w, float sum_x, float max, float cur_min,
                                                 float rmin, float rdelta) {
  constexpr int kWidth = kLaneCount<V>;
  constexpr int kVectors = QkxBlock::kBlock / kWidth;
  block->first = first_try;
  const V zero = {};
  const V top = Broadcast<V>(fnmax);
  V iscale[kVectors];
  V sum_l[kVectors] = {};
  V sum_l2[kVectors] = {};
  V sum_xl[kVectors] = {};
  for (int v = 0; v < kVectors; ++v) {
    V tries = static_cast<float>(first_try + kWidth * v) + LaneIndex<V>();  // exact small integers
    iscale[v] = (rmin + rdelta * tries + fnmax) / (max - cur_min);
  }
  for (int i = 0; i < n; ++i) {
    float xm = x[i] - cur_min;
    for (int v = 0; v < kVectors; ++v) {
      V l = MinLanes(MaxLanes(RoundLanes(iscale[v] * xm), zero), top);
      StoreLanes(&block->lq[i][kWidth * v], l);
      V wl = w[i] * l;
      sum_l[v] += wl;
      sum_l2[v] += wl * l;
      sum_xl[v] += wl * x[i];
    }
  }
  V scale[kVectors];
  V min[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    V D = sum_w * sum_l2[v] - sum_l[v] * sum_l[v];
    V fitted_scale = (sum_w * sum_xl[v] - sum_x * sum_l[v]) / D;
    V fitted_min = (sum_l2[v] * sum_x - sum_l[v] * sum_xl[v]) / D;
    // A positive offset is clamped to 0 and the scale refitted alone, as ggml does.
    auto positive = fitted_min > 0;
    fitted_scale = positive ? sum_xl[v] / sum_l2[v] : fitted_scale;
    fitted_min = positive ? zero : fitted_min;
    // Lanes with D <= 0 are never chosen; zeros keep their errors finite.
    auto valid = D > 0;
    scale[v] = valid ? fitted_scale : zero;
    min[v] = valid ? fitted_min : zero;
    StoreLanes(&block->D[kWidth * v], D);
    StoreLanes(&block->scale[kWidth * v], scale[v]);
    StoreLanes(&block->min[kWidth * v], min[v]);
  }
  V error[kVectors] = {};
  for (int i = 0; i < n; ++i) {
    for (int v = 0; v < kVectors; ++v) {
      V diff = scale[v] * LoadLanes<V>(&block->lq[i][kWidth * v]) + min[v] - x[i];
      diff = kUseMad ? AbsLanes(diff) : diff * diff;
      error[v] += w[i] * diff;
    }
  }
  for (int v = 0; v < kVectors; ++v) StoreLanes(&block->error[kWidth * v], error[v]);
}

template <bool kUseMad>
MIXQ_TARGET_AVX2 void EvaluateTriesAvx2(QkxBlock* block, int first_try, int n, float fnmax, const float* x,
                                        const float* w, float sum_w, float sum_x, float max, float cur_min, float rmin,
                                        float rdelta) {
  EvaluateTries<Lanes8, kUseMad>(block, first_try, n, fnmax, x, w, sum_w, sum_x, max, cur_min, rmin, rdelta);
}

// A block of 8 tries fills one AVX2 vector; AVX-512 machines run that too.
template <bool kUseMad>
void EvaluateTriesAt(Isa isa, QkxBlock* block, int first_try, int n, float fnmax, const float* x, const float* w,
                     float sum_w, float sum_x, float max, float cur_min, float rmin, float rdelta) {
  if (isa >= Isa::kAvx2) {
    EvaluateTriesAvx2<kUseMad>(block, first_try, n, fnmax, x, w, sum_w, sum_x, max, cur_min, rmin, rdelta);
  } else {
    EvaluateTries<Lanes4, kUseMad>(block, first_try, n, fnmax, x, w, sum_w, sum_x, max, cur_min, rmin, rdelta);
  }
}

// Shared body of MakeQkx2Quants / MakeQkx3Quants; they differ only in the
// default weights and in how a constant group is detected.
template <bool kQkx3>
float MakeQkxQuants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, float rmin,
                    float rdelta, int nstep, bool use_mad) {
  assert(n <= kMaxGroup);
  float w[kMaxGroup] = {};
  for (int i = 0; i < n; ++i) w[i] = weights != nullptr ? weights[i] : x[i] * x[i];
  float min = x[0];
  float max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (kQkx3 ? max <= min : max == min) {
    std::memset(L, 0, n);
    *the_min = -min;
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += w[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  const Isa isa = LaneIsa();
  QkxBlock block;
  bool evaluated = false;
  for (int s = 0; s <= nstep; ++s) {
    if (!evaluated || s >= block.first + QkxBlock::kBlock) {
      if (use_mad) {
        EvaluateTriesAt<true>(isa, &block, s, n, fnmax, x, w, sum_w, sum_x, max, min, rmin, rdelta);
      } else {
        EvaluateTriesAt<false>(isa, &block, s, n, fnmax, x, w, sum_w, sum_x, max, min, rmin, rdelta);
      }
      evaluated = true;
    }
    int k = s - block.first;
    if (block.D[k] > 0 && block.error[k] < best_error) {
      for (int i = 0; i < n; ++i) L[i] = block.LaneQuant(i, k);
      best_error = block.error[k];
      scale = block.scale[k];
      if (block.min[k] != min) evaluated = false;  // later tries use the new offset
      min = block.min[k];
    }
  }
  *the_min = -min;
  return scale;
}

}  // namespace

float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, float rmin,
                     float rdelta, int nstep, bool use_mad) {
  return MakeQkxQuants<false>(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep, use_mad);
}

float MakeQkx3Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, float rmin,
                     float rdelta, int nstep, bool use_mad) {
  return MakeQkxQuants<true>(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep, use_mad);
}

float MakeQpQuants(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.0f;
  }
  float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(NearestInt(iscale * x[i]));
  float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / max;
    float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::min(nmax, NearestInt(iscale_is * x[i]));
      float diff = x[i] - scale_is * static_cast<float>(l);
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::min(nmax, NearestInt(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    float fl = static_cast<float>(l);
    sumlx += qw[i] * x[i] * fl;
    suml2 += qw[i] * fl * fl;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = qw[i];
      float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        int new_l = std::min(nmax, NearestInt(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

}  // namespace mixq::formats::internal
