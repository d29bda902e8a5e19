// Internal to src/plan: the multiple-choice knapsack that a request reduces
// to, and the solvers that work on it.
#ifndef MIXQ_PLAN_PROBLEM_H_
#define MIXQ_PLAN_PROBLEM_H_

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "plan/plan.h"

namespace mixq::plan::internal {

struct Choice {
  int64_t n_bytes = 0;
  double cost = 0.0;
  int32_t option = 0;  // index into the measurement unit's options
};

// Unit u may take choices[begin[u] .. begin[u+1]); at least one each.
struct Problem {
  std::vector<int32_t> begin;
  std::vector<Choice> choices;
  int64_t budget_n_bytes = 0;  // for the units alone (fixed bytes removed)

  int32_t n_units() const { return static_cast<int32_t>(begin.size()) - 1; }
};

struct Solution {
  std::vector<int32_t> pick;  // per unit, an index into Problem::choices
  int64_t n_bytes = 0;
  double cost = 0.0;
  double lower_bound = 0.0;
  bool optimal = false;
  int64_t n_units_fixed = 0;
  int64_t n_units_searched = 0;
  int64_t n_states = 0;
};

// The allowed choices of every unit after the constraints, with budget 0.
Result<Problem> BuildProblem(const Measurement& measurement, const Constraints& constraints);

// Smallest and largest file sizes of the problem's choices.
SizeRange ProblemSizes(const Measurement& measurement, const Problem& problem);

// Unit budget for a request; InvalidArgument for a malformed budget.
Result<int64_t> UnitBudget(const Measurement& measurement, const Budget& budget);

// REQUIRES: every unit has a choice; the lightest choices fit the budget.
Solution SolveExact(const Problem& problem, const SolverLimits& limits);
// REQUIRES: as SolveExact. Fails with Infeasible when its chains cannot fit.
Result<Solution> SolveGreedy(const Problem& problem);
// The Lagrangian (LP) lower bound of the problem. REQUIRES: as SolveExact.
double LagrangianBound(const Problem& problem);

}  // namespace mixq::plan::internal

#endif  // MIXQ_PLAN_PROBLEM_H_
