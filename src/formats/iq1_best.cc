// mixq's encoders for IQ1_S and IQ1_M (best_common.h has the contract). ggml
// chooses each group's points for its float scale, then rounds the scale to a
// 3-bit code under a super-block scale with a fudge factor. Starting from
// ggml's block, this search works on the decoded values: for each group the
// current code and the three nearest the least-squares scale of its current
// points are tried, each with both signs of the shift delta (IQ1_M: per
// vector). Each vector's candidates are its current point and, for every
// multiplier and delta, the rounded point or the points ggml lists for it;
// their error at any multiplier follows from three sums per candidate, so all
// trials score the union. Then the super-block scale is refitted to match the
// block's energy (EnergyMatchedScale).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/best_common.h"
#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/iq1_common.h"
#include "formats/iq_lattice.h"
#include "formats/lanes.h"

namespace mixq::formats::internal {
namespace {

// One super-block in the decoder's terms.
struct IQ1Block {
  uint16_t d = 0;
  uint8_t code[16] = {};    // 3-bit scale code per group
  uint16_t point[32] = {};  // grid point per vector
  bool plus[32] = {};       // delta = +1/8 (else -1/8), per vector (IQ1_S: equal within a group)
};

// What the error of a vector at any multiplier and delta needs of each
// candidate point, with v its values for delta = +1/8: sum w x v, sum w v^2,
// sum w v (the values for -1/8 are v - 1/4). By columns, four at a time.
struct Candidates {
  static constexpr int kMax = 4 + 2048;
  int n = 0;
  uint16_t point[kMax];
  float xv[kMax];
  float vv[kMax];
  float v[kMax];
};

struct PointChoice {
  int point = 0;
  float error = INFINITY;
};

constexpr int kMaxCodes = 4;

// kGroup: elements per scale code (32 for IQ1_S, 16 for IQ1_M); kDeltaPerVector: IQ1_M.
template <int kGroup, bool kDeltaPerVector>
class IQ1Search {
 public:
  IQ1Search(const float* x, const float* w)
      : lattice_(NearestLattice(Grid::kIQ1)), table_(IQ1ShiftedTable()), x_(x), w_(w) {}

  void Refine(IQ1Block* b) {
    const float d = HalfToFloat(b->d);
    if (!(d > 0) || !std::isfinite(d)) return;
    for (int g = 0; g < kQKK / kGroup; ++g) ChooseCode(g, d, b);
    RefitScale(b);
  }

 private:
  static constexpr int kVectors = kGroup / 8;

  // Scores every code and delta of the group against the union of its
  // vectors' candidates; keeps the best code with its points and deltas.
  void ChooseCode(int g, float d, IQ1Block* b) {
    int codes[kMaxCodes];
    const int n_codes = CodesToTry(g, d, *b, codes);
    PointChoice choice[kMaxCodes][2][kVectors];
    for (int k = 0; k < kVectors; ++k) {
      const int v = kVectors * g + k;
      CollectCandidates(v, d, codes, n_codes, b->point[v]);
      for (int c = 0; c < n_codes; ++c) {
        const float a = d * static_cast<float>(2 * codes[c] + 1);
        for (int sign = 0; sign < 2; ++sign) choice[c][sign][k] = Score(a, sign == 0);
      }
    }
    float best = INFINITY;
    for (int c = 0; c < n_codes; ++c) {
      int signs[kVectors];
      const float e = GroupError(choice[c], signs);
      if (e < best) {
        best = e;
        b->code[g] = static_cast<uint8_t>(codes[c]);
        for (int k = 0; k < kVectors; ++k) {
          b->point[kVectors * g + k] = static_cast<uint16_t>(choice[c][signs[k]][k].point);
          b->plus[kVectors * g + k] = signs[k] == 0;
        }
      }
    }
  }

  // The deltas (0: +1/8) the group takes with these choices, and its error.
  float GroupError(const PointChoice (*choice)[kVectors], int* signs) const {
    if (kDeltaPerVector) {
      float total = 0;
      for (int k = 0; k < kVectors; ++k) {
        signs[k] = choice[0][k].error <= choice[1][k].error ? 0 : 1;
        total += choice[signs[k]][k].error;
      }
      return total;
    }
    float total[2] = {0, 0};
    for (int k = 0; k < kVectors; ++k) {
      total[0] += choice[0][k].error;
      total[1] += choice[1][k].error;
    }
    const int sign = total[0] <= total[1] ? 0 : 1;
    for (int k = 0; k < kVectors; ++k) signs[k] = sign;
    return total[sign];
  }

  int CodesToTry(int g, float d, const IQ1Block& b, int* codes) const {
    int n = 0;
    codes[n++] = b.code[g];
    const int predicted = PredictedCode(g, d, b);
    for (int code = std::max(0, predicted - 1); code <= std::min(7, predicted + 1); ++code) {
      if (code != b.code[g]) codes[n++] = code;
    }
    return n;
  }

  int PredictedCode(int g, float d, const IQ1Block& b) const {
    double sxt = 0, stt = 0;
    for (int j = g * kGroup; j < (g + 1) * kGroup; ++j) {
      float t = IQ1Values(table_, b.point[j / 8], b.plus[j / 8])[j % 8];
      sxt += static_cast<double>(w_[j]) * x_[j] * t;
      stt += static_cast<double>(w_[j]) * t * t;
    }
    if (!(stt > 0) || !(sxt > 0)) return b.code[g];
    return static_cast<int>(std::clamp(std::lround((sxt / stt / d - 1) / 2), 0L, 7L));
  }

  // Vector v's candidates for all codes and both deltas: its current point,
  // and for each the rounded point or the points listed for it, once each.
  void CollectCandidates(int v, float d, const int* codes, int n_codes, int current) {
    ++stamp_;
    uint16_t points[4 + 2048];
    int n = 0;
    auto add = [&](int p) {
      if (seen_[p] == stamp_) return;
      seen_[p] = stamp_;
      points[n++] = static_cast<uint16_t>(p);
    };
    add(current);
    for (int c = 0; c < n_codes; ++c) {
      const float ia = 1 / (d * static_cast<float>(2 * codes[c] + 1));
      for (float delta : {kIQ1Delta, -kIQ1Delta}) {
        int8_t l[8];
        for (int k = 0; k < 8; ++k) {
          l[k] = static_cast<int8_t>(std::clamp(NearestInt(x_[8 * v + k] * ia - delta), -1, 1) + 1);
        }
        const uint32_t code = lattice_.Code(l);
        const int p = lattice_.Find(code);
        if (p >= 0) {
          add(p);
        } else {
          for (uint16_t q : lattice_.Neighbours(code)) add(q);
        }
      }
    }
    for (int i = n; i % 4 != 0; ++i) points[i] = points[n - 1];
    candidates_.n = n;
    for (int i = 0; i < n; i += 4) Stats4(8 * v, points + i, i);
    sum_wx_ = sum_w_ = 0;
    for (int k = 0; k < 8; ++k) {
      sum_wx_ += w_[8 * v + k] * x_[8 * v + k];
      sum_w_ += w_[8 * v + k];
    }
  }

  void Stats4(int o, const uint16_t* p, int at) {
    Lanes4 xv = {}, vv = {}, sv = {};
    for (int h = 0; h < 8; h += 4) {
      Lanes4 v[4];
      Transpose4(Load4(IQ1Values(table_, p[0], true) + h), Load4(IQ1Values(table_, p[1], true) + h),
                 Load4(IQ1Values(table_, p[2], true) + h), Load4(IQ1Values(table_, p[3], true) + h), v);
      for (int j = 0; j < 4; ++j) {
        const Lanes4 wv = w_[o + h + j] * v[j];
        xv += wv * x_[o + h + j];
        vv += wv * v[j];
        sv += wv;
      }
    }
    std::memcpy(candidates_.point + at, p, 4 * sizeof(uint16_t));
    std::memcpy(candidates_.xv + at, &xv, sizeof(xv));
    std::memcpy(candidates_.vv + at, &vv, sizeof(vv));
    std::memcpy(candidates_.v + at, &sv, sizeof(sv));
  }

  // The best candidate at multiplier a and delta, four at a time; errors
  // leave out the vector's sum w x^2, the same for every choice.
  PointChoice Score(float a, bool plus) const {
    const float xv_shift = plus ? 0.0f : 0.25f * sum_wx_;
    const float vv_shift = plus ? 0.0f : 0.0625f * sum_w_;
    const float v_factor = plus ? 0.0f : 0.5f;
    Lanes4 best = Broadcast(INFINITY);
    Mask4 best_at = {};
    for (int i = 0; i < candidates_.n; i += 4) {
      const Lanes4 xv = Load4(candidates_.xv + i) - xv_shift;
      const Lanes4 vv = Load4(candidates_.vv + i) - v_factor * Load4(candidates_.v + i) + vv_shift;
      const Lanes4 e = a * (a * vv - 2 * xv);
      const Mask4 smaller = e < best;
      best = smaller ? e : best;
      best_at = smaller ? i + Mask4{0, 1, 2, 3} : best_at;
    }
    int lane = 0;
    for (int l = 1; l < 4; ++l) lane = best[l] < best[lane] ? l : lane;
    return {candidates_.point[best_at[lane]], best[lane]};
  }

  void RefitScale(IQ1Block* b) const {
    float t[kQKK];
    for (int j = 0; j < kQKK; ++j) {
      t[j] =
          static_cast<float>(2 * b->code[j / kGroup] + 1) * IQ1Values(table_, b->point[j / 8], b->plus[j / 8])[j % 8];
    }
    b->d = EnergyMatchedScale(x_, w_, t, kQKK, b->d);
  }

  const LatticeIndex& lattice_;
  const float* table_;
  const float* x_;
  const float* w_;
  // Candidates of the vector being scored, and which points are among them.
  Candidates candidates_;
  float sum_wx_ = 0;
  float sum_w_ = 0;
  uint32_t seen_[2048] = {};
  uint32_t stamp_ = 0;
};

IQ1Block FromIQ1S(const BlockIQ1S& b) {
  IQ1Block s;
  s.d = b.d;
  for (int g = 0; g < 8; ++g) {
    s.code[g] = static_cast<uint8_t>((b.qh[g] >> 12) & 7);
    for (int k = 0; k < 4; ++k) {
      s.point[4 * g + k] = static_cast<uint16_t>(b.qs[4 * g + k] | (((b.qh[g] >> (3 * k)) & 7) << 8));
      s.plus[4 * g + k] = (b.qh[g] & 0x8000) == 0;
    }
  }
  return s;
}

void ToIQ1S(const IQ1Block& s, BlockIQ1S* b) {
  b->d = s.d;
  for (int g = 0; g < 8; ++g) {
    uint16_t h = static_cast<uint16_t>((s.code[g] << 12) | (s.plus[4 * g] ? 0 : 0x8000));
    for (int k = 0; k < 4; ++k) {
      b->qs[4 * g + k] = static_cast<uint8_t>(s.point[4 * g + k] & 255);
      h |= static_cast<uint16_t>((s.point[4 * g + k] >> 8) << (3 * k));
    }
    b->qh[g] = h;
  }
}

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

IQ1Block FromIQ1M(const BlockIQ1M& b) {
  IQ1Block s;
  uint16_t sc[4];
  for (int k = 0; k < 4; ++k) sc[k] = LoadU16(b.scales + 2 * k);
  s.d = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
  for (int g = 0; g < 16; ++g) {
    s.code[g] = static_cast<uint8_t>((sc[g / 4] >> (3 * (g % 4))) & 7);
    for (int k = 0; k < 2; ++k) {
      const int v = 2 * g + k;
      s.point[v] = static_cast<uint16_t>(b.qs[v] | (((b.qh[g] >> (4 * k)) & 7) << 8));
      s.plus[v] = ((b.qh[g] >> (4 * k + 3)) & 1) == 0;
    }
  }
  return s;
}

void ToIQ1M(const IQ1Block& s, BlockIQ1M* b) {
  uint16_t sc[4] = {};
  for (int g = 0; g < 16; ++g) {
    sc[g / 4] |= static_cast<uint16_t>(s.code[g] << (3 * (g % 4)));
    uint8_t h = 0;
    for (int k = 0; k < 2; ++k) {
      const int v = 2 * g + k;
      b->qs[v] = static_cast<uint8_t>(s.point[v] & 255);
      h |= static_cast<uint8_t>(((s.point[v] >> 8) | (s.plus[v] ? 0 : 8)) << (4 * k));
    }
    b->qh[g] = h;
  }
  for (int k = 0; k < 4; ++k) sc[k] |= static_cast<uint16_t>(((s.d >> (4 * k)) & 0xF) << 12);
  std::memcpy(b->scales, sc, sizeof(sc));
}

}  // namespace

void quantize_iq1_s_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq1_s_ggml(src, dst, n_elems, importance);
  RefineRow<BlockIQ1S, kQKK>(src, dst, n_elems, importance, dequantize_iq1_s,
                             [](const float* x, const float* w, BlockIQ1S* b) {
                               IQ1Block s = FromIQ1S(*b);
                               IQ1Search<32, false>(x, w).Refine(&s);
                               ToIQ1S(s, b);
                             });
}

void quantize_iq1_m_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance) {
  quantize_iq1_m_ggml(src, dst, n_elems, importance);
  RefineRow<BlockIQ1M, kQKK>(src, dst, n_elems, importance, dequantize_iq1_m,
                             [](const float* x, const float* w, BlockIQ1M* b) {
                               IQ1Block s = FromIQ1M(*b);
                               IQ1Search<16, true>(x, w).Refine(&s);
                               ToIQ1M(s, b);
                             });
}

}  // namespace mixq::formats::internal
