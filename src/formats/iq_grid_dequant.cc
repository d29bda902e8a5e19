// Decoding of the lattice-codebook types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
// IQ3_S, IQ1_S and IQ1_M (ggml-formats.md §2.9), with ggml's float operations
// in ggml's order. The encoders: iq_grid_quants.cc, iq1_quants.cc and their
// *_best.cc.
#include <cstring>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/iq1_common.h"
#include "formats/iq_grids.h"

namespace mixq::formats::internal {
namespace {

uint8_t GridByte(uint64_t row, int k) { return static_cast<uint8_t>(row >> (8 * k)); }
uint8_t GridByte(uint32_t row, int k) { return static_cast<uint8_t>(row >> (8 * k)); }

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Eight values scale * magnitude, negated where the sign mask has a bit.
void EmitSigned8(float scale, uint64_t row, uint8_t signs, float* y) {
  for (int j = 0; j < 8; ++j) {
    float v = scale * static_cast<float>(GridByte(row, j));
    y[j] = (signs >> j) & 1 ? -v : v;
  }
}

// Two 4-value rows (IQ3 types) under one 8-bit sign mask.
void EmitSigned4x2(float scale, uint32_t row1, uint32_t row2, uint8_t signs, float* y) {
  for (int j = 0; j < 4; ++j) {
    float a = scale * static_cast<float>(GridByte(row1, j));
    float b = scale * static_cast<float>(GridByte(row2, j));
    y[j] = (signs >> j) & 1 ? -a : a;
    y[j + 4] = (signs >> (j + 4)) & 1 ? -b : b;
  }
}

// IQ1: dl * (grid + delta), grid values in {-1, 0, 1}.
void EmitIQ1(float dl, uint64_t row, float delta, float* y) {
  for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(static_cast<int8_t>(GridByte(row, j))) + delta);
}

}  // namespace

void dequantize_iq2_xxs(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockIQ2XXS);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = HalfToFloat(LoadU16(b));
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      uint32_t grid_idx = LoadU32(b + 2 + 8 * g);
      uint32_t aux = LoadU32(b + 2 + 8 * g + 4);
      float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.25f;
      for (int k = 0; k < 4; ++k) {
        uint8_t signs = IQ2SignMask(static_cast<int>((aux >> (7 * k)) & 127));
        EmitSigned8(db, kIQ2XXSGrid[(grid_idx >> (8 * k)) & 0xFF], signs, y + 32 * g + 8 * k);
      }
    }
  }
}

void dequantize_iq2_xs(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockIQ2XS);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = HalfToFloat(LoadU16(b));
    const uint8_t* scales = b + 66;
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      float db[2] = {d * (0.5f + static_cast<float>(scales[g] & 0x0F)) * 0.25f,
                     d * (0.5f + static_cast<float>(scales[g] >> 4)) * 0.25f};
      for (int k = 0; k < 4; ++k) {
        uint16_t v = LoadU16(b + 2 + 2 * (4 * g + k));
        EmitSigned8(db[k / 2], kIQ2XSGrid[v & 511], IQ2SignMask(v >> 9), y + 32 * g + 8 * k);
      }
    }
  }
}

void dequantize_iq2_s(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockIQ2S);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = HalfToFloat(LoadU16(b));
    const uint8_t* qs = b + 2;
    const uint8_t* signs = b + 2 + 32;
    const uint8_t* qh = b + 66;
    const uint8_t* scales = b + 74;
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      float db[2] = {d * (0.5f + static_cast<float>(scales[g] & 0x0F)) * 0.25f,
                     d * (0.5f + static_cast<float>(scales[g] >> 4)) * 0.25f};
      for (int k = 0; k < 4; ++k) {
        int index = qs[4 * g + k] | ((qh[g] << (8 - 2 * k)) & 0x300);
        EmitSigned8(db[k / 2], kIQ2SGrid[index], signs[4 * g + k], y + 32 * g + 8 * k);
      }
    }
  }
}

void dequantize_iq3_xxs(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockIQ3XXS);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = HalfToFloat(LoadU16(b));
    const uint8_t* qs = b + 2;
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      uint32_t aux = LoadU32(qs + 64 + 4 * g);
      float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
      for (int k = 0; k < 4; ++k) {
        uint8_t signs = IQ2SignMask(static_cast<int>((aux >> (7 * k)) & 127));
        EmitSigned4x2(db, kIQ3XXSGrid[qs[8 * g + 2 * k]], kIQ3XXSGrid[qs[8 * g + 2 * k + 1]], signs,
                      y + 32 * g + 8 * k);
      }
    }
  }
}

void dequantize_iq3_s(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockIQ3S);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = HalfToFloat(LoadU16(b));
    const uint8_t* qs = b + 2;
    const uint8_t* qh = b + 66;
    const uint8_t* signs = b + 74;
    const uint8_t* scales = b + 106;
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      int nibble = g % 2 == 0 ? scales[g / 2] & 0x0F : scales[g / 2] >> 4;
      float db = d * static_cast<float>(1 + 2 * nibble);
      for (int k = 0; k < 4; ++k) {
        int i1 = qs[8 * g + 2 * k] | ((qh[g] << (8 - 2 * k)) & 256);
        int i2 = qs[8 * g + 2 * k + 1] | ((qh[g] << (7 - 2 * k)) & 256);
        EmitSigned4x2(db, kIQ3SGrid[i1], kIQ3SGrid[i2], signs[4 * g + k], y + 32 * g + 8 * k);
      }
    }
  }
}

void dequantize_iq1_s(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockIQ1S);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    float d = HalfToFloat(LoadU16(b));
    const uint8_t* qs = b + 2;
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      uint16_t h = LoadU16(b + 34 + 2 * g);
      float dl = d * static_cast<float>(2 * ((h >> 12) & 7) + 1);
      float delta = (h & 0x8000) != 0 ? -kIQ1Delta : kIQ1Delta;
      for (int k = 0; k < 4; ++k) {
        int index = qs[4 * g + k] | (((h >> (3 * k)) & 7) << 8);
        EmitIQ1(dl, kIQ1SGrid[index], delta, y + 32 * g + 8 * k);
      }
    }
  }
}

void dequantize_iq1_m(const uint8_t* src, float* dst, int64_t n_elems) {
  constexpr int kBytes = sizeof(BlockIQ1M);
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    const uint8_t* b = src + i * kBytes;
    const uint8_t* qs = b;
    const uint8_t* qh = b + 32;
    uint16_t sc[4];
    for (int k = 0; k < 4; ++k) sc[k] = LoadU16(b + 48 + 2 * k);
    // The f16 super-block scale is spread over the top nibbles of the four scale words.
    uint16_t d16 =
        static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
    float d = HalfToFloat(d16);
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      float dl1 = d * static_cast<float>(2 * ((sc[g / 2] >> (6 * (g % 2))) & 7) + 1);
      float dl2 = d * static_cast<float>(2 * ((sc[g / 2] >> (6 * (g % 2) + 3)) & 7) + 1);
      const uint8_t* h = qh + 2 * g;
      int index[4] = {qs[4 * g] | ((h[0] << 8) & 0x700), qs[4 * g + 1] | ((h[0] << 4) & 0x700),
                      qs[4 * g + 2] | ((h[1] << 8) & 0x700), qs[4 * g + 3] | ((h[1] << 4) & 0x700)};
      float delta[4] = {(h[0] & 0x08) != 0 ? -kIQ1Delta : kIQ1Delta, (h[0] & 0x80) != 0 ? -kIQ1Delta : kIQ1Delta,
                        (h[1] & 0x08) != 0 ? -kIQ1Delta : kIQ1Delta, (h[1] & 0x80) != 0 ? -kIQ1Delta : kIQ1Delta};
      for (int k = 0; k < 4; ++k) EmitIQ1(k < 2 ? dl1 : dl2, kIQ1SGrid[index[k]], delta[k], y + 32 * g + 8 * k);
    }
  }
}

}  // namespace mixq::formats::internal
