// mixq convert MODEL.safetensors [-o OUT.gguf] [--type T] [--target-size S | --target B | --plan P]:
// a diffusion transformer checkpoint to the GGUF ComfyUI-GGUF loads, uniform or mixed per block.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "cli/cli.h"
#include "diffusion/diffusion.h"
#include "plan/plan.h"
#include "safetensors/safetensors.h"

namespace mixq::cli {
namespace {

struct ConvertCliOptions {
  std::string input;
  std::string output;
  std::string type;
  std::string float_type;
  std::vector<std::string> tensor_types;
  std::string target_size;
  std::string target_bpw;
  std::string plan;
  std::string measurement;
  std::string cost_table;
  std::string save_measurement;
  std::string save_plan;
  int64_t measure_rows = 256;
  bool per_tensor = false;
  std::string method = "best";
  bool dry_run = false;
  int threads = 0;
};

Result<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Result<diffusion::ConvertOptions> BuildOptions(const ConvertCliOptions& opt) {
  diffusion::ConvertOptions c;
  auto float_type = [](const std::string& name, const char* flag) -> Result<const formats::Format*> {
    const formats::Format* f = formats::FindFormatByName(name);
    if (f == nullptr || f->quantized || !f->can_encode()) {
      return Status::InvalidArgument(std::string(flag) + ": '" + name + "' is not F32, F16 or BF16");
    }
    return f;
  };
  if (!opt.type.empty()) {
    const formats::Format* f = formats::FindFormatByName(opt.type);
    if (f == nullptr || !f->can_encode()) {
      return Status::InvalidArgument("--type: unknown or unsupported type '" + opt.type +
                                     "'; valid types: " + formats::EncodableFormatNames());
    }
    if (f->quantized) {
      c.rules.default_format = f;
    } else {
      c.float_format = f;
    }
  }
  if (!opt.float_type.empty()) {
    auto f = float_type(opt.float_type, "--float-type");
    MIXQ_TRY(f);
    c.float_format = *f;
  }
  for (const auto& text : opt.tensor_types) {
    auto o = quantize::ParseTensorTypeOverride(text);
    MIXQ_TRY(o);
    c.rules.overrides.push_back(std::move(o).value());
  }
  if (opt.method == "ggml") {
    c.method = formats::QuantMethod::kGgml;
  } else if (opt.method != "best") {
    return Status::InvalidArgument("--method must be 'best' or 'ggml', not '" + opt.method + "'");
  }
  c.n_threads = opt.threads;
  return c;
}

// The measurement a --target plan is solved on: a file, the seed-style cost
// table, or measured now on the checkpoint.
Result<plan::Measurement> GetMeasurement(const GlobalOptions& global, const ConvertCliOptions& opt,
                                         const safetensors::Checkpoint& checkpoint, const diffusion::Model& model) {
  if (!opt.measurement.empty()) {
    auto m = plan::LoadMeasurement(opt.measurement);
    MIXQ_TRY(m);
    return diffusion::FitMeasurement(*m, model);
  }
  if (!opt.cost_table.empty()) {
    auto text = ReadText(opt.cost_table);
    MIXQ_TRY(text);
    auto m = plan::ImportCostTable(*text, plan::FluxDevCostTableSpec());
    MIXQ_TRY(m.status().WithContext("cost table '" + opt.cost_table + "'"));
    return diffusion::FitMeasurement(*m, model);
  }
  diffusion::MeasureOptions mo;
  mo.group_blocks = !opt.per_tensor;
  mo.max_rows = opt.measure_rows;
  mo.n_threads = opt.threads;
  mo.method = opt.method == "ggml" ? formats::QuantMethod::kGgml : formats::QuantMethod::kBest;
  Progress progress(global, "measure", 1000);
  mo.on_progress = [&](size_t done, size_t total, const std::string& name) {
    progress.Update(static_cast<uint64_t>(done) * 1000 / std::max<size_t>(1, total), name);
  };
  auto start = std::chrono::steady_clock::now();
  auto m = diffusion::Measure(checkpoint, model, mo);
  progress.Finish();
  MIXQ_TRY(m);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char buf[128];
  std::snprintf(buf, sizeof buf, "measured %zu units x %zu types in %.1f s", m->units.size(),
                m->units.empty() ? size_t{0} : m->units.front().options.size(), secs);
  Info(global, buf);
  return m;
}

// Solves the --target request and reports it against the seed's greedy method.
Result<plan::Plan> MakePlan(const GlobalOptions& global, const ConvertCliOptions& opt,
                            const plan::Measurement& measurement) {
  plan::PlanRequest request;
  auto budget = opt.target_size.empty() ? plan::ParseBpwTarget(opt.target_bpw) : plan::ParseSizeTarget(opt.target_size);
  MIXQ_TRY(budget);
  request.budget = *budget;
  auto exact = plan::SolvePlan(measurement, request);
  MIXQ_TRY(exact);
  char buf[256];
  std::snprintf(buf, sizeof buf, "plan: cost %.6g%s, %.4f bpw, %lld bytes (budget %lld)", exact->cost,
                exact->optimal ? " (optimal)" : "", exact->bpw, static_cast<long long>(exact->file_n_bytes),
                static_cast<long long>(exact->budget_file_n_bytes));
  Info(global, buf);
  if (auto greedy = plan::GreedyPlan(measurement, request)) {
    std::snprintf(buf, sizeof buf, "greedy benefit/cost method at the same budget: cost %.6g, %.4f bpw", greedy->cost,
                  greedy->bpw);
    Info(global, buf);
  }
  return exact;
}

int RunConvert(const GlobalOptions& global, const ConvertCliOptions& opt) {
  const bool has_target = !opt.target_size.empty() || !opt.target_bpw.empty();
  if (!opt.target_size.empty() && !opt.target_bpw.empty()) {
    return ReportError(Status::InvalidArgument("give --target-size or --target, not both"));
  }
  if (!opt.plan.empty() && has_target) {
    return ReportError(Status::InvalidArgument("--plan already fixes the types; drop --target-size/--target"));
  }
  auto options = BuildOptions(opt);
  if (!options) return ReportError(options.error());
  auto checkpoint = safetensors::Checkpoint::Open(opt.input);
  if (!checkpoint) return ReportError(checkpoint.error());
  auto model = diffusion::Inspect(*checkpoint);
  if (!model) return ReportError(model.error());
  Info(global, model->architecture + " model: " + std::to_string(model->tensors.size()) + " tensors, hidden " +
                   std::to_string(model->dims.hidden) + ", " + std::to_string(model->n_double_blocks) + " double + " +
                   std::to_string(model->n_single_blocks) + " single blocks" +
                   (model->prefix.empty() ? "" : ", prefix '" + model->prefix + "' stripped") +
                   (model->n_dropped > 0 ? ", " + std::to_string(model->n_dropped) + " other tensors dropped" : ""));
  for (const auto& note : model->layout_notes) Info(global, "warning: " + note);

  std::optional<plan::Plan> plan;
  if (!opt.plan.empty()) {
    auto p = plan::LoadPlan(opt.plan);
    if (!p) return ReportError(p.error());
    plan = std::move(p).value();
  } else if (has_target || !opt.save_measurement.empty()) {
    auto m = GetMeasurement(global, opt, *checkpoint, *model);
    if (!m) return ReportError(m.error());
    if (!opt.save_measurement.empty()) {
      if (Status s = plan::SaveMeasurement(*m, opt.save_measurement); !s.ok()) return ReportError(s);
    }
    if (has_target) {
      auto p = MakePlan(global, opt, *m);
      if (!p) return ReportError(p.error());
      plan = std::move(p).value();
    }
  }
  if (plan) {
    if (Status s = diffusion::ApplyPlan(*plan, *model, &options->rules); !s.ok()) return ReportError(s);
    if (!opt.save_plan.empty()) {
      if (Status s = plan::SavePlan(*plan, opt.save_plan); !s.ok()) return ReportError(s);
    }
  }

  auto conversion = diffusion::PlanConversion(*model, *options);
  if (!conversion) return ReportError(conversion.error());
  const auto& predicted = conversion->report;
  std::string label = predicted.type_counts.contains("BF16") ? "BF16" : "F16";
  if (options->rules.default_format != nullptr) {
    label = options->rules.default_format->name;
  } else if (options->float_format != nullptr) {
    label = options->float_format->name;
  }
  const std::string output =
      opt.output.empty() ? diffusion::OutputName(opt.input, label, plan.has_value(), predicted.bpw()) : opt.output;

  quantize::QuantizeReport report = predicted;
  double secs = 0;
  if (!opt.dry_run) {
    Progress progress(global, "convert", model->tensors.size());
    options->on_progress = [&](size_t done, size_t, const std::string& name) { progress.Update(done, name); };
    options->on_note = [&](const std::string& note) { Info(global, note); };
    auto start = std::chrono::steady_clock::now();
    auto written = diffusion::Convert(*checkpoint, *model, output, *options);
    progress.Finish();
    if (!written) return ReportError(written.error());
    report = std::move(written).value();
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  const std::string fit = diffusion::FitSummary(report.file_bytes, report.bpw());
  if (global.json) {
    EmitJsonBegin("convert");
    for (const auto& t : report.tensors) {
      EmitJson("tensor", {{"name", t.name}, {"type", t.type}, {"n_weights", t.n_weights}, {"size_bytes", t.n_bytes}});
    }
    nlohmann::json summary = {{"input", opt.input},
                              {"output", output},
                              {"written", !opt.dry_run},
                              {"architecture", model->architecture},
                              {"file_bytes", report.file_bytes},
                              {"file_gib", static_cast<double>(report.file_bytes) / (1ull << 30)},
                              {"tensor_bytes", report.tensor_bytes},
                              {"n_weights", report.n_weights},
                              {"bpw", report.bpw()},
                              {"gpu_gib", diffusion::SmallestGpuGib(report.file_bytes)},
                              {"type_counts", report.type_counts},
                              {"seconds", secs}};
    if (plan) {
      summary["plan_cost"] = plan->cost;
      summary["plan_file_bytes"] = plan->file_n_bytes;
      summary["plan_budget_bytes"] = plan->budget_file_n_bytes;
    }
    EmitJson("summary", summary);
  } else if (!global.quiet) {
    std::string types;
    for (const auto& [type, n] : report.type_counts) types += " " + type + " x" + std::to_string(n);
    std::fprintf(stderr, "mixq: %s %s: %s;%s\n", opt.dry_run ? "would write" : "wrote", output.c_str(), fit.c_str(),
                 types.c_str());
  }
  return kExitOk;
}

}  // namespace

void AddConvert(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<ConvertCliOptions>();
  CLI::App* sub = app.add_subcommand(
      "convert", "convert a diffusion transformer (Flux) .safetensors checkpoint to a ComfyUI-GGUF file");
  sub->add_option("input", opt->input, "checkpoint: .safetensors, or a sharded *.safetensors.index.json")->required();
  sub->add_option("-o,--output", opt->output,
                  "output GGUF (default beside the input: <name>-<TYPE>.gguf, or <name>_mxN_N.gguf for a mix)");
  sub->add_option("--type", opt->type,
                  "F32, F16 or BF16 for everything, or a quantized type for the block weights (default: BF16 stays "
                  "BF16, other dtypes F16, as ComfyUI-GGUF's convert.py); valid: " +
                      formats::EncodableFormatNames());
  sub->add_option("--float-type", opt->float_type, "storage of unquantized 2-D tensors: F32, F16 or BF16");
  sub->add_option("--tensor-type", opt->tensor_types, "REGEX=TYPE override, first match wins (repeatable)");
  sub->add_option("--target-size", opt->target_size, "plan a mix that fits this file size (e.g. 7.5GiB)");
  sub->add_option("--target", opt->target_bpw, "plan a mix of this average bits per weight (e.g. 3.8bpw)");
  sub->add_option("--plan", opt->plan, "apply a saved plan (mixq.plan JSON)");
  sub->add_option("--measurement", opt->measurement, "plan from this mixq.measurement JSON instead of measuring");
  sub->add_option("--cost-table", opt->cost_table,
                  "plan from a Flux.1-dev per-layer cost table (the markdown of the seed 'Casting cost' document)");
  sub->add_option("--save-measurement", opt->save_measurement, "write the measurement JSON here");
  sub->add_option("--save-plan", opt->save_plan, "write the plan JSON here");
  sub->add_option("--measure-rows", opt->measure_rows, "rows measured per tensor, evenly spaced (0: all)")
      ->capture_default_str();
  sub->add_flag("--per-tensor", opt->per_tensor, "measure and plan each tensor, not each block");
  sub->add_option("--method", opt->method, "block search: best (mixq's, default) or ggml (byte-identical)")
      ->capture_default_str();
  sub->add_flag("--dry-run", opt->dry_run, "plan and report, write no GGUF");
  sub->add_option("-t,--threads", opt->threads, "worker threads (0: all cores)")->capture_default_str();
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunConvert(global, *opt); }; });
}

}  // namespace mixq::cli
