// libFuzzer harness: the planner's parsers (measurement JSON, plan JSON,
// ExLlamaV2 measurement, markdown cost table) must accept or reject any bytes
// without crashing, and a plan made from an accepted measurement must fit its
// budget (both budgets of an offload plan). The first input byte picks the
// parser.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "plan/plan.h"

namespace {

void PlanWithinBudget(const mixq::plan::Measurement& m) {
  mixq::plan::PlanRequest req;
  req.limits.max_states = 1000;  // small: a capped search must keep the budget too
  auto range = mixq::plan::AchievableSizes(m, req.constraints);
  if (!range.has_value()) return;
  int64_t mid = range->min_file_n_bytes / 2 + range->max_file_n_bytes / 2;
  if (mid <= 0) return;
  req.budget = mixq::plan::Budget::FileBytes(mid);
  auto plan = mixq::plan::SolvePlan(m, req);
  if (plan.has_value() && plan->file_n_bytes > mid) std::abort();
  auto greedy = mixq::plan::GreedyPlan(m, req);
  if (greedy.has_value() && greedy->file_n_bytes > mid) std::abort();
  // Offload plans: each share within its own budget.
  const mixq::plan::OffloadBudgets b{mid / 2, mid / 2};
  auto offload = mixq::plan::SolveOffloadPlan(m, b, req);
  if (offload.has_value() &&
      (offload->cpu_n_bytes > b.cpu_n_bytes || offload->file_n_bytes - offload->cpu_n_bytes > b.gpu_n_bytes)) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 4;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0) {
    auto m = mixq::plan::ParseMeasurementJson(text);
    if (m.has_value()) PlanWithinBudget(*m);
  } else if (mode == 1) {
    auto plan = mixq::plan::ParsePlanJson(text);
    if (plan.has_value()) (void)mixq::plan::TensorTypeArgs(*plan);
  } else if (mode == 2) {
    auto m = mixq::plan::ImportExl2Measurement(text, mixq::plan::Exl2Cost::kErrSquared);
    if (m.has_value()) PlanWithinBudget(*m);
  } else {
    mixq::plan::CostTableSpec spec;
    spec.layers = {{"a", 256}, {"b", 512}, {"c", 1024}};
    spec.unquantized_type = "BF16";
    auto m = mixq::plan::ImportCostTable(text, spec);
    if (m.has_value()) PlanWithinBudget(*m);
  }
  return 0;
}
