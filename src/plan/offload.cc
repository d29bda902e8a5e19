// Offload plans: a GPU share and a CPU share of one file, planned separately.
#include <map>

#include "base/name_pattern.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

// The measurement's units of one share. The CPU share has no fixed bytes: the
// header, metadata and float tensors stay with the GPU share.
Measurement Share(const Measurement& m, bool cpu) {
  Measurement out;
  out.model = m.model;
  out.cost_model = m.cost_model;
  if (!cpu) {
    out.fixed_n_bytes = m.fixed_n_bytes;
    out.fixed_tensor_n_bytes = m.fixed_tensor_n_bytes;
    out.fixed_n_weights = m.fixed_n_weights;
  }
  for (const Unit& u : m.units) {
    if (KeptOnCpu(u) == cpu) out.units.push_back(u);
  }
  return out;
}

bool MatchesAnyUnit(const NamePattern& pattern, const Measurement& m) {
  for (const Unit& u : m.units) {
    if (pattern.Search(u.name)) return true;
    for (const std::string& t : u.tensors) {
      if (pattern.Search(t)) return true;
    }
  }
  return false;
}

// The keep rules that can apply to a share; a rule that matches no unit of
// either share is the caller's mistake, reported once.
Result<PlanRequest> ShareRequest(const PlanRequest& request, const Measurement& share, const Measurement& other,
                                 int64_t budget_n_bytes) {
  PlanRequest r = request;
  r.budget = Budget::FileBytes(budget_n_bytes);
  r.constraints.keep.clear();
  for (const KeepRule& k : request.constraints.keep) {
    auto pattern = NamePattern::Compile(k.pattern);
    MIXQ_TRY(pattern);
    if (MatchesAnyUnit(*pattern, share)) {
      r.constraints.keep.push_back(k);
    } else if (!MatchesAnyUnit(*pattern, other)) {
      return Status::InvalidArgument("--keep " + k.pattern + "=" + k.type + " matches no unit; check the pattern");
    }
  }
  return r;
}

Result<Plan> SolveShare(const Measurement& share, const Measurement& other, const PlanRequest& request,
                        int64_t budget_n_bytes, const char* name) {
  auto r = ShareRequest(request, share, other, budget_n_bytes);
  MIXQ_TRY(r);
  auto p = SolvePlan(share, *r);
  if (!p) return p.error().WithContext(name);
  return p;
}

}  // namespace

bool KeptOnCpu(const Unit& unit) {
  if (unit.tensors.empty()) return unit.name.find(kCpuTensorPattern) != std::string::npos;
  for (const std::string& t : unit.tensors) {
    if (t.find(kCpuTensorPattern) != std::string::npos) return true;
  }
  return false;
}

Result<Plan> SolveOffloadPlan(const Measurement& m, const OffloadBudgets& budgets, const PlanRequest& request) {
  MIXQ_TRY(Validate(m));
  const Measurement gpu = Share(m, false), cpu = Share(m, true);
  if (cpu.units.empty()) {
    return Status::InvalidArgument("no tensor name contains '" + std::string(kCpuTensorPattern) +
                                   "' (routed experts): --gpu-budget/--cpu-budget are for mixture-of-experts models; "
                                   "use --target or --target-size");
  }
  auto cpu_plan = SolveShare(cpu, gpu, request, budgets.cpu_n_bytes, "CPU share (routed experts)");
  MIXQ_TRY(cpu_plan);
  Plan plan;
  if (gpu.units.empty()) {
    if (gpu.fixed_n_bytes > budgets.gpu_n_bytes) {
      return Status::Infeasible("GPU share: the " + std::to_string(gpu.fixed_n_bytes) +
                                " bytes that are not routed experts exceed the GPU budget of " +
                                std::to_string(budgets.gpu_n_bytes));
    }
    plan = *cpu_plan;
    plan.file_n_bytes += gpu.fixed_n_bytes;
    plan.tensor_n_bytes += gpu.fixed_tensor_n_bytes;
  } else {
    auto gpu_plan = SolveShare(gpu, cpu, request, budgets.gpu_n_bytes, "GPU share");
    MIXQ_TRY(gpu_plan);
    plan = *gpu_plan;
    plan.file_n_bytes += cpu_plan->file_n_bytes;
    plan.tensor_n_bytes += cpu_plan->tensor_n_bytes;
    plan.cost += cpu_plan->cost;
    plan.lower_bound += cpu_plan->lower_bound;
    plan.optimal = plan.optimal && cpu_plan->optimal;
    plan.n_units_fixed += cpu_plan->n_units_fixed;
    plan.n_units_searched += cpu_plan->n_units_searched;
    plan.n_states += cpu_plan->n_states;
  }
  // Units back in measurement order.
  std::map<std::string, UnitPlan> by_name;
  for (const Plan* share : {&plan, &*cpu_plan}) {
    for (const UnitPlan& u : share->units) by_name[u.name] = u;
  }
  plan.units.clear();
  for (const Unit& u : m.units) plan.units.push_back(by_name.at(u.name));
  plan.budget_file_n_bytes = budgets.gpu_n_bytes + budgets.cpu_n_bytes;
  plan.budget_cpu_n_bytes = budgets.cpu_n_bytes;
  plan.cpu_n_bytes = cpu_plan->file_n_bytes;
  plan.n_weights = TotalWeights(m);
  plan.bpw = 8.0 * static_cast<double>(plan.tensor_n_bytes) / static_cast<double>(plan.n_weights);
  return plan;
}

std::string OffloadLlamaFlags() { return "-ngl 999 -ot " + std::string(kCpuTensorPattern) + "=CPU"; }

}  // namespace mixq::plan
