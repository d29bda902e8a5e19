// The planner on the seed data: the exact solver reaches the optima that an
// independent solver (docs/reference/anchors-optimizers.md, section 2: HiGHS and
// a Python MCKP solver) found, our greedy reproduces that document's greedy
// figures, and the exact plan never costs more than the greedy nor exceeds the
// budget.
#include <gtest/gtest.h>

#include "plan/plan.h"
#include "test_support.h"

namespace mixq::plan {
namespace {

const Measurement& Exl2(Exl2Cost cost) {
  static const Measurement by_err =
      ImportExl2Measurement(testing::ReadSeed("002_68e96ba8af961ce5.txt"), Exl2Cost::kErr).value();
  static const Measurement by_err2 =
      ImportExl2Measurement(testing::ReadSeed("002_68e96ba8af961ce5.txt"), Exl2Cost::kErrSquared).value();
  return cost == Exl2Cost::kErr ? by_err : by_err2;
}

// The anchors' setup: bpw over the quantizable weights only.
Measurement FluxQuantizableOnly() {
  CostTableSpec spec = FluxDevCostTableSpec();
  spec.fixed_n_bytes = spec.fixed_tensor_n_bytes = spec.fixed_n_weights = 0;
  return ImportCostTable(testing::ReadSeed("000_b622eb4ec4e2b348.txt"), spec).value();
}

struct Pair {
  Plan exact;
  Plan greedy;
};

Pair PlanBoth(const Measurement& m, double bpw) {
  PlanRequest req;
  req.budget = Budget::BitsPerWeight(bpw);
  auto exact = SolvePlan(m, req);
  auto greedy = GreedyPlan(m, req);
  EXPECT_TRUE(exact.has_value()) << exact.error().message();
  EXPECT_TRUE(greedy.has_value()) << greedy.error().message();
  Pair p{exact.value(), greedy.value()};
  EXPECT_TRUE(p.exact.optimal) << bpw;
  for (const Plan* plan : {&p.exact, &p.greedy}) {
    EXPECT_LE(plan->file_n_bytes, plan->budget_file_n_bytes) << plan->method << " at " << bpw;
    EXPECT_LE(plan->bpw, bpw) << plan->method;
  }
  EXPECT_LE(p.exact.cost, p.greedy.cost) << bpw;
  return p;
}

TEST(SeedExl2, SummedErrMatchesIndependentOptimum) {
  // Anchors table 2.2, "Sigma err exact". That budget counts integer bits, ours
  // whole bytes (total_bits rounded up), so allow a relative 1e-4.
  const std::pair<double, double> kExpected[] = {{2.5, 55.132}, {3.0, 37.449}, {4.0, 18.258}, {5.0, 9.852}};
  for (auto [bpw, expected] : kExpected) {
    Pair p = PlanBoth(Exl2(Exl2Cost::kErr), bpw);
    EXPECT_NEAR(p.exact.cost, expected, 1e-4 * expected) << bpw;
  }
}

TEST(SeedExl2, SquaredErrExactNeverWorseThanGreedy) {
  for (double bpw : {2.5, 3.0, 4.0, 5.0}) PlanBoth(Exl2(Exl2Cost::kErrSquared), bpw);
}

TEST(SeedFlux, MatchesIndependentOptimumAndGreedy) {
  // Anchors table 2.4: exact cost and the MixedQuantFlux greedy's cost.
  struct Row {
    double bpw, exact, greedy;
  };
  const Row kExpected[] = {
      {3.1, 3863.41, 3880.85}, {3.8, 2284.21, 2301.81}, {6.9, 772.19, 772.28}, {8.2, 539.57, 567.21}};
  const Measurement m = FluxQuantizableOnly();
  for (const Row& r : kExpected) {
    Pair p = PlanBoth(m, r.bpw);
    EXPECT_NEAR(p.exact.cost, r.exact, 0.006) << r.bpw;
    EXPECT_NEAR(p.greedy.cost, r.greedy, 0.006) << r.bpw;
  }
}

TEST(SeedFlux, WholeFileBudgetsNeverWorseThanGreedy) {
  const Measurement m = ImportCostTable(testing::ReadSeed("000_b622eb4ec4e2b348.txt"), FluxDevCostTableSpec()).value();
  for (double bpw : {3.1, 3.8, 6.9, 8.2}) PlanBoth(m, bpw);
}

}  // namespace
}  // namespace mixq::plan
