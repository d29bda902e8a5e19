// The exact multiple-choice knapsack solver.
//
// 1. Per unit, the Pareto frontier of (bytes, cost) and its lower convex hull.
// 2. The LP relaxation: hull segments taken in order of cost saved per byte
//    until the budget runs out; the segment that does not fit sets the
//    Lagrange multiplier lambda and the bound L = sum_u min_j (c + lambda w) -
//    lambda B. Any plan x costs L + sum_u rc_u(x_u) + lambda (B - W(x)), where
//    rc is the reduced cost c + lambda w - min_j(c + lambda w) >= 0.
// 3. An incumbent: the LP's integer part, then greedy upgrades into the slack.
// 4. Reduced-cost fixing: a plan that beats the incumbent has sum rc < gap, so
//    every option with rc >= gap is out; most units keep a single option.
// 5. A Pareto dynamic programme over the remaining units, pruning partial plans
//    whose summed rc already reaches the gap or whose lightest completion does
//    not fit. It enumerates every non-dominated plan that could beat the
//    incumbent, so its best is optimal.
#include <algorithm>
#include <cmath>
#include <limits>

#include "plan/problem.h"

namespace mixq::plan::internal {
namespace {

struct Point {
  int64_t w;
  double c;
  int32_t choice;  // index into Problem::choices
};

// Flattened per-unit point lists.
struct Lists {
  std::vector<int32_t> begin{0};
  std::vector<Point> points;
  void Close() { begin.push_back(static_cast<int32_t>(points.size())); }
  int32_t size(int32_t u) const { return begin[u + 1] - begin[u]; }
  const Point& at(int32_t u, int32_t k) const { return points[begin[u] + k]; }
};

// Pareto frontier sorted by bytes: bytes strictly rise, cost strictly falls.
Lists ParetoFrontiers(const Problem& p) {
  Lists out;
  out.points.reserve(p.choices.size());
  std::vector<Point> tmp;
  for (int32_t u = 0; u < p.n_units(); ++u) {
    tmp.clear();
    for (int32_t k = p.begin[u]; k < p.begin[u + 1]; ++k) tmp.push_back({p.choices[k].n_bytes, p.choices[k].cost, k});
    std::sort(tmp.begin(), tmp.end(), [](const Point& a, const Point& b) {
      return a.w != b.w ? a.w < b.w : a.c != b.c ? a.c < b.c : a.choice < b.choice;
    });
    double best = std::numeric_limits<double>::infinity();
    for (const Point& q : tmp) {
      if (q.c < best) {
        out.points.push_back(q);
        best = q.c;
      }
    }
    out.Close();
  }
  return out;
}

// True when b lies strictly above the chord from a to c.
bool AboveChord(const Point& a, const Point& b, const Point& c) {
  long double left = static_cast<long double>(b.c - a.c) * static_cast<long double>(c.w - b.w);
  long double right = static_cast<long double>(c.c - b.c) * static_cast<long double>(b.w - a.w);
  return left > right;
}

// Lower convex hull of each frontier (collinear points kept: they are finer
// integer steps at the same rate).
Lists Hulls(const Lists& pareto, int32_t n_units) {
  Lists out;
  out.points.reserve(pareto.points.size());
  for (int32_t u = 0; u < n_units; ++u) {
    size_t start = out.points.size();
    for (int32_t k = 0; k < pareto.size(u); ++k) {
      const Point& q = pareto.at(u, k);
      while (out.points.size() - start >= 2 &&
             AboveChord(out.points[out.points.size() - 2], out.points.back(), q)) {
        out.points.pop_back();
      }
      out.points.push_back(q);
    }
    out.Close();
  }
  return out;
}

struct Segment {
  double rate;  // cost saved per byte
  int32_t unit;
  int32_t k;  // from hull point k to k+1
};

struct Relaxation {
  std::vector<int32_t> at;  // hull index per unit in the LP's integer part
  int64_t slack = 0;        // budget the integer part leaves
  double lambda = 0.0;
  bool fractional = false;  // false: every unit sits at its cheapest point
  double bound = 0.0;       // Lagrangian bound L
  std::vector<double> min_lagrangian;  // per unit: min_j (c + lambda w)
};

Relaxation Relax(const Problem& p, const Lists& pareto, const Lists& hull) {
  const int32_t n = p.n_units();
  Relaxation r;
  r.at.assign(n, 0);
  std::vector<Segment> segments;
  segments.reserve(hull.points.size());
  int64_t used = 0;
  for (int32_t u = 0; u < n; ++u) {
    used += hull.at(u, 0).w;
    for (int32_t k = 0; k + 1 < hull.size(u); ++k) {
      const Point& a = hull.at(u, k);
      const Point& b = hull.at(u, k + 1);
      segments.push_back({(a.c - b.c) / static_cast<double>(b.w - a.w), u, k});
    }
  }
  std::sort(segments.begin(), segments.end(), [](const Segment& x, const Segment& y) {
    return x.rate != y.rate ? x.rate > y.rate : x.unit != y.unit ? x.unit < y.unit : x.k < y.k;
  });
  r.slack = p.budget_n_bytes - used;
  for (const Segment& s : segments) {
    int64_t dw = hull.at(s.unit, s.k + 1).w - hull.at(s.unit, s.k).w;
    if (dw > r.slack) {
      r.lambda = s.rate;
      r.fractional = true;
      break;
    }
    r.slack -= dw;
    r.at[s.unit] = s.k + 1;
  }
  r.min_lagrangian.resize(n);
  long double total = 0.0L;
  for (int32_t u = 0; u < n; ++u) {
    double best = std::numeric_limits<double>::infinity();
    for (int32_t k = 0; k < pareto.size(u); ++k) {
      const Point& q = pareto.at(u, k);
      best = std::min(best, q.c + r.lambda * static_cast<double>(q.w));
    }
    r.min_lagrangian[u] = best;
    total += best;
  }
  r.bound = static_cast<double>(total - static_cast<long double>(r.lambda) * p.budget_n_bytes);
  return r;
}

// Spends the slack on the upgrades that save the most cost, one at a time.
void FillSlack(const Lists& pareto, std::vector<Point>* current, int64_t* slack) {
  constexpr int kMaxRounds = 64;
  const int32_t n = static_cast<int32_t>(current->size());
  for (int round = 0; round < kMaxRounds; ++round) {
    double best_gain = 0.0;
    int32_t best_u = -1;
    Point best_q{};
    for (int32_t u = 0; u < n; ++u) {
      const Point& cur = (*current)[u];
      for (int32_t k = pareto.size(u) - 1; k >= 0; --k) {
        const Point& q = pareto.at(u, k);
        if (q.w <= cur.w) break;
        if (q.w - cur.w <= *slack && cur.c - q.c > best_gain) {
          best_gain = cur.c - q.c;
          best_u = u;
          best_q = q;
        }
      }
    }
    if (best_u < 0) return;
    *slack -= best_q.w - (*current)[best_u].w;
    (*current)[best_u] = best_q;
  }
}

struct State {
  int64_t w;
  double c;
  double rc;
  int32_t parent;
  int32_t option;  // index into the stage's option list
};

struct Candidate {
  int64_t w;
  double c;
  double rc;
  int32_t choice;
};

// Returns false when the state cap was reached.
bool SearchOpenUnits(const std::vector<std::vector<Candidate>>& open, int64_t budget, double rc_limit,
                     int64_t max_states, std::vector<int32_t>* best_choices, double* best_cost, bool* improved,
                     int64_t* n_states) {
  const size_t n = open.size();
  std::vector<int64_t> min_rest(n + 1, 0);
  for (size_t s = n; s-- > 0;) min_rest[s] = min_rest[s + 1] + open[s].front().w;
  if (min_rest[0] > budget) return true;

  std::vector<std::vector<State>> stages(n + 1);
  stages[0].push_back({0, 0.0, 0.0, -1, -1});
  std::vector<State> next;
  for (size_t s = 0; s < n; ++s) {
    next.clear();
    const int64_t limit = budget - min_rest[s + 1];
    for (size_t i = 0; i < stages[s].size(); ++i) {
      const State& st = stages[s][i];
      for (size_t j = 0; j < open[s].size(); ++j) {
        const Candidate& o = open[s][j];
        if (st.w + o.w > limit) break;  // options are sorted by bytes
        double rc = st.rc + o.rc;
        if (rc >= rc_limit) continue;
        next.push_back({st.w + o.w, st.c + o.c, rc, static_cast<int32_t>(i), static_cast<int32_t>(j)});
      }
    }
    *n_states += static_cast<int64_t>(next.size());
    if (*n_states > max_states) return false;
    std::sort(next.begin(), next.end(),
              [](const State& a, const State& b) { return a.w != b.w ? a.w < b.w : a.c < b.c; });
    std::vector<State>& kept = stages[s + 1];
    double best = std::numeric_limits<double>::infinity();
    for (const State& st : next) {
      if (st.c < best) {
        kept.push_back(st);
        best = st.c;
      }
    }
    if (kept.empty()) return true;  // nothing can beat the incumbent
  }
  // Bytes rise and cost falls along the final frontier: the last state is best.
  const State& final_state = stages[n].back();
  if (final_state.c >= *best_cost) return true;
  *best_cost = final_state.c;
  *improved = true;
  best_choices->assign(n, -1);
  int32_t idx = static_cast<int32_t>(stages[n].size()) - 1;
  for (size_t s = n; s > 0; --s) {
    const State& st = stages[s][idx];
    (*best_choices)[s - 1] = open[s - 1][st.option].choice;
    idx = st.parent;
  }
  return true;
}

}  // namespace

double LagrangianBound(const Problem& p) {
  Lists pareto = ParetoFrontiers(p);
  Lists hull = Hulls(pareto, p.n_units());
  Relaxation r = Relax(p, pareto, hull);
  if (!r.fractional) {
    double cost = 0.0;
    for (int32_t u = 0; u < p.n_units(); ++u) cost += hull.at(u, r.at[u]).c;
    return cost;
  }
  return r.bound;
}

Solution SolveExact(const Problem& p, const SolverLimits& limits) {
  const int32_t n = p.n_units();
  Lists pareto = ParetoFrontiers(p);
  Lists hull = Hulls(pareto, n);
  Relaxation r = Relax(p, pareto, hull);

  std::vector<Point> current(n);
  for (int32_t u = 0; u < n; ++u) current[u] = hull.at(u, r.at[u]);
  Solution sol;
  if (r.fractional) FillSlack(pareto, &current, &r.slack);
  auto take = [&](const std::vector<Point>& pts) {
    sol.pick.resize(n);
    sol.n_bytes = 0;
    long double cost = 0.0L;
    for (int32_t u = 0; u < n; ++u) {
      sol.pick[u] = pts[u].choice;
      sol.n_bytes += pts[u].w;
      cost += pts[u].c;
    }
    sol.cost = static_cast<double>(cost);
  };
  take(current);
  if (!r.fractional) {
    sol.lower_bound = sol.cost;
    sol.optimal = true;
    sol.n_units_fixed = n;
    return sol;
  }
  sol.lower_bound = std::min(r.bound, sol.cost);

  // Rounding in the sums is far below this; it only keeps the pruning on the
  // safe side (it never discards a plan that rounding made look no better).
  long double scale = std::fabs(static_cast<long double>(r.lambda) * p.budget_n_bytes) + std::fabs(sol.cost);
  for (double m : r.min_lagrangian) scale += std::fabs(m);
  const double tolerance = static_cast<double>(scale) * 1e-12;
  const double gap = sol.cost - r.bound;
  if (gap <= tolerance) {
    sol.optimal = true;
    sol.n_units_fixed = n;
    return sol;
  }

  // Reduced-cost fixing.
  const double rc_limit = gap + tolerance;
  std::vector<std::vector<Candidate>> open;
  std::vector<int32_t> open_units;
  std::vector<Point> fixed_point(n);
  double fixed_rc = 0.0;
  int64_t fixed_bytes = 0;
  double fixed_cost = 0.0;
  std::vector<Candidate> alive;
  for (int32_t u = 0; u < n; ++u) {
    alive.clear();
    for (int32_t k = 0; k < pareto.size(u); ++k) {
      const Point& q = pareto.at(u, k);
      double rc = std::max(0.0, q.c + r.lambda * static_cast<double>(q.w) - r.min_lagrangian[u]);
      if (rc < rc_limit) alive.push_back({q.w, q.c, rc, q.choice});
    }
    if (alive.size() == 1) {
      fixed_point[u] = {alive[0].w, alive[0].c, alive[0].choice};
      fixed_rc += alive[0].rc;
      fixed_bytes += alive[0].w;
      fixed_cost += alive[0].c;
    } else if (!alive.empty()) {
      open.push_back(alive);  // already sorted by bytes
      open_units.push_back(u);
    }
  }
  // The argmin option of every unit has rc 0 < rc_limit, so no unit is left empty.
  sol.n_units_searched = static_cast<int64_t>(open.size());
  sol.n_units_fixed = n - sol.n_units_searched;

  std::vector<int32_t> best_open;
  double best_open_cost = sol.cost - fixed_cost;
  bool improved = false;
  bool complete = SearchOpenUnits(open, p.budget_n_bytes - fixed_bytes, rc_limit - fixed_rc, limits.max_states,
                                  &best_open, &best_open_cost, &improved, &sol.n_states);
  if (improved && fixed_cost + best_open_cost < sol.cost) {
    std::vector<Point> better = fixed_point;
    for (size_t s = 0; s < open.size(); ++s) {
      const Choice& ch = p.choices[best_open[s]];
      better[open_units[s]] = {ch.n_bytes, ch.cost, best_open[s]};
    }
    take(better);
  }
  sol.optimal = complete;
  sol.lower_bound = complete ? sol.cost : std::min(r.bound, sol.cost);
  return sol;
}

}  // namespace mixq::plan::internal
