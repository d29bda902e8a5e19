// mixq's IQ4_NL / IQ4_XS encoders (best_common.h has the contract). For a
// fixed scale the best index of each element is the nearest codebook value,
// so IQ4_NL searches its one f16 scale over many clipping points (each refitted
// by least squares and rounded to f16), and IQ4_XS searches each group's 6-bit
// scale code and then refits the f16 super-block scale, a few rounds.
#include <algorithm>
#include <cmath>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/iq4_common.h"
#include "formats/iq4_index.h"

namespace mixq::formats::internal {
namespace {

// CodebookError without indices and CodebookFit, kLaneCount<V> elements per
// step with the scalar code's operations; AddInOrder keeps its four partial
// sums. REQUIRES: n a multiple of kLaneCount<V>.
template <typename V>
[[gnu::always_inline]] inline float CodebookErrorLanes(const float* x, const float* w, int n, float a) {
  const float inv = a != 0 ? 1 / a : 0.0f;
  Lanes4 acc = {};
  for (int j = 0; j < n; j += kLaneCount<V>) {
    const V xv = LoadLanes<V>(x + j);
    const V d = xv - a * CodebookValueLanes(xv * inv);
    AddInOrder(&acc, LoadLanes<V>(w + j) * d * d);
  }
  return SumLanes(acc);
}

template <typename V>
[[gnu::always_inline]] inline float CodebookFitLanes(const float* x, const float* w, int n, float inv) {
  Lanes4 sqx = {};
  Lanes4 sqq = {};
  for (int j = 0; j < n; j += kLaneCount<V>) {
    const V xv = LoadLanes<V>(x + j);
    const V q = CodebookValueLanes(xv * inv);
    const V wq = LoadLanes<V>(w + j) * q;
    AddInOrder(&sqx, wq * xv);
    AddInOrder(&sqq, wq * q);
  }
  const float den = SumLanes(sqq);
  return den > 0 ? SumLanes(sqx) / den : 0.0f;
}

MIXQ_TARGET_AVX2 float CodebookErrorAvx2(const float* x, const float* w, int n, float a) {
  return CodebookErrorLanes<Lanes8>(x, w, n, a);
}
MIXQ_TARGET_AVX512 float CodebookErrorAvx512(const float* x, const float* w, int n, float a) {
  return CodebookErrorLanes<Lanes16>(x, w, n, a);
}
MIXQ_TARGET_AVX2 float CodebookFitAvx2(const float* x, const float* w, int n, float inv) {
  return CodebookFitLanes<Lanes8>(x, w, n, inv);
}
MIXQ_TARGET_AVX512 float CodebookFitAvx512(const float* x, const float* w, int n, float inv) {
  return CodebookFitLanes<Lanes16>(x, w, n, inv);
}

// Error of y = a * kIQ4Values[index], indices by nearest value; writes them when idx != nullptr.
float CodebookError(const float* x, const float* w, int n, float a, uint8_t* idx) {
  if (idx == nullptr) {
    const Isa isa = LaneIsa();
    if (isa == Isa::kAvx512 && n % 16 == 0) return CodebookErrorAvx512(x, w, n, a);
    if (isa >= Isa::kAvx2 && n % 8 == 0) return CodebookErrorAvx2(x, w, n, a);
  }
  float inv = a != 0 ? 1 / a : 0.0f;
  float acc[4] = {};
  for (int j = 0; j < n; ++j) {
    int k = IQ4BestIndex(x[j] * inv);
    if (idx != nullptr) idx[j] = static_cast<uint8_t>(k);
    float d = x[j] - a * static_cast<float>(kIQ4Values[k]);
    acc[j % 4] += w[j] * d * d;
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

// The least-squares scale of the indices that `inv` (an inverse scale) gives; 0 if none.
float CodebookFit(const float* x, const float* w, int n, float inv) {
  const Isa isa = LaneIsa();
  if (isa == Isa::kAvx512 && n % 16 == 0) return CodebookFitAvx512(x, w, n, inv);
  if (isa >= Isa::kAvx2 && n % 8 == 0) return CodebookFitAvx2(x, w, n, inv);
  float sqx[4] = {};
  float sqq[4] = {};
  for (int j = 0; j < n; ++j) {
    float q = kIQ4Values[IQ4BestIndex(x[j] * inv)];
    float wq = w[j] * q;
    sqx[j % 4] += wq * x[j];
    sqq[j % 4] += wq * q;
  }
  float den = (sqq[0] + sqq[1]) + (sqq[2] + sqq[3]);
  return den > 0 ? ((sqx[0] + sqx[1]) + (sqx[2] + sqx[3])) / den : 0.0f;
}

void TryHalf(const float* x, const float* w, int n, uint16_t h, uint16_t* best, float* best_error) {
  float e = CodebookError(x, w, n, HalfToFloat(h), nullptr);
  if (e < *best_error) {
    *best_error = e;
    *best = h;
  }
}

uint16_t SearchNLScale(const float* x, const float* w, uint16_t start) {
  uint16_t best = start;
  float best_error = CodebookError(x, w, kQK, HalfToFloat(start), nullptr);
  float max = 0;
  for (int j = 0; j < kQK; ++j) {
    if (std::fabs(x[j]) > std::fabs(max)) max = x[j];
  }
  if (max == 0) return best;
  // The largest value mapped near either end of the codebook, as ggml's tries
  // do for the negative end only.
  for (float end : {static_cast<float>(kIQ4Values[0]), static_cast<float>(kIQ4Values[15])}) {
    for (int t = -10; t <= 10; t += 2) {
      float fitted = CodebookFit(x, w, kQK, (end + std::copysign(static_cast<float>(t), end)) / max);
      if (fitted != 0 && std::isfinite(fitted)) TryHalf(x, w, kQK, FloatToHalf(fitted), &best, &best_error);
    }
  }
  for (int round = 0; round < 3; ++round) {
    uint16_t before = best;
    float b = HalfToFloat(best);
    float fitted = CodebookFit(x, w, kQK, b != 0 ? 1 / b : 0.0f);
    if (fitted == 0 || !std::isfinite(fitted)) break;
    uint16_t h = FloatToHalf(fitted);
    for (int k = -2; k <= 2; ++k) TryHalf(x, w, kQK, HalfNeighbor(h, k), &best, &best_error);
    if (best == before) break;
  }
  return best;
}

// ---- IQ4_XS: y = (d * ls) * value, ls in -32..31 per group of 32 ----

float XSGroup(const float* x, const float* w, float d, int ls, int g, uint8_t* idx) {
  return CodebookError(x + 32 * g, w + 32 * g, 32, d * static_cast<float>(ls), idx != nullptr ? idx + 32 * g : nullptr);
}

void OptimizeXSGroup(const float* x, const float* w, float d, int g, int* ls) {
  float best = XSGroup(x, w, d, *ls, g, nullptr);
  float a = d * static_cast<float>(*ls);
  if (a != 0) {
    float fitted = CodebookFit(x + 32 * g, w + 32 * g, 32, 1 / a);
    int cand = std::clamp(static_cast<int>(std::lround(fitted / d)), -32, 31);
    float e = XSGroup(x, w, d, cand, g, nullptr);
    if (e < best) {
      best = e;
      *ls = cand;
    }
  }
  for (int step = 0; step < 4; ++step) {
    int bl = *ls;
    for (int k : {-1, 1}) {
      int cand = *ls + k;
      if (cand < -32 || cand > 31) continue;
      float e = XSGroup(x, w, d, cand, g, nullptr);
      if (e < best) {
        best = e;
        bl = cand;
      }
    }
    if (bl == *ls) break;
    *ls = bl;
  }
}

float XSTotal(const float* x, const float* w, float d, const int* ls) {
  float total = 0;
  for (int g = 0; g < 8; ++g) total += XSGroup(x, w, d, ls[g], g, nullptr);
  return total;
}

void SearchXS(const float* x, const float* w, uint16_t* d16, int* ls, uint8_t* idx) {
  for (int round = 0; round < 3; ++round) {
    float d = HalfToFloat(*d16);
    if (d == 0 || !std::isfinite(d)) break;
    for (int g = 0; g < 8; ++g) OptimizeXSGroup(x, w, d, g, &ls[g]);
    for (int g = 0; g < 8; ++g) XSGroup(x, w, d, ls[g], g, idx);
    float t[kQKK];
    for (int i = 0; i < kQKK; ++i) t[i] = static_cast<float>(ls[i / 32] * kIQ4Values[idx[i]]);
    float fitted = FitScale(x, w, t, kQKK);
    if (fitted == 0 || !std::isfinite(fitted)) break;
    uint16_t h = FloatToHalf(fitted);
    uint16_t before = *d16;
    float best = XSTotal(x, w, d, ls);
    for (int k = -1; k <= 1; ++k) {
      uint16_t cand = HalfNeighbor(h, k);
      float e = XSTotal(x, w, HalfToFloat(cand), ls);
      if (e < best) {
        best = e;
        *d16 = cand;
      }
    }
    if (*d16 == before) break;
  }
  float d = HalfToFloat(*d16);
  for (int g = 0; g < 8; ++g) XSGroup(x, w, d, ls[g], g, idx);
}

}  // namespace

void quantize_iq4_nl_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq4_nl_ggml(src, dst, n_elems, importance);
  RefineRow<BlockIQ4NL, kQK>(src, dst, n_elems, importance, dequantize_iq4_nl,
                             [](const float* x, const float* w, BlockIQ4NL* b) {
                               b->d = SearchNLScale(x, w, b->d);
                               uint8_t idx[kQK];
                               CodebookError(x, w, kQK, HalfToFloat(b->d), idx);
                               IQ4PackNibbles(idx, b->qs);
                             });
}

void quantize_iq4_xs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq4_xs_ggml(src, dst, n_elems, importance);
  RefineRow<BlockIQ4XS, kQKK>(src, dst, n_elems, importance, dequantize_iq4_xs,
                              [](const float* x, const float* w, BlockIQ4XS* b) {
                                int ls[8];
                                for (int g = 0; g < 8; ++g) ls[g] = IQ4XSGetScale(*b, g);
                                uint8_t idx[kQKK];
                                SearchXS(x, w, &b->d, ls, idx);
                                IQ4XSSetScales(ls, b);
                                for (int g = 0; g < 8; ++g) IQ4PackNibbles(idx + 32 * g, b->qs + 16 * g);
                              });
}

}  // namespace mixq::formats::internal
