#include "cli/diffusion.h"

#include <cstdio>

#include "cli/workflow.h"

namespace mixq::cli {
namespace {

void PrintSummary(const GlobalOptions& global, const pipeline::DiffusionInput& input,
                  const pipeline::DiffusionWrite& write, const pipeline::DiffusionWritten& written,
                  const std::string& command) {
  const quantize::QuantizeReport& report = written.report;
  if (global.json) {
    EmitJsonBegin(command);
    for (const auto& t : report.tensors) {
      EmitJson("tensor", {{"name", t.name}, {"type", t.type}, {"n_weights", t.n_weights}, {"size_bytes", t.n_bytes}});
    }
    nlohmann::json summary = {{"input", input.source->path()},
                              {"output", written.output},
                              {"written", !write.dry_run},
                              {"architecture", input.model.architecture},
                              {"file_bytes", report.file_bytes},
                              {"file_gib", static_cast<double>(report.file_bytes) / (1ull << 30)},
                              {"tensor_bytes", report.tensor_bytes},
                              {"n_weights", report.n_weights},
                              {"bpw", report.bpw()},
                              {"gpu_gib", diffusion::SmallestGpuGib(report.file_bytes)},
                              {"type_counts", report.type_counts},
                              {"seconds", written.seconds}};
    if (write.plan != nullptr) {
      summary["plan_cost"] = write.plan->cost;
      summary["plan_file_bytes"] = write.plan->file_n_bytes;
      summary["plan_budget_bytes"] = write.plan->budget_file_n_bytes;
    }
    EmitJson("summary", summary);
  } else if (!global.quiet) {
    std::string types;
    for (const auto& [type, n] : report.type_counts) types += " " + type + " x" + std::to_string(n);
    std::fprintf(stderr, "mixq: %s %s: %s;%s\n", write.dry_run ? "would write" : "wrote", written.output.c_str(),
                 diffusion::FitSummary(report.file_bytes, report.bpw()).c_str(), types.c_str());
  }
}

void PrintMeasurement(const GlobalOptions& global, const pipeline::DiffusionInput& input, const plan::Measurement& m,
                      const plan::SizeRange& sizes, const std::string& output) {
  const double weights = static_cast<double>(plan::TotalWeights(m));
  auto bpw = [&](int64_t file_bytes) {
    // Tensor bytes of a plan of this size: the file less its non-tensor bytes.
    const int64_t non_tensor = m.fixed_n_bytes - m.fixed_tensor_n_bytes;
    return 8.0 * static_cast<double>(file_bytes - non_tensor) / weights;
  };
  if (global.json) {
    EmitJsonBegin("measure");
    for (const auto& u : m.units) {
      nlohmann::json options = nlohmann::json::array();
      for (const auto& o : u.options)
        options.push_back({{"type", o.type}, {"size_bytes", o.n_bytes}, {"cost", o.cost}});
      EmitJson("unit",
               {{"name", u.name}, {"n_tensors", u.tensors.size()}, {"n_weights", u.n_weights}, {"options", options}});
    }
    EmitJson("summary", {{"output", output},
                         {"architecture", input.model.architecture},
                         {"n_units", m.units.size()},
                         {"fixed_n_bytes", m.fixed_n_bytes},
                         {"min_file_bytes", sizes.min_file_n_bytes},
                         {"max_file_bytes", sizes.max_file_n_bytes},
                         {"cost_model", m.cost_model}});
  } else if (!global.quiet) {
    std::fprintf(stderr, "mixq: measured %zu units -> %s; plans from %s (%.2f bpw) to %s (%.2f bpw)\n", m.units.size(),
                 output.c_str(), FormatBytes(static_cast<uint64_t>(sizes.min_file_n_bytes)).c_str(),
                 bpw(sizes.min_file_n_bytes), FormatBytes(static_cast<uint64_t>(sizes.max_file_n_bytes)).c_str(),
                 bpw(sizes.max_file_n_bytes));
  }
}

}  // namespace

void AddDiffusionMeasureFlags(CLI::App* sub, DiffusionMeasureFlags* flags) {
  sub->add_option("--measure-rows", flags->measure_rows, "diffusion: rows measured per tensor, evenly spaced (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--per-tensor", flags->per_tensor, "diffusion: measure and plan each tensor, not each block");
  sub->add_option("--cost-table", flags->cost_table,
                  "diffusion: use a Flux.1-dev per-layer cost table (a markdown table of per-layer casting costs) "
                  "instead of measuring");
}

std::optional<int> MeasureIfDiffusion(const GlobalOptions& global, const MeasureArgs& args) {
  auto kind = diffusion::ClassifyFile(args.model);
  if (!kind) return ReportError(kind.error());
  if (*kind == diffusion::FileKind::kOtherGguf) {
    if (args.text.empty()) {
      return ReportError(
          Status::InvalidArgument("'" + args.model + "' is a language model: give calibration text with --text FILE"));
    }
    if (args.diffusion.per_tensor || !args.diffusion.cost_table.empty()) {
      return ReportError(Status::InvalidArgument("--per-tensor and --cost-table are for diffusion models; '" +
                                                 args.model + "' is a language model"));
    }
    return std::nullopt;
  }
  if (!args.text.empty() || !args.imatrix.empty()) {
    return ReportError(Status::InvalidArgument(
        "'" + args.model + "' is a diffusion model, measured in weight space: drop --text and --imatrix"));
  }
  pipeline::DiffusionMeasureRequest request;
  request.per_tensor = args.diffusion.per_tensor;
  request.measure_rows = args.diffusion.measure_rows;
  request.cost_table = args.diffusion.cost_table;
  auto types = ParseTypeList(args.types, "--types");
  if (!types) return ReportError(types.error());
  request.types = *types;
  request.method = args.method;
  request.threads = args.threads;
  const pipeline::Hooks hooks = CliHooks(global);
  auto input = pipeline::OpenDiffusionInput(args.model, {args.output}, hooks);
  if (!input) return ReportError(input.error());
  auto m = pipeline::MeasureDiffusion(*input, request, hooks);
  if (!m) return ReportError(m.error());
  if (Status s = plan::SaveMeasurement(*m, args.output); !s.ok()) return ReportError(s);
  auto sizes = plan::AchievableSizes(*m, {});
  if (!sizes) return ReportError(sizes.error());
  PrintMeasurement(global, *input, *m, *sizes, args.output);
  return kExitOk;
}

std::optional<int> QuantizeIfDiffusion(const GlobalOptions& global, const QuantizeArgs& args) {
  auto kind = diffusion::ClassifyFile(args.input);
  if (!kind) return ReportError(kind.error());
  if (*kind == diffusion::FileKind::kOtherGguf) return std::nullopt;
  if (*kind == diffusion::FileKind::kDiffusionGguf && args.plan.empty()) return std::nullopt;
  if (args.llm_flags) {
    return ReportError(Status::InvalidArgument(
        "--imatrix, --text, --output-tensor-type and --token-embedding-type are for language models; '" + args.input +
        "' is a diffusion model"));
  }
  pipeline::DiffusionTypes types = args.types;
  if (types.type.empty() && args.plan.empty()) types.type = "Q4_K";  // quantize's default
  auto options = pipeline::BuildConvertOptions(types);
  if (!options) return ReportError(options.error());
  const pipeline::Hooks hooks = CliHooks(global);
  auto input = pipeline::OpenDiffusionInput(args.input, {args.output}, hooks);
  if (!input) return ReportError(input.error());
  std::optional<plan::Plan> plan;
  if (!args.plan.empty()) {
    auto p = pipeline::LoadDiffusionPlan(args.plan, *input, &*options);
    if (!p) return ReportError(p.error());
    plan = std::move(p).value();
  }
  pipeline::DiffusionWrite write;
  write.options = std::move(options).value();
  write.plan = plan ? &*plan : nullptr;
  write.output = args.output;
  return WriteDiffusion(global, *input, std::move(write), "quantize");
}

int WriteDiffusion(const GlobalOptions& global, const pipeline::DiffusionInput& input, pipeline::DiffusionWrite write,
                   const std::string& command) {
  write.stage = command;
  auto written = pipeline::WriteDiffusion(input, write, CliHooks(global));
  if (!written) return ReportError(written.error());
  PrintSummary(global, input, write, *written, command);
  return kExitOk;
}

}  // namespace mixq::cli
