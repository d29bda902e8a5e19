// Internal: the linear calibration's map from a tensor's local perturbation
// (Perturbation::local) to its ΔKLD at the model output.
//
// At a few probe layers both are measured; their ratio, the KLD that one unit
// of relative residual-stream change at that depth causes, is interpolated
// over depth piecewise linearly in log space, separately for each tensor role
// (attn_q, ffn_down, ...) and type, since roles perturb different directions
// and larger errors are not exactly proportionally worse. Below the first and
// above the last probe the nearest probe's ratio holds.
#ifndef MIXQ_MEASURE_DEPTH_SCALE_H_
#define MIXQ_MEASURE_DEPTH_SCALE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mixq::measure {

// `k` layers spread evenly over [0, n_layer), the first and last included
// (all layers when k >= n_layer).
std::vector<int64_t> ProbeLayers(int64_t n_layer, int k);

// The weight's role (engine::DescribeWeight): "attn_q" for
// "blk.3.attn_q.weight", "output" for "output.weight"; the name itself for
// names no architecture has.
std::string RoleOf(const std::string& tensor);

class DepthScale {
 public:
  // One probe result; samples with local or kld <= 0 carry no ratio and are
  // ignored.
  void Add(int64_t layer, const std::string& role, const std::string& type, double local, double kld);
  // Predicted KLD; roles or types without probes use the ratio pooled over
  // all roles of the type (then over everything), 0 when nothing was probed.
  double Predict(int64_t layer, const std::string& role, const std::string& type, double local) const;

 private:
  using Curve = std::map<int64_t, std::pair<double, int>>;  // layer -> (Σ log ratio, count)
  static double Interpolate(const Curve& curve, int64_t layer);

  std::map<std::pair<std::string, std::string>, Curve> by_role_;  // (role, type)
  std::map<std::string, Curve> by_type_;
  Curve all_;
};

}  // namespace mixq::measure

#endif  // MIXQ_MEASURE_DEPTH_SCALE_H_
