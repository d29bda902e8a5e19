// mixq's K-quant encoders: ggml's block, refined by k_best.h's searches, kept
// where its decoded error is smaller (best_common.h).
#include <cstring>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/k_best.h"
#include "formats/k_packing.h"

namespace mixq::formats::internal {
namespace {

constexpr AffineLayout kQ2K = {16, 16, 3, 15};
constexpr AffineLayout kQ4K = {8, 32, 15, 63};
constexpr AffineLayout kQ5K = {8, 32, 31, 63};
constexpr SymmetricLayout kQ3K = {16, 16, -4, 3, -32, 31};
constexpr SymmetricLayout kQ6K = {16, 16, -32, 31, -128, 127};

// Q4_K and Q5_K share the scale packing; `pack` stores the quants.
template <typename Block, typename PackQuants>
void RefineQ45K(const AffineLayout& layout, const float* x, const float* w, Block* b, PackQuants&& pack) {
  AffineState s{b->d, b->dmin, {}, {}};
  for (int g = 0; g < 8; ++g) {
    uint8_t sc, m;
    GetScaleMinK4(g, b->scales, &sc, &m);
    s.sc[g] = sc;
    s.m[g] = m;
  }
  uint8_t L[kQKK];
  SearchAffineSuperBlock(x, w, layout, &s, L);
  uint8_t sc[8], m[8];
  for (int g = 0; g < 8; ++g) {
    sc[g] = static_cast<uint8_t>(s.sc[g]);
    m[g] = static_cast<uint8_t>(s.m[g]);
  }
  b->d = s.d;
  b->dmin = s.dmin;
  PackScaleMinK4(sc, m, b->scales);
  pack(L, b);
}

}  // namespace

void quantize_q2_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q2_k_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ2K, kQKK>(src, dst, n_elems, importance, dequantize_q2_k,
                            [](const float* x, const float* w, auto* b) {
                              AffineState s{b->d, b->dmin, {}, {}};
                              for (int g = 0; g < 16; ++g) {
                                s.sc[g] = b->scales[g] & 0x0F;
                                s.m[g] = b->scales[g] >> 4;
                              }
                              uint8_t L[kQKK];
                              SearchAffineSuperBlock(x, w, kQ2K, &s, L);
                              b->d = s.d;
                              b->dmin = s.dmin;
                              for (int g = 0; g < 16; ++g) b->scales[g] = static_cast<uint8_t>(s.sc[g] | (s.m[g] << 4));
                              PackTwoBitPlanes(L, b->qs);
                            });
}

void quantize_q4_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q4_k_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ4K, kQKK>(
      src, dst, n_elems, importance, dequantize_q4_k, [](const float* x, const float* w, auto* b) {
        RefineQ45K(kQ4K, x, w, b, [](const uint8_t* L, BlockQ4K* out) { PackQ4KQuants(L, out->qs); });
      });
}

void quantize_q5_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q5_k_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ5K, kQKK>(
      src, dst, n_elems, importance, dequantize_q5_k, [](const float* x, const float* w, auto* b) {
        RefineQ45K(kQ5K, x, w, b, [](const uint8_t* L, BlockQ5K* out) { PackQ5KQuants(L, out->qh, out->qs); });
      });
}

void quantize_q3_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q3_k_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ3K, kQKK>(src, dst, n_elems, importance, dequantize_q3_k,
                            [](const float* x, const float* w, auto* b) {
                              SymmetricState s{b->d, {}};
                              for (int g = 0; g < 16; ++g) s.s[g] = Q3KScale(b->scales, g);
                              int8_t q[kQKK];
                              SearchSymmetricSuperBlock(x, w, kQ3K, &s, q);
                              b->d = s.d;
                              uint8_t u[16];
                              for (int g = 0; g < 16; ++g) u[g] = static_cast<uint8_t>(s.s[g] + 32);
                              PackQ3KScales(u, b->scales);
                              uint8_t L[kQKK];
                              for (int i = 0; i < kQKK; ++i) L[i] = static_cast<uint8_t>(q[i] + 4);
                              PackQ3KQuants(L, b->hmask, b->qs);
                            });
}

void quantize_q6_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_q6_k_ggml(src, dst, n_elems, importance);
  RefineRow<BlockQ6K, kQKK>(src, dst, n_elems, importance, dequantize_q6_k,
                            [](const float* x, const float* w, auto* b) {
                              SymmetricState s{b->d, {}};
                              for (int g = 0; g < 16; ++g) s.s[g] = b->scales[g];
                              int8_t q[kQKK];
                              SearchSymmetricSuperBlock(x, w, kQ6K, &s, q);
                              b->d = s.d;
                              for (int g = 0; g < 16; ++g) b->scales[g] = static_cast<int8_t>(s.s[g]);
                              uint8_t L[kQKK];
                              for (int i = 0; i < kQKK; ++i) L[i] = static_cast<uint8_t>(q[i] + 32);
                              PackQ6KQuants(L, b->ql, b->qh);
                            });
}

}  // namespace mixq::formats::internal
