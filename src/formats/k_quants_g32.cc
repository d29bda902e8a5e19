// K-quants with 32-element groups and a min: Q4_K, Q5_K (ggml-formats.md §2.5),
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

struct KParams {
  int nmax;                     // 15 (Q4_K) or 31 (Q5_K)
  float ref_rmin;               // reference search start
  int ref_nstep;                // reference search steps
  bool clamp_importance_codes;  // ggml clamps the make_qp_quants codes to 63 for Q5_K only
};
constexpr KParams kQ4KReference = {15, -1.0f, 20, false};
constexpr KParams kQ5KReference = {31, -0.5f, 15, true};

// Group scales and mins of one super-block, as 6-bit codes with their f16 multipliers.
struct ScaleMins {
  uint16_t d;
  uint16_t dmin;
  uint8_t sc[8];
  uint8_t m[8];
};

// ggml's search: L gets the search's quants, the result the stored scales.
ScaleMins SearchQ45K(const KParams& p, const float* x, const float* qw, uint8_t* L) {
  float weights[32];
  float scales[8];
  float mins[8];
  ScaleMins out;
  if (qw == nullptr) {
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float* xg = x + 32 * j;
      float sum_x2 = 0;
      for (int i = 0; i < 32; ++i) sum_x2 += xg[i] * xg[i];
      float av_x = std::sqrt(sum_x2 / 32);
      for (int i = 0; i < 32; ++i) weights[i] = av_x + std::fabs(xg[i]);
      scales[j] = MakeQkx2Quants(32, p.nmax, xg, weights, L + 32 * j, &mins[j], p.ref_rmin, 0.1f, p.ref_nstep, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
      // ggml narrows to uint8 before taking the min with 63.
      out.sc[j] = std::min<uint8_t>(63, static_cast<uint8_t>(NearestInt(inv_scale * scales[j])));
      out.m[j] = std::min<uint8_t>(63, static_cast<uint8_t>(NearestInt(inv_min * mins[j])));
    }
    out.d = FloatToHalf(max_scale / 63.0f);
    out.dmin = FloatToHalf(max_min / 63.0f);
    return out;
  }
  float sum_x2 = 0;
  for (int i = 0; i < kQKK; ++i) sum_x2 += x[i] * x[i];
  float sigma2 = 2 * sum_x2 / kQKK;
  float sw[8];
  for (int j = 0; j < 8; ++j) {
    const float* xg = x + 32 * j;
    for (int i = 0; i < 32; ++i) weights[i] = qw[32 * j + i] * std::sqrt(sigma2 + xg[i] * xg[i]);
    float sum_w = 0;
    for (int i = 0; i < 32; ++i) sum_w += weights[i];
    sw[j] = sum_w;
    scales[j] = MakeQkx3Quants(32, p.nmax, xg, weights, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
  }
  out.d = FloatToHalf(MakeQpQuants(8, 63, scales, out.sc, sw));
  out.dmin = FloatToHalf(MakeQpQuants(8, 63, mins, out.m, sw));
  if (p.clamp_importance_codes) {
    for (int j = 0; j < 8; ++j) {
      out.sc[j] = std::min<uint8_t>(63, out.sc[j]);
      out.m[j] = std::min<uint8_t>(63, out.m[j]);
    }
  }
  return out;
}

// Quants from the stored (packed, f16) scales; groups with a zero scale keep the search's L.
void RequantizeQ45K(int nmax, const float* x, uint16_t d16, uint16_t dmin16, const uint8_t* packed, uint8_t* L) {
  float d = HalfToFloat(d16);
  float dmin = HalfToFloat(dmin16);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    GetScaleMinK4(j, packed, &sc, &m);
    float dj = d * static_cast<float>(sc);
    if (dj == 0) continue;
    float mj = dmin * static_cast<float>(m);
    for (int i = 0; i < 32; ++i) {
      L[32 * j + i] = static_cast<uint8_t>(std::clamp(NearestInt((x[32 * j + i] + mj) / dj), 0, nmax));
    }
  }
}

}  // namespace

void dequantize_q4_k(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockQ4K b = LoadBlock<BlockQ4K>(src, i);
    float d = HalfToFloat(b.d);
    float dmin = HalfToFloat(b.dmin);
    float* y = dst + i * kQKK;
    for (int c = 0; c < 4; ++c) {
      for (int half = 0; half < 2; ++half) {
        uint8_t sc, m;
        GetScaleMinK4(2 * c + half, b.scales, &sc, &m);
        float dl = d * static_cast<float>(sc);
        float ml = dmin * static_cast<float>(m);
        const uint8_t* q = b.qs + 32 * c;
        float* yg = y + 64 * c + 32 * half;
        for (int l = 0; l < 32; ++l) yg[l] = dl * static_cast<float>((q[l] >> (4 * half)) & 0x0F) - ml;
      }
    }
  }
}

void dequantize_q5_k(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    BlockQ5K b = LoadBlock<BlockQ5K>(src, i);
    float d = HalfToFloat(b.d);
    float dmin = HalfToFloat(b.dmin);
    float* y = dst + i * kQKK;
    for (int c = 0; c < 4; ++c) {
      for (int half = 0; half < 2; ++half) {
        uint8_t sc, m;
        GetScaleMinK4(2 * c + half, b.scales, &sc, &m);
        float dl = d * static_cast<float>(sc);
        float ml = dmin * static_cast<float>(m);
        const uint8_t* q = b.qs + 32 * c;
        int bit = 2 * c + half;
        float* yg = y + 64 * c + 32 * half;
        for (int l = 0; l < 32; ++l) {
          int v = ((q[l] >> (4 * half)) & 0x0F) + (((b.qh[l] >> bit) & 1) << 4);
          yg[l] = dl * static_cast<float>(v) - ml;
        }
      }
    }
  }
}

void quantize_q4_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const float* x = src + i * kQKK;
    uint8_t L[kQKK];
    ScaleMins s = SearchQ45K(kQ4KReference, x, importance != nullptr ? importance + i * kQKK : nullptr, L);
    BlockQ4K b;
    b.d = s.d;
    b.dmin = s.dmin;
    PackScaleMinK4(s.sc, s.m, b.scales);
    RequantizeQ45K(kQ4KReference.nmax, x, b.d, b.dmin, b.scales, L);
    PackQ4KQuants(L, b.qs);
    StoreBlock(b, dst, i);
  }
}

void quantize_q5_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const float* x = src + i * kQKK;
    uint8_t L[kQKK];
    ScaleMins s = SearchQ45K(kQ5KReference, x, importance != nullptr ? importance + i * kQKK : nullptr, L);
    BlockQ5K b;
    b.d = s.d;
    b.dmin = s.dmin;
    PackScaleMinK4(s.sc, s.m, b.scales);
    RequantizeQ45K(kQ5KReference.nmax, x, b.d, b.dmin, b.scales, L);
    PackQ5KQuants(L, b.qh, b.qs);
    StoreBlock(b, dst, i);
  }
}

}  // namespace mixq::formats::internal
