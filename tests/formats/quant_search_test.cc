// The lane-parallel scale searches (quant_search.cc) against a plain,
// one-try-at-a-time transcription of ggml-formats.md §2.7, on random groups:
// scales, offsets and codes must be bit-identical.
#include "formats/quant_search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "formats/blocks.h"

namespace mixq::formats::internal {
namespace {

float ReferenceQx(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0;
  }
  auto code = [&](float iscale, int i) { return std::max(-nmax, std::min(nmax - 1, NearestInt(iscale * x[i]))); };
  auto weight = [&](int i) { return qw != nullptr ? qw[i] : x[i] * x[i]; };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = code(iscale, i);
    L[i] = static_cast<int8_t>(l + nmax);
    sumlx += weight(i) * x[i] * static_cast<float>(l);
    suml2 += weight(i) * static_cast<float>(l) * static_cast<float>(l);
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      float l = static_cast<float>(code(iscale, i));
      sumlx += weight(i) * x[i] * l;
      suml2 += weight(i) * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(code(iscale, i) + nmax);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

float ReferenceQkx(bool qkx3, int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                   float rmin, float rdelta, int nstep, bool use_mad) {
  auto weight = [&](int i) { return weights != nullptr ? weights[i] : x[i] * x[i]; };
  float min = x[0], max = x[0], sum_w = weight(0), sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = x[i] < min ? x[i] : min;
    max = x[i] > max ? x[i] : max;
    sum_w += weight(i);
    sum_x += weight(i) * x[i];
  }
  if (min > 0) min = 0;
  if (qkx3 ? max <= min : max == min) {
    std::memset(L, 0, n);
    *the_min = -min;
    return 0;
  }
  auto code = [&](float iscale, int i) { return std::max(0, std::min(nmax, NearestInt(iscale * (x[i] - min)))); };
  auto err = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(code(iscale, i));
    best_error += weight(i) * err(scale * static_cast<float>(L[i]) + min - x[i]);
  }
  uint8_t Laux[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      Laux[i] = static_cast<uint8_t>(code(iscale, i));
      float l = Laux[i];
      sum_l += weight(i) * l;
      sum_l2 += weight(i) * l * l;
      sum_xl += weight(i) * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float e = 0;
      for (int i = 0; i < n; ++i) e += weight(i) * err(this_scale * static_cast<float>(Laux[i]) + this_min - x[i]);
      if (e < best_error) {
        std::memcpy(L, Laux, n);
        best_error = e;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// Groups like weights (Gaussian, some with a mean, some with outliers), random positive weights.
class RandomGroups {
 public:
  explicit RandomGroups(uint32_t seed) : rng_(seed) {}
  void Next(float* x, float* w) {
    std::normal_distribution<float> normal(++count_ % 3 == 0 ? 0.01f : 0.0f, 0.02f);
    std::uniform_real_distribution<float> unit(0.0f, 4.0f);
    for (int i = 0; i < 32; ++i) {
      x[i] = normal(rng_);
      if (count_ % 7 == 0 && i % 5 == 0) x[i] *= 20;
      if (count_ % 11 == 0) x[i] = std::fabs(x[i]);  // all-positive groups: offset clamped to 0
      w[i] = unit(rng_);
    }
  }

 private:
  std::mt19937 rng_;
  int count_ = 0;
};

TEST(QuantSearchTest, QxMatchesReference) {
  RandomGroups groups(11);
  float x[32], w[32];
  for (int t = 0; t < 20000; ++t) {
    groups.Next(x, w);
    for (int n : {16, 32}) {
      for (int nmax : {4, 8, 16, 32}) {
        for (const float* qw : {static_cast<const float*>(nullptr), static_cast<const float*>(w)}) {
          int8_t L1[32], L2[32];
          float s1 = ReferenceQx(n, nmax, x, L1, qw);
          float s2 = MakeQxQuants(n, nmax, x, L2, qw);
          ASSERT_TRUE(SameBits(s1, s2)) << t;
          ASSERT_EQ(std::memcmp(L1, L2, n), 0) << t;
        }
      }
    }
  }
}

TEST(QuantSearchTest, QkxMatchesReference) {
  struct Case {
    bool qkx3;
    int n, nmax;
    float rmin, rdelta;
    int nstep;
    bool mad;
  };
  const Case cases[] = {
      {false, 16, 3, -0.5f, 0.1f, 15, true},    // Q2_K reference
      {false, 32, 15, -1.0f, 0.1f, 20, false},  // Q4_K reference
      {false, 32, 31, -0.5f, 0.1f, 15, false},  // Q5_K reference
      {true, 16, 3, -0.9f, 0.05f, 36, false},   // Q2_K importance
      {true, 32, 15, -0.9f, 0.05f, 36, false},  // Q4_1, Q4_K importance
      {true, 32, 31, -0.9f, 0.05f, 36, false},  // Q5_1, Q5_K importance
  };
  RandomGroups groups(12);
  float x[32], w[32];
  for (int t = 0; t < 20000; ++t) {
    groups.Next(x, w);
    for (const Case& c : cases) {
      uint8_t L1[32], L2[32];
      float m1, m2;
      float s1 = ReferenceQkx(c.qkx3, c.n, c.nmax, x, w, L1, &m1, c.rmin, c.rdelta, c.nstep, c.mad);
      float s2 = c.qkx3 ? MakeQkx3Quants(c.n, c.nmax, x, w, L2, &m2, c.rmin, c.rdelta, c.nstep, c.mad)
                        : MakeQkx2Quants(c.n, c.nmax, x, w, L2, &m2, c.rmin, c.rdelta, c.nstep, c.mad);
      ASSERT_TRUE(SameBits(s1, s2)) << t;
      ASSERT_TRUE(SameBits(m1, m2)) << t;
      ASSERT_EQ(std::memcmp(L1, L2, c.n), 0) << t;
    }
  }
}

}  // namespace
}  // namespace mixq::formats::internal
