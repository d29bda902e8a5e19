// Decoding of TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0 and Q2_0 (ggml-formats.md §2.9),
// with ggml's float operations. The encoders: small_types.cc, small_types_best.cc.
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/small_types_common.h"

namespace mixq::formats::internal {
namespace {

float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}

// Trit n of a TQ1_0 byte: the byte holds ceil(v * 256 / 243) of a base-3 number v.
int Trit(uint8_t q, int n) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  uint8_t shifted = static_cast<uint8_t>(q * kPow3[n]);
  return (static_cast<uint16_t>(shifted) * 3) >> 8;
}

}  // namespace

void dequantize_tq1_0(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockTQ1_0);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = LoadHalf(b + 52);
    float* y = dst + i * kQKK;
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 32; ++m) y[32 * n + m] = static_cast<float>(Trit(b[m], n) - 1) * d;
      for (int m = 0; m < 16; ++m) y[160 + 16 * n + m] = static_cast<float>(Trit(b[32 + m], n) - 1) * d;
    }
    for (int n = 0; n < 4; ++n) {
      for (int m = 0; m < 4; ++m) y[240 + 4 * n + m] = static_cast<float>(Trit(b[48 + m], n) - 1) * d;
    }
  }
}

void dequantize_tq2_0(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockTQ2_0);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = LoadHalf(b + 64);
    float* y = dst + i * kQKK;
    for (int c = 0; c < 2; ++c) {
      for (int n = 0; n < 4; ++n) {
        for (int m = 0; m < 32; ++m) {
          y[128 * c + 32 * n + m] = static_cast<float>(((b[32 * c + m] >> (2 * n)) & 3) - 1) * d;
        }
      }
    }
  }
}

void dequantize_mxfp4(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockMXFP4);
  for (int64_t i = 0; i < n_elems / kQK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = E8M0Half(b[0]);
    float* y = dst + i * kQK;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(kFP4Values[b[1 + j] & 0x0F]) * d;
      y[j + 16] = static_cast<float>(kFP4Values[b[1 + j] >> 4]) * d;
    }
  }
}

void dequantize_nvfp4(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockNVFP4);
  constexpr int kElems = BlockNVFP4::kElems;
  for (int64_t i = 0; i < n_elems / kElems; ++i) {
    const uint8_t* b = src + i * kBytes;
    for (int s = 0; s < 4; ++s) {
      float d = UE4M3Half(b[s]);
      const uint8_t* qs = b + 4 + 8 * s;
      float* y = dst + i * kElems + 16 * s;
      for (int j = 0; j < 8; ++j) {
        y[j] = static_cast<float>(kFP4Values[qs[j] & 0x0F]) * d;
        y[j + 8] = static_cast<float>(kFP4Values[qs[j] >> 4]) * d;
      }
    }
  }
}

void dequantize_q1_0(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockQ1_0);
  constexpr int kElems = BlockQ1_0::kElems;
  for (int64_t i = 0; i < n_elems / kElems; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = LoadHalf(b);
    float* y = dst + i * kElems;
    for (int j = 0; j < kElems; ++j) y[j] = ((b[2 + j / 8] >> (j % 8)) & 1) != 0 ? d : -d;
  }
}

void dequantize_q2_0(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockQ2_0);
  constexpr int kElems = BlockQ2_0::kElems;
  for (int64_t i = 0; i < n_elems / kElems; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = LoadHalf(b);
    float* y = dst + i * kElems;
    for (int j = 0; j < kElems; ++j) y[j] = static_cast<float>(((b[2 + j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
  }
}

}  // namespace mixq::formats::internal
