// ggml's encoders for TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0 and Q2_0
// (ggml-formats.md §2.9): round-to-nearest under one scale per block, from the
// block's maximum (Q1_0: its mean magnitude). ggml ignores importance for all
// of them, and so do these.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/legacy_packing.h"
#include "formats/small_types_common.h"

namespace mixq::formats::internal {
namespace {

float MaxAbs(const float* x, int n) {
  float amax = 0;
  for (int j = 0; j < n; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);
  return amax;
}

// The ternary types' codes t = lroundf(x / amax) + 1; |x / amax| <= 1.
void TernaryCodes(const float* x, float id, uint8_t* t) {
  for (int j = 0; j < kQKK; ++j) t[j] = static_cast<uint8_t>(RoundHalfAway(x[j] * id) + 1);
}

// The first FP4 value nearest each x / (2e): ggml's best_index_mxfp4.
void NearestFP4(const float* x, int n, float e, uint8_t* idx) {
  for (int j = 0; j < n; ++j) {
    uint8_t best = 0;
    float best_err = std::fabs(static_cast<float>(kFP4Values[0]) * e - x[j]);
    for (uint8_t i = 1; i < 16; ++i) {
      const float err = std::fabs(static_cast<float>(kFP4Values[i]) * e - x[j]);
      if (err < best_err) {
        best = i;
        best_err = err;
      }
    }
    idx[j] = best;
  }
}

// The E8M0 exponent of a block: floor(log2(amax)) - 2 + 127 (with C's
// float -> uint8_t conversion, which goes through int), 0 for an all-zero block.
uint8_t MXFP4Exponent(float amax) {
  if (!(amax > 0.0f)) return 0;
  return static_cast<uint8_t>(static_cast<int>(std::floor(std::log2(amax)) - 2 + 127));
}

}  // namespace

void quantize_tq1_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* /*importance*/) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const float* x = src + i * kQKK;
    const float d = MaxAbs(x, kQKK);
    uint8_t t[kQKK];
    TernaryCodes(x, d != 0 ? 1.0f / d : 0.0f, t);
    BlockTQ1_0 b;
    PackTQ1(t, &b);
    b.d = FloatToHalf(d);
    StoreBlock(b, dst, i);
  }
}

void quantize_tq2_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* /*importance*/) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const float* x = src + i * kQKK;
    const float d = MaxAbs(x, kQKK);
    uint8_t t[kQKK];
    TernaryCodes(x, d != 0 ? 1.0f / d : 0.0f, t);
    BlockTQ2_0 b;
    PackTQ2(t, &b);
    b.d = FloatToHalf(d);
    StoreBlock(b, dst, i);
  }
}

void quantize_q1_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* /*importance*/) {
  constexpr int kElems = BlockQ1_0::kElems;
  for (int64_t i = 0; i < n_elems / kElems; ++i) {
    const float* x = src + i * kElems;
    float sum_abs = 0;
    for (int j = 0; j < kElems; ++j) sum_abs += std::fabs(x[j]);
    BlockQ1_0 b;
    b.d = FloatToHalf(sum_abs / kElems);
    std::memset(b.qs, 0, sizeof(b.qs));
    for (int j = 0; j < kElems; ++j) b.qs[j / 8] |= static_cast<uint8_t>((x[j] >= 0.0f) << (j % 8));
    StoreBlock(b, dst, i);
  }
}

void quantize_q2_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* /*importance*/) {
  constexpr int kElems = BlockQ2_0::kElems;
  for (int64_t i = 0; i < n_elems / kElems; ++i) {
    const float* x = src + i * kElems;
    float amax = 0;
    for (int j = 0; j < kElems; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
    const float id = amax > 0.0f ? 1.0f / amax : 0.0f;
    uint8_t q[kElems];
    for (int j = 0; j < kElems; ++j) q[j] = static_cast<uint8_t>(std::clamp(RoundHalfAway(x[j] * id) + 1, 0, 3));
    BlockQ2_0 b;
    b.d = FloatToHalf(amax);
    PackQ2_0(q, &b);
    StoreBlock(b, dst, i);
  }
}

void quantize_mxfp4_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* /*importance*/) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const float* x = src + i * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = amax < std::fabs(x[j]) ? std::fabs(x[j]) : amax;
    BlockMXFP4 b;
    b.e = MXFP4Exponent(amax);
    const float d = E8M0Half(b.e);
    uint8_t idx[kQK];
    NearestFP4(x, kQK, d, idx);
    PackNibbles(idx, b.qs);
    StoreBlock(b, dst, i);
  }
}

void quantize_nvfp4_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* /*importance*/) {
  constexpr int kElems = BlockNVFP4::kElems;
  for (int64_t i = 0; i < n_elems / kElems; ++i) {
    BlockNVFP4 b;
    for (int s = 0; s < 4; ++s) {
      const float* x = src + i * kElems + 16 * s;
      float amax = 0;
      for (int j = 0; j < 16; ++j) amax = amax < std::fabs(x[j]) ? std::fabs(x[j]) : amax;
      b.d[s] = FloatToUE4M3(amax / 6.0f);
      const float d = UE4M3Half(b.d[s]);
      uint8_t idx[16];
      NearestFP4(x, 16, d, idx);
      PackNVFP4Sub(idx, s, &b);
    }
    StoreBlock(b, dst, i);
  }
}

}  // namespace mixq::formats::internal
