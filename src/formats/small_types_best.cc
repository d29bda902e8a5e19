// mixq's encoders for TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0 and Q2_0
// (best_common.h has the contract). ggml takes each block's scale from its
// maximum (Q1_0: its mean magnitude) and ignores importance; for a fixed scale
// the nearest value is every element's best, so these searches move the scale:
//  - TQ1_0 (-d, 0, d): the best nonzero set is the k largest magnitudes for
//    some k, so all k are scored with prefix sums;
//  - TQ2_0 and Q2_0 (-d, 0, d, 2d: ggml never uses 2d): a sweep of scales
//    below the maximum, each refitted by least squares;
//    then for the codes found, the energy-matching scale (EnergyMatchedScale);
//  - Q1_0 (+-d, the signs of x): the energy-matching scale;
//  - MXFP4 and NVFP4: the exponent (scale code) around ggml's, per block or
//    sub-block of 16, by the weighted error.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/legacy_packing.h"
#include "formats/small_types_common.h"

namespace mixq::formats::internal {
namespace {

// Codes (value + 1) nearest x / d among -1 .. top, and the weighted error.
float TernaryError(const float* x, const float* w, int n, float d, int top, uint8_t* codes) {
  const float id = d != 0 ? 1 / d : 0.0f;
  float error = 0;
  for (int j = 0; j < n; ++j) {
    const int q = std::clamp(NearestInt(x[j] * id), -1, top);
    if (codes != nullptr) codes[j] = static_cast<uint8_t>(q + 1);
    const float diff = x[j] - d * static_cast<float>(q);
    error += w[j] * diff * diff;
  }
  return error;
}

// The f16 scale: of `start` and the f16 neighbours of `fitted`, the one with
// the least error; then, for the codes it gives, the energy-matching scale
// (EnergyMatchedScale: at 1.6-2 bits the least-squares scale's shrinkage
// raised the model's KLD by 15-30% on ref-dev).
uint16_t FitScaleHalf(const float* x, const float* w, int n, int top, uint16_t start, float fitted) {
  uint16_t best = start;
  float best_error = TernaryError(x, w, n, HalfToFloat(start), top, nullptr);
  if (fitted > 0 && std::isfinite(fitted)) {
    const uint16_t h = FloatToHalf(fitted);
    for (int k = -2; k <= 2; ++k) {
      const uint16_t cand = HalfNeighbor(h, k);
      const float e = TernaryError(x, w, n, HalfToFloat(cand), top, nullptr);
      if (e < best_error) {
        best_error = e;
        best = cand;
      }
    }
  }
  uint8_t codes[kQKK];
  TernaryError(x, w, n, HalfToFloat(best), top, codes);
  float t[kQKK];
  for (int j = 0; j < n; ++j) t[j] = static_cast<float>(codes[j]) - 1;
  return EnergyMatchedScale(x, w, t, n, best);
}

// TQ1_0: the nonzero set of the optimum is the k largest |x| for some k;
// d_k = sum w|x| / sum w over them, scored by (sum w|x|)^2 / sum w.
float TernaryFit(const float* x, const float* w) {
  int order[kQKK];
  std::iota(order, order + kQKK, 0);
  std::sort(order, order + kQKK, [x](int a, int b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  double s = 0, sw = 0, best_gain = 0, best_d = 0;
  for (int k = 0; k < kQKK; ++k) {
    s += static_cast<double>(w[order[k]]) * std::fabs(x[order[k]]);
    sw += w[order[k]];
    if (sw > 0 && s * s / sw > best_gain) {
      best_gain = s * s / sw;
      best_d = s / sw;
    }
  }
  return static_cast<float>(best_d);
}

// TQ2_0 / Q2_0: scales from the largest magnitude down, each rounded and refitted.
float SweepFit(const float* x, const float* w, int n, uint16_t start) {
  float amax = 0;
  for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  float best_d = HalfToFloat(start);
  float best_error = TernaryError(x, w, n, best_d, 2, nullptr);
  for (int step = 0; step < 16; ++step) {
    const float d = amax * (1.0f - 0.04f * static_cast<float>(step)) * 0.5f;
    uint8_t codes[kQKK];
    TernaryError(x, w, n, d, 2, codes);
    float t[kQKK];
    for (int j = 0; j < n; ++j) t[j] = static_cast<float>(codes[j]) - 1;
    const float fitted = FitScale(x, w, t, n);
    for (float cand : {d, fitted, 2 * d}) {
      if (!(cand > 0)) continue;
      const float e = TernaryError(x, w, n, cand, 2, nullptr);
      if (e < best_error) {
        best_error = e;
        best_d = cand;
      }
    }
  }
  return best_d;
}

float FP4Error(const float* x, const float* w, int n, float d, uint8_t* idx) {
  float error = 0;
  for (int j = 0; j < n; ++j) {
    float best = INFINITY;
    for (uint8_t i = 0; i < 16; ++i) {
      const float diff = x[j] - static_cast<float>(kFP4Values[i]) * d;
      if (diff * diff < best) {
        best = diff * diff;
        if (idx != nullptr) idx[j] = i;
      }
    }
    error += w[j] * best;
  }
  return error;
}

// The scale code around `start` (by +-range) with the least error, decoded by `scale`.
template <typename Decode>
uint8_t BestFP4Code(const float* x, const float* w, int n, uint8_t start, int lo, int hi, int range, Decode scale) {
  uint8_t best = start;
  float best_error = FP4Error(x, w, n, scale(start), nullptr);
  for (int c = std::max(lo, start - range); c <= std::min(hi, start + range); ++c) {
    const float e = FP4Error(x, w, n, scale(static_cast<uint8_t>(c)), nullptr);
    if (e < best_error) {
      best_error = e;
      best = static_cast<uint8_t>(c);
    }
  }
  return best;
}

}  // namespace

void quantize_tq1_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_tq1_0_ggml(src, dst, n_elems, importance);
  RefineRow<BlockTQ1_0, kQKK>(src, dst, n_elems, importance, dequantize_tq1_0,
                              [](const float* x, const float* w, BlockTQ1_0* b) {
                                b->d = FitScaleHalf(x, w, kQKK, 1, b->d, TernaryFit(x, w));
                                uint8_t t[kQKK];
                                TernaryError(x, w, kQKK, HalfToFloat(b->d), 1, t);
                                PackTQ1(t, b);
                              });
}

void quantize_tq2_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_tq2_0_ggml(src, dst, n_elems, importance);
  RefineRow<BlockTQ2_0, kQKK>(src, dst, n_elems, importance, dequantize_tq2_0,
                              [](const float* x, const float* w, BlockTQ2_0* b) {
                                b->d = FitScaleHalf(x, w, kQKK, 2, b->d, SweepFit(x, w, kQKK, b->d));
                                uint8_t t[kQKK];
                                TernaryError(x, w, kQKK, HalfToFloat(b->d), 2, t);
                                PackTQ2(t, b);
                              });
}

void quantize_q2_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  constexpr int kElems = BlockQ2_0::kElems;
  quantize_q2_0_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ2_0, kElems>(src, dst, n_elems, importance, dequantize_q2_0,
                               [](const float* x, const float* w, BlockQ2_0* b) {
                                 b->d = FitScaleHalf(x, w, kElems, 2, b->d, SweepFit(x, w, kElems, b->d));
                                 uint8_t q[kElems];
                                 TernaryError(x, w, kElems, HalfToFloat(b->d), 2, q);
                                 PackQ2_0(q, b);
                               });
}

void quantize_q1_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  constexpr int kElems = BlockQ1_0::kElems;
  quantize_q1_0_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ1_0, kElems>(src, dst, n_elems, importance, dequantize_q1_0,
                               [](const float* x, const float* w, BlockQ1_0* b) {
                                 float t[kElems];  // the signs stay those of x
                                 for (int j = 0; j < kElems; ++j) t[j] = x[j] >= 0 ? 1.0f : -1.0f;
                                 b->d = EnergyMatchedScale(x, w, t, kElems, b->d);
                               });
}

void quantize_mxfp4_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_mxfp4_ggml(src, dst, n_elems, importance);
  RefineRow<BlockMXFP4, kQK>(src, dst, n_elems, importance, dequantize_mxfp4,
                             [](const float* x, const float* w, BlockMXFP4* b) {
                               b->e = BestFP4Code(x, w, kQK, b->e, 0, 254, 2, E8M0Half);
                               uint8_t idx[kQK];
                               FP4Error(x, w, kQK, E8M0Half(b->e), idx);
                               PackNibbles(idx, b->qs);
                             });
}

void quantize_nvfp4_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_nvfp4_ggml(src, dst, n_elems, importance);
  RefineRow<BlockNVFP4, BlockNVFP4::kElems>(src, dst, n_elems, importance, dequantize_nvfp4,
                                            [](const float* x, const float* w, BlockNVFP4* b) {
                                              for (int s = 0; s < 4; ++s) {
                                                const float* xs = x + 16 * s;
                                                const float* ws = w + 16 * s;
                                                b->d[s] = BestFP4Code(xs, ws, 16, b->d[s], 1, 0x7E, 4, UE4M3Half);
                                                uint8_t idx[16];
                                                FP4Error(xs, ws, 16, UE4M3Half(b->d[s]), idx);
                                                PackNVFP4Sub(idx, s, b);
                                              }
                                            });
}

}  // namespace mixq::formats::internal
