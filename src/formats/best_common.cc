#include "formats/best_common.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace mixq::formats::internal {

const float* UnitWeights() {
  static const std::array<float, kQKK> kOnes = [] {
    std::array<float, kQKK> a;
    a.fill(1.0f);
    return a;
  }();
  return kOnes.data();
}

double WeightedError(const float* x, const float* y, const float* w, int n) {
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    sum += static_cast<double>(w[i]) * d * d;
  }
  return sum;
}

namespace {

// x + b and y − b where the kernel has an offset (the affine formats), x and y
// where it has not (the symmetric ones).
template <bool kOffset, typename V, typename B>
[[gnu::always_inline]] inline V Shifted(V x, B b) {
  if constexpr (kOffset) return x + b;
  return x;
}
template <bool kOffset, typename V, typename B>
[[gnu::always_inline]] inline V Unshifted(V y, B b) {
  if constexpr (kOffset) return y - b;
  return y;
}

// The group errors, kLaneCount<V> elements per step: y = a·q − b with q the
// clamped rounding of (x + b)/a, the offset b only in the affine kernels
// (kOffset), so that one loop serves both. Every element's term is the
// four-lane code's, and AddInOrder adds the terms into four partial sums in
// the same order, so all widths give the same float. REQUIRES: n a multiple of
// kLaneCount<V>.
template <typename V, bool kOffset, typename Code>
[[gnu::always_inline]] inline float GroupErrorLanes(const float* x, const float* w, int n, float a, float b, float qmin,
                                                    float qmax, Code* codes) {
  const float inv = a != 0 ? 1 / a : 0.0f;
  const V bottom = Broadcast<V>(qmin);
  const V top = Broadcast<V>(qmax);
  Lanes4 acc = {};
  for (int i = 0; i < n; i += kLaneCount<V>) {
    const V xv = LoadLanes<V>(x + i);
    const V q = MinLanes(MaxLanes(RoundLanes(Shifted<kOffset>(xv, b) * inv), bottom), top);
    const V d = xv - Unshifted<kOffset>(a * q, b);
    AddInOrder(&acc, LoadLanes<V>(w + i) * d * d);
    if (codes != nullptr) {
      for (int k = 0; k < kLaneCount<V>; ++k) codes[i + k] = static_cast<Code>(q[k]);
    }
  }
  return SumLanes(acc);
}

template <typename V>
[[gnu::always_inline]] inline float AffineGroupErrorLanes(const float* x, const float* w, int n, float a, float b,
                                                          float qmax, uint8_t* codes) {
  return GroupErrorLanes<V, true>(x, w, n, a, b, 0.0f, qmax, codes);
}

template <typename V>
[[gnu::always_inline]] inline float SymmetricGroupErrorLanes(const float* x, const float* w, int n, float a, float qmin,
                                                             float qmax, int8_t* codes) {
  return GroupErrorLanes<V, false>(x, w, n, a, 0.0f, qmin, qmax, codes);
}

MIXQ_TARGET_AVX2 float AffineGroupErrorAvx2(const float* x, const float* w, int n, float a, float b, float qmax,
                                            uint8_t* codes) {
  return AffineGroupErrorLanes<Lanes8>(x, w, n, a, b, qmax, codes);
}

MIXQ_TARGET_AVX512 float AffineGroupErrorAvx512(const float* x, const float* w, int n, float a, float b, float qmax,
                                                uint8_t* codes) {
  return AffineGroupErrorLanes<Lanes16>(x, w, n, a, b, qmax, codes);
}

MIXQ_TARGET_AVX2 float SymmetricGroupErrorAvx2(const float* x, const float* w, int n, float a, float qmin, float qmax,
                                               int8_t* codes) {
  return SymmetricGroupErrorLanes<Lanes8>(x, w, n, a, qmin, qmax, codes);
}

MIXQ_TARGET_AVX512 float SymmetricGroupErrorAvx512(const float* x, const float* w, int n, float a, float qmin,
                                                   float qmax, int8_t* codes) {
  return SymmetricGroupErrorLanes<Lanes16>(x, w, n, a, qmin, qmax, codes);
}

// The batch kernels: kLaneCount<V> / 4 tries per vector, lanes 4p..4p+3
// doing try p's four-lane code. A short last batch repeats its last try.
template <typename V, typename Try>
[[gnu::always_inline]] inline void BatchOf(const Try* tries, int count, int first, const Try** batch) {
  for (int p = 0; p < kLaneCount<V> / 4; ++p) batch[p] = &tries[std::min(first + p, count - 1)];
}

// errors[p] = the four-lane sum of try p, for the tries that exist.
template <typename V>
[[gnu::always_inline]] inline void StoreSums(V acc, int left, float* errors) {
  for (int p = 0; p < kLaneCount<V> / 4 && p < left; ++p) errors[p] = SumLanes(Piece(acc, p));
}

constexpr bool HasOffset(const AffineTry*) { return true; }
constexpr bool HasOffset(const SymmetricTry*) { return false; }
inline float OffsetOf(const AffineTry& t) { return t.b; }
inline float OffsetOf(const SymmetricTry&) { return 0.0f; }

// GroupErrorLanes for a batch of tries (affine or symmetric, by Try).
template <typename V, typename Try>
[[gnu::always_inline]] inline void GroupErrorsLanes(const Try* tries, int count, int n, float qmin, float qmax,
                                                    float* errors) {
  constexpr int kTries = kLaneCount<V> / 4;
  constexpr bool kOffset = HasOffset(static_cast<const Try*>(nullptr));
  const V bottom = Broadcast<V>(qmin);
  const V top = Broadcast<V>(qmax);
  for (int first = 0; first < count; first += kTries) {
    const Try* t[kTries];
    BatchOf<V>(tries, count, first, t);
    Lanes4 a4[kTries], b4[kTries], inv4[kTries];
    for (int p = 0; p < kTries; ++p) {
      a4[p] = Broadcast(t[p]->a);
      b4[p] = Broadcast(OffsetOf(*t[p]));
      inv4[p] = Broadcast(t[p]->a != 0 ? 1 / t[p]->a : 0.0f);
    }
    const V a = Join<V>(a4), b = Join<V>(b4), inv = Join<V>(inv4);
    V acc = {};
    for (int i = 0; i < n; i += 4) {
      Lanes4 x4[kTries], w4[kTries];
      for (int p = 0; p < kTries; ++p) {
        x4[p] = Load4(t[p]->x + i);
        w4[p] = Load4(t[p]->w + i);
      }
      const V xv = Join<V>(x4);
      const V q = MinLanes(MaxLanes(RoundLanes(Shifted<kOffset>(xv, b) * inv), bottom), top);
      const V d = xv - Unshifted<kOffset>(a * q, b);
      acc += Join<V>(w4) * d * d;
    }
    StoreSums(acc, count - first, errors + first);
  }
}

MIXQ_TARGET_AVX2 void AffineGroupErrorsAvx2(const AffineTry* tries, int count, int n, float qmax, float* errors) {
  GroupErrorsLanes<Lanes8>(tries, count, n, 0.0f, qmax, errors);
}

MIXQ_TARGET_AVX512 void AffineGroupErrorsAvx512(const AffineTry* tries, int count, int n, float qmax, float* errors) {
  GroupErrorsLanes<Lanes16>(tries, count, n, 0.0f, qmax, errors);
}

MIXQ_TARGET_AVX2 void SymmetricGroupErrorsAvx2(const SymmetricTry* tries, int count, int n, float qmin, float qmax,
                                               float* errors) {
  GroupErrorsLanes<Lanes8>(tries, count, n, qmin, qmax, errors);
}

MIXQ_TARGET_AVX512 void SymmetricGroupErrorsAvx512(const SymmetricTry* tries, int count, int n, float qmin, float qmax,
                                                   float* errors) {
  GroupErrorsLanes<Lanes16>(tries, count, n, qmin, qmax, errors);
}

}  // namespace

float AffineGroupError(const float* x, const float* w, int n, float a, float b, float qmax, uint8_t* codes) {
  const Isa isa = LaneIsa();
  if (isa == Isa::kAvx512 && n % 16 == 0) return AffineGroupErrorAvx512(x, w, n, a, b, qmax, codes);
  if (isa >= Isa::kAvx2 && n % 8 == 0) return AffineGroupErrorAvx2(x, w, n, a, b, qmax, codes);
  return AffineGroupErrorLanes<Lanes4>(x, w, n, a, b, qmax, codes);
}

void AffineGroupErrors(const AffineTry* tries, int count, int n, float qmax, float* errors) {
  switch (LaneIsa()) {
    case Isa::kAvx512:
      return AffineGroupErrorsAvx512(tries, count, n, qmax, errors);
    case Isa::kAvx2:
      return AffineGroupErrorsAvx2(tries, count, n, qmax, errors);
    case Isa::kScalar:
      break;
  }
  GroupErrorsLanes<Lanes4>(tries, count, n, 0.0f, qmax, errors);
}

void SymmetricGroupErrors(const SymmetricTry* tries, int count, int n, float qmin, float qmax, float* errors) {
  switch (LaneIsa()) {
    case Isa::kAvx512:
      return SymmetricGroupErrorsAvx512(tries, count, n, qmin, qmax, errors);
    case Isa::kAvx2:
      return SymmetricGroupErrorsAvx2(tries, count, n, qmin, qmax, errors);
    case Isa::kScalar:
      break;
  }
  GroupErrorsLanes<Lanes4>(tries, count, n, qmin, qmax, errors);
}

float SymmetricGroupError(const float* x, const float* w, int n, float a, float qmin, float qmax, int8_t* codes) {
  const Isa isa = LaneIsa();
  if (isa == Isa::kAvx512 && n % 16 == 0) return SymmetricGroupErrorAvx512(x, w, n, a, qmin, qmax, codes);
  if (isa >= Isa::kAvx2 && n % 8 == 0) return SymmetricGroupErrorAvx2(x, w, n, a, qmin, qmax, codes);
  return SymmetricGroupErrorLanes<Lanes4>(x, w, n, a, qmin, qmax, codes);
}

float RefitSymmetricScale(const float* x, const float* w, int n, float a, float qmin, float qmax) {
  const float inv = a != 0 ? 1 / a : 0.0f;
  const Lanes4 bottom = Broadcast(qmin);
  const Lanes4 top = Broadcast(qmax);
  Lanes4 sxq = {};
  Lanes4 sqq = {};
  for (int i = 0; i < n; i += 4) {
    Lanes4 xv = Load4(x + i);
    Lanes4 q = MinLanes(MaxLanes(RoundLanes(xv * inv), bottom), top);
    Lanes4 wq = Load4(w + i) * q;
    sxq += wq * xv;
    sqq += wq * q;
  }
  float den = SumLanes(sqq);
  return den > 0 ? SumLanes(sxq) / den : 0.0f;
}

bool RefitAffine(const float* x, const float* w, int n, float a, float b, float qmax, float* fitted_a,
                 float* fitted_b) {
  const float inv = a != 0 ? 1 / a : 0.0f;
  const Lanes4 zero = {};
  const Lanes4 top = Broadcast(qmax);
  Lanes4 sw = {}, sq = {}, sqq = {}, sx = {}, sxq = {};
  for (int i = 0; i < n; i += 4) {
    Lanes4 xv = Load4(x + i);
    Lanes4 wv = Load4(w + i);
    Lanes4 q = MinLanes(MaxLanes(RoundLanes((xv + b) * inv), zero), top);
    Lanes4 wq = wv * q;
    sw += wv;
    sq += wq;
    sqq += wq * q;
    sx += wv * xv;
    sxq += wq * xv;
  }
  // min sum w (x - a q + b)^2 over a, b.
  double Sw = SumLanes(sw), Sq = SumLanes(sq), Sqq = SumLanes(sqq), Sx = SumLanes(sx), Sxq = SumLanes(sxq);
  double det = Sw * Sqq - Sq * Sq;
  if (!(det > 1e-12 * Sw * Sqq)) return false;
  *fitted_a = static_cast<float>((Sw * Sxq - Sq * Sx) / det);
  *fitted_b = static_cast<float>((Sq * Sxq - Sqq * Sx) / det);
  return std::isfinite(*fitted_a) && std::isfinite(*fitted_b);
}

uint16_t HalfNeighbor(uint16_t h, int steps) {
  int magnitude = h & 0x7FFF;
  int moved = magnitude + steps;
  if (magnitude == 0 || moved <= 0 || moved >= 0x7C00) return h;
  return static_cast<uint16_t>((h & 0x8000) | moved);
}

float FitScale(const float* x, const float* w, const float* t, int n) {
  double sxt = 0;
  double stt = 0;
  for (int i = 0; i < n; ++i) {
    sxt += static_cast<double>(w[i]) * x[i] * t[i];
    stt += static_cast<double>(w[i]) * t[i] * t[i];
  }
  return stt > 0 ? static_cast<float>(sxt / stt) : 0.0f;
}

bool FitScaleOffset(const float* x, const float* w, const float* t, const float* u, int n, float* s, float* m) {
  // Normal equations of min sum w (x - s t + m u)^2.
  double stt = 0, suu = 0, stu = 0, sxt = 0, sxu = 0;
  for (int i = 0; i < n; ++i) {
    double wi = w[i];
    stt += wi * t[i] * t[i];
    suu += wi * u[i] * u[i];
    stu += wi * t[i] * u[i];
    sxt += wi * x[i] * t[i];
    sxu += wi * x[i] * u[i];
  }
  double det = stt * suu - stu * stu;
  if (!(det > 1e-30 * stt * suu) || !(det > 0)) return false;
  *s = static_cast<float>((sxt * suu - sxu * stu) / det);
  *m = static_cast<float>((sxt * stu - sxu * stt) / det);
  return std::isfinite(*s) && std::isfinite(*m);
}

uint16_t EnergyMatchedScale(const float* x, const float* w, const float* t, int n, uint16_t current) {
  double sxx = 0, sxt = 0, stt = 0;
  for (int j = 0; j < n; ++j) {
    const double wj = w[j];
    sxx += wj * x[j] * x[j];
    sxt += wj * x[j] * t[j];
    stt += wj * t[j] * t[j];
  }
  if (!(stt > 0) || !(sxt > 0)) return current;
  auto error = [&](uint16_t h) {
    const double d = HalfToFloat(h);
    return d * (d * stt - 2 * sxt);
  };
  const uint16_t h = FloatToHalf(static_cast<float>(std::sqrt(sxx / stt)));
  uint16_t best = h;
  for (int k = -2; k <= 2; ++k) {
    const uint16_t cand = HalfNeighbor(h, k);
    if (error(cand) < error(best)) best = cand;
  }
  return best;
}

}  // namespace mixq::formats::internal
