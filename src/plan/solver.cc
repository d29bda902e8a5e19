// The exact multiple-choice knapsack solver.
//
// 1. Per unit, the Pareto frontier of (bytes, cost) and its lower convex hull.
// 2. The LP relaxation: hull segments taken in order of cost saved per byte
//    until the budget runs out; the segment that does not fit sets the
//    Lagrange multiplier lambda and the bound L = sum_u min_j (c + lambda w) -
//    lambda B. Any plan x costs L + sum_u rc_u(x_u) + lambda (B - W(x)), where
//    rc is the reduced cost c + lambda w - min_j(c + lambda w) >= 0.
// 3. An incumbent: the LP's integer part, the later segments that still fit,
//    then the upgrades that save the most cost within the slack.
// 4. Reduced-cost fixing: a plan that beats the incumbent has sum rc < gap, so
//    every option with rc >= gap is out; most units keep a single option.
// 5. A Pareto dynamic programme over the units left open. A partial plan is
//    dropped when it is dominated (more bytes and more cost than another) or
//    when its cost plus the LP bound of the units still to come, given the
//    bytes left, cannot beat the incumbent. What survives is every plan that
//    could beat the incumbent, so the best of them (or the incumbent) is optimal.
#include <algorithm>
#include <cmath>
#include <limits>

#include "plan/problem.h"

namespace mixq::plan::internal {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

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
  int32_t n_lists() const { return static_cast<int32_t>(begin.size()) - 1; }
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
    double best = kInf;
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

// Lower convex hull of each Pareto list (collinear points kept: they are finer
// integer steps at the same rate).
Lists Hulls(const Lists& pareto) {
  Lists out;
  out.points.reserve(pareto.points.size());
  for (int32_t u = 0; u < pareto.n_lists(); ++u) {
    size_t start = out.points.size();
    for (int32_t k = 0; k < pareto.size(u); ++k) {
      const Point& q = pareto.at(u, k);
      while (out.points.size() - start >= 2 && AboveChord(out.points[out.points.size() - 2], out.points.back(), q)) {
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
  int64_t dw;
  double dc;  // cost saved
  int32_t unit;
  int32_t k;  // from hull point k to k+1
};

// Hull segments of all lists, best rate first; a unit's segments stay in order.
std::vector<Segment> SortedSegments(const Lists& hull) {
  std::vector<Segment> segments;
  segments.reserve(hull.points.size());
  for (int32_t u = 0; u < hull.n_lists(); ++u) {
    for (int32_t k = 0; k + 1 < hull.size(u); ++k) {
      const Point& a = hull.at(u, k);
      const Point& b = hull.at(u, k + 1);
      segments.push_back({(a.c - b.c) / static_cast<double>(b.w - a.w), b.w - a.w, a.c - b.c, u, k});
    }
  }
  std::sort(segments.begin(), segments.end(), [](const Segment& x, const Segment& y) {
    return x.rate != y.rate ? x.rate > y.rate : x.unit != y.unit ? x.unit < y.unit : x.k < y.k;
  });
  return segments;
}

struct Relaxation {
  std::vector<int32_t> at;  // hull index per unit in the LP's integer part
  int64_t slack = 0;        // budget the integer part leaves
  size_t critical = 0;      // first segment that did not fit
  double lambda = 0.0;
  bool fractional = false;             // false: every unit sits at its cheapest point
  double bound = 0.0;                  // Lagrangian bound L
  std::vector<double> min_lagrangian;  // per unit: min_j (c + lambda w)
};

Relaxation Relax(const Problem& p, const Lists& pareto, const Lists& hull, const std::vector<Segment>& segments) {
  const int32_t n = p.n_units();
  Relaxation r;
  r.at.assign(n, 0);
  int64_t used = 0;
  for (int32_t u = 0; u < n; ++u) used += hull.at(u, 0).w;
  r.slack = p.budget_n_bytes - used;
  for (r.critical = 0; r.critical < segments.size(); ++r.critical) {
    const Segment& s = segments[r.critical];
    if (s.dw > r.slack) {
      r.lambda = s.rate;
      r.fractional = true;
      break;
    }
    r.slack -= s.dw;
    r.at[s.unit] = s.k + 1;
  }
  r.min_lagrangian.resize(n);
  long double total = 0.0L;
  for (int32_t u = 0; u < n; ++u) {
    double best = kInf;
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

// The incumbent: past the critical segment, keep taking segments that fit
// (a skipped one blocks the rest of its unit), then spend what is left on the
// upgrades that save the most cost.
std::vector<Point> Incumbent(const Lists& pareto, const Lists& hull, const std::vector<Segment>& segments,
                             const Relaxation& r) {
  const int32_t n = hull.n_lists();
  std::vector<int32_t> at = r.at;
  int64_t slack = r.slack;
  for (size_t i = r.critical; i < segments.size(); ++i) {
    const Segment& s = segments[i];
    if (at[s.unit] == s.k && s.dw <= slack) {
      slack -= s.dw;
      at[s.unit] = s.k + 1;
    }
  }
  std::vector<Point> current(n);
  for (int32_t u = 0; u < n; ++u) current[u] = hull.at(u, at[u]);
  constexpr int kMaxRounds = 64;
  for (int round = 0; round < kMaxRounds; ++round) {
    double best_gain = 0.0;
    int32_t best_u = -1;
    Point best_q{};
    for (int32_t u = 0; u < n; ++u) {
      const Point& cur = current[u];
      for (int32_t k = pareto.size(u) - 1; k >= 0; --k) {
        const Point& q = pareto.at(u, k);
        if (q.w <= cur.w) break;
        if (q.w - cur.w <= slack && cur.c - q.c > best_gain) {
          best_gain = cur.c - q.c;
          best_u = u;
          best_q = q;
        }
      }
    }
    if (best_u < 0) break;
    slack -= best_q.w - current[best_u].w;
    current[best_u] = best_q;
  }
  return current;
}

// The LP relaxation of a set of units as a function of their byte budget,
// with units removed one at a time.
class SuffixBound {
 public:
  SuffixBound(const Lists& hull, std::vector<Segment> segments) : hull_(hull), segments_(std::move(segments)) {
    for (int32_t u = 0; u < hull.n_lists(); ++u) {
      base_w_ += hull.at(u, 0).w;
      base_c_ += hull.at(u, 0).c;
    }
    Accumulate();
  }

  void Remove(int32_t unit) {
    base_w_ -= hull_.at(unit, 0).w;
    base_c_ -= hull_.at(unit, 0).c;
    std::erase_if(segments_, [unit](const Segment& s) { return s.unit == unit; });
    Accumulate();
  }

  // Least LP cost of the remaining units within `budget` bytes; +inf when
  // even their lightest options do not fit.
  double operator()(int64_t budget) const {
    if (budget < base_w_) return kInf;
    int64_t room = budget - base_w_;
    // Segments [0, i) fit whole; the next one fits in part.
    size_t i = std::upper_bound(cum_w_.begin(), cum_w_.end(), room) - cum_w_.begin();
    if (i == 0)
      return static_cast<double>(base_c_) - static_cast<double>(room) * (segments_.empty() ? 0.0 : segments_[0].rate);
    long double saved = cum_c_[i - 1];
    if (i < segments_.size()) saved += static_cast<long double>(room - cum_w_[i - 1]) * segments_[i].rate;
    return static_cast<double>(base_c_ - saved);
  }

 private:
  void Accumulate() {
    cum_w_.resize(segments_.size());
    cum_c_.resize(segments_.size());
    int64_t w = 0;
    long double c = 0.0L;
    for (size_t i = 0; i < segments_.size(); ++i) {
      w += segments_[i].dw;
      c += segments_[i].dc;
      cum_w_[i] = w;
      cum_c_[i] = c;
    }
  }

  const Lists& hull_;
  std::vector<Segment> segments_;
  std::vector<int64_t> cum_w_;
  std::vector<long double> cum_c_;
  int64_t base_w_ = 0;
  long double base_c_ = 0.0L;
};

// How a partial plan was reached: the state it extends and the option added.
struct Trace {
  int32_t parent;
  int32_t option;  // index into the stage's option list
};

struct Candidate {
  int64_t w;
  double c;
  Trace trace;
};

// Searches the open units (their alive options in `open`, each sorted by
// bytes) for a plan within `budget` that costs less than *best_cost.
// Returns false when the state cap was reached.
bool SearchOpenUnits(const Lists& open, int64_t budget, double tolerance, int64_t max_states,
                     std::vector<int32_t>* best_choices, double* best_cost, bool* improved, int64_t* n_states) {
  const int32_t n = open.n_lists();
  Lists hull = Hulls(open);
  SuffixBound rest(hull, SortedSegments(hull));
  if (rest(budget) >= *best_cost - tolerance) return true;
  // Only the traces are kept for every stage; bytes and cost only for the
  // current frontier.
  std::vector<std::vector<Trace>> traces(n + 1);
  traces[0].push_back({-1, -1});
  std::vector<int64_t> frontier_w{0};
  std::vector<double> frontier_c{0.0};
  std::vector<Candidate> next;
  for (int32_t s = 0; s < n; ++s) {
    rest.Remove(s);
    next.clear();
    for (size_t i = 0; i < frontier_w.size(); ++i) {
      for (int32_t j = 0; j < open.size(s); ++j) {
        const Point& o = open.at(s, j);
        int64_t w = frontier_w[i] + o.w;
        double c = frontier_c[i] + o.c;
        double bound = c + rest(budget - w);
        if (bound == kInf) break;  // heavier options do not fit either
        if (bound >= *best_cost - tolerance) continue;
        next.push_back({w, c, {static_cast<int32_t>(i), j}});
      }
    }
    *n_states += static_cast<int64_t>(next.size());
    if (*n_states > max_states) return false;
    std::sort(next.begin(), next.end(),
              [](const Candidate& a, const Candidate& b) { return a.w != b.w ? a.w < b.w : a.c < b.c; });
    frontier_w.clear();
    frontier_c.clear();
    double best = kInf;
    for (const Candidate& cand : next) {
      if (cand.c < best) {
        frontier_w.push_back(cand.w);
        frontier_c.push_back(cand.c);
        traces[s + 1].push_back(cand.trace);
        best = cand.c;
      }
    }
    if (frontier_w.empty()) return true;  // nothing can beat the incumbent
  }
  // Bytes rise and cost falls along the final frontier: the last state is best.
  if (frontier_c.back() >= *best_cost) return true;
  *best_cost = frontier_c.back();
  *improved = true;
  best_choices->assign(n, -1);
  int32_t idx = static_cast<int32_t>(frontier_c.size()) - 1;
  for (int32_t s = n; s > 0; --s) {
    const Trace& t = traces[s][idx];
    (*best_choices)[s - 1] = open.at(s - 1, t.option).choice;
    idx = t.parent;
  }
  return true;
}

// Reduced-cost fixing: the options that could still be in a plan with
// sum rc < rc_limit. Units left with one option are settled.
struct Fixing {
  Lists open;                       // alive options of the open units, widest unit first
  std::vector<int32_t> open_units;  // unit index of each list in `open`
  std::vector<Point> point;         // per unit: its option when settled
  int64_t bytes = 0;                // of the settled units
  long double cost = 0.0L;
};

Fixing FixByReducedCost(const Lists& pareto, const Relaxation& r, double rc_limit) {
  const int32_t n = pareto.n_lists();
  // The argmin option of every unit has rc 0, so every unit keeps one.
  auto alive = [&](int32_t u, const Point& q) {
    return q.c + r.lambda * static_cast<double>(q.w) - r.min_lagrangian[u] < rc_limit;
  };
  Fixing fix;
  fix.point.resize(n);
  std::vector<int64_t> span(n, 0);  // bytes between the lightest and heaviest alive option
  for (int32_t u = 0; u < n; ++u) {
    int32_t count = 0;
    int64_t lightest = 0;
    for (int32_t k = 0; k < pareto.size(u); ++k) {
      const Point& q = pareto.at(u, k);
      if (!alive(u, q)) continue;
      if (count++ == 0) lightest = q.w;
      fix.point[u] = q;
      span[u] = q.w - lightest;
    }
    if (count == 1) {
      fix.bytes += fix.point[u].w;
      fix.cost += fix.point[u].c;
    } else {
      fix.open_units.push_back(u);
    }
  }
  // Widest units first: the frontier takes its shape early and the LP bound
  // of the narrow units left is tight (5-40x fewer states on the seeds).
  std::stable_sort(fix.open_units.begin(), fix.open_units.end(),
                   [&](int32_t a, int32_t b) { return span[a] > span[b]; });
  for (int32_t u : fix.open_units) {
    for (int32_t k = 0; k < pareto.size(u); ++k) {
      if (alive(u, pareto.at(u, k))) fix.open.points.push_back(pareto.at(u, k));
    }
    fix.open.Close();
  }
  return fix;
}

}  // namespace

double LagrangianBound(const Problem& p) {
  Lists pareto = ParetoFrontiers(p);
  Lists hull = Hulls(pareto);
  std::vector<Segment> segments = SortedSegments(hull);
  Relaxation r = Relax(p, pareto, hull, segments);
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
  Lists hull = Hulls(pareto);
  std::vector<Segment> segments = SortedSegments(hull);
  Relaxation r = Relax(p, pareto, hull, segments);

  Solution sol;
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
  take(Incumbent(pareto, hull, segments, r));
  sol.n_units_fixed = n;
  if (!r.fractional) {
    sol.lower_bound = sol.cost;
    sol.optimal = true;
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
    return sol;
  }

  Fixing fix = FixByReducedCost(pareto, r, gap + tolerance);
  sol.n_units_searched = static_cast<int64_t>(fix.open_units.size());
  sol.n_units_fixed = n - sol.n_units_searched;

  std::vector<int32_t> best_open;
  double best_open_cost = static_cast<double>(sol.cost - fix.cost);
  bool improved = false;
  bool complete = SearchOpenUnits(fix.open, p.budget_n_bytes - fix.bytes, tolerance, limits.max_states, &best_open,
                                  &best_open_cost, &improved, &sol.n_states);
  if (improved && static_cast<double>(fix.cost + best_open_cost) < sol.cost) {
    std::vector<Point> better = fix.point;
    for (size_t s = 0; s < fix.open_units.size(); ++s) {
      const Choice& ch = p.choices[best_open[s]];
      better[fix.open_units[s]] = {ch.n_bytes, ch.cost, best_open[s]};
    }
    take(better);
  }
  sol.optimal = complete;
  sol.lower_bound = complete ? sol.cost : std::min(r.bound, sol.cost);
  return sol;
}

}  // namespace mixq::plan::internal
