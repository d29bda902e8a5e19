// mixq auto MODEL.gguf (--target 4.5bpw | --target-size 2GiB) --text calib.txt -o OUT.gguf
// imatrix -> measure -> plan -> quantize -> eval (pipeline::RunAuto), then the summary.
#include <cstdio>
#include <filesystem>
#include <optional>

#include "base/file_identity.h"
#include "cli/workflow.h"
#include "report/report.h"

namespace mixq::cli {
namespace {

struct AutoCliOptions {
  std::string model;
  std::string text;
  std::string eval_text;
  std::string output;
  std::string target;
  std::string target_size;
  std::string imatrix;
  std::string types;
  std::string cache_dir;
  std::string report;
  std::string tensor_type_file;
  std::vector<std::string> keep;
  int64_t ctx = 512;
  int64_t imatrix_chunks = 40;
  int64_t measure_chunks = 4;
  int64_t error_rows = measure::MeasureOptions{}.error_rows;
  std::string method = "gptq";
  int64_t eval_chunks = 20;
  int threads = 0;
  DeviceCliOptions device;
  bool no_eval = false;
  bool dry_run = false;
};

Result<pipeline::AutoOptions> ToAutoOptions(const AutoCliOptions& opt) {
  pipeline::AutoOptions o;
  o.model = opt.model;
  o.text = opt.text;
  o.eval_text = opt.eval_text;
  o.output = opt.output;
  MIXQ_ASSIGN_OR_RETURN(o.budget, ParseBudget(opt.target, opt.target_size));
  o.imatrix = opt.imatrix;
  MIXQ_ASSIGN_OR_RETURN(o.types, ParseTypeList(opt.types, "--types"));
  o.cache_dir = opt.cache_dir;
  for (const auto& k : opt.keep) {
    MIXQ_ASSIGN_OR_RETURN(plan::KeepRule rule, plan::ParseKeepRule(k));
    o.keep.push_back(std::move(rule));
  }
  o.ctx = opt.ctx;
  o.imatrix_chunks = opt.imatrix_chunks;
  o.measure_chunks = opt.measure_chunks;
  o.error_rows = opt.error_rows;
  o.eval_chunks = opt.eval_chunks;
  o.threads = opt.threads;
  o.eval = !opt.no_eval;
  o.gptq = opt.method == "gptq";
  o.tensor_type_file = opt.tensor_type_file;
  o.dry_run = opt.dry_run;
  return o;
}

nlohmann::json Summary(const pipeline::AutoOptions& options, const pipeline::AutoResult& r) {
  nlohmann::json summary = {{"output", options.output},
                            {"file_bytes", r.report.file_bytes},
                            {"budget_bytes", r.plan.budget_file_n_bytes},
                            {"tensor_bytes", r.report.tensor_bytes},
                            {"bpw", r.report.bpw()},
                            {"predicted_kld", r.plan.cost},
                            {"plan_optimal", r.plan.optimal},
                            {"type_counts", r.report.type_counts},
                            {"seconds_imatrix", r.seconds_imatrix},
                            {"seconds_measure", r.seconds_measure},
                            {"seconds_quantize", r.seconds_quantize},
                            {"method", options.gptq ? "gptq" : "best"},
                            {"covariance_seconds", r.report.covariance_seconds}};
  summary.update(PlanBreakdown(r.plan));
  if (r.eval) {
    summary["ppl"] = r.eval->ppl;
    summary["ppl_stderr"] = r.eval->ppl_stderr;
    summary["base_ppl"] = r.eval->kld->base_ppl;
    summary["kld"] = r.eval->kld->kld_mean;
    summary["kld_stderr"] = r.eval->kld->kld_stderr;
    summary["kld_p99"] = r.eval->kld->kld_p99;
    summary["same_top"] = r.eval->kld->same_top;
    summary["eval_chunks"] = r.eval->n_chunks;
    summary["seconds_eval"] = r.seconds_eval;
  }
  summary["seconds"] = r.seconds;
  return summary;
}

void PrintResult(const GlobalOptions& global, const pipeline::AutoOptions& options, const pipeline::AutoResult& r) {
  const nlohmann::json summary = Summary(options, r);
  const plan::Plan& p = r.plan;
  const quantize::QuantizeReport& report = r.report;
  if (global.json) {
    EmitJsonBegin("auto");
    for (const auto& u : p.units) EmitJson("tensor", {{"name", u.name}, {"type", u.type}, {"size_bytes", u.n_bytes}});
    EmitJson("summary", summary);
  } else if (!global.quiet) {
    std::fprintf(stderr, "mixq: wrote %s: %s (%llu bytes, budget %llu), %.4f bpw\n", options.output.c_str(),
                 FormatBytes(report.file_bytes).c_str(), static_cast<unsigned long long>(report.file_bytes),
                 static_cast<unsigned long long>(p.budget_file_n_bytes), report.bpw());
    std::string types_line;
    for (const auto& [type, n] : report.type_counts) types_line += " " + type + " x" + std::to_string(n);
    std::fprintf(stderr, "  types:%s\n", types_line.c_str());
    PrintPlanBreakdown(p);
    if (summary.contains("kld")) {
      std::fprintf(stderr,
                   "  held-out text (%lld chunks of %lld): KLD %.5f ± %.5f (predicted %.5f), p99 %.4f, "
                   "same top %.2f%%, PPL %.4f (base %.4f)\n",
                   static_cast<long long>(summary["eval_chunks"].get<int64_t>()), static_cast<long long>(options.ctx),
                   summary["kld"].get<double>(), summary["kld_stderr"].get<double>(), p.cost,
                   summary["kld_p99"].get<double>(), 100 * summary["same_top"].get<double>(),
                   summary["ppl"].get<double>(), summary["base_ppl"].get<double>());
    }
    std::fprintf(stderr, "  time: imatrix %.1f s, measure %.1f s, quantize %.1f s, total %.1f s\n", r.seconds_imatrix,
                 r.seconds_measure, r.seconds_quantize, r.seconds);
  }
}

// The report of this run: its measurement, its plan and, when evaluated, its output's KLD.
Status WriteAutoReport(const AutoCliOptions& opt, const pipeline::AutoResult& r, const report::ChartLibrary& library) {
  report::ReportInputs in;
  in.measurement = r.measurement;
  in.plans.push_back({std::filesystem::path(opt.output).stem().string(), r.plan});
  if (r.eval && r.eval->kld) {
    MIXQ_ASSIGN_OR_RETURN(auto e,
                          report::EvalOfFile(opt.output, r.eval->kld->kld_mean, r.eval->kld->kld_stderr, r.plan.cost));
    in.evals.push_back(std::move(e));
  }
  return report::WriteReport(in, library, opt.report);
}

int RunAuto(const GlobalOptions& global, const AutoCliOptions& opt) {
  if (!opt.report.empty()) {
    if (Status s = CheckOutputsAreNotInputs({opt.model, opt.text, opt.eval_text, opt.imatrix}, {opt.report}); !s.ok()) {
      return ReportError(s);
    }
  }
  auto options = ToAutoOptions(opt);
  if (!options) return ReportError(options.error());
  // Before the long steps: a missing chart library is found in a second, not after the eval.
  std::optional<report::ChartLibrary> chart_library;
  if (!opt.report.empty()) {
    auto lib = report::LoadChartLibrary(report::DefaultAssetDir());
    if (!lib) return ReportError(lib.error());
    chart_library = std::move(lib).value();
  }
  auto load = ResolveDeviceOptions(global, opt.device);
  if (!load) return ReportError(load.error());
  options->load = *load;
  auto result = pipeline::RunAuto(*options, CliHooks(global));
  if (!result) return ReportError(result.error());
  if (opt.dry_run) {
    ReportPlan(global, "auto", result->plan, false);
    Info(global, "dry run: plan in " + result->plan_path + "; " + opt.output + " not written");
    return kExitOk;
  }
  if (chart_library) {
    if (Status s = WriteAutoReport(opt, *result, *chart_library); !s.ok()) return ReportError(s);
  }
  PrintResult(global, *options, *result);
  if (chart_library && !global.quiet && !global.json) std::fprintf(stderr, "  report: %s\n", opt.report.c_str());
  return kExitOk;
}

}  // namespace

void AddAuto(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<AutoCliOptions>();
  CLI::App* sub = app.add_subcommand("auto", "imatrix, measure, plan, quantize and evaluate in one command");
  sub->add_option("model", opt->model, "GGUF model (F16/BF16/F32)")->required();
  sub->add_option("--text", opt->text, "calibration text (gzip accepted)")->required();
  sub->add_option("-o,--output", opt->output, "output GGUF")->required();
  sub->add_option("--target", opt->target, "bits per weight over all tensors, e.g. 4.5bpw");
  sub->add_option("--target-size", opt->target_size, "whole output file size, e.g. 2.1GiB or 750MB");
  sub->add_option("--eval-text", opt->eval_text, "held-out text for the report (default: second half of --text)");
  sub->add_option("--imatrix", opt->imatrix, "use this importance matrix instead of computing one");
  sub->add_option("--types", opt->types, "candidate types, comma-separated (default: all mixq can encode)");
  sub->add_option("--keep", opt->keep, "REGEX=TYPE: force a type (repeatable)");
  sub->add_option("--cache-dir", opt->cache_dir, "where intermediate results are kept (default: OUTPUT.mixq-cache)");
  AddCtxOption(sub, &opt->ctx, "tokens per chunk");
  sub->add_option("--method", opt->method,
                  "rounding of the final quantization: gptq (error feedback through the calibration text's input "
                  "covariances) or best")
      ->capture_default_str()
      ->check(CLI::IsMember({"gptq", "best"}));
  sub->add_option("--imatrix-chunks", opt->imatrix_chunks, "calibration chunks for the imatrix and gptq (-1: all)")
      ->capture_default_str()
      ->check(PositiveOrAll());
  sub->add_option("--measure-chunks", opt->measure_chunks, "chunks for KLD calibration")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  AddErrorRowsOption(sub, &opt->error_rows);
  sub->add_option("--eval-chunks", opt->eval_chunks, "chunks for the final evaluation (-1: all)")
      ->capture_default_str()
      ->check(PositiveOrAll());
  sub->add_flag("--no-eval", opt->no_eval, "skip the final evaluation");
  sub->add_flag("--dry-run", opt->dry_run,
                "stop after the plan: print it and its file size, write no model (imatrix and measurement are "
                "still computed and cached)");
  sub->add_option("--tensor-type-file", opt->tensor_type_file,
                  "also write the plan as llama-quantize --tensor-type-file input (PATTERN=TYPE lines)");
  sub->add_option("--report", opt->report, "also write an HTML report of this run");
  AddThreadsOption(sub, &opt->threads);
  AddDeviceOptions(sub, &opt->device);
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunAuto(global, *opt); }; });
}

}  // namespace mixq::cli
