// F32, F16 and BF16 rows (ggml-formats.md §2.2, §2.3).
#include <bit>
#include <cstring>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/formats.h"

namespace mixq::formats {

float F16ToF32(uint16_t bits) { return internal::HalfToFloat(bits); }
uint16_t F32ToF16(float value) { return internal::FloatToHalf(value); }

float BF16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t F32ToBF16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  uint32_t quiet_nan = (bits >> 16) | 0x40;
  // A select rather than an early return keeps row loops vectorizable.
  return static_cast<uint16_t>((bits & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded);
}

namespace internal {

void dequantize_f32(const uint8_t* src, float* dst, int64_t n_elems) {
  std::memcpy(dst, src, static_cast<size_t>(n_elems) * sizeof(float));
}

void quantize_f32_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float*) {
  std::memcpy(dst, src, static_cast<size_t>(n_elems) * sizeof(float));
}

void dequantize_f16(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = HalfToFloat(h);
  }
}

void quantize_f16_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float*) {
  for (int64_t i = 0; i < n_elems; ++i) {
    uint16_t h = FloatToHalf(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void dequantize_bf16(const uint8_t* src, float* dst, int64_t n_elems) {
  for (int64_t i = 0; i < n_elems; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = BF16ToF32(h);
  }
}

void quantize_bf16_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float*) {
  for (int64_t i = 0; i < n_elems; ++i) {
    uint16_t h = F32ToBF16(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

}  // namespace internal
}  // namespace mixq::formats
