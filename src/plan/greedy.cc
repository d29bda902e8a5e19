// The benefit/cost greedy of MixedQuantFlux (seed 003; the details follow
// docs/reference/anchors-optimizers.md section 1.2), kept as the baseline that
// the exact solver is compared with.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "plan/problem.h"

namespace mixq::plan::internal {
namespace {

struct Step {
  int64_t saved = 0;   // bytes
  double added = 0.0;  // cost
  int32_t to = 0;      // choice index the step ends at
  double ratio = 0.0;
};

struct GlobalStep {
  double ratio;
  int32_t unit;
  int32_t order;  // position in the unit's chain
  int64_t saved;
  int32_t to;
};

}  // namespace

Result<Solution> SolveGreedy(const Problem& p) {
  const int32_t n = p.n_units();
  // The original divides by (added + 1e-9) with costs of order 1..1000; scale
  // that guard to the measurement so that tiny costs (err^2) keep their order.
  double cost_scale = 0.0;
  for (const Choice& c : p.choices) cost_scale = std::max(cost_scale, std::fabs(c.cost));
  const double eps = 1e-9 * (cost_scale > 0.0 ? cost_scale : 1.0);
  auto ratio = [eps](const Step& s) { return static_cast<double>(s.saved) / (s.added + eps); };

  Solution sol;
  sol.pick.resize(n);
  std::vector<GlobalStep> all;
  int64_t start_bytes = 0;
  std::vector<int32_t> chain;
  std::vector<Step> steps;
  for (int32_t u = 0; u < n; ++u) {
    // Types from most to fewest bytes, ties in measurement order.
    std::vector<int32_t> order(p.begin[u + 1] - p.begin[u]);
    std::iota(order.begin(), order.end(), p.begin[u]);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return p.choices[a].n_bytes > p.choices[b].n_bytes; });
    // Neighbour pruning: drop a type when the next smaller one costs less, or
    // when it is as big as the previous one and costs at least as much.
    chain.clear();
    for (size_t i = 0; i < order.size(); ++i) {
      const Choice& c = p.choices[order[i]];
      if (i + 1 < order.size() && p.choices[order[i + 1]].cost < c.cost) continue;
      if (i > 0 && p.choices[order[i - 1]].n_bytes == c.n_bytes && c.cost >= p.choices[order[i - 1]].cost) continue;
      chain.push_back(order[i]);
    }
    sol.pick[u] = chain.front();
    start_bytes += p.choices[chain.front()].n_bytes;
    // Steps between consecutive kept types, merged until the ratios fall strictly.
    steps.clear();
    for (size_t i = 1; i < chain.size(); ++i) {
      const Choice& a = p.choices[chain[i - 1]];
      const Choice& b = p.choices[chain[i]];
      Step s{a.n_bytes - b.n_bytes, b.cost - a.cost, chain[i], 0.0};
      s.ratio = ratio(s);
      while (!steps.empty() && s.ratio >= steps.back().ratio) {
        s.saved += steps.back().saved;
        s.added += steps.back().added;
        s.ratio = ratio(s);
        steps.pop_back();
      }
      steps.push_back(s);
    }
    for (size_t i = 0; i < steps.size(); ++i) {
      all.push_back({steps[i].ratio, u, static_cast<int32_t>(i), steps[i].saved, steps[i].to});
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const GlobalStep& a, const GlobalStep& b) {
    return a.ratio != b.ratio ? a.ratio > b.ratio : a.unit != b.unit ? a.unit < b.unit : a.order < b.order;
  });
  const int64_t required = start_bytes - p.budget_n_bytes;
  int64_t saved = 0;
  for (size_t i = 0; i < all.size() && saved < required; ++i) {
    saved += all[i].saved;
    sol.pick[all[i].unit] = all[i].to;
  }
  if (saved < required) {
    return Status::Infeasible("the greedy baseline cannot reach the budget: its pruned chains save at most " +
                              std::to_string(saved) + " of the " + std::to_string(required) + " bytes needed");
  }
  long double cost = 0.0L;
  for (int32_t u = 0; u < n; ++u) {
    sol.n_bytes += p.choices[sol.pick[u]].n_bytes;
    cost += p.choices[sol.pick[u]].cost;
  }
  sol.cost = static_cast<double>(cost);
  sol.lower_bound = std::min(LagrangianBound(p), sol.cost);
  return sol;
}

}  // namespace mixq::plan::internal
