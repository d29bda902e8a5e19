// ggml's encoders for IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S
// (ggml-formats.md §2.9): per group the search of iq_grid_common.h, then a
// 4-bit code per group scale under one f16 super-block scale d = max/31 (times
// a fudge factor for three of the types, applied to the stored d only).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/iq_grid_common.h"

namespace mixq::formats::internal {
namespace {

constexpr GridSearchRule kIQ2XXSRule = {Grid::kIQ2XXS, 3, -6, 6, 0.1f, true, true, true, true, true, 1e-15f};
constexpr GridSearchRule kIQ2XSRule = {Grid::kIQ2XS, 3, -9, 9, 0.1f, true, false, true, false, false, 1e-15f};
constexpr GridSearchRule kIQ2SRule = {Grid::kIQ2S, 3, -9, 9, 0.1f, false, false, true, false, false, 1e-8f};
constexpr GridSearchRule kIQ3XXSRule = {Grid::kIQ3XXS, 8, -15, 15, 0.2f, true, false, true, false, false, 1e-8f};
// IQ3_S stores a group as zeros only when its maximum is exactly 0.
constexpr GridSearchRule kIQ3SRule = {
    Grid::kIQ3S, 8, -9, 9, 0.2f, false, false, false, true, false, std::numeric_limits<float>::denorm_min()};

// Weights of the searches: importance * sqrt(sigma2 + x^2), or the type's own
// choice without importance. IQ2_XXS and IQ2_XS need importance in ggml;
// without it mixq uses ones, as llama-quantize --imatrix-ones does.
enum class Unweighted { kSquares, kSquaresPlusSigma, kOnes };

void GroupWeights(const float* x, const float* qw, float sigma2, int n, Unweighted rule, float* w) {
  if (qw == nullptr && rule == Unweighted::kOnes) qw = UnitWeights();
  for (int i = 0; i < n; ++i) {
    if (qw != nullptr) {
      w[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
    } else if (rule == Unweighted::kSquares) {
      w[i] = x[i] * x[i];
    } else {
      w[i] = 0.25f * sigma2 + x[i] * x[i];
    }
  }
}

// The 4-bit code of a group scale under the super-block's float d.
uint8_t GridScaleCode(float id, float scale) {
  return static_cast<uint8_t>(std::clamp(NearestInt(0.5f * (id * scale - 1)), 0, 15));
}

// The groups of one super-block, searched; returns the largest group scale.
template <int kDims, int kGroup>
float SearchGroups(const GridSearchRule& rule, const float* x, const float* qw, float sigma2, Unweighted unweighted,
                   GridGroup* groups) {
  float max_scale = 0;
  for (int g = 0; g < kQKK / kGroup; ++g) {
    float w[kGroup];
    GroupWeights(x + kGroup * g, qw != nullptr ? qw + kGroup * g : nullptr, sigma2, kGroup, unweighted, w);
    GgmlGridGroup<kDims, kGroup>(rule, x + kGroup * g, w, &groups[g]);
    max_scale = max_scale > groups[g].scale ? max_scale : groups[g].scale;
  }
  return max_scale;
}

template <typename Block, typename Encode>
void EachBlock(const float* src, uint8_t* dst, int64_t n_elems, const float* importance, Encode&& encode) {
  for (int64_t i = 0; i < n_elems / kQKK; ++i) {
    Block b;
    std::memset(&b, 0, sizeof(b));
    encode(src + i * kQKK, importance != nullptr ? importance + i * kQKK : nullptr, &b);
    StoreBlock(b, dst, i);
  }
}

void StoreU32(uint32_t v, uint16_t* dst) { std::memcpy(dst, &v, 4); }

}  // namespace

void quantize_iq2_xxs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  EachBlock<BlockIQ2XXS>(src, dst, n_elems, importance, [](const float* x, const float* qw, BlockIQ2XXS* b) {
    GridGroup groups[8];
    float sigma2 = SumOfSquares(x, kQKK) / kQKK;
    float max_scale = SearchGroups<8, 32>(kIQ2XXSRule, x, qw, sigma2, Unweighted::kOnes, groups);
    if (max_scale == 0) return;
    float d = max_scale / 31;
    b->d = FloatToHalf(d);
    float id = 1 / d;
    for (int g = 0; g < 8; ++g) {
      uint32_t indices = 0;
      uint32_t signs = 0;
      for (int k = 0; k < 4 && !groups[g].skipped; ++k) {
        indices |= static_cast<uint32_t>(groups[g].index[k]) << (8 * k);
        signs |= static_cast<uint32_t>(groups[g].signs[k]) << (7 * k);
      }
      signs |= static_cast<uint32_t>(GridScaleCode(id, groups[g].scale)) << 28;
      StoreU32(indices, b->qs + 4 * g);
      StoreU32(signs, b->qs + 4 * g + 2);
    }
  });
}

void quantize_iq2_xs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  EachBlock<BlockIQ2XS>(src, dst, n_elems, importance, [](const float* x, const float* qw, BlockIQ2XS* b) {
    GridGroup groups[16];
    float sigma2 = SumOfSquares(x, kQKK) / kQKK;
    float max_scale = SearchGroups<8, 16>(kIQ2XSRule, x, qw, sigma2, Unweighted::kOnes, groups);
    if (max_scale == 0) return;
    float d = max_scale / 31;
    b->d = FloatToHalf(d);
    float id = 1 / d;
    for (int g = 0; g < 16; ++g) {
      for (int k = 0; k < 2 && !groups[g].skipped; ++k) {
        b->qs[2 * g + k] = static_cast<uint16_t>(groups[g].index[k] | (groups[g].signs[k] << 9));
      }
      b->scales[g / 2] |= static_cast<uint8_t>(GridScaleCode(id, groups[g].scale) << (4 * (g % 2)));
    }
  });
}

void quantize_iq2_s_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  EachBlock<BlockIQ2S>(src, dst, n_elems, importance, [](const float* x, const float* qw, BlockIQ2S* b) {
    GridGroup groups[16];
    float sigma2 = 2 * SumOfSquares(x, kQKK) / kQKK;
    float max_scale = SearchGroups<8, 16>(kIQ2SRule, x, qw, sigma2, Unweighted::kSquaresPlusSigma, groups);
    for (int g = 0; g < 16; ++g) {
      for (int k = 0; k < 2 && !groups[g].skipped; ++k) {
        const int v = 2 * g + k;
        b->qs[v] = static_cast<uint8_t>(groups[g].index[k] & 255);
        b->qh[v / 4] |= static_cast<uint8_t>((groups[g].index[k] >> 8) << (2 * (v % 4)));
        b->qs[32 + v] = groups[g].signs[k];
      }
    }
    if (max_scale == 0) return;
    float d = max_scale / 31;
    b->d = FloatToHalf(d * 0.9875f);
    float id = 1 / d;
    for (int g = 0; g < 16; ++g)
      b->scales[g / 2] |= static_cast<uint8_t>(GridScaleCode(id, groups[g].scale) << (4 * (g % 2)));
  });
}

void quantize_iq3_xxs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  EachBlock<BlockIQ3XXS>(src, dst, n_elems, importance, [](const float* x, const float* qw, BlockIQ3XXS* b) {
    GridGroup groups[8];
    float sigma2 = 2 * SumOfSquares(x, kQKK) / kQKK;
    float max_scale = SearchGroups<4, 32>(kIQ3XXSRule, x, qw, sigma2, Unweighted::kSquares, groups);
    if (max_scale == 0) return;
    float d = max_scale / 31;
    b->d = FloatToHalf(d * 1.0125f);
    float id = 1 / d;
    for (int g = 0; g < 8; ++g) {
      uint32_t signs = 0;
      for (int k = 0; k < 8 && !groups[g].skipped; ++k) b->qs[8 * g + k] = static_cast<uint8_t>(groups[g].index[k]);
      for (int k = 0; k < 4 && !groups[g].skipped; ++k) signs |= static_cast<uint32_t>(groups[g].signs[k]) << (7 * k);
      signs |= static_cast<uint32_t>(GridScaleCode(id, groups[g].scale)) << 28;
      std::memcpy(b->qs + 64 + 4 * g, &signs, 4);
    }
  });
}

void quantize_iq3_s_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  EachBlock<BlockIQ3S>(src, dst, n_elems, importance, [](const float* x, const float* qw, BlockIQ3S* b) {
    GridGroup groups[8];
    float sigma2 = 2 * SumOfSquares(x, kQKK) / kQKK;
    float max_scale = SearchGroups<4, 32>(kIQ3SRule, x, qw, sigma2, Unweighted::kSquares, groups);
    // ggml advances its grid-index and sign cursors only past stored groups, so
    // a group after an all-zero one lands in the zero group's slots (as ggml
    // writes it; the decoder then reads them at the wrong place).
    int slot = 0;
    for (int g = 0; g < 8; ++g) {
      if (groups[g].skipped) continue;
      for (int k = 0; k < 8; ++k) {
        b->qs[8 * slot + k] = static_cast<uint8_t>(groups[g].index[k] & 255);
        b->qh[g] |= static_cast<uint8_t>((groups[g].index[k] >> 8) << k);
      }
      std::memcpy(b->signs + 4 * slot, groups[g].signs, 4);
      ++slot;
    }
    if (max_scale == 0) return;
    float d = max_scale / 31;
    b->d = FloatToHalf(d * 1.033f);
    float id = 1 / d;
    for (int g = 0; g < 8; g += 2) {
      b->scales[g / 2] =
          static_cast<uint8_t>(GridScaleCode(id, groups[g].scale) | (GridScaleCode(id, groups[g + 1].scale) << 4));
    }
  });
}

}  // namespace mixq::formats::internal
