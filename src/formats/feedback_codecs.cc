// The FeedbackCodec of each format: its decoder's scales read back from a
// block, and its quant packing (ggml-formats.md §2.4-2.8).
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
void StoreIQ4XS(const int* codes, uint8_t* block) {
  BlockIQ4XS b = LoadBlock<BlockIQ4XS>(block, 0);
  uint8_t L[kQKK];
  Biased<kQKK>(codes, 0, L);
  for (int g = 0; g < 8; ++g) IQ4PackNibbles(L + 32 * g, b.qs + 16 * g);
  StoreBlock(b, block, 0);
}

}  // namespace

// ggml never writes Q8_0 code -128, but every decoder reads it; mixq's best may use it.
const FeedbackCodec kFeedbackQ4_0 = {kQK, -8, 7, nullptr, GridQ4_0, StoreQ4_0};
const FeedbackCodec kFeedbackQ8_0 = {kQK, -128, 127, nullptr, GridQ8_0, StoreQ8_0};
const FeedbackCodec kFeedbackQ2K = {16, 0, 3, nullptr, GridQ2K, StoreQ2K};
const FeedbackCodec kFeedbackQ3K = {16, -4, 3, nullptr, GridQ3K, StoreQ3K};
const FeedbackCodec kFeedbackQ4K = {32, 0, 15, nullptr, GridQ45K<BlockQ4K>, StoreQ4K};
const FeedbackCodec kFeedbackQ5K = {32, 0, 31, nullptr, GridQ45K<BlockQ5K>, StoreQ5K};
const FeedbackCodec kFeedbackQ6K = {16, -32, 31, nullptr, GridQ6K, StoreQ6K};
const FeedbackCodec kFeedbackIQ4XS = {32, 0, 15, kIQ4Values, GridIQ4XS, StoreIQ4XS};

}  // namespace mixq::formats::internal
