// Legacy 32-element types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml-formats.md §2.4):
// decoding and ggml's encoders.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/lanes.h"
#include "formats/legacy_packing.h"
#include "formats/quant_search.h"

namespace mixq::formats::internal {
namespace {

// The element of a 32-block with the largest |x| (the first on ties), signed;
// +0 for an all-zero block. The magnitude is found lane-parallel (a maximum
// does not depend on the order), then the first element reaching it.
float SignedAbsMax(const float* x) {
  Lanes4 m = {};
  for (int j = 0; j < kQK; j += 4) m = MaxLanes(AbsLanes(Load4(x + j)), m);
  float amax = std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
  if (amax == 0) return 0.0f;
  int j = 0;
  while (std::fabs(x[j]) != amax) ++j;
  return x[j];
}

// Smallest and largest element of a 32-block, as ggml's first-wins scan
// finds them. Lane order can only change which zero (+0 or -0) wins a tie, so
// a zero result is redone in ggml's order.
void MinMax(const float* x, float* min, float* max) {
  Lanes4 lo = Load4(x);
  Lanes4 hi = lo;
  for (int j = 4; j < kQK; j += 4) {
    Lanes4 v = Load4(x + j);
    lo = MinLanes(v, lo);
    hi = MaxLanes(v, hi);
  }
  *min = std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]));
  *max = std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3]));
  if (*min == 0 || *max == 0) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < *min) *min = x[j];
      if (x[j] > *max) *max = x[j];
    }
  }
}

// sigma^2 of the importance weights: the mean square over the whole row (§2.4).
float RowSigma2(const float* x, int64_t n) {
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += x[j] * x[j];
  return sum / static_cast<float>(n);
}

void ImportanceWeights(const float* x, const float* qw, float sigma2, float* w) {
  for (int j = 0; j < kQK; ++j) w[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

void dequantize_q4_0(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    BlockQ4_0 b = LoadBlock<BlockQ4_0>(src, i);
    float d = HalfToFloat(b.d);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    BlockQ4_1 b = LoadBlock<BlockQ4_1>(src, i);
    float d = HalfToFloat(b.d);
    float m = HalfToFloat(b.m);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_q5_0(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    BlockQ5_0 b = LoadBlock<BlockQ5_0>(src, i);
    float d = HalfToFloat(b.d);
    uint32_t qh = LoadU32(b.qh);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      int h0 = static_cast<int>((qh >> j) & 1) << 4;
      int h1 = static_cast<int>((qh >> (j + 16)) & 1) << 4;
      y[j] = static_cast<float>(((b.qs[j] & 0x0F) | h0) - 16) * d;
      y[j + 16] = static_cast<float>(((b.qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void dequantize_q5_1(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    BlockQ5_1 b = LoadBlock<BlockQ5_1>(src, i);
    float d = HalfToFloat(b.d);
    float m = HalfToFloat(b.m);
    uint32_t qh = LoadU32(b.qh);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      int h0 = static_cast<int>((qh >> j) & 1) << 4;
      int h1 = static_cast<int>((qh >> (j + 16)) & 1) << 4;
      y[j] = static_cast<float>((b.qs[j] & 0x0F) | h0) * d + m;
      y[j + 16] = static_cast<float>((b.qs[j] >> 4) | h1) * d + m;
    }
  }
}

void dequantize_q8_0(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    BlockQ8_0 b = LoadBlock<BlockQ8_0>(src, i);
    float d = HalfToFloat(b.d);
    float* y = dst + i * kQK;
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }
}

void quantize_q4_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  float sigma2 = importance != nullptr ? RowSigma2(src, n_elems) : 0.0f;
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ4_0 b;
    uint8_t L[kQK];
    if (importance == nullptr) {
      float d = SignedAbsMax(x) / -8;
      float id = d != 0 ? 1.0f / d : 0.0f;
      b.d = FloatToHalf(d);
      // x*id lies in [-8, 8]: truncation of x*id + 8.5 is floor, as in ggml.
      for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(std::min(15, static_cast<int>(x[j] * id + 8.5f)));
    } else {
      float w[kQK];
      ImportanceWeights(x, importance + i * kQK, sigma2, w);
      b.d = FloatToHalf(MakeQxQuants(kQK, 8, x, reinterpret_cast<int8_t*>(L), w));
    }
    PackNibbles(L, b.qs);
    StoreBlock(b, dst, i);
  }
}

void quantize_q4_1_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  float sigma2 = importance != nullptr ? RowSigma2(src, n_elems) : 0.0f;
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ4_1 b;
    uint8_t L[kQK];
    if (importance == nullptr) {
      float min, max;
      MinMax(x, &min, &max);
      float d = (max - min) / 15;
      float id = d != 0 ? 1.0f / d : 0.0f;
      b.d = FloatToHalf(d);
      b.m = FloatToHalf(min);
      for (int j = 0; j < kQK; ++j) {
        // (x - min)*id + 0.5 lies in [0.5, 16.5]: ggml's int8 narrowing changes nothing.
        L[j] = static_cast<uint8_t>(std::min(15, static_cast<int>((x[j] - min) * id + 0.5f)));
      }
    } else {
      float w[kQK];
      ImportanceWeights(x, importance + i * kQK, sigma2, w);
      float the_min;
      float d = MakeQkx3Quants(kQK, 15, x, w, L, &the_min, -0.9f, 0.05f, 36, false);
      b.d = FloatToHalf(d);
      b.m = FloatToHalf(-the_min);
    }
    PackNibbles(L, b.qs);
    StoreBlock(b, dst, i);
  }
}

void quantize_q5_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  float sigma2 = importance != nullptr ? RowSigma2(src, n_elems) : 0.0f;
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ5_0 b;
    uint8_t L[kQK];
    if (importance == nullptr) {
      float d = SignedAbsMax(x) / -16;
      float id = d != 0 ? 1.0f / d : 0.0f;
      b.d = FloatToHalf(d);
      for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(x[j] * id + 16.5f)));
    } else {
      float w[kQK];
      ImportanceWeights(x, importance + i * kQK, sigma2, w);
      b.d = FloatToHalf(MakeQxQuants(kQK, 16, x, reinterpret_cast<int8_t*>(L), w));
    }
    PackFiveBits(L, b.qs, b.qh);
    StoreBlock(b, dst, i);
  }
}

void quantize_q5_1_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  float sigma2 = importance != nullptr ? RowSigma2(src, n_elems) : 0.0f;
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ5_1 b;
    uint8_t L[kQK];
    if (importance == nullptr) {
      float min, max;
      MinMax(x, &min, &max);
      float d = (max - min) / 31;
      float id = d != 0 ? 1.0f / d : 0.0f;
      b.d = FloatToHalf(d);
      b.m = FloatToHalf(min);
      for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(static_cast<int>((x[j] - min) * id + 0.5f));
    } else {
      float w[kQK];
      ImportanceWeights(x, importance + i * kQK, sigma2, w);
      float the_min;
      float d = MakeQkx3Quants(kQK, 31, x, w, L, &the_min, -0.9f, 0.05f, 36, false);
      b.d = FloatToHalf(d);
      b.m = FloatToHalf(-the_min);
    }
    PackFiveBits(L, b.qs, b.qh);
    StoreBlock(b, dst, i);
  }
}

void quantize_q8_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float*) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const float* x = src + i * kQK;
    BlockQ8_0 b;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    float d = amax / 127;
    float id = d != 0 ? 1.0f / d : 0.0f;
    b.d = FloatToHalf(d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(RoundHalfAway(x[j] * id));
    StoreBlock(b, dst, i);
  }
}

}  // namespace mixq::formats::internal
