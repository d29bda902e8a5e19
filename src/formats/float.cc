// F32, F16 and BF16 rows (ggml-formats.md §2.2, §2.3).
#include <algorithm>
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
  uint32_t rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
  uint32_t quiet_nan = bits | 0x400000u;
  // The result is the top half of a 32-bit word; taking it with an arithmetic
  // shift and a select (no early return) keeps row loops vectorizable on SSE2.
  uint32_t word = (bits & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded;
  return static_cast<uint16_t>(static_cast<int16_t>(static_cast<int32_t>(word) >> 16));
}

namespace internal {

void dequantize_f32(const uint8_t* src, float* dst, int64_t n_elems) {
  std::memcpy(dst, src, static_cast<size_t>(n_elems) * sizeof(float));
}

void quantize_f32_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float*) {
  std::memcpy(dst, src, static_cast<size_t>(n_elems) * sizeof(float));
}

namespace {

// Rows go through a small aligned buffer so that the conversion loops stay
// plain array loops the compiler can vectorize.
constexpr int64_t kChunk = 256;

template <float (*kWiden)(uint16_t)>
void WidenRow(const uint8_t* src, float* dst, int64_t n_elems) {
  uint16_t h[kChunk];
  for (int64_t i = 0; i < n_elems; i += kChunk) {
    int64_t n = std::min(kChunk, n_elems - i);
    std::memcpy(h, src + 2 * i, static_cast<size_t>(2 * n));
    for (int64_t j = 0; j < n; ++j) dst[i + j] = kWiden(h[j]);
  }
}

template <uint16_t (*kNarrow)(float)>
void NarrowRow(const float* src, uint8_t* dst, int64_t n_elems) {
  uint16_t h[kChunk];
  for (int64_t i = 0; i < n_elems; i += kChunk) {
    int64_t n = std::min(kChunk, n_elems - i);
    for (int64_t j = 0; j < n; ++j) h[j] = kNarrow(src[i + j]);
    std::memcpy(dst + 2 * i, h, static_cast<size_t>(2 * n));
  }
}

}  // namespace

void dequantize_f16(const uint8_t* src, float* dst, int64_t n_elems) { WidenRow<HalfToFloat>(src, dst, n_elems); }

void quantize_f16_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float*) {
  NarrowRow<FloatToHalf>(src, dst, n_elems);
}

void dequantize_bf16(const uint8_t* src, float* dst, int64_t n_elems) { WidenRow<BF16ToF32>(src, dst, n_elems); }

void quantize_bf16_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float*) {
  NarrowRow<F32ToBF16>(src, dst, n_elems);
}

}  // namespace internal
}  // namespace mixq::formats
