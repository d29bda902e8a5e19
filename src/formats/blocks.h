// Block layouts of every ggml block type (ggml-formats.md §2.4-2.9), and the
// numeric primitives every codec shares (§2.2).
//
// Blocks are plain structs whose sizes are checked against the spec; the
// format table takes each type's block bytes and elements from them. Codecs
// never cast row pointers to block pointers (rows need not be aligned); they
// memcpy one block in or out with LoadBlock/StoreBlock.
#ifndef MIXQ_FORMATS_BLOCKS_H_
#define MIXQ_FORMATS_BLOCKS_H_

#include <bit>
#include <cstdint>
#include <cstring>

namespace mixq::formats::internal {

inline constexpr int kQK = 32;    // elements per legacy block
inline constexpr int kQKK = 256;  // elements per K/IQ super-block

struct BlockQ4_0 {
  static constexpr int kElems = kQK;
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_1 {
  static constexpr int kElems = kQK;
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20);

struct BlockQ5_0 {
  static constexpr int kElems = kQK;
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22);

struct BlockQ5_1 {
  static constexpr int kElems = kQK;
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24);

struct BlockQ8_0 {
  static constexpr int kElems = kQK;
  uint16_t d;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ2K {
  static constexpr int kElems = kQKK;
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2K) == 84);

struct BlockQ3K {
  static constexpr int kElems = kQKK;
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3K) == 110);

struct BlockQ4K {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4K) == 144);

struct BlockQ5K {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5K) == 176);

struct BlockQ6K {
  static constexpr int kElems = kQKK;
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210);

struct BlockIQ4NL {
  static constexpr int kElems = kQK;
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockIQ4NL) == 18);

struct BlockIQ4XS {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
static_assert(sizeof(BlockIQ4XS) == 136);

// The types mixq only decodes, and the activation blocks of ggml's dot products.
struct BlockQ8_1 {
  static constexpr int kElems = kQK;
  uint16_t d;
  uint16_t s;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_1) == 36);

struct BlockQ8K {
  static constexpr int kElems = kQKK;
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ8K) == 292);

struct BlockIQ2XXS {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint16_t qs[32];  // per group of 32: four grid indices, then signs and scale
};
static_assert(sizeof(BlockIQ2XXS) == 66);

struct BlockIQ2XS {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint16_t qs[32];
  uint8_t scales[8];
};
static_assert(sizeof(BlockIQ2XS) == 74);

struct BlockIQ2S {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint8_t qs[64];  // 32 grid indices, then 32 sign bytes
  uint8_t qh[8];
  uint8_t scales[8];
};
static_assert(sizeof(BlockIQ2S) == 82);

struct BlockIQ3XXS {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint8_t qs[96];  // 64 grid indices, then per group of 32 signs and scale
};
static_assert(sizeof(BlockIQ3XXS) == 98);

struct BlockIQ3S {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t signs[32];
  uint8_t scales[4];
};
static_assert(sizeof(BlockIQ3S) == 110);

struct BlockIQ1S {
  static constexpr int kElems = kQKK;
  uint16_t d;
  uint8_t qs[32];
  uint16_t qh[8];
};
static_assert(sizeof(BlockIQ1S) == 50);

struct BlockIQ1M {
  static constexpr int kElems = kQKK;
  uint8_t qs[32];
  uint8_t qh[16];
  uint8_t scales[8];  // the F16 super-block scale is spread over their top nibbles
};
static_assert(sizeof(BlockIQ1M) == 56);

struct BlockTQ1_0 {
  static constexpr int kElems = kQKK;
  uint8_t qs[48];
  uint8_t qh[4];
  uint16_t d;
};
static_assert(sizeof(BlockTQ1_0) == 54);

struct BlockTQ2_0 {
  static constexpr int kElems = kQKK;
  uint8_t qs[64];
  uint16_t d;
};
static_assert(sizeof(BlockTQ2_0) == 66);

struct BlockMXFP4 {
  static constexpr int kElems = kQK;
  uint8_t e;
  uint8_t qs[16];
};
static_assert(sizeof(BlockMXFP4) == 17);

struct BlockNVFP4 {
  static constexpr int kElems = 64;
  uint8_t d[4];
  uint8_t qs[32];
};
static_assert(sizeof(BlockNVFP4) == 36);

struct BlockQ1_0 {
  static constexpr int kElems = 128;
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ1_0) == 18);

struct BlockQ2_0 {
  static constexpr int kElems = 64;
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ2_0) == 18);

template <typename Block>
inline Block LoadBlock(const uint8_t* src, int64_t index) {
  Block b;
  std::memcpy(&b, src + index * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return b;
}

template <typename Block>
inline void StoreBlock(const Block& b, uint8_t* dst, int64_t index) {
  std::memcpy(dst + index * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
}

// The IQ4_NL / IQ4_XS codebook (§2.4).
inline constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Exact f16 -> f32 (§2.2); signalling NaNs come back quiet, as ggml's conversion does.
inline float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  if (exponent == 0) {
    // Subnormal or zero: mantissa * 2^-24 is exact in float.
    float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<uint32_t>(magnitude) | sign);
  }
  if (exponent == 31) {
    uint32_t quiet = mantissa != 0 ? 0x400000u : 0u;
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13) | quiet);
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round-to-nearest-even f32 -> f16 (§2.2): overflow gives inf, NaN gives 0x7E00 with the sign.
inline uint16_t FloatToHalf(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return sign | 0x7E00;
  if (magnitude >= 0x477FF000u) return sign | 0x7C00;  // rounds to 65536 or more
  if (magnitude < 0x38800000u) {
    // Below 2^-14 the result is subnormal: round |f| * 2^24 to an integer by
    // adding 2^23, where the float spacing is exactly 1 (the sum stays < 2^24).
    float scaled = std::bit_cast<float>(magnitude) * 0x1p24f + 0x1p23f;
    return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(scaled) - 0x4B000000u);
  }
  // Normal: round the 13 dropped mantissa bits to even; a carry moves into the exponent.
  magnitude += 0xFFFu + ((magnitude >> 13) & 1u);
  return sign | static_cast<uint16_t>((magnitude >> 13) - (112u << 10));
}

// Round half to even for |x| <= 2^22, by ggml's add-1.5*2^23 trick (§2.2). Out
// of that range it returns what ggml's version returns, which keeps the bytes
// identical even for inputs the search was never meant for.
inline int NearestInt(float x) {
  float shifted = x + 12582912.0f;
  int32_t bits = std::bit_cast<int32_t>(shifted);
  return (bits & 0x007FFFFF) - 0x00400000;
}

// C's roundf / lroundf (half away from zero) for |v| <= 2^23, without a libm
// call: v minus its truncation is exact in that range.
inline int RoundHalfAway(float v) {
  int t = static_cast<int>(v);
  float frac = v - static_cast<float>(t);
  return t + (frac >= 0.5f ? 1 : 0) - (frac <= -0.5f ? 1 : 0);
}

inline constexpr float kGroupMaxEps = 1e-15f;

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_BLOCKS_H_
