// Integer decodings of Q4_K, Q5_K, Q6_K and Q8_0: the dequantizers of
// k_quants_g32.cc, k_quants_g16.cc and legacy.cc stopped before the float
// multiply (ggml-formats.md §2.4-2.5).
#include "formats/int_rows.h"

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/k_packing.h"

namespace mixq::formats {
namespace {

using namespace internal;

// Q4_K and Q5_K: 8 groups of 32, six-bit scale and min each; the fifth bit of
// Q5_K's values sits in qh (bit 2c + half for chunk c).
template <typename Block, bool kFifthBit>
void DecodeQ45K(const uint8_t* src, int8_t* q, float* scales, float* mins, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const Block b = LoadBlock<Block>(src, i);
    const float d = HalfToFloat(b.d);
    const float dmin = HalfToFloat(b.dmin);
    for (int c = 0; c < 4; ++c) {
      for (int half = 0; half < 2; ++half) {
        const int g = 2 * c + half;
        uint8_t sc, m;
        GetScaleMinK4(g, b.scales, &sc, &m);
        scales[8 * i + g] = d * static_cast<float>(sc);
        mins[8 * i + g] = dmin * static_cast<float>(m);
        int8_t* qg = q + i * kQKK + 32 * g;
        for (int l = 0; l < 32; ++l) {
          int v = (b.qs[32 * c + l] >> (4 * half)) & 0x0F;
          if constexpr (kFifthBit) v |= ((b.qh[l] >> g) & 1) << 4;
          qg[l] = static_cast<int8_t>(v);
        }
      }
    }
  }
}

// Q6_K: 16 groups of 16 with signed 8-bit scales, values 0..63 stored less 32.
void DecodeQ6K(const uint8_t* src, int8_t* q, float* scales, float*, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const BlockQ6K b = LoadBlock<BlockQ6K>(src, i);
    const float d = HalfToFloat(b.d);
    for (int g = 0; g < 16; ++g) scales[16 * i + g] = d * static_cast<float>(b.scales[g]);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      int8_t* qq = q + i * kQKK + 128 * h;
      for (int l = 0; l < 32; ++l) {
        qq[l] = static_cast<int8_t>(((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32);
        qq[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
        qq[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        qq[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
  }
}

void DecodeQ8_0(const uint8_t* src, int8_t* q, float* scales, float*, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const BlockQ8_0 b = LoadBlock<BlockQ8_0>(src, i);
    scales[i] = HalfToFloat(b.d);
    for (int j = 0; j < kQK; ++j) q[i * kQK + j] = b.qs[j];
  }
}

}  // namespace

namespace internal {

const IntDecoding kIntQ4K = {32, true, DecodeQ45K<BlockQ4K, false>};
const IntDecoding kIntQ5K = {32, true, DecodeQ45K<BlockQ5K, true>};
const IntDecoding kIntQ6K = {16, false, DecodeQ6K};
const IntDecoding kIntQ8_0 = {32, false, DecodeQ8_0};

}  // namespace internal
}  // namespace mixq::formats
