// mixq plan measurement.json (--target 4.5bpw | --target-size 2.1GiB | --gpu-budget G --cpu-budget C)
//   [--keep REGEX=TYPE] -o plan.json
#include <cstdio>
#include <optional>

#include "base/file_identity.h"
#include "cli/diffusion.h"
#include "cli/workflow.h"

namespace mixq::cli {
namespace {

struct PlanCliOptions {
  std::string measurement;
  std::string format;  // empty: detected from the content
  std::string target;
  std::string target_size;
  std::string gpu_budget;
  std::string cpu_budget;
  std::vector<std::string> keep;
  std::string min_type;
  std::string max_type;
  std::string output;
  std::string tensor_type_file;
  bool greedy = false;
};

}  // namespace

void ReportPlan(const GlobalOptions& global, const std::string& command, const plan::Plan& p, bool offload) {
  auto args = plan::TensorTypeArgs(p);
  const bool is_diffusion = pipeline::IsDiffusionPlan(p);
  if (global.json) {
    EmitJsonBegin(command);
    for (const auto& u : p.units) {
      EmitJson("unit", {{"name", u.name},
                        {"type", u.type},
                        {"n_weights", u.n_weights},
                        {"size_bytes", u.n_bytes},
                        {"cost", u.cost}});
    }
    nlohmann::json s = {{"method", p.method},
                        {"file_bytes", p.file_n_bytes},
                        {"budget_bytes", p.budget_file_n_bytes},
                        {"tensor_bytes", p.tensor_n_bytes},
                        {"bpw", p.bpw},
                        {"cost", p.cost},
                        {"lower_bound", p.lower_bound},
                        {"optimal", p.optimal}};
    if (args) s["llama_quantize_args"] = *args;
    if (offload) s.update(OffloadSummary(p));
    s.update(PlanBreakdown(p));
    if (is_diffusion) {
      s["file_gib"] = static_cast<double>(p.file_n_bytes) / (1ull << 30);
      s["gpu_gib"] = diffusion::SmallestGpuGib(static_cast<uint64_t>(p.file_n_bytes));
    }
    EmitJson("summary", s);
    return;
  }
  std::printf("# %s plan: %s (%lld bytes) of budget %lld, %.4f bpw, predicted cost %.6g (bound %.6g, %s)\n",
              p.method.c_str(), FormatBytes(static_cast<uint64_t>(p.file_n_bytes)).c_str(),
              static_cast<long long>(p.file_n_bytes), static_cast<long long>(p.budget_file_n_bytes), p.bpw, p.cost,
              p.lower_bound, p.optimal ? "optimal" : "not proven optimal");
  for (const auto& u : p.units) std::printf("%-44s %s\n", u.name.c_str(), u.type.c_str());
  if (args) {
    std::printf("# llama-quantize arguments:\n");
    for (const auto& a : *args) std::printf("--tensor-type '%s' ", a.c_str());
    std::printf("\n");
  }
  if (offload) PrintOffloadSummary(p);
  if (is_diffusion) {
    std::printf("# ComfyUI-GGUF: %s\n", diffusion::FitSummary(static_cast<uint64_t>(p.file_n_bytes), p.bpw).c_str());
  } else if (!global.quiet) {
    PrintPlanBreakdown(p);
  }
}

namespace {

int RunPlan(const GlobalOptions& global, const PlanCliOptions& opt) {
  if (Status s = CheckOutputsAreNotInputs({opt.measurement}, {opt.output, opt.tensor_type_file}); !s.ok()) {
    return ReportError(s);
  }
  auto m = pipeline::LoadAnyMeasurement(opt.measurement, opt.format, CliHooks(global));
  if (!m) return ReportError(m.error());
  plan::PlanRequest req;
  std::optional<plan::OffloadBudgets> offload;
  if (!opt.gpu_budget.empty() || !opt.cpu_budget.empty()) {
    auto budgets = ParseOffloadBudgets(opt.gpu_budget, opt.cpu_budget, opt.target, opt.target_size);
    if (!budgets) return ReportError(budgets.error());
    offload = *budgets;
  } else {
    auto budget = ParseBudget(opt.target, opt.target_size);
    if (!budget) return ReportError(budget.error());
    req.budget = *budget;
  }
  for (const auto& k : opt.keep) {
    auto rule = plan::ParseKeepRule(k);
    if (!rule) return ReportError(rule.error());
    req.constraints.keep.push_back(*rule);
  }
  req.constraints.min_type = opt.min_type;
  req.constraints.max_type = opt.max_type;
  if (offload && opt.greedy) return ReportError(Status::InvalidArgument("--greedy plans under one budget only"));
  auto p = offload      ? plan::SolveOffloadPlan(*m, *offload, req)
           : opt.greedy ? plan::GreedyPlan(*m, req)
                        : plan::SolvePlan(*m, req);
  if (!p) return ReportError(p.error());
  if (!opt.output.empty()) {
    if (Status s = plan::SavePlan(*p, opt.output); !s.ok()) return ReportError(s);
  }
  if (!opt.tensor_type_file.empty()) {
    if (Status s = plan::SaveTensorTypeFile(*p, opt.tensor_type_file); !s.ok()) return ReportError(s);
  }
  ReportPlan(global, "plan", *p, offload.has_value());
  return kExitOk;
}

}  // namespace

void AddPlan(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<PlanCliOptions>();
  CLI::App* sub = app.add_subcommand("plan", "choose the type of each tensor to minimise predicted damage in a budget");
  sub->add_option("measurement", opt->measurement, "measurement (mixq JSON, ExLlamaV2 measurement.json, cost table)")
      ->required();
  sub->add_option("--format", opt->format,
                  "input format instead of the one its content shows: mixq, exl2, flux-table (a per-layer cost "
                  "table, fitted to Flux.1-dev as mixq convert stores it)");
  sub->add_option("--target", opt->target, "bits per weight over all tensors, e.g. 4.5bpw");
  sub->add_option("--target-size", opt->target_size, "whole output file size, e.g. 2.1GiB or 750MB");
  sub->add_option("--gpu-budget", opt->gpu_budget,
                  "MoE offload: bytes on the GPU (everything but the routed experts), e.g. 22GiB");
  sub->add_option("--cpu-budget", opt->cpu_budget, "MoE offload: bytes of routed experts in system RAM, e.g. 90GiB");
  sub->add_option("--keep", opt->keep, "REGEX=TYPE: force a type (repeatable)");
  sub->add_option("--min-type", opt->min_type, "no type below this one's bpw");
  sub->add_option("--max-type", opt->max_type, "no type above this one's bpw");
  sub->add_flag("--greedy", opt->greedy, "use the greedy benefit/cost baseline instead of the exact solver");
  sub->add_option("-o,--output", opt->output, "plan JSON to write (for mixq quantize --plan)");
  sub->add_option("--tensor-type-file", opt->tensor_type_file,
                  "also write the plan as llama-quantize --tensor-type-file input (PATTERN=TYPE lines)");
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunPlan(global, *opt); }; });
}

}  // namespace mixq::cli
