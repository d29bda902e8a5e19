#include "formats/k_best.h"

#include <algorithm>
#include <cmath>

#include "formats/best_common.h"
#include "formats/blocks.h"

namespace mixq::formats::internal {
namespace {

constexpr int kRounds = 3;

// ---- scale + offset ----

AffineTry GroupTry(const float* x, const float* w, const AffineLayout& l, float d, float dmin, int sc, int m, int g) {
  int off = g * l.group_size;
  return {x + off, w + off, d * static_cast<float>(sc), dmin * static_cast<float>(m)};
}

float AffineGroup(const float* x, const float* w, const AffineLayout& l, float d, float dmin, int sc, int m, int g,
                  uint8_t* quants) {
  int off = g * l.group_size;
  return AffineGroupError(x + off, w + off, l.group_size, d * static_cast<float>(sc), dmin * static_cast<float>(m),
                          l.qmax, quants != nullptr ? quants + off : nullptr);
}

// Local search over (sc, m) of group g: the rounded least-squares codes, then
// steps to the best of the 3x3 neighbourhood until none is better.
float OptimizeAffineGroup(const float* x, const float* w, const AffineLayout& l, float d, float dmin, int g,
                          AffineState* s) {
  int& sc = s->sc[g];
  int& m = s->m[g];
  float best = AffineGroup(x, w, l, d, dmin, sc, m, g, nullptr);
  int off = g * l.group_size;
  float fa, fb;
  if (d > 0 && dmin > 0 &&
      RefitAffine(x + off, w + off, l.group_size, d * static_cast<float>(sc), dmin * static_cast<float>(m), l.qmax, &fa,
                  &fb)) {
    int csc = std::clamp(static_cast<int>(std::lround(fa / d)), 0, l.code_max);
    int cm = std::clamp(static_cast<int>(std::lround(fb / dmin)), 0, l.code_max);
    float e = AffineGroup(x, w, l, d, dmin, csc, cm, g, nullptr);
    if (e < best) {
      best = e;
      sc = csc;
      m = cm;
    }
  }
  // The neighbours of a step are evaluated together, then scanned in order.
  for (int step = 0; step < 4; ++step) {
    AffineTry tries[8] = {};
    int codes[8][2];
    int count = 0;
    for (int i = -1; i <= 1; ++i) {
      for (int k = -1; k <= 1; ++k) {
        int csc = sc + i;
        int cm = m + k;
        if ((i == 0 && k == 0) || csc < 0 || cm < 0 || csc > l.code_max || cm > l.code_max) continue;
        tries[count] = GroupTry(x, w, l, d, dmin, csc, cm, g);
        codes[count][0] = csc;
        codes[count][1] = cm;
        ++count;
      }
    }
    float errors[8];
    AffineGroupErrors(tries, count, l.group_size, l.qmax, errors);
    int bsc = sc;
    int bm = m;
    for (int c = 0; c < count; ++c) {
      if (errors[c] < best) {
        best = errors[c];
        bsc = codes[c][0];
        bm = codes[c][1];
      }
    }
    if (bsc == sc && bm == m) break;
    sc = bsc;
    m = bm;
  }
  return best;
}

// The totals over all groups of the state's codes for multipliers (d[c], dmin[c]), c < n_cand <= 10.
void AffineTotals(const float* x, const float* w, const AffineLayout& l, const float* d, const float* dmin, int n_cand,
                  const AffineState& s, float* totals) {
  AffineTry tries[10 * 16] = {};
  for (int c = 0; c < n_cand; ++c) {
    for (int g = 0; g < l.n_groups; ++g)
      tries[c * l.n_groups + g] = GroupTry(x, w, l, d[c], dmin[c], s.sc[g], s.m[g], g);
  }
  float errors[10 * 16];
  AffineGroupErrors(tries, n_cand * l.n_groups, l.group_size, l.qmax, errors);
  for (int c = 0; c < n_cand; ++c) {
    float total = 0;
    for (int g = 0; g < l.n_groups; ++g) total += errors[c * l.n_groups + g];
    totals[c] = total;
  }
}

float AffineTotal(const float* x, const float* w, const AffineLayout& l, float d, float dmin, const AffineState& s) {
  float total;
  AffineTotals(x, w, l, &d, &dmin, 1, s, &total);
  return total;
}

// Least-squares (d, dmin) for the current codes and quants, as f16, then the
// best of it and its f16 neighbours with the codes held.
void RefitAffineMultipliers(const float* x, const float* w, const AffineLayout& l, AffineState* s) {
  const int n = l.n_groups * l.group_size;
  uint8_t q[256];
  float d = HalfToFloat(s->d);
  float dmin = HalfToFloat(s->dmin);
  for (int g = 0; g < l.n_groups; ++g) AffineGroup(x, w, l, d, dmin, s->sc[g], s->m[g], g, q);
  float t[256];
  float u[256];
  for (int i = 0; i < n; ++i) {
    int g = i / l.group_size;
    t[i] = static_cast<float>(s->sc[g] * q[i]);
    u[i] = static_cast<float>(s->m[g]);
  }
  float fd, fm;
  if (!FitScaleOffset(x, w, t, u, n, &fd, &fm) || fd <= 0 || fm < 0) return;
  uint16_t hd = FloatToHalf(fd);
  uint16_t hm = FloatToHalf(fm);
  // The current multipliers, then the 3x3 f16 neighbourhood of the fit.
  uint16_t cd[10] = {s->d}, cm[10] = {s->dmin};
  float fd10[10] = {d}, fm10[10] = {dmin};
  int n_cand = 1;
  for (int i = -1; i <= 1; ++i) {
    for (int k = -1; k <= 1; ++k, ++n_cand) {
      cd[n_cand] = HalfNeighbor(hd, i);
      cm[n_cand] = HalfNeighbor(hm, k);
      fd10[n_cand] = HalfToFloat(cd[n_cand]);
      fm10[n_cand] = HalfToFloat(cm[n_cand]);
    }
  }
  float totals[10];
  AffineTotals(x, w, l, fd10, fm10, n_cand, *s, totals);
  float best = totals[0];
  uint16_t best_d = s->d;
  uint16_t best_m = s->dmin;
  for (int c = 1; c < n_cand; ++c) {
    if (totals[c] < best) {
      best = totals[c];
      best_d = cd[c];
      best_m = cm[c];
    }
  }
  s->d = best_d;
  s->dmin = best_m;
}

// ---- scale only ----

SymmetricTry GroupTry(const float* x, const float* w, const SymmetricLayout& l, float d, int sc, int g) {
  int off = g * l.group_size;
  return {x + off, w + off, d * static_cast<float>(sc)};
}

float SymmetricGroup(const float* x, const float* w, const SymmetricLayout& l, float d, int sc, int g, int8_t* quants) {
  int off = g * l.group_size;
  return SymmetricGroupError(x + off, w + off, l.group_size, d * static_cast<float>(sc), l.qmin, l.qmax,
                             quants != nullptr ? quants + off : nullptr);
}

float OptimizeSymmetricGroup(const float* x, const float* w, const SymmetricLayout& l, float d, int g,
                             SymmetricState* s) {
  int& sc = s->s[g];
  float best = SymmetricGroup(x, w, l, d, sc, g, nullptr);
  int off = g * l.group_size;
  if (d != 0) {
    float fitted = RefitSymmetricScale(x + off, w + off, l.group_size, d * static_cast<float>(sc), l.qmin, l.qmax);
    int csc = std::clamp(static_cast<int>(std::lround(fitted / d)), l.smin, l.smax);
    float e = SymmetricGroup(x, w, l, d, csc, g, nullptr);
    if (e < best) {
      best = e;
      sc = csc;
    }
  }
  for (int step = 0; step < 6; ++step) {
    SymmetricTry tries[2] = {};
    int codes[2];
    int count = 0;
    for (int k : {-1, 1}) {
      int csc = sc + k;
      if (csc < l.smin || csc > l.smax) continue;
      tries[count] = GroupTry(x, w, l, d, csc, g);
      codes[count++] = csc;
    }
    float errors[2];
    SymmetricGroupErrors(tries, count, l.group_size, l.qmin, l.qmax, errors);
    int bsc = sc;
    for (int c = 0; c < count; ++c) {
      if (errors[c] < best) {
        best = errors[c];
        bsc = codes[c];
      }
    }
    if (bsc == sc) break;
    sc = bsc;
  }
  return best;
}

// The totals over all groups of the state's codes for multipliers d[c], c < n_cand <= 4.
void SymmetricTotals(const float* x, const float* w, const SymmetricLayout& l, const float* d, int n_cand,
                     const SymmetricState& s, float* totals) {
  SymmetricTry tries[4 * 16] = {};
  for (int c = 0; c < n_cand; ++c) {
    for (int g = 0; g < l.n_groups; ++g) tries[c * l.n_groups + g] = GroupTry(x, w, l, d[c], s.s[g], g);
  }
  float errors[4 * 16];
  SymmetricGroupErrors(tries, n_cand * l.n_groups, l.group_size, l.qmin, l.qmax, errors);
  for (int c = 0; c < n_cand; ++c) {
    float total = 0;
    for (int g = 0; g < l.n_groups; ++g) total += errors[c * l.n_groups + g];
    totals[c] = total;
  }
}

float SymmetricTotal(const float* x, const float* w, const SymmetricLayout& l, float d, const SymmetricState& s) {
  float total;
  SymmetricTotals(x, w, l, &d, 1, s, &total);
  return total;
}

void RefitSymmetricMultiplier(const float* x, const float* w, const SymmetricLayout& l, SymmetricState* s) {
  const int n = l.n_groups * l.group_size;
  int8_t q[256];
  float d = HalfToFloat(s->d);
  for (int g = 0; g < l.n_groups; ++g) SymmetricGroup(x, w, l, d, s->s[g], g, q);
  float t[256];
  for (int i = 0; i < n; ++i) t[i] = static_cast<float>(s->s[i / l.group_size] * q[i]);
  float fd = FitScale(x, w, t, n);
  if (fd == 0 || !std::isfinite(fd)) return;
  uint16_t hd = FloatToHalf(fd);
  // The current multiplier, then the fit and its f16 neighbours.
  uint16_t cd[4] = {s->d, HalfNeighbor(hd, -1), hd, HalfNeighbor(hd, 1)};
  float fd4[4];
  fd4[0] = d;
  for (int c = 1; c < 4; ++c) fd4[c] = HalfToFloat(cd[c]);
  float totals[4];
  SymmetricTotals(x, w, l, fd4, 4, *s, totals);
  float best = totals[0];
  uint16_t best_d = s->d;
  for (int c = 1; c < 4; ++c) {
    if (totals[c] < best) {
      best = totals[c];
      best_d = cd[c];
    }
  }
  s->d = best_d;
}

}  // namespace

namespace {

void RefineAffine(const float* x, const float* w, const AffineLayout& layout, AffineState* s, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    float d = HalfToFloat(s->d);
    float dmin = HalfToFloat(s->dmin);
    if (!(d > 0) || !(dmin >= 0) || !std::isfinite(d) || !std::isfinite(dmin)) break;
    for (int g = 0; g < layout.n_groups; ++g) OptimizeAffineGroup(x, w, layout, d, dmin, g, s);
    uint16_t before_d = s->d;
    uint16_t before_m = s->dmin;
    RefitAffineMultipliers(x, w, layout, s);
    if (s->d == before_d && s->dmin == before_m) break;
  }
}

void RefineSymmetric(const float* x, const float* w, const SymmetricLayout& layout, SymmetricState* s, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    float d = HalfToFloat(s->d);
    if (d == 0 || !std::isfinite(d)) break;
    for (int g = 0; g < layout.n_groups; ++g) OptimizeSymmetricGroup(x, w, layout, d, g, s);
    uint16_t before = s->d;
    RefitSymmetricMultiplier(x, w, layout, s);
    if (s->d == before) break;
  }
}

// The group searches only walk to neighbouring codes, so the result depends
// on where the multiplier starts; restarting from a few rescaled multipliers
// (codes rescaled to match) escapes some of those local optima.
constexpr float kRestartFactors[] = {0.97f, 1.03f};

}  // namespace

void SearchAffineSuperBlock(const float* x, const float* w, const AffineLayout& layout, AffineState* s,
                            uint8_t* quants) {
  RefineAffine(x, w, layout, s, kRounds);
  float d = HalfToFloat(s->d);
  float dmin = HalfToFloat(s->dmin);
  if (d > 0 && std::isfinite(d)) {
    float best = AffineTotal(x, w, layout, d, dmin, *s);
    for (float f : kRestartFactors) {
      AffineState t = *s;
      t.d = FloatToHalf(d * f);
      for (int g = 0; g < layout.n_groups; ++g) {
        t.sc[g] = std::clamp(static_cast<int>(std::lround(static_cast<float>(s->sc[g]) / f)), 0, layout.code_max);
      }
      RefineAffine(x, w, layout, &t, 1);
      float e = AffineTotal(x, w, layout, HalfToFloat(t.d), HalfToFloat(t.dmin), t);
      if (e < best) {
        best = e;
        *s = t;
      }
    }
  }
  d = HalfToFloat(s->d);
  dmin = HalfToFloat(s->dmin);
  for (int g = 0; g < layout.n_groups; ++g) AffineGroup(x, w, layout, d, dmin, s->sc[g], s->m[g], g, quants);
}

void SearchSymmetricSuperBlock(const float* x, const float* w, const SymmetricLayout& layout, SymmetricState* s,
                               int8_t* quants) {
  RefineSymmetric(x, w, layout, s, kRounds);
  float d = HalfToFloat(s->d);
  if (d != 0 && std::isfinite(d)) {
    float best = SymmetricTotal(x, w, layout, d, *s);
    for (float f : kRestartFactors) {
      SymmetricState t = *s;
      t.d = FloatToHalf(d * f);
      for (int g = 0; g < layout.n_groups; ++g) {
        t.s[g] = std::clamp(static_cast<int>(std::lround(static_cast<float>(s->s[g]) / f)), layout.smin, layout.smax);
      }
      RefineSymmetric(x, w, layout, &t, 1);
      float e = SymmetricTotal(x, w, layout, HalfToFloat(t.d), t);
      if (e < best) {
        best = e;
        *s = t;
      }
    }
  }
  d = HalfToFloat(s->d);
  for (int g = 0; g < layout.n_groups; ++g) SymmetricGroup(x, w, layout, d, s->s[g], g, quants);
}

}  // namespace mixq::formats::internal
