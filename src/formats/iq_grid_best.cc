// mixq's encoders for the IQ2/IQ3 lattice types (best_common.h has the
// contract). ggml picks each group's grid points for its own float scale and
// only afterwards rounds that scale to a 4-bit code under the f16 super-block
// scale, and it fixes which sign of a 7-bit sign field to give up before
// choosing points. Starting from ggml's block, this search works on what the
// decoder computes: for each group, the code nearest the least-squares scale
// of its current points, its two neighbours and the current code are tried;
// at each code's exact multiplier every vector takes the best of its current
// point, the rounded point or the points ggml lists for it, by the weighted
// error, with the sign to give up chosen jointly with the points. Then the
// super-block scale is refitted to match the block's energy (EnergyMatchedScale).
// One round: more cost twice the time for ~1% less error.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/iq_grids.h"
#include "formats/iq_lattice.h"
#include "formats/lanes.h"

namespace mixq::formats::internal {
namespace {

// One super-block in the decoder's terms.
struct GridBlock {
  uint16_t d = 0;
  uint8_t code[16] = {};    // scale code per group
  uint16_t point[64] = {};  // grid point per vector
  uint8_t neg[32] = {};     // per 8 elements, bit i: element i negative (all 8 bits)
};

// The decoder's group scale is d * (base + step * code) * factor.
struct GridType {
  Grid grid;
  int group;  // elements per scale code
  bool even_signs;
  float base, step, factor;
  float Multiplier(float d, int code) const { return d * (base + step * static_cast<float>(code)) * factor; }
};

constexpr GridType kIQ2XXS = {Grid::kIQ2XXS, 32, true, 0.5f, 1, 0.25f};
constexpr GridType kIQ2XS = {Grid::kIQ2XS, 16, true, 0.5f, 1, 0.25f};
constexpr GridType kIQ2S = {Grid::kIQ2S, 16, false, 0.5f, 1, 0.25f};
constexpr GridType kIQ3XXS = {Grid::kIQ3XXS, 32, true, 0.5f, 1, 0.5f};
constexpr GridType kIQ3S = {Grid::kIQ3S, 32, false, 1, 2, 1};

// The best grid points of one vector at a fixed multiplier: with the signs of
// x, and with one element's sign given up (the cheapest one for that point).
struct VectorChoice {
  int plain = 0;
  float plain_error = INFINITY;
  int flip = 0;
  float flip_error = INFINITY;
  int flip_element = 0;
};

// What the error of a vector at any multiplier a needs of each candidate
// point v: sum w|x|v and sum w v^2 (error = sum w x^2 - 2a*cross + a^2*square),
// and the cheapest sign to give up, min_k w|x|v_k (it adds 4a times that).
// By columns, four at a time.
struct Candidates {
  static constexpr int kMax = 4 + 1024;
  int n = 0;
  uint16_t point[kMax];
  int32_t flip_element[kMax];
  float cross[kMax];
  float square[kMax];
  float flip[kMax];
};

// Codes tried per group: the current one, and the one nearest the
// least-squares scale of the group's current points with its neighbours.
constexpr int kMaxCodes = 4;

template <int kDims, bool kEvenSigns>
class GridSearch {
 public:
  GridSearch(const GridType& type, const float* x, const float* w)
      : type_(type), lattice_(GgmlLattice(type.grid)), x_(x), w_(w) {
    for (int i = 0; i < kQKK; ++i) {
      xabs_[i] = std::fabs(x[i]);
      wx_[i] = w[i] * xabs_[i];
    }
    for (int c = 0; c < kQKK / 8; ++c) {
      uint8_t s = 0;
      for (int i = 0; i < 8; ++i) s |= static_cast<uint8_t>((x[8 * c + i] < 0) << i);
      xneg_[c] = s;
    }
    for (int l = 0; l + 1 < lattice_.n_levels(); ++l) {
      mid_[l] = 0.5f * (lattice_.LevelValue(l) + lattice_.LevelValue(l + 1));
    }
  }

  void Refine(GridBlock* b) {
    float d = HalfToFloat(b->d);
    if (!(d > 0) || !std::isfinite(d)) return;
    for (int g = 0; g < kQKK / type_.group; ++g) ChooseCode(g, d, b);
    RefitScale(b);
  }

 private:
  static constexpr int kPerChunk = 8 / kDims;
  static constexpr int kMaxVectors = 32 / kDims;

  // Scores every code of the group against the union of its vectors'
  // candidates, and keeps the best code with its points and signs.
  void ChooseCode(int g, float d, GridBlock* b) {
    int codes[kMaxCodes];
    const int n_codes = CodesToTry(g, d, *b, codes);
    float a[kMaxCodes];
    for (int c = 0; c < n_codes; ++c) a[c] = type_.Multiplier(d, codes[c]);
    const int n_vectors = type_.group / kDims;
    VectorChoice choice[kMaxCodes][kMaxVectors];
    for (int k = 0; k < n_vectors; ++k) {
      const int v = g * n_vectors + k;
      CollectCandidates(v, a, n_codes, b->point[v]);
      for (int c = 0; c < n_codes; ++c) choice[c][k] = Score(a[c]);
    }
    int best_code = 0;
    float best = INFINITY;
    for (int c = 0; c < n_codes; ++c) {
      float e = Apply(g, choice[c], nullptr);
      if (e < best) {
        best = e;
        best_code = c;
      }
    }
    b->code[g] = static_cast<uint8_t>(codes[best_code]);
    Apply(g, choice[best_code], b);
  }

  int CodesToTry(int g, float d, const GridBlock& b, int* codes) const {
    int n = 0;
    codes[n++] = b.code[g];
    const int predicted = PredictedCode(g, d, b);
    for (int code = std::max(0, predicted - 1); code <= std::min(15, predicted + 1); ++code) {
      if (code != b.code[g]) codes[n++] = code;
    }
    return n;
  }

  int PredictedCode(int g, float d, const GridBlock& b) const {
    double sxt = 0, stt = 0;
    for (int j = g * type_.group; j < (g + 1) * type_.group; ++j) {
      float v = lattice_.Values(b.point[j / kDims])[j % kDims];
      float t = (b.neg[j / 8] >> (j % 8)) & 1 ? -v : v;
      sxt += static_cast<double>(w_[j]) * x_[j] * t;
      stt += static_cast<double>(w_[j]) * t * t;
    }
    if (!(stt > 0)) return b.code[g];
    double m0 = type_.Multiplier(d, 0);
    double step = type_.Multiplier(d, 1) - m0;
    return static_cast<int>(std::clamp(std::lround((sxt / stt - m0) / step), 0L, 15L));
  }

  // The group's error with these vector choices (the signs to give up chosen
  // per 8 elements); writes the choices into *b when b != nullptr.
  float Apply(int g, const VectorChoice* choice, GridBlock* b) const {
    float total = 0;
    const int c0 = g * type_.group / 8;
    for (int c = c0; c < (g + 1) * type_.group / 8; ++c) {
      const VectorChoice* v = choice + (c - c0) * kPerChunk;
      const bool give_up_one = kEvenSigns && std::popcount(xneg_[c]) % 2 != 0;
      int flipper = -1;
      float e = 0;
      for (int i = 0; i < kPerChunk; ++i) e += v[i].plain_error;
      if (give_up_one) {
        float best = INFINITY;
        for (int f = 0; f < kPerChunk; ++f) {
          float ef = e - v[f].plain_error + v[f].flip_error;
          if (ef < best) {
            best = ef;
            flipper = f;
          }
        }
        e = best;
      }
      total += e;
      if (b == nullptr) continue;
      for (int i = 0; i < kPerChunk; ++i) {
        b->point[c * kPerChunk + i] = static_cast<uint16_t>(i == flipper ? v[i].flip : v[i].plain);
      }
      b->neg[c] =
          flipper < 0 ? xneg_[c] : static_cast<uint8_t>(xneg_[c] ^ (1 << (flipper * kDims + v[flipper].flip_element)));
    }
    return total;
  }

  // The rounded point of vector v at multiplier a: its grid point, or -1 and
  // *code for an off-grid rounding.
  int Rounded(int v, float a, uint32_t* code) const {
    int8_t l[kDims];
    const float ia = a > 0 ? 1 / a : 0.0f;
    for (int k = 0; k < kDims; ++k) {
      float t = xabs_[v * kDims + k] * ia;
      int level = 0;
      while (level + 1 < lattice_.n_levels() && t > mid_[level]) ++level;
      l[k] = static_cast<int8_t>(level);
    }
    *code = lattice_.Code(l);
    return lattice_.Find(*code);
  }

  // The candidates of vector v for all the multipliers: its current point, and
  // for each multiplier the rounded point or the points listed for it, once each.
  void CollectCandidates(int v, const float* a, int n_codes, int current) {
    ++stamp_;
    uint16_t points[4 + 1024];
    int n = 0;
    auto add = [&](int p) {
      if (seen_[p] == stamp_) return;
      seen_[p] = stamp_;
      points[n++] = static_cast<uint16_t>(p);
    };
    add(current);
    for (int c = 0; c < n_codes; ++c) {
      uint32_t code;
      int p = Rounded(v, a[c], &code);
      if (p >= 0) {
        add(p);
      } else {
        for (uint16_t q : lattice_.Neighbours(code)) add(q);
      }
    }
    for (int i = n; i % 4 != 0; ++i) points[i] = points[n - 1];
    candidates_.n = n;
    for (int i = 0; i < n; i += 4) Stats4(v * kDims, points + i, i);
  }

  void Stats4(int o, const uint16_t* p, int at) {
    Lanes4 cross = {}, square = {};
    Lanes4 cheapest = Broadcast(INFINITY);
    Mask4 cheapest_k = {};
    for (int h = 0; h < kDims; h += 4) {
      Lanes4 v[4];
      Transpose4(Load4(lattice_.Values(p[0]) + h), Load4(lattice_.Values(p[1]) + h), Load4(lattice_.Values(p[2]) + h),
                 Load4(lattice_.Values(p[3]) + h), v);
      for (int j = 0; j < 4; ++j) {
        const int k = o + h + j;
        Lanes4 wxv = wx_[k] * v[j];
        cross += wxv;
        square += w_[k] * v[j] * v[j];
        if (kEvenSigns) {
          Mask4 smaller = wxv < cheapest;
          cheapest = smaller ? wxv : cheapest;
          cheapest_k = smaller ? Mask4{} + (h + j) : cheapest_k;
        }
      }
    }
    std::memcpy(candidates_.point + at, p, 4 * sizeof(uint16_t));
    std::memcpy(candidates_.flip_element + at, &cheapest_k, sizeof(cheapest_k));
    std::memcpy(candidates_.cross + at, &cross, sizeof(cross));
    std::memcpy(candidates_.square + at, &square, sizeof(square));
    std::memcpy(candidates_.flip + at, &cheapest, sizeof(cheapest));
  }

  // The best candidates at multiplier a, four at a time. The errors leave
  // out the vector's sum w x^2, the same for every candidate.
  VectorChoice Score(float a) const {
    Lanes4 best = Broadcast(INFINITY), best_flip = best;
    Mask4 at = {}, flip_at = {};
    for (int i = 0; i < candidates_.n; i += 4) {
      const Mask4 index = i + Mask4{0, 1, 2, 3};
      const Lanes4 e = a * (a * Load4(candidates_.square + i) - 2 * Load4(candidates_.cross + i));
      const Mask4 smaller = e < best;
      best = smaller ? e : best;
      at = smaller ? index : at;
      if (kEvenSigns) {
        const Lanes4 ef = e + 4 * a * Load4(candidates_.flip + i);
        const Mask4 flip_smaller = ef < best_flip;
        best_flip = flip_smaller ? ef : best_flip;
        flip_at = flip_smaller ? index : flip_at;
      }
    }
    int lane = 0, flip_lane = 0;
    for (int l = 1; l < 4; ++l) {
      lane = best[l] < best[lane] ? l : lane;
      flip_lane = best_flip[l] < best_flip[flip_lane] ? l : flip_lane;
    }
    VectorChoice out;
    out.plain = candidates_.point[at[lane]];
    out.plain_error = best[lane];
    if (kEvenSigns) {
      out.flip = candidates_.point[flip_at[flip_lane]];
      out.flip_error = best_flip[flip_lane];
      out.flip_element = candidates_.flip_element[flip_at[flip_lane]];
    }
    return out;
  }

  float Signed(const GridBlock& b, int j, float v) const { return (b.neg[j / 8] >> (j % 8)) & 1 ? -v : v; }

  void RefitScale(GridBlock* b) const {
    float t[kQKK];
    for (int j = 0; j < kQKK; ++j) {
      t[j] = Signed(*b, j,
                    type_.Multiplier(1.0f, b->code[j / type_.group]) * lattice_.Values(b->point[j / kDims])[j % kDims]);
    }
    b->d = EnergyMatchedScale(x_, w_, t, kQKK, b->d);
  }

  const GridType& type_;
  const LatticeIndex& lattice_;
  const float* x_;
  const float* w_;
  float xabs_[kQKK];
  float wx_[kQKK];
  uint8_t xneg_[kQKK / 8];
  float mid_[8] = {};
  // Candidates of the vector being scored, and which points are among them.
  Candidates candidates_;
  uint32_t seen_[1024] = {};
  uint32_t stamp_ = 0;
};

uint32_t LoadU32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void StoreU32(uint32_t v, void* p) { std::memcpy(p, &v, 4); }

// ---- the five block layouts <-> GridBlock ----

GridBlock FromIQ2XXS(const BlockIQ2XXS& b) {
  GridBlock s;
  s.d = b.d;
  for (int g = 0; g < 8; ++g) {
    uint32_t points = LoadU32(b.qs + 4 * g);
    uint32_t aux = LoadU32(b.qs + 4 * g + 2);
    s.code[g] = static_cast<uint8_t>(aux >> 28);
    for (int k = 0; k < 4; ++k) {
      s.point[4 * g + k] = static_cast<uint16_t>((points >> (8 * k)) & 255);
      s.neg[4 * g + k] = IQ2SignMask(static_cast<int>((aux >> (7 * k)) & 127));
    }
  }
  return s;
}

void ToIQ2XXS(const GridBlock& s, BlockIQ2XXS* b) {
  b->d = s.d;
  for (int g = 0; g < 8; ++g) {
    uint32_t points = 0;
    uint32_t aux = static_cast<uint32_t>(s.code[g]) << 28;
    for (int k = 0; k < 4; ++k) {
      points |= static_cast<uint32_t>(s.point[4 * g + k]) << (8 * k);
      aux |= static_cast<uint32_t>(s.neg[4 * g + k] & 127) << (7 * k);
    }
    StoreU32(points, b->qs + 4 * g);
    StoreU32(aux, b->qs + 4 * g + 2);
  }
}

GridBlock FromIQ2XS(const BlockIQ2XS& b) {
  GridBlock s;
  s.d = b.d;
  for (int g = 0; g < 16; ++g) s.code[g] = static_cast<uint8_t>((b.scales[g / 2] >> (4 * (g % 2))) & 15);
  for (int v = 0; v < 32; ++v) {
    s.point[v] = b.qs[v] & 511;
    s.neg[v] = IQ2SignMask(b.qs[v] >> 9);
  }
  return s;
}

void ToIQ2XS(const GridBlock& s, BlockIQ2XS* b) {
  b->d = s.d;
  for (int g = 0; g < 8; ++g) b->scales[g] = static_cast<uint8_t>(s.code[2 * g] | (s.code[2 * g + 1] << 4));
  for (int v = 0; v < 32; ++v) b->qs[v] = static_cast<uint16_t>(s.point[v] | ((s.neg[v] & 127) << 9));
}

GridBlock FromIQ2S(const BlockIQ2S& b) {
  GridBlock s;
  s.d = b.d;
  for (int g = 0; g < 16; ++g) s.code[g] = static_cast<uint8_t>((b.scales[g / 2] >> (4 * (g % 2))) & 15);
  for (int v = 0; v < 32; ++v) {
    s.point[v] = static_cast<uint16_t>(b.qs[v] | (((b.qh[v / 4] >> (2 * (v % 4))) & 3) << 8));
    s.neg[v] = b.qs[32 + v];
  }
  return s;
}

void ToIQ2S(const GridBlock& s, BlockIQ2S* b) {
  b->d = s.d;
  std::memset(b->qh, 0, sizeof(b->qh));
  for (int g = 0; g < 8; ++g) b->scales[g] = static_cast<uint8_t>(s.code[2 * g] | (s.code[2 * g + 1] << 4));
  for (int v = 0; v < 32; ++v) {
    b->qs[v] = static_cast<uint8_t>(s.point[v] & 255);
    b->qh[v / 4] |= static_cast<uint8_t>((s.point[v] >> 8) << (2 * (v % 4)));
    b->qs[32 + v] = s.neg[v];
  }
}

GridBlock FromIQ3XXS(const BlockIQ3XXS& b) {
  GridBlock s;
  s.d = b.d;
  for (int v = 0; v < 64; ++v) s.point[v] = b.qs[v];
  for (int g = 0; g < 8; ++g) {
    uint32_t aux = LoadU32(b.qs + 64 + 4 * g);
    s.code[g] = static_cast<uint8_t>(aux >> 28);
    for (int k = 0; k < 4; ++k) s.neg[4 * g + k] = IQ2SignMask(static_cast<int>((aux >> (7 * k)) & 127));
  }
  return s;
}

void ToIQ3XXS(const GridBlock& s, BlockIQ3XXS* b) {
  b->d = s.d;
  for (int v = 0; v < 64; ++v) b->qs[v] = static_cast<uint8_t>(s.point[v]);
  for (int g = 0; g < 8; ++g) {
    uint32_t aux = static_cast<uint32_t>(s.code[g]) << 28;
    for (int k = 0; k < 4; ++k) aux |= static_cast<uint32_t>(s.neg[4 * g + k] & 127) << (7 * k);
    StoreU32(aux, b->qs + 64 + 4 * g);
  }
}

GridBlock FromIQ3S(const BlockIQ3S& b) {
  GridBlock s;
  s.d = b.d;
  for (int g = 0; g < 8; ++g) s.code[g] = static_cast<uint8_t>((b.scales[g / 2] >> (4 * (g % 2))) & 15);
  for (int v = 0; v < 64; ++v) s.point[v] = static_cast<uint16_t>(b.qs[v] | (((b.qh[v / 8] >> (v % 8)) & 1) << 8));
  std::memcpy(s.neg, b.signs, 32);
  return s;
}

void ToIQ3S(const GridBlock& s, BlockIQ3S* b) {
  b->d = s.d;
  std::memset(b->qh, 0, sizeof(b->qh));
  for (int g = 0; g < 4; ++g) b->scales[g] = static_cast<uint8_t>(s.code[2 * g] | (s.code[2 * g + 1] << 4));
  for (int v = 0; v < 64; ++v) {
    b->qs[v] = static_cast<uint8_t>(s.point[v] & 255);
    b->qh[v / 8] |= static_cast<uint8_t>((s.point[v] >> 8) << (v % 8));
  }
  std::memcpy(b->signs, s.neg, 32);
}

template <int kDims, bool kEvenSigns, typename Block>
void RefineGridRow(const GridType& type, GridBlock (*from)(const Block&), void (*to)(const GridBlock&, Block*),
                   void (*dequantize)(const uint8_t*, float*, int64_t), const float* src, uint8_t* dst, int64_t n_elems,
                   const float* importance) {
  RefineRow<Block, kQKK>(src, dst, n_elems, importance, dequantize, [&](const float* x, const float* w, Block* b) {
    GridBlock s = from(*b);
    GridSearch<kDims, kEvenSigns>(type, x, w).Refine(&s);
    to(s, b);
  });
}

}  // namespace

void quantize_iq2_xxs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq2_xxs_ggml(src, dst, n_elems, importance);
  RefineGridRow<8, true, BlockIQ2XXS>(kIQ2XXS, FromIQ2XXS, ToIQ2XXS, dequantize_iq2_xxs, src, dst, n_elems, importance);
}

void quantize_iq2_xs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq2_xs_ggml(src, dst, n_elems, importance);
  RefineGridRow<8, true, BlockIQ2XS>(kIQ2XS, FromIQ2XS, ToIQ2XS, dequantize_iq2_xs, src, dst, n_elems, importance);
}

void quantize_iq2_s_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq2_s_ggml(src, dst, n_elems, importance);
  RefineGridRow<8, false, BlockIQ2S>(kIQ2S, FromIQ2S, ToIQ2S, dequantize_iq2_s, src, dst, n_elems, importance);
}

void quantize_iq3_xxs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq3_xxs_ggml(src, dst, n_elems, importance);
  RefineGridRow<4, true, BlockIQ3XXS>(kIQ3XXS, FromIQ3XXS, ToIQ3XXS, dequantize_iq3_xxs, src, dst, n_elems, importance);
}

void quantize_iq3_s_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq3_s_ggml(src, dst, n_elems, importance);
  RefineGridRow<4, false, BlockIQ3S>(kIQ3S, FromIQ3S, ToIQ3S, dequantize_iq3_s, src, dst, n_elems, importance);
}

}  // namespace mixq::formats::internal
