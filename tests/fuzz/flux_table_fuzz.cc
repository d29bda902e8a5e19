// libFuzzer harness: a per-layer cost table read as the Flux.1-dev seed table
// (`mixq plan --format flux-table`, `convert --cost-table`) must be imported
// and fitted to the Flux.1-dev layout, or refused, without crashing; the
// fitted measurement must validate, and a plan made from it must fit its
// budget.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "diffusion/diffusion.h"
#include "plan/plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto table = mixq::plan::ImportCostTable(text, mixq::plan::FluxDevCostTableSpec());
  if (!table.has_value()) return 0;
  auto fitted = mixq::diffusion::FitToFluxDev(*table);
  if (!fitted.has_value()) return 0;
  if (!mixq::plan::Validate(*fitted).ok()) std::abort();
  mixq::plan::PlanRequest req;
  req.limits.max_states = 1000;  // small: a capped search must keep the budget too
  auto range = mixq::plan::AchievableSizes(*fitted, req.constraints);
  if (!range.has_value()) return 0;
  const int64_t mid = range->min_file_n_bytes / 2 + range->max_file_n_bytes / 2;
  req.budget = mixq::plan::Budget::FileBytes(mid);
  auto plan = mixq::plan::SolvePlan(*fitted, req);
  if (plan.has_value() && plan->file_n_bytes > mid) std::abort();
  return 0;
}
