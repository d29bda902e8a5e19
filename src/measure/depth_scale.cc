#include "measure/depth_scale.h"

#include <cmath>
#include <iterator>

#include "engine/engine.h"

namespace mixq::measure {

std::vector<int64_t> ProbeLayers(int64_t n_layer, int k) {
  std::vector<int64_t> out;
  if (n_layer <= 0) return out;
  if (k >= n_layer) {
    for (int64_t l = 0; l < n_layer; ++l) out.push_back(l);
    return out;
  }
  if (k <= 1) return {n_layer / 2};
  for (int i = 0; i < k; ++i) {
    const int64_t l = std::llround(static_cast<double>(i) * static_cast<double>(n_layer - 1) / (k - 1));
    if (out.empty() || out.back() != l) out.push_back(l);
  }
  return out;
}

std::string RoleOf(const std::string& tensor) {
  auto info = engine::DescribeWeight(tensor);
  return info ? info->role : tensor;
}

void DepthScale::Add(int64_t layer, const std::string& role, const std::string& type, double local, double kld) {
  if (!(local > 0) || !(kld > 0)) return;
  const double log_ratio = std::log(kld / local);
  for (Curve* c : {&by_role_[{role, type}], &by_type_[type], &all_}) {
    auto& [sum, count] = (*c)[layer];
    sum += log_ratio;
    ++count;
  }
}

double DepthScale::Interpolate(const Curve& curve, int64_t layer) {
  auto mean = [](Curve::const_iterator it) { return it->second.first / it->second.second; };
  auto hi = curve.lower_bound(layer);
  if (hi == curve.end()) return mean(std::prev(hi));
  if (hi->first == layer || hi == curve.begin()) return mean(hi);
  auto lo = std::prev(hi);
  const double t = static_cast<double>(layer - lo->first) / static_cast<double>(hi->first - lo->first);
  return (1 - t) * mean(lo) + t * mean(hi);
}

double DepthScale::Predict(int64_t layer, const std::string& role, const std::string& type, double local) const {
  if (!(local > 0)) return 0;
  const Curve* curve = nullptr;
  if (auto it = by_role_.find({role, type}); it != by_role_.end()) {
    curve = &it->second;
  } else if (auto jt = by_type_.find(type); jt != by_type_.end()) {
    curve = &jt->second;
  } else if (!all_.empty()) {
    curve = &all_;
  }
  return curve == nullptr ? 0 : local * std::exp(Interpolate(*curve, layer));
}

}  // namespace mixq::measure
