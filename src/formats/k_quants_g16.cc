// K-quants with 16-element groups: Q2_K, Q3_K, Q6_K (ggml-formats.md §2.5),
// decoding and ggml's encoders.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/k_packing.h"
#include "formats/quant_search.h"

namespace mixq::formats::internal {
namespace {

float SumSquares(const float* x, int n) {
  float sum = 0;
  for (int j = 0; j < n; ++j) sum += x[j] * x[j];
  return sum;
}

// Re-derives the quants of Q2_K from the stored (f16-rounded) scales; groups
// whose scale is zero keep the search's quants, as ggml does.
void RequantizeQ2K(const float* x, const BlockQ2K& b, uint8_t* L) {
  float d = HalfToFloat(b.d);
  float dmin = HalfToFloat(b.dmin);
  for (int j = 0; j < 16; ++j) {
    float dj = d * static_cast<float>(b.scales[j] & 0x0F);
    if (dj == 0) continue;
    float mj = dmin * static_cast<float>(b.scales[j] >> 4);
    for (int i = 0; i < 16; ++i) {
      L[16 * j + i] = static_cast<uint8_t>(std::clamp(NearestInt((x[16 * j + i] + mj) / dj), 0, 3));
    }
  }
}

void RequantizeQ3K(const float* x, const BlockQ3K& b, int8_t* L) {
  float d = HalfToFloat(b.d);
  for (int j = 0; j < 16; ++j) {
    float dj = d * static_cast<float>(Q3KScale(b.scales, j));
    if (dj == 0) continue;
    for (int i = 0; i < 16; ++i) {
      L[16 * j + i] = static_cast<int8_t>(std::clamp(NearestInt(x[16 * j + i] / dj), -4, 3) + 4);
    }
  }
}

// Q6_K's common tail: scales from the group scales, requantize, pack.
// Returns false when the block is all zero (then the caller stores zeros).
bool FinishQ6K(const float* x, const float* scales, int8_t* L, BlockQ6K* b) {
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int j = 0; j < 16; ++j) {
    if (std::fabs(scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  if (max_abs_scale < kGroupMaxEps) return false;
  float iscale = -128.0f / max_scale;
  b->d = FloatToHalf(1 / iscale);
  for (int j = 0; j < 16; ++j) b->scales[j] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[j])));
  float d = HalfToFloat(b->d);
  for (int j = 0; j < 16; ++j) {
    float dj = d * static_cast<float>(b->scales[j]);
    if (dj == 0) continue;
    for (int i = 0; i < 16; ++i) {
      L[16 * j + i] = static_cast<int8_t>(std::clamp(NearestInt(x[16 * j + i] / dj), -32, 31) + 32);
    }
  }
  PackQ6KQuants(reinterpret_cast<const uint8_t*>(L), b->ql, b->qh);
  return true;
}

void QuantizeQ2KBlockRef(const float* x, BlockQ2K* b) {
  uint8_t L[kQKK];
  float weights[16];
  float scales[16];
  float mins[16];
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < 16; ++j) {
    for (int i = 0; i < 16; ++i) weights[i] = std::fabs(x[16 * j + i]);
    scales[j] = MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  std::memset(b->scales, 0, 16);
  b->d = 0;
  b->dmin = 0;
  if (max_scale > 0) {
    float iscale = 15.0f / max_scale;
    for (int j = 0; j < 16; ++j) b->scales[j] = static_cast<uint8_t>(NearestInt(iscale * scales[j]));
    b->d = FloatToHalf(max_scale / 15.0f);
  }
  if (max_min > 0) {
    float iscale = 15.0f / max_min;
    for (int j = 0; j < 16; ++j) b->scales[j] |= static_cast<uint8_t>(NearestInt(iscale * mins[j]) << 4);
    b->dmin = FloatToHalf(max_min / 15.0f);
  }
  RequantizeQ2K(x, *b, L);
  PackTwoBitPlanes(L, b->qs);
}

void QuantizeQ2KBlockImportance(const float* x, const float* qw, BlockQ2K* b) {
  uint8_t L[kQKK];
  float weights[16];
  float scales[16];
  float mins[16];
  float sw[16];
  uint8_t Ls[16];
  uint8_t Lm[16];
  float sigma2 = SumSquares(x, kQKK) / kQKK;
  for (int j = 0; j < 16; ++j) {
    const float* xg = x + 16 * j;
    float sum_w = 0;
    for (int i = 0; i < 16; ++i) {
      weights[i] = qw[16 * j + i] * std::sqrt(sigma2 + xg[i] * xg[i]);
      sum_w += weights[i];
    }
    sw[j] = sum_w;
    scales[j] = MakeQkx3Quants(16, 3, xg, weights, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
  }
  b->d = FloatToHalf(MakeQpQuants(16, 15, scales, Ls, sw));
  b->dmin = FloatToHalf(MakeQpQuants(16, 15, mins, Lm, sw));
  for (int j = 0; j < 16; ++j) b->scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
  RequantizeQ2K(x, *b, L);
  PackTwoBitPlanes(L, b->qs);
}

void QuantizeQ3KBlockRef(const float* x, BlockQ3K* b) {
  int8_t L[kQKK];
  float scales[16];
  float max_scale = 0;
  float amax = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j, true);
    if (std::fabs(scales[j]) > amax) {
      amax = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  uint8_t u[16] = {};
  b->d = 0;
  if (max_scale != 0) {
    float iscale = -32.0f / max_scale;
    for (int j = 0; j < 16; ++j) {
      // ggml narrows to int8 before clamping; |iscale*scale| <= 32 keeps that harmless.
      int8_t l = static_cast<int8_t>(NearestInt(iscale * scales[j]));
      u[j] = static_cast<uint8_t>(std::clamp<int>(l, -32, 31) + 32);
    }
    b->d = FloatToHalf(1 / iscale);
  }
  PackQ3KScales(u, b->scales);
  RequantizeQ3K(x, *b, L);
  PackQ3KQuants(reinterpret_cast<const uint8_t*>(L), b->hmask, b->qs);
}

void QuantizeQ3KBlockImportance(const float* x, const float* qw, BlockQ3K* b) {
  int8_t L[kQKK];
  float scales[16];
  float weights[16];
  float sw[16];
  int8_t Ls[16];
  float sigma2 = 2 * SumSquares(x, kQKK) / kQKK;
  for (int j = 0; j < 16; ++j) {
    const float* xg = x + 16 * j;
    float sum_w = 0;
    for (int i = 0; i < 16; ++i) weights[i] = qw[16 * j + i] * std::sqrt(sigma2 + xg[i] * xg[i]);
    for (int i = 0; i < 16; ++i) sum_w += weights[i];
    sw[j] = sum_w;
    scales[j] = MakeQxQuants(16, 4, xg, L + 16 * j, weights);
  }
  float d_block = MakeQxQuants(16, 32, scales, Ls, sw);
  PackQ3KScales(reinterpret_cast<const uint8_t*>(Ls), b->scales);
  b->d = FloatToHalf(d_block);
  RequantizeQ3K(x, *b, L);
  PackQ3KQuants(reinterpret_cast<const uint8_t*>(L), b->hmask, b->qs);
}

}  // namespace

void dequantize_q2_k(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockQ2K b = LoadBlock<BlockQ2K>(src, i);
    float d = HalfToFloat(b.d);
    float dmin = HalfToFloat(b.dmin);
    float* y = dst + i * kQKK;
    for (int j = 0; j < 16; ++j) {
      float dl = d * static_cast<float>(b.scales[j] & 0x0F);
      float ml = dmin * static_cast<float>(b.scales[j] >> 4);
      for (int e = 16 * j; e < 16 * j + 16; ++e) y[e] = dl * static_cast<float>(TwoBitPlaneValue(b.qs, e)) - ml;
    }
  }
}

void dequantize_q3_k(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockQ3K b = LoadBlock<BlockQ3K>(src, i);
    float d = HalfToFloat(b.d);
    float* y = dst + i * kQKK;
    for (int j = 0; j < 16; ++j) {
      float dl = d * static_cast<float>(Q3KScale(b.scales, j));
      for (int e = 16 * j; e < 16 * j + 16; ++e) {
        int high = (b.hmask[e % 32] >> (e / 32)) & 1;
        y[e] = dl * static_cast<float>(TwoBitPlaneValue(b.qs, e) - (high != 0 ? 0 : 4));
      }
    }
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockQ6K b = LoadBlock<BlockQ6K>(src, i);
    float d = HalfToFloat(b.d);
    float* y = dst + i * kQKK;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* yh = y + 128 * h;
      for (int l = 0; l < 32; ++l) {
        int is = l / 16;
        int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        yh[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        yh[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        yh[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        yh[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void quantize_q2_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockQ2K b;
    if (importance == nullptr) {
      QuantizeQ2KBlockRef(src + i * kQKK, &b);
    } else {
      QuantizeQ2KBlockImportance(src + i * kQKK, importance + i * kQKK, &b);
    }
    StoreBlock(b, dst, i);
  }
}

void quantize_q3_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockQ3K b;
    if (importance == nullptr) {
      QuantizeQ3KBlockRef(src + i * kQKK, &b);
    } else {
      QuantizeQ3KBlockImportance(src + i * kQKK, importance + i * kQKK, &b);
    }
    StoreBlock(b, dst, i);
  }
}

void quantize_q6_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const float* x = src + i * kQKK;
    int8_t L[kQKK];
    float scales[16];
    for (int j = 0; j < 16; ++j) {
      const float* qw = importance != nullptr ? importance + i * kQKK + 16 * j : nullptr;
      scales[j] = MakeQxQuants(16, 32, x + 16 * j, L + 16 * j, qw);
    }
    BlockQ6K b;
    if (!FinishQ6K(x, scales, L, &b)) std::memset(&b, 0, sizeof(b));
    StoreBlock(b, dst, i);
  }
}

}  // namespace mixq::formats::internal
