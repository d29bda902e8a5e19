// Diffusion workflows: every route (convert, measure, plan, quantize) opens
// the model, measures the same units and writes the same file.
#include <chrono>
#include <cstdio>

#include "base/file_identity.h"
#include "base/text_file.h"
#include "pipeline/pipeline.h"

namespace mixq::pipeline {
namespace {

// The name a file of one type carries: the quantized default type, the float
// storage, or what the checkpoint's dtype becomes (BF16 or F16).
std::string TypeLabel(const diffusion::ConvertOptions& options, const quantize::QuantizeReport& report) {
  if (options.rules.default_format != nullptr) return std::string(options.rules.default_format->name);
  if (options.float_format != nullptr) return std::string(options.float_format->name);
  return report.type_counts.contains("BF16") ? "BF16" : "F16";
}

Result<const formats::Format*> FloatType(const std::string& name, const char* flag) {
  const formats::Format* f = formats::FindFormatByName(name);
  if (f == nullptr || f->quantized || !f->can_encode()) {
    return Status::InvalidArgument(std::string(flag) + ": '" + name + "' is not F32, F16 or BF16");
  }
  return f;
}

}  // namespace

Result<diffusion::ConvertOptions> BuildConvertOptions(const DiffusionTypes& types) {
  diffusion::ConvertOptions c;
  if (!types.type.empty()) {
    MIXQ_ASSIGN_OR_RETURN(const formats::Format* f, quantize::ParseTypeName(types.type, "--type"));
    if (f->quantized) {
      c.rules.default_format = f;
    } else {
      c.float_format = f;
    }
  }
  if (!types.float_type.empty()) {
    MIXQ_ASSIGN_OR_RETURN(c.float_format, FloatType(types.float_type, "--float-type"));
  }
  for (const auto& text : types.tensor_types) {
    MIXQ_ASSIGN_OR_RETURN(auto o, quantize::ParseTensorTypeOverride(text));
    c.rules.overrides.push_back(std::move(o));
  }
  c.method = types.method;
  c.n_threads = types.threads;
  return c;
}

Result<DiffusionInput> OpenDiffusionInput(const std::string& path, const std::vector<std::string>& outputs,
                                          const Hooks& hooks) {
  DiffusionInput input;
  MIXQ_ASSIGN_OR_RETURN(input.source, diffusion::OpenSource(path));
  MIXQ_TRY(CheckOutputsAreNotInputs(input.source->files(), outputs));
  MIXQ_ASSIGN_OR_RETURN(input.model, diffusion::Inspect(*input.source));
  const diffusion::Model& m = input.model;
  hooks.Note(m.architecture + " model: " + std::to_string(m.tensors.size()) + " tensors, hidden " +
             std::to_string(m.dims.hidden) + ", " + std::to_string(m.n_double_blocks) + " double + " +
             std::to_string(m.n_single_blocks) + " single blocks" +
             (m.prefix.empty() ? "" : ", prefix '" + m.prefix + "' stripped") +
             (m.n_dropped > 0 ? ", " + std::to_string(m.n_dropped) + " other tensors dropped" : ""));
  for (const auto& note : m.layout_notes) hooks.Note("warning: " + note);
  return input;
}

Result<plan::Measurement> MeasureDiffusion(const DiffusionInput& input, const DiffusionMeasureRequest& request,
                                           const Hooks& hooks) {
  if (!request.cost_table.empty()) {
    MIXQ_ASSIGN_OR_RETURN(std::string text, ReadTextFile(request.cost_table));
    auto m = plan::ImportCostTable(text, plan::FluxDevCostTableSpec());
    MIXQ_TRY(m.status().WithContext("cost table '" + request.cost_table + "'"));
    return diffusion::FitMeasurement(*m, input.model);
  }
  diffusion::MeasureOptions mo;
  mo.candidates = request.types;
  mo.group_blocks = !request.per_tensor;
  mo.max_rows = request.measure_rows;
  mo.n_threads = request.threads;
  mo.method = request.method;
  mo.on_progress = [&](size_t done, size_t total, const std::string& name) {
    hooks.Progress("measure", static_cast<uint64_t>(done) * 1000 / std::max<size_t>(1, total), 1000, name);
  };
  auto start = std::chrono::steady_clock::now();
  auto m = diffusion::Measure(*input.source, input.model, mo);
  hooks.StageDone("measure");
  MIXQ_TRY(m);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char buf[128];
  std::snprintf(buf, sizeof buf, "measured %zu units x %zu types in %.1f s", m->units.size(),
                m->units.empty() ? size_t{0} : m->units.front().options.size(), secs);
  hooks.Note(buf);
  return m;
}

bool IsDiffusionPlan(const plan::Plan& plan) {
  for (const auto& u : plan.units) {
    if (!diffusion::BlockOf(u.name).empty()) return true;
    for (const auto& t : u.tensors) {
      if (!diffusion::BlockOf(t).empty()) return true;
    }
  }
  return false;
}

Result<plan::Plan> LoadDiffusionPlan(const std::string& path, const DiffusionInput& input,
                                     diffusion::ConvertOptions* options) {
  MIXQ_ASSIGN_OR_RETURN(plan::Plan p, plan::LoadPlan(path));
  MIXQ_TRY(diffusion::ApplyPlan(p, input.model, &options->rules).WithContext("plan '" + path + "'"));
  return p;
}

namespace {

// The measurement a budget's plan is solved on: the file fitted to the model,
// or MeasureDiffusion's with the options' method and threads.
Result<plan::Measurement> PlanningMeasurement(const DiffusionInput& input, const DiffusionPlanRequest& request,
                                              const diffusion::ConvertOptions& options, const Hooks& hooks) {
  if (!request.measurement.empty()) {
    MIXQ_ASSIGN_OR_RETURN(plan::Measurement m, plan::LoadMeasurement(request.measurement));
    return diffusion::FitMeasurement(m, input.model);
  }
  DiffusionMeasureRequest measure = request.measure;
  measure.method = options.method;
  measure.threads = options.n_threads;
  return MeasureDiffusion(input, measure, hooks);
}

// The exact plan in the budget, noted against the seed's greedy method.
Result<plan::Plan> SolveInBudget(const plan::Measurement& measurement, const plan::Budget& budget, const Hooks& hooks) {
  plan::PlanRequest request;
  request.budget = budget;
  MIXQ_ASSIGN_OR_RETURN(plan::Plan exact, plan::SolvePlan(measurement, request));
  char buf[256];
  std::snprintf(buf, sizeof buf, "plan: cost %.6g%s, %.4f bpw, %lld bytes (budget %lld)", exact.cost,
                exact.optimal ? " (optimal)" : "", exact.bpw, static_cast<long long>(exact.file_n_bytes),
                static_cast<long long>(exact.budget_file_n_bytes));
  hooks.Note(buf);
  if (auto greedy = plan::GreedyPlan(measurement, request)) {
    std::snprintf(buf, sizeof buf, "greedy benefit/cost method at the same budget: cost %.6g, %.4f bpw", greedy->cost,
                  greedy->bpw);
    hooks.Note(buf);
  }
  return exact;
}

}  // namespace

Result<std::optional<plan::Plan>> PlanDiffusion(const DiffusionInput& input, const DiffusionPlanRequest& request,
                                                diffusion::ConvertOptions* options, const Hooks& hooks) {
  std::optional<plan::Plan> plan;
  if (!request.plan.empty()) {
    MIXQ_ASSIGN_OR_RETURN(plan, LoadDiffusionPlan(request.plan, input, options));
  } else if (request.budget || !request.save_measurement.empty()) {
    MIXQ_ASSIGN_OR_RETURN(plan::Measurement m, PlanningMeasurement(input, request, *options, hooks));
    if (!request.save_measurement.empty()) MIXQ_TRY(plan::SaveMeasurement(m, request.save_measurement));
    if (request.budget) {
      MIXQ_ASSIGN_OR_RETURN(plan, SolveInBudget(m, *request.budget, hooks));
      MIXQ_TRY(diffusion::ApplyPlan(*plan, input.model, &options->rules));
    }
  }
  if (plan && !request.save_plan.empty()) MIXQ_TRY(plan::SavePlan(*plan, request.save_plan));
  return plan;
}

Result<DiffusionWritten> WriteDiffusion(const DiffusionInput& input, DiffusionWrite write, const Hooks& hooks) {
  MIXQ_ASSIGN_OR_RETURN(diffusion::ConvertPlan conversion, diffusion::PlanConversion(input.model, write.options));
  const quantize::QuantizeReport& predicted = conversion.report;
  if (write.plan != nullptr && static_cast<int64_t>(predicted.file_bytes) != write.plan->file_n_bytes) {
    // Expected with --tensor-type overrides; otherwise the plan covers another layout.
    hooks.Note("note: the plan predicted " + std::to_string(write.plan->file_n_bytes) + " bytes, the file has " +
               std::to_string(predicted.file_bytes));
  }
  DiffusionWritten out;
  out.output = write.output.empty() ? diffusion::OutputName(input.source->path(), TypeLabel(write.options, predicted),
                                                            write.plan != nullptr, predicted.bpw())
                                    : write.output;
  if (write.output.empty()) {  // a name made up here was not checked with the command's flags
    MIXQ_TRY(CheckOutputsAreNotInputs(input.source->files(), {out.output}));
  }
  out.report = predicted;
  if (write.dry_run) return out;
  write.options.on_progress = [&](size_t done, size_t total, const std::string& name) {
    hooks.Progress(write.stage, done, total, name);
  };
  write.options.on_note = [&](const std::string& note) { hooks.Note(note); };
  auto start = std::chrono::steady_clock::now();
  auto written = diffusion::Convert(*input.source, input.model, out.output, write.options);
  hooks.StageDone(write.stage);
  MIXQ_TRY(written);
  out.report = std::move(written).value();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace mixq::pipeline
