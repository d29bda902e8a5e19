#include "formats/best_common.h"

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

float AffineGroupError(const float* x, const float* w, int n, float a, float b, float qmax, uint8_t* codes) {
  const float inv = a != 0 ? 1 / a : 0.0f;
  const Lanes4 zero = {};
  const Lanes4 top = Broadcast(qmax);
  Lanes4 acc = {};
  for (int i = 0; i < n; i += 4) {
    Lanes4 xv = Load4(x + i);
    Lanes4 q = MinLanes(MaxLanes(RoundLanes((xv + b) * inv), zero), top);
    Lanes4 d = xv - (a * q - b);
    acc += Load4(w + i) * d * d;
    if (codes != nullptr) {
      for (int k = 0; k < 4; ++k) codes[i + k] = static_cast<uint8_t>(q[k]);
    }
  }
  return SumLanes(acc);
}

float SymmetricGroupError(const float* x, const float* w, int n, float a, float qmin, float qmax, int8_t* codes) {
  const float inv = a != 0 ? 1 / a : 0.0f;
  const Lanes4 bottom = Broadcast(qmin);
  const Lanes4 top = Broadcast(qmax);
  Lanes4 acc = {};
  for (int i = 0; i < n; i += 4) {
    Lanes4 xv = Load4(x + i);
    Lanes4 q = MinLanes(MaxLanes(RoundLanes(xv * inv), bottom), top);
    Lanes4 d = xv - a * q;
    acc += Load4(w + i) * d * d;
    if (codes != nullptr) {
      for (int k = 0; k < 4; ++k) codes[i + k] = static_cast<int8_t>(q[k]);
    }
  }
  return SumLanes(acc);
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
