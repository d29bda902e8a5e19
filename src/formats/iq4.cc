// IQ4_NL and IQ4_XS (ggml-formats.md §2.4, §2.6, §2.8): decoding and ggml's encoders.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/iq4_common.h"
#include "formats/iq4_index.h"

namespace mixq::formats::internal {

float IQ4Sigma2(const float* x, int n) {
  float sum = 0;
  for (int j = 0; j < n; ++j) sum += x[j] * x[j];
  return sum * (2.0f / static_cast<float>(n));
}

void IQ4Weights(const float* x, const float* qw, float sigma2, float* w) {
  if (qw != nullptr) {
    for (int j = 0; j < 32; ++j) w[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  } else {
    for (int j = 0; j < 32; ++j) w[j] = x[j] * x[j];
  }
}

namespace {

constexpr int kTries = 15;  // itry = -7..7

// ggml's 16 sums per try (first guess and tries, as lanes) with
// kLaneCount<V> tries per vector and the scalar loop's operations per lane.
template <typename V>
[[gnu::always_inline]] inline void TrySumsLanes(const float* x, const float* w, const float* id, float* sumqx,
                                                float* sumq2) {
  constexpr int kWidth = kLaneCount<V>;
  constexpr int kVectors = (kTries + 1) / kWidth;
  V idv[kVectors];
  V sx[kVectors] = {};
  V s2[kVectors] = {};
  for (int v = 0; v < kVectors; ++v) idv[v] = LoadLanes<V>(id + kWidth * v);
  for (int j = 0; j < 32; ++j) {
    for (int v = 0; v < kVectors; ++v) {
      const V q = CodebookValueLanes(idv[v] * x[j]);
      const V wq = w[j] * q;
      sx[v] += wq * x[j];
      s2[v] += wq * q;
    }
  }
  for (int v = 0; v < kVectors; ++v) {
    StoreLanes(sumqx + kWidth * v, sx[v]);
    StoreLanes(sumq2 + kWidth * v, s2[v]);
  }
}

MIXQ_TARGET_AVX2 void TrySumsAvx2(const float* x, const float* w, const float* id, float* sumqx, float* sumq2) {
  TrySumsLanes<Lanes8>(x, w, id, sumqx, sumq2);
}

MIXQ_TARGET_AVX512 void TrySumsAvx512(const float* x, const float* w, const float* id, float* sumqx, float* sumq2) {
  TrySumsLanes<Lanes16>(x, w, id, sumqx, sumq2);
}

}  // namespace

float IQ4GroupScaleGgml(const float* x, const float* w) {
  float amax = 0;
  float max = 0;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax < kGroupMaxEps) return 0;
  // Lane 0 is ggml's first guess, lanes 1..15 its tries. Each lane sums in
  // element order, as ggml does, so the sums are identical; interleaving the
  // lanes just lets independent additions overlap.
  float id[kTries + 1];
  float d0 = -max / static_cast<float>(kIQ4Values[0]);
  id[0] = 1 / d0;
  for (int t = 0; t < kTries; ++t) id[t + 1] = static_cast<float>(t - 7 + kIQ4Values[0]) / max;
  float sumqx[kTries + 1] = {};
  float sumq2[kTries + 1] = {};
  const Isa isa = LaneIsa();
  if (isa == Isa::kAvx512) {
    TrySumsAvx512(x, w, id, sumqx, sumq2);
  } else if (isa == Isa::kAvx2) {
    TrySumsAvx2(x, w, id, sumqx, sumq2);
  } else {
    for (int j = 0; j < 32; ++j) {
      for (int t = 0; t <= kTries; ++t) {
        float q = kIQ4Values[IQ4BestIndex(id[t] * x[j])];
        float wq = w[j] * q;
        sumqx[t] += wq * x[j];
        sumq2[t] += wq * q;
      }
    }
  }
  float d = sumq2[0] > 0 ? sumqx[0] / sumq2[0] : 0.0f;
  float best = d * sumqx[0];
  for (int t = 1; t <= kTries; ++t) {
    if (sumq2[t] > 0 && sumqx[t] * sumqx[t] > best * sumq2[t]) {
      d = sumqx[t] / sumq2[t];
      best = d * sumqx[t];
    }
  }
  return d;
}

void IQ4PackNibbles(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

void IQ4XSSetScales(const int* ls, BlockIQ4XS* b) {
  b->scales_h = 0;
  std::memset(b->scales_l, 0, 4);
  for (int g = 0; g < 8; ++g) {
    int u = ls[g] + 32;
    b->scales_l[g / 2] |= static_cast<uint8_t>((u & 0x0F) << (4 * (g % 2)));
    b->scales_h |= static_cast<uint16_t>((u >> 4) << (2 * g));
  }
}

int IQ4XSGetScale(const BlockIQ4XS& b, int g) {
  int low = (b.scales_l[g / 2] >> (4 * (g % 2))) & 0x0F;
  int high = (b.scales_h >> (2 * g)) & 3;
  return (low | (high << 4)) - 32;
}

void dequantize_iq4_nl(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    BlockIQ4NL b = LoadBlock<BlockIQ4NL>(src, i);
    float d = HalfToFloat(b.d);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kIQ4Values[b.qs[j] & 0x0F]);
      y[j + 16] = d * static_cast<float>(kIQ4Values[b.qs[j] >> 4]);
    }
  }
}

void dequantize_iq4_xs(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockIQ4XS b = LoadBlock<BlockIQ4XS>(src, i);
    float d = HalfToFloat(b.d);
    for (int g = 0; g < 8; ++g) {
      float dl = d * static_cast<float>(IQ4XSGetScale(b, g));
      const uint8_t* qs = b.qs + 16 * g;
      float* y = dst + i * kQKK + 32 * g;
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kIQ4Values[qs[j] & 0x0F]);
        y[j + 16] = dl * static_cast<float>(kIQ4Values[qs[j] >> 4]);
      }
    }
  }
}

void quantize_iq4_nl_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const float* x = src + i * kQK;
    float w[kQK];
    IQ4Weights(x, importance != nullptr ? importance + i * kQK : nullptr, IQ4Sigma2(x, kQK), w);
    float scale = IQ4GroupScaleGgml(x, w);
    BlockIQ4NL b;
    b.d = FloatToHalf(scale);
    // ggml picks the quants with the float scale, not the stored f16 one.
    float id = scale != 0 ? 1 / scale : 0.0f;
    uint8_t L[kQK];
    for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(IQ4BestIndex(id * x[j]));
    IQ4PackNibbles(L, b.qs);
    StoreBlock(b, dst, i);
  }
}

void quantize_iq4_xs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const float* x = src + i * kQKK;
    const float* qw = importance != nullptr ? importance + i * kQKK : nullptr;
    float sigma2 = IQ4Sigma2(x, kQKK);
    float scales[8];
    float max_scale = 0;
    float amax_scale = 0;
    for (int g = 0; g < 8; ++g) {
      float w[32];
      IQ4Weights(x + 32 * g, qw != nullptr ? qw + 32 * g : nullptr, sigma2, w);
      scales[g] = IQ4GroupScaleGgml(x + 32 * g, w);
      if (std::fabs(scales[g]) > amax_scale) {
        amax_scale = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    BlockIQ4XS b;
    float d = -max_scale / 32;
    b.d = FloatToHalf(d);
    float id = d != 0 ? 1 / d : 0.0f;
    int ls[8];
    for (int g = 0; g < 8; ++g) {
      ls[g] = std::clamp(NearestInt(id * scales[g]), -32, 31);
      // ggml picks the quants with the float super-block scale, not the f16 one.
      float dl = d * static_cast<float>(ls[g]);
      float idl = dl != 0 ? 1 / dl : 0.0f;
      uint8_t L[32];
      for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(IQ4BestIndex(idl * x[32 * g + j]));
      IQ4PackNibbles(L, b.qs + 16 * g);
    }
    IQ4XSSetScales(ls, &b);
    StoreBlock(b, dst, i);
  }
}

}  // namespace mixq::formats::internal
