// The FeedbackCodec of each format: its decoder's scales read back from a
// block, and its quant packing (ggml-formats.md §2.4-2.8).
#include <cstddef>
#include <cstring>

#include "formats/blocks.h"
#include "formats/feedback.h"
#include "formats/iq4_common.h"
#include "formats/k_packing.h"
#include "formats/legacy_packing.h"

namespace mixq::formats::internal {
namespace {

// Codes shifted by `bias` into the unsigned values the packings take.
template <int kN>
void Biased(const int* codes, int bias, uint8_t* L) {
  for (int j = 0; j < kN; ++j) L[j] = static_cast<uint8_t>(codes[j] + bias);
}

void GridQ4_0(const uint8_t* block, float* scale, float* offset) {
  scale[0] = HalfToFloat(LoadBlock<BlockQ4_0>(block, 0).d);
  offset[0] = 0;
}
void StoreQ4_0(const int* codes, uint8_t* block) {
  BlockQ4_0 b = LoadBlock<BlockQ4_0>(block, 0);
  uint8_t L[kQK];
  Biased<kQK>(codes, 8, L);
  PackNibbles(L, b.qs);
  StoreBlock(b, block, 0);
}

void GridQ8_0(const uint8_t* block, float* scale, float* offset) {
  scale[0] = HalfToFloat(LoadBlock<BlockQ8_0>(block, 0).d);
  offset[0] = 0;
}
void StoreQ8_0(const int* codes, uint8_t* block) {
  BlockQ8_0 b = LoadBlock<BlockQ8_0>(block, 0);
  for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(codes[j]);
  StoreBlock(b, block, 0);
}

void GridQ2K(const uint8_t* block, float* scale, float* offset) {
  BlockQ2K b = LoadBlock<BlockQ2K>(block, 0);
  const float d = HalfToFloat(b.d);
  const float dmin = HalfToFloat(b.dmin);
  for (int g = 0; g < 16; ++g) {
    scale[g] = d * static_cast<float>(b.scales[g] & 0x0F);
    offset[g] = dmin * static_cast<float>(b.scales[g] >> 4);
  }
}
void StoreQ2K(const int* codes, uint8_t* block) {
  BlockQ2K b = LoadBlock<BlockQ2K>(block, 0);
  uint8_t L[kQKK];
  Biased<kQKK>(codes, 0, L);
  PackTwoBitPlanes(L, b.qs);
  StoreBlock(b, block, 0);
}

void SetGroupQ2K(uint8_t* block, int g, int sc, int m) {
  block[offsetof(BlockQ2K, scales) + g] = static_cast<uint8_t>(sc | (m << 4));
}

void GridQ3K(const uint8_t* block, float* scale, float* offset) {
  BlockQ3K b = LoadBlock<BlockQ3K>(block, 0);
  const float d = HalfToFloat(b.d);
  for (int g = 0; g < 16; ++g) {
    scale[g] = d * static_cast<float>(Q3KScale(b.scales, g));
    offset[g] = 0;
  }
}
void StoreQ3K(const int* codes, uint8_t* block) {
  BlockQ3K b = LoadBlock<BlockQ3K>(block, 0);
  uint8_t L[kQKK];
  Biased<kQKK>(codes, 4, L);
  PackQ3KQuants(L, b.hmask, b.qs);
  StoreBlock(b, block, 0);
}

void SetGroupQ3K(uint8_t* block, int g, int sc, int /*m*/) {
  uint8_t* s = block + offsetof(BlockQ3K, scales);
  uint8_t u[16];
  for (int j = 0; j < 16; ++j) u[j] = static_cast<uint8_t>(Q3KScale(s, j) + 32);
  u[g] = static_cast<uint8_t>(sc + 32);
  PackQ3KScales(u, s);
}

// Q4_K and Q5_K share the scale/min packing.
template <typename Block>
void GridQ45K(const uint8_t* block, float* scale, float* offset) {
  Block b = LoadBlock<Block>(block, 0);
  const float d = HalfToFloat(b.d);
  const float dmin = HalfToFloat(b.dmin);
  for (int g = 0; g < 8; ++g) {
    uint8_t sc, m;
    GetScaleMinK4(g, b.scales, &sc, &m);
    scale[g] = d * static_cast<float>(sc);
    offset[g] = dmin * static_cast<float>(m);
  }
}
template <typename Block>
void SetGroupQ45K(uint8_t* block, int g, int sc, int m) {
  uint8_t* s = block + offsetof(Block, scales);
  uint8_t scs[8], ms[8];
  for (int j = 0; j < 8; ++j) GetScaleMinK4(j, s, &scs[j], &ms[j]);
  scs[g] = static_cast<uint8_t>(sc);
  ms[g] = static_cast<uint8_t>(m);
  PackScaleMinK4(scs, ms, s);
}
void StoreQ4K(const int* codes, uint8_t* block) {
  BlockQ4K b = LoadBlock<BlockQ4K>(block, 0);
  uint8_t L[kQKK];
  Biased<kQKK>(codes, 0, L);
  PackQ4KQuants(L, b.qs);
  StoreBlock(b, block, 0);
}
void StoreQ5K(const int* codes, uint8_t* block) {
  BlockQ5K b = LoadBlock<BlockQ5K>(block, 0);
  uint8_t L[kQKK];
  Biased<kQKK>(codes, 0, L);
  PackQ5KQuants(L, b.qh, b.qs);
  StoreBlock(b, block, 0);
}

void GridQ6K(const uint8_t* block, float* scale, float* offset) {
  BlockQ6K b = LoadBlock<BlockQ6K>(block, 0);
  const float d = HalfToFloat(b.d);
  for (int g = 0; g < 16; ++g) {
    scale[g] = d * static_cast<float>(b.scales[g]);
    offset[g] = 0;
  }
}
void SetGroupQ6K(uint8_t* block, int g, int sc, int /*m*/) {
  block[offsetof(BlockQ6K, scales) + g] = static_cast<uint8_t>(static_cast<int8_t>(sc));
}
void StoreQ6K(const int* codes, uint8_t* block) {
  BlockQ6K b = LoadBlock<BlockQ6K>(block, 0);
  uint8_t L[kQKK];
  Biased<kQKK>(codes, 32, L);
  PackQ6KQuants(L, b.ql, b.qh);
  StoreBlock(b, block, 0);
}

void GridIQ4XS(const uint8_t* block, float* scale, float* offset) {
  BlockIQ4XS b = LoadBlock<BlockIQ4XS>(block, 0);
  const float d = HalfToFloat(b.d);
  for (int g = 0; g < 8; ++g) {
    scale[g] = d * static_cast<float>(IQ4XSGetScale(b, g));
    offset[g] = 0;
  }
}
void SetGroupIQ4XS(uint8_t* block, int g, int sc, int /*m*/) {
  BlockIQ4XS b = LoadBlock<BlockIQ4XS>(block, 0);
  int ls[8];
  for (int j = 0; j < 8; ++j) ls[j] = IQ4XSGetScale(b, j);
  ls[g] = sc;
  IQ4XSSetScales(ls, &b);
  StoreBlock(b, block, 0);
}
void StoreIQ4XS(const int* codes, uint8_t* block) {
  BlockIQ4XS b = LoadBlock<BlockIQ4XS>(block, 0);
  uint8_t L[kQKK];
  Biased<kQKK>(codes, 0, L);
  for (int g = 0; g < 8; ++g) IQ4PackNibbles(L + 32 * g, b.qs + 16 * g);
  StoreBlock(b, block, 0);
}

}  // namespace

// ggml never writes Q8_0 code -128, but every decoder reads it; mixq's best may use it.
const FeedbackCodec kFeedbackQ4_0 = {
    .group_size = kQK, .qmin = -8, .qmax = 7, .read_grid = GridQ4_0, .store_codes = StoreQ4_0};
const FeedbackCodec kFeedbackQ8_0 = {
    .group_size = kQK, .qmin = -128, .qmax = 127, .read_grid = GridQ8_0, .store_codes = StoreQ8_0};
const FeedbackCodec kFeedbackQ2K = {.group_size = 16,
                                    .qmin = 0,
                                    .qmax = 3,
                                    .read_grid = GridQ2K,
                                    .store_codes = StoreQ2K,
                                    .set_group = SetGroupQ2K,
                                    .d_at = offsetof(BlockQ2K, d),
                                    .dmin_at = offsetof(BlockQ2K, dmin),
                                    .sc_min = 0,
                                    .sc_max = 15,
                                    .m_max = 15};
const FeedbackCodec kFeedbackQ3K = {.group_size = 16,
                                    .qmin = -4,
                                    .qmax = 3,
                                    .read_grid = GridQ3K,
                                    .store_codes = StoreQ3K,
                                    .set_group = SetGroupQ3K,
                                    .d_at = offsetof(BlockQ3K, d),
                                    .sc_min = -32,
                                    .sc_max = 31};
const FeedbackCodec kFeedbackQ4K = {.group_size = 32,
                                    .qmin = 0,
                                    .qmax = 15,
                                    .read_grid = GridQ45K<BlockQ4K>,
                                    .store_codes = StoreQ4K,
                                    .set_group = SetGroupQ45K<BlockQ4K>,
                                    .d_at = offsetof(BlockQ4K, d),
                                    .dmin_at = offsetof(BlockQ4K, dmin),
                                    .sc_min = 0,
                                    .sc_max = 63,
                                    .m_max = 63};
const FeedbackCodec kFeedbackQ5K = {.group_size = 32,
                                    .qmin = 0,
                                    .qmax = 31,
                                    .read_grid = GridQ45K<BlockQ5K>,
                                    .store_codes = StoreQ5K,
                                    .set_group = SetGroupQ45K<BlockQ5K>,
                                    .d_at = offsetof(BlockQ5K, d),
                                    .dmin_at = offsetof(BlockQ5K, dmin),
                                    .sc_min = 0,
                                    .sc_max = 63,
                                    .m_max = 63};
const FeedbackCodec kFeedbackQ6K = {.group_size = 16,
                                    .qmin = -32,
                                    .qmax = 31,
                                    .read_grid = GridQ6K,
                                    .store_codes = StoreQ6K,
                                    .set_group = SetGroupQ6K,
                                    .d_at = offsetof(BlockQ6K, d),
                                    .sc_min = -128,
                                    .sc_max = 127};
const FeedbackCodec kFeedbackIQ4XS = {.group_size = 32,
                                      .qmin = 0,
                                      .qmax = 15,
                                      .levels = kIQ4Values,
                                      .read_grid = GridIQ4XS,
                                      .store_codes = StoreIQ4XS,
                                      .set_group = SetGroupIQ4XS,
                                      .d_at = offsetof(BlockIQ4XS, d),
                                      .sc_min = -32,
                                      .sc_max = 31};

}  // namespace mixq::formats::internal
