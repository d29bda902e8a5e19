// Pieces of the TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0 and Q2_0 codecs shared by
// decoding (small_types_dequant.cc), ggml's encoders (small_types.cc) and
// mixq's (small_types_best.cc). Formats: ggml-formats.md §2.9.
#ifndef MIXQ_FORMATS_SMALL_TYPES_COMMON_H_
#define MIXQ_FORMATS_SMALL_TYPES_COMMON_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "formats/blocks.h"

namespace mixq::formats::internal {

// Doubled E2M1 values (MXFP4, NVFP4); the scales carry the matching 1/2.
inline constexpr int8_t kFP4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// E8M0 exponent e as 2^(e-128): half of the E8M0 value, matching the doubled codebook.
inline float E8M0Half(uint8_t e) {
  uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// UE4M3 (bias 7, 3 mantissa bits) times 1/2; bytes 0x00 and 0x7F decode to 0.
inline float UE4M3Half(uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  int exponent = (x >> 3) & 0xF;
  int mantissa = x & 0x7;
  float raw = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                            : std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
  return raw * 0.5f;
}

// ggml's f32 -> UE4M3: 0 for x <= 0 (and NaN), saturating at 448 (0x7E); the
// mantissa rounds half up on the first dropped bit.
inline uint8_t FloatToUE4M3(float x) {
  if (!(x > 0.0f)) return 0;
  if (x > 448.0f) x = 448.0f;
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  int exponent = static_cast<int>((bits >> 23) & 0xFF) - 127 + 7;
  if (exponent <= 0) {  // subnormal: mantissa * 2^-9
    int mantissa = static_cast<int>(x * 512.0f + 0.5f);
    return mantissa < 1 ? 0 : static_cast<uint8_t>(mantissa > 7 ? 7 : mantissa);
  }
  if (exponent >= 15) return 0x7E;
  int mantissa = static_cast<int>((bits >> 20) & 0x7) + static_cast<int>((bits >> 19) & 1);
  if (mantissa > 7) {
    mantissa = 0;
    if (++exponent >= 15) return 0x7E;
  }
  return static_cast<uint8_t>((exponent << 3) | mantissa);
}

// Element orders of the packed types: TQ1_0 packs five trits per byte, the
// first the most significant, as ceil(v * 256 / 243) of their base-3 number v
// (bytes 0..31 hold elements m + 32n, bytes 32..47 elements 160 + m + 16n,
// qh byte j elements 240 + j + 4n with a fifth zero trit); TQ2_0 four 2-bit
// codes per byte, element 128c + m + 32n at bits 2n of byte 32c + m.
// `t` holds codes 0..2 (TQ1_0) or 0..3 (TQ2_0): value (t - 1) * d.
inline void PackTQ1(const uint8_t* t, BlockTQ1_0* b) {
  auto pack = [](const uint8_t* first, int stride, int n_trits) {
    uint8_t q = 0;
    for (int n = 0; n < n_trits; ++n) q = static_cast<uint8_t>(q * 3 + first[n * stride]);
    if (n_trits == 4) q = static_cast<uint8_t>(q * 3);
    return static_cast<uint8_t>((static_cast<uint16_t>(q) * 256 + 242) / 243);
  };
  for (int m = 0; m < 32; ++m) b->qs[m] = pack(t + m, 32, 5);
  for (int m = 0; m < 16; ++m) b->qs[32 + m] = pack(t + 160 + m, 16, 5);
  for (int j = 0; j < 4; ++j) b->qh[j] = pack(t + 240 + j, 4, 4);
}

inline void PackTQ2(const uint8_t* t, BlockTQ2_0* b) {
  for (int c = 0; c < 2; ++c) {
    for (int m = 0; m < 32; ++m) {
      uint8_t q = 0;
      for (int n = 0; n < 4; ++n) q = static_cast<uint8_t>(q | ((t[128 * c + m + 32 * n] & 3) << (2 * n)));
      b->qs[32 * c + m] = q;
    }
  }
}

// Q2_0: four 2-bit codes per byte, element j at bits 2(j%4) of byte j/4; value (q - 1) * d.
inline void PackQ2_0(const uint8_t* q, BlockQ2_0* b) {
  std::memset(b->qs, 0, sizeof(b->qs));
  for (int j = 0; j < BlockQ2_0::kElems; ++j) b->qs[j / 4] |= static_cast<uint8_t>(q[j] << (2 * (j % 4)));
}

// NVFP4 sub-block s of 16: element j in the low nibble of byte 8s + j, j + 8 in the high one.
inline void PackNVFP4Sub(const uint8_t* idx, int s, BlockNVFP4* b) {
  for (int j = 0; j < 8; ++j) b->qs[8 * s + j] = static_cast<uint8_t>(idx[j] | (idx[j + 8] << 4));
}

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_SMALL_TYPES_COMMON_H_
