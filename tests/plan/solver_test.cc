// The exact solver against independent references: brute force on small
// random instances, a dense DP over integer bytes on mid-sized ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "plan/plan.h"

namespace mixq::plan {
namespace {

constexpr int64_t kFixed = 1000;  // header bytes, so that every budget is a positive file size

// Appends instead of operator+ chains, on which GCC 12 warns falsely (-Wrestrict).
std::string Name(const char* prefix, int64_t i, const char* suffix = "") {
  std::string s(prefix);
  s.append(std::to_string(i)).append(suffix);
  return s;
}

struct Instance {
  Measurement m;
  int64_t min_bytes = 0;
  int64_t max_bytes = 0;
};

// Random units; small byte values and (for some seeds) integer costs so that
// ties in bytes and in cost, and dominated options, are common.
Instance RandomInstance(std::mt19937_64& rng, int n_units, int max_options, int max_bytes, bool integer_costs) {
  Instance inst;
  inst.m.fixed_n_bytes = kFixed;
  std::uniform_int_distribution<int> n_opt(1, max_options);
  std::uniform_int_distribution<int> bytes(0, max_bytes);
  std::uniform_real_distribution<double> real_cost(0.0, 10.0);
  std::uniform_int_distribution<int> int_cost(0, 6);
  for (int u = 0; u < n_units; ++u) {
    Unit unit;
    unit.name = Name("blk.", u, ".w");
    unit.n_weights = 64;
    int k = n_opt(rng);
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
    for (int j = 0; j < k; ++j) {
      Option o{Name("T", j), bytes(rng), integer_costs ? int_cost(rng) : real_cost(rng)};
      lo = std::min(lo, o.n_bytes);
      hi = std::max(hi, o.n_bytes);
      unit.options.push_back(o);
    }
    inst.min_bytes += lo;
    inst.max_bytes += hi;
    inst.m.units.push_back(unit);
  }
  return inst;
}

// Minimum cost over all combinations within the budget; +inf when none fits.
double BruteForce(const Measurement& m, int64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<size_t> idx(m.units.size(), 0);
  while (true) {
    int64_t w = 0;
    double c = 0.0;
    for (size_t u = 0; u < idx.size(); ++u) {
      w += m.units[u].options[idx[u]].n_bytes;
      c += m.units[u].options[idx[u]].cost;
    }
    if (w <= budget) best = std::min(best, c);
    size_t u = 0;
    while (u < idx.size() && ++idx[u] == m.units[u].options.size()) idx[u++] = 0;
    if (u == idx.size()) return best;
  }
}

// Dense DP over every byte count 0..budget (exact for small integer bytes).
double DenseDp(const Measurement& m, int64_t budget) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> best(budget + 1, 0.0), next(budget + 1);
  for (const Unit& u : m.units) {
    std::fill(next.begin(), next.end(), inf);
    for (int64_t b = 0; b <= budget; ++b) {
      for (const Option& o : u.options) {
        if (o.n_bytes <= b) next[b] = std::min(next[b], best[b - o.n_bytes] + o.cost);
      }
    }
    best.swap(next);
  }
  return best[budget];
}

void ExpectConsistent(const Measurement& m, const Plan& plan, int64_t budget) {
  ASSERT_EQ(plan.units.size(), m.units.size());
  int64_t bytes = 0;
  double cost = 0.0;
  for (size_t u = 0; u < m.units.size(); ++u) {
    const Unit& unit = m.units[u];
    auto it = std::find_if(unit.options.begin(), unit.options.end(),
                           [&](const Option& o) { return o.type == plan.units[u].type; });
    ASSERT_NE(it, unit.options.end());
    EXPECT_EQ(it->n_bytes, plan.units[u].n_bytes);
    bytes += it->n_bytes;
    cost += it->cost;
  }
  EXPECT_EQ(plan.file_n_bytes, kFixed + bytes);
  EXPECT_LE(bytes, budget);
  EXPECT_NEAR(plan.cost, cost, 1e-9 * (1.0 + std::fabs(cost)));
  EXPECT_LE(plan.lower_bound, plan.cost + 1e-9 * (1.0 + std::fabs(cost)));
}

TEST(Solver, OptimalAgainstBruteForce) {
  int checked = 0;
  int searched = 0;  // instances the bound alone did not settle
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    std::mt19937_64 rng(seed);
    Instance inst = RandomInstance(rng, 1 + seed % 7, 1 + seed % 5, 40, seed % 3 == 0);
    std::uniform_int_distribution<int64_t> pick(inst.min_bytes - 3, inst.max_bytes + 3);
    for (int t = 0; t < 4; ++t) {
      int64_t budget = pick(rng);
      double expected = BruteForce(inst.m, budget);
      PlanRequest req;
      req.budget = Budget::FileBytes(kFixed + budget);
      auto plan = SolvePlan(inst.m, req);
      if (std::isinf(expected)) {
        ASSERT_FALSE(plan.has_value()) << "seed " << seed << " budget " << budget;
        EXPECT_EQ(plan.error().kind(), StatusKind::kInfeasible);
        continue;
      }
      ASSERT_TRUE(plan.has_value()) << "seed " << seed << ": " << plan.error().message();
      SCOPED_TRACE(Name("seed ", seed, " budget ") + std::to_string(budget));
      ExpectConsistent(inst.m, *plan, budget);
      EXPECT_TRUE(plan->optimal);
      EXPECT_NEAR(plan->cost, expected, 1e-9 * (1.0 + std::fabs(expected)));
      EXPECT_LE(plan->lower_bound, expected + 1e-9 * (1.0 + std::fabs(expected)));
      ++checked;
      searched += plan->n_units_searched > 0;
    }
  }
  EXPECT_GT(checked, 1000);
  EXPECT_GT(searched, 100);
}

TEST(Solver, OptimalAgainstDenseDp) {
  int searched = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    std::mt19937_64 rng(1000 + seed);
    Instance inst = RandomInstance(rng, 30 + seed % 30, 12, 300, seed % 4 == 0);
    for (double frac : {0.1, 0.35, 0.6, 0.9}) {
      int64_t budget = inst.min_bytes + static_cast<int64_t>(frac * (inst.max_bytes - inst.min_bytes));
      PlanRequest req;
      req.budget = Budget::FileBytes(kFixed + budget);
      auto plan = SolvePlan(inst.m, req);
      ASSERT_TRUE(plan.has_value()) << plan.error().message();
      SCOPED_TRACE(Name("seed ", seed, " budget ") + std::to_string(budget));
      ExpectConsistent(inst.m, *plan, budget);
      double expected = DenseDp(inst.m, budget);
      EXPECT_TRUE(plan->optimal);
      EXPECT_NEAR(plan->cost, expected, 1e-9 * (1.0 + expected));
      searched += plan->n_units_searched > 0;
    }
  }
  EXPECT_GT(searched, 50);
}

TEST(Solver, StateCapReturnsFeasiblePlanWithGap) {
  int capped_runs = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(300 + seed);
    Instance inst = RandomInstance(rng, 12, 6, 30, true);
    int64_t budget = (inst.min_bytes + inst.max_bytes) / 2;
    PlanRequest req;
    req.budget = Budget::FileBytes(kFixed + budget);
    auto exact = SolvePlan(inst.m, req);
    ASSERT_TRUE(exact.has_value());
    if (exact->n_states <= 1) continue;  // the bound alone settled it
    req.limits.max_states = 1;
    auto capped = SolvePlan(inst.m, req);
    ASSERT_TRUE(capped.has_value());
    SCOPED_TRACE(Name("seed ", seed));
    ExpectConsistent(inst.m, *capped, budget);
    EXPECT_FALSE(capped->optimal);
    EXPECT_GE(capped->cost, exact->cost - 1e-9);
    // The reported gap brackets the optimum.
    EXPECT_LE(capped->lower_bound, exact->cost + 1e-9);
    ++capped_runs;
  }
  EXPECT_GT(capped_runs, 10);
}

TEST(Solver, LargeBudgetTakesCheapestOptions) {
  std::mt19937_64 rng(11);
  Instance inst = RandomInstance(rng, 50, 6, 100, false);
  PlanRequest req;
  req.budget = Budget::FileBytes(kFixed + inst.max_bytes + 10);
  auto plan = SolvePlan(inst.m, req);
  ASSERT_TRUE(plan.has_value());
  double expected = 0.0;
  for (const Unit& u : inst.m.units) {
    double c = u.options[0].cost;
    for (const Option& o : u.options) c = std::min(c, o.cost);
    expected += c;
  }
  EXPECT_TRUE(plan->optimal);
  EXPECT_NEAR(plan->cost, expected, 1e-9 * expected);
}

TEST(Solver, InfeasibleBudgetNamesSmallestAndLargestSizes) {
  Measurement m;
  m.fixed_n_bytes = 100;
  m.units.push_back({"a", {}, 32, {{"Q8_0", 34, 1.0}, {"Q4_0", 18, 2.0}}});
  m.units.push_back({"b", {}, 32, {{"Q8_0", 34, 1.0}, {"Q4_0", 18, 2.0}}});
  PlanRequest req;
  req.budget = Budget::FileBytes(100 + 35);
  auto plan = SolvePlan(m, req);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().kind(), StatusKind::kInfeasible);
  EXPECT_NE(plan.error().message().find("136 bytes"), std::string::npos) << plan.error().message();
  EXPECT_NE(plan.error().message().find("168 bytes"), std::string::npos) << plan.error().message();
  auto range = AchievableSizes(m, {});
  ASSERT_TRUE(range.has_value());
  EXPECT_EQ(range->min_file_n_bytes, 136);
  EXPECT_EQ(range->max_file_n_bytes, 168);
  req.budget = Budget::FileBytes(50);  // smaller than the fixed bytes alone
  EXPECT_EQ(SolvePlan(m, req).error().kind(), StatusKind::kInfeasible);
  req.budget = Budget::FileBytes(136);  // exactly the smallest file
  auto tight = SolvePlan(m, req);
  ASSERT_TRUE(tight.has_value());
  EXPECT_EQ(tight->file_n_bytes, 136);
}

TEST(Solver, BpwBudgetCountsAllTensorBytes) {
  // 1000 weights of fixed tensors at 2 bytes each; one unit of 1024 weights.
  Measurement m;
  m.fixed_n_bytes = 5000;
  m.fixed_tensor_n_bytes = 2000;
  m.fixed_n_weights = 1000;
  m.units.push_back({"u", {}, 1024, {{"Q8_0", 1088, 1.0}, {"Q4_0", 576, 2.0}, {"Q2_K", 336, 3.0}}});
  PlanRequest req;
  // 8 x (2000 + 1088) / 2024 = 12.205...: Q8_0 fits at 12.3 bpw, not at 12.2.
  req.budget = Budget::BitsPerWeight(12.3);
  auto plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->units[0].type, "Q8_0");
  EXPECT_NEAR(plan->bpw, 8.0 * 3088 / 2024, 1e-12);
  EXPECT_EQ(plan->file_n_bytes, 5000 + 1088);
  req.budget = Budget::BitsPerWeight(12.2);
  plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->units[0].type, "Q4_0");
  EXPECT_LE(plan->bpw, 12.2);
}

TEST(Greedy, NeverBeatsTheExactSolver) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(5000 + seed);
    Instance inst = RandomInstance(rng, 5 + seed % 40, 10, 200, seed % 2 == 0);
    int64_t budget = (inst.min_bytes + inst.max_bytes) / 2;
    PlanRequest req;
    req.budget = Budget::FileBytes(kFixed + budget);
    auto greedy = GreedyPlan(inst.m, req);
    auto exact = SolvePlan(inst.m, req);
    ASSERT_TRUE(exact.has_value());
    if (!greedy.has_value()) {
      EXPECT_EQ(greedy.error().kind(), StatusKind::kInfeasible);
      continue;
    }
    SCOPED_TRACE(Name("seed ", seed));
    ExpectConsistent(inst.m, *greedy, budget);
    EXPECT_FALSE(greedy->optimal);
    EXPECT_LE(exact->cost, greedy->cost + 1e-9 * greedy->cost);
  }
}

// docs/reference/anchors-optimizers.md 1.2/2.4: neighbour-only pruning keeps a
// dominated type (bytes 16/8/6/5, costs 0/5/6/4), so at a budget of 8 bytes
// the greedy stops at 8 bytes and cost 5 where 5 bytes and cost 4 fit.
TEST(Greedy, NeighbourPruningKeepsADominatedType) {
  Measurement m;
  m.fixed_n_bytes = 10;
  m.units.push_back({"u", {}, 8, {{"A", 16, 0.0}, {"B", 8, 5.0}, {"C", 6, 6.0}, {"D", 5, 4.0}}});
  PlanRequest req;
  req.budget = Budget::FileBytes(10 + 8);
  auto greedy = GreedyPlan(m, req);
  ASSERT_TRUE(greedy.has_value());
  EXPECT_EQ(greedy->units[0].type, "B");
  auto exact = SolvePlan(m, req);
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(exact->units[0].type, "D");
  EXPECT_DOUBLE_EQ(exact->cost, 4.0);
}

}  // namespace
}  // namespace mixq::plan
