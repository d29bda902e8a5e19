// Quant packing of the 32-element legacy types (ggml-formats.md §2.4), shared
// by ggml's encoders (legacy.cc) and mixq's (legacy_best.cc).
#ifndef MIXQ_FORMATS_LEGACY_PACKING_H_
#define MIXQ_FORMATS_LEGACY_PACKING_H_

#include <cstdint>
#include <cstring>

namespace mixq::formats::internal {

// 32 codes < 16: element j in the low nibble of byte j, element j + 16 in the high one.
inline void PackNibbles(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

// 32 codes < 32: low nibbles as PackNibbles, fifth bits into a little-endian u32.
inline void PackFiveBits(const uint8_t* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((L[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_LEGACY_PACKING_H_
