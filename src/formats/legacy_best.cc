// mixq's encoders for the legacy 32-element types (best_common.h explains the
// contract). For a fixed block scale (and offset) the best codes are simply the
// rounded ones, so the search is over the f16 scale/offset values themselves:
// candidates from many clipping points, each refitted by least squares for its
// codes, rounded to f16 and tried with their f16 neighbours.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/legacy_packing.h"

namespace mixq::formats::internal {
namespace {

struct SymmetricCodes {
  float qmin;
  float qmax;
  int n_clips;      // clipping candidates on each side of the plain max-based scale
  float clip_step;  // in code units
};

// Tries the f16 scales h[0..count), in order; keeps the best in *best.
void TryHalfScales(const float* x, const float* w, const SymmetricCodes& c, const uint16_t* h, int count,
                   uint16_t* best, float* best_error) {
  SymmetricTry tries[16] = {};
  for (int k = 0; k < count; ++k) tries[k] = {x, w, HalfToFloat(h[k])};
  float errors[16];
  SymmetricGroupErrors(tries, count, kQK, c.qmin, c.qmax, errors);
  for (int k = 0; k < count; ++k) {
    if (errors[k] < *best_error) {
      *best_error = errors[k];
      *best = h[k];
    }
  }
}

// The least-squares scale for the codes that `scale` gives, as f16.
uint16_t RefitSymmetric(const float* x, const float* w, const SymmetricCodes& c, float scale) {
  float fitted = RefitSymmetricScale(x, w, kQK, scale, c.qmin, c.qmax);
  return FloatToHalf(fitted != 0 ? fitted : scale);
}

uint16_t SearchSymmetricScale(const float* x, const float* w, const SymmetricCodes& c, uint16_t start) {
  uint16_t best = start;
  float best_error = SymmetricGroupError(x, w, kQK, HalfToFloat(start), c.qmin, c.qmax, nullptr);
  float max = 0;
  for (int j = 0; j < kQK; ++j) {
    if (std::fabs(x[j]) > std::fabs(max)) max = x[j];
  }
  if (max == 0) return best;
  // Map the largest value to either end of the code range, clipping a little
  // more or less each time; the refit then centres the scale on its codes.
  uint16_t fitted[16];
  int count = 0;
  for (float end : {c.qmin, c.qmax}) {
    for (int k = -c.n_clips; k <= c.n_clips; ++k) {
      float scale = max / (end + std::copysign(c.clip_step * static_cast<float>(k), end));
      if (!std::isfinite(scale) || scale == 0) continue;
      fitted[count++] = RefitSymmetric(x, w, c, scale);
    }
  }
  TryHalfScales(x, w, c, fitted, count, &best, &best_error);
  // Polish: refit on the best codes, with its f16 neighbours, until it stops helping.
  for (int round = 0; round < 3; ++round) {
    uint16_t before = best;
    uint16_t h = RefitSymmetric(x, w, c, HalfToFloat(best));
    const uint16_t around[3] = {HalfNeighbor(h, -1), h, HalfNeighbor(h, 1)};
    TryHalfScales(x, w, c, around, 3, &best, &best_error);
    if (best == before) break;
  }
  return best;
}

struct AffineCodes {
  float qmax;
};

// y = d*q + m with f16 d and m: tries the pairs (d[k], m[k]), k < count, in
// order; keeps the best in *best_d/*best_m.
void TryHalfAffine(const float* x, const float* w, const AffineCodes& c, const uint16_t* d, const uint16_t* m,
                   int count, uint16_t* best_d, uint16_t* best_m, float* best_error) {
  AffineTry tries[16] = {};
  for (int k = 0; k < count; ++k) tries[k] = {x, w, HalfToFloat(d[k]), -HalfToFloat(m[k])};
  float errors[16];
  AffineGroupErrors(tries, count, kQK, c.qmax, errors);
  for (int k = 0; k < count; ++k) {
    if (errors[k] < *best_error) {
      *best_error = errors[k];
      *best_d = d[k];
      *best_m = m[k];
    }
  }
}

// Least-squares (d, m) for the codes that (d, m) give, as f16; false when degenerate.
bool RefitHalfAffine(const float* x, const float* w, const AffineCodes& c, float d, float m, uint16_t* d16,
                     uint16_t* m16) {
  float fd, fb;
  if (!RefitAffine(x, w, kQK, d, -m, c.qmax, &fd, &fb)) return false;
  *d16 = FloatToHalf(fd);
  *m16 = FloatToHalf(-fb);
  return std::isfinite(HalfToFloat(*d16)) && std::isfinite(HalfToFloat(*m16));
}

void SearchAffine(const float* x, const float* w, const AffineCodes& c, uint16_t* d, uint16_t* m) {
  float best_error = AffineGroupError(x, w, kQK, HalfToFloat(*d), -HalfToFloat(*m), c.qmax, nullptr);
  float min = x[0];
  float max = x[0];
  for (int j = 1; j < kQK; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  if (max == min) return;
  // Shrink the [min, max] range by different amounts (the codes then clip the
  // extremes), refit each, and try the f16 neighbours of each fit.
  uint16_t fd[7], fm[7];
  int count = 0;
  for (int k = 0; k <= 6; ++k) {
    float shrink = 0.08f * static_cast<float>(k);
    float lo = min + shrink * 0.5f * (max - min);
    float hi = max - shrink * 0.5f * (max - min);
    if (RefitHalfAffine(x, w, c, (hi - lo) / c.qmax, lo, &fd[count], &fm[count])) ++count;
  }
  TryHalfAffine(x, w, c, fd, fm, count, d, m, &best_error);
  for (int round = 0; round < 3; ++round) {
    uint16_t bd = *d;
    uint16_t bm = *m;
    uint16_t hd, hm;
    if (!RefitHalfAffine(x, w, c, HalfToFloat(*d), HalfToFloat(*m), &hd, &hm)) break;
    // The fit's 3x3 f16 neighbourhood, d's steps outermost.
    uint16_t nd[9], nm[9];
    for (int i = 0; i < 9; ++i) {
      nd[i] = HalfNeighbor(hd, i / 3 - 1);
      nm[i] = HalfNeighbor(hm, i % 3 - 1);
    }
    TryHalfAffine(x, w, c, nd, nm, 9, d, m, &best_error);
    if (*d == bd && *m == bm) break;
  }
}

// Codes 0..2*half-1 stored with an offset of `half`.
void SymmetricStoredCodes(const float* x, const float* w, float d, float half, uint8_t* L) {
  int8_t codes[kQK];
  SymmetricGroupError(x, w, kQK, d, -half, half - 1, codes);
  for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(codes[j] + static_cast<int>(half));
}

}  // namespace

void quantize_q4_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q4_0_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ4_0, kQK>(src, dst, n_elems, importance, dequantize_q4_0,
                            [](const float* x, const float* w, auto* b) {
                              b->d = SearchSymmetricScale(x, w, {-8, 7, 2, 0.5f}, b->d);
                              uint8_t L[kQK];
                              SymmetricStoredCodes(x, w, HalfToFloat(b->d), 8, L);
                              PackNibbles(L, b->qs);
                            });
}

void quantize_q5_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q5_0_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ5_0, kQK>(src, dst, n_elems, importance, dequantize_q5_0,
                            [](const float* x, const float* w, auto* b) {
                              b->d = SearchSymmetricScale(x, w, {-16, 15, 2, 0.5f}, b->d);
                              uint8_t L[kQK];
                              SymmetricStoredCodes(x, w, HalfToFloat(b->d), 16, L);
                              PackFiveBits(L, b->qs, b->qh);
                            });
}

void quantize_q8_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q8_0_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ8_0, kQK>(src, dst, n_elems, importance, dequantize_q8_0,
                            [](const float* x, const float* w, auto* b) {
                              // ggml never uses code -128; mixq may.
                              b->d = SearchSymmetricScale(x, w, {-128, 127, 0, 0.0f}, b->d);
                              SymmetricGroupError(x, w, kQK, HalfToFloat(b->d), -128, 127, b->qs);
                            });
}

void quantize_q4_1_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q4_1_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ4_1, kQK>(src, dst, n_elems, importance, dequantize_q4_1,
                            [](const float* x, const float* w, auto* b) {
                              SearchAffine(x, w, {15}, &b->d, &b->m);
                              uint8_t L[kQK];
                              AffineGroupError(x, w, kQK, HalfToFloat(b->d), -HalfToFloat(b->m), 15, L);
                              PackNibbles(L, b->qs);
                            });
}

void quantize_q5_1_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q5_1_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ5_1, kQK>(src, dst, n_elems, importance, dequantize_q5_1,
                            [](const float* x, const float* w, auto* b) {
                              SearchAffine(x, w, {31}, &b->d, &b->m);
                              uint8_t L[kQK];
                              AffineGroupError(x, w, kQK, HalfToFloat(b->d), -HalfToFloat(b->m), 31, L);
                              PackFiveBits(L, b->qs, b->qh);
                            });
}

}  // namespace mixq::formats::internal
