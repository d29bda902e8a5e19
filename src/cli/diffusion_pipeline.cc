#include "cli/diffusion_pipeline.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "base/file_identity.h"
#include "cli/workflow.h"

namespace mixq::cli {
namespace {

Result<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The name a file of one type carries: the quantized default type, the float
// storage, or what the checkpoint's dtype becomes (BF16 or F16).
std::string TypeLabel(const diffusion::ConvertOptions& options, const quantize::QuantizeReport& report) {
  if (options.rules.default_format != nullptr) return std::string(options.rules.default_format->name);
  if (options.float_format != nullptr) return std::string(options.float_format->name);
  return report.type_counts.contains("BF16") ? "BF16" : "F16";
}

void PrintSummary(const GlobalOptions& global, const DiffusionInput& input, const DiffusionWrite& write,
                  const std::string& output, const quantize::QuantizeReport& report, double secs) {
  if (global.json) {
    EmitJsonBegin(write.command);
    for (const auto& t : report.tensors) {
      EmitJson("tensor", {{"name", t.name}, {"type", t.type}, {"n_weights", t.n_weights}, {"size_bytes", t.n_bytes}});
    }
    nlohmann::json summary = {{"input", input.source->path()},
                              {"output", output},
                              {"written", !write.dry_run},
                              {"architecture", input.model.architecture},
                              {"file_bytes", report.file_bytes},
                              {"file_gib", static_cast<double>(report.file_bytes) / (1ull << 30)},
                              {"tensor_bytes", report.tensor_bytes},
                              {"n_weights", report.n_weights},
                              {"bpw", report.bpw()},
                              {"gpu_gib", diffusion::SmallestGpuGib(report.file_bytes)},
                              {"type_counts", report.type_counts},
                              {"seconds", secs}};
    if (write.plan != nullptr) {
      summary["plan_cost"] = write.plan->cost;
      summary["plan_file_bytes"] = write.plan->file_n_bytes;
      summary["plan_budget_bytes"] = write.plan->budget_file_n_bytes;
    }
    EmitJson("summary", summary);
  } else if (!global.quiet) {
    std::string types;
    for (const auto& [type, n] : report.type_counts) types += " " + type + " x" + std::to_string(n);
    std::fprintf(stderr, "mixq: %s %s: %s;%s\n", write.dry_run ? "would write" : "wrote", output.c_str(),
                 diffusion::FitSummary(report.file_bytes, report.bpw()).c_str(), types.c_str());
  }
}

}  // namespace

Result<diffusion::ConvertOptions> BuildConvertOptions(const DiffusionTypeFlags& opt) {
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

Result<DiffusionInput> OpenDiffusionInput(const GlobalOptions& global, const std::string& path,
                                          const std::vector<std::string>& outputs) {
  DiffusionInput input;
  auto source = diffusion::OpenSource(path);
  MIXQ_TRY(source);
  MIXQ_TRY(CheckOutputsAreNotInputs((*source)->files(), outputs));
  input.source = std::move(source).value();
  auto model = diffusion::Inspect(*input.source);
  MIXQ_TRY(model);
  input.model = std::move(model).value();
  const diffusion::Model& m = input.model;
  Info(global, m.architecture + " model: " + std::to_string(m.tensors.size()) + " tensors, hidden " +
                   std::to_string(m.dims.hidden) + ", " + std::to_string(m.n_double_blocks) + " double + " +
                   std::to_string(m.n_single_blocks) + " single blocks" +
                   (m.prefix.empty() ? "" : ", prefix '" + m.prefix + "' stripped") +
                   (m.n_dropped > 0 ? ", " + std::to_string(m.n_dropped) + " other tensors dropped" : ""));
  for (const auto& note : m.layout_notes) Info(global, "warning: " + note);
  return input;
}

void AddDiffusionMeasureFlags(CLI::App* sub, DiffusionMeasureFlags* flags) {
  sub->add_option("--measure-rows", flags->measure_rows, "diffusion: rows measured per tensor, evenly spaced (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--per-tensor", flags->per_tensor, "diffusion: measure and plan each tensor, not each block");
  sub->add_option("--cost-table", flags->cost_table,
                  "diffusion: use a Flux.1-dev per-layer cost table (the seed 'Casting cost' markdown) instead of "
                  "measuring");
}

Result<plan::Measurement> MeasureDiffusion(const GlobalOptions& global, const DiffusionInput& input,
                                           const DiffusionMeasureRequest& request) {
  if (!request.flags.cost_table.empty()) {
    auto text = ReadText(request.flags.cost_table);
    MIXQ_TRY(text);
    auto m = plan::ImportCostTable(*text, plan::FluxDevCostTableSpec());
    MIXQ_TRY(m.status().WithContext("cost table '" + request.flags.cost_table + "'"));
    return diffusion::FitMeasurement(*m, input.model);
  }
  diffusion::MeasureOptions mo;
  mo.candidates = request.types;
  mo.group_blocks = !request.flags.per_tensor;
  mo.max_rows = request.flags.measure_rows;
  mo.n_threads = request.threads;
  mo.method = request.method;
  Progress progress(global, "measure", 1000);
  mo.on_progress = [&](size_t done, size_t total, const std::string& name) {
    progress.Update(static_cast<uint64_t>(done) * 1000 / std::max<size_t>(1, total), name);
  };
  auto start = std::chrono::steady_clock::now();
  auto m = diffusion::Measure(*input.source, input.model, mo);
  progress.Finish();
  MIXQ_TRY(m);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char buf[128];
  std::snprintf(buf, sizeof buf, "measured %zu units x %zu types in %.1f s", m->units.size(),
                m->units.empty() ? size_t{0} : m->units.front().options.size(), secs);
  Info(global, buf);
  return m;
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
  DiffusionMeasureRequest request;
  request.flags = args.diffusion;
  auto types = ParseTypeList(args.types, "--types");
  if (!types) return ReportError(types.error());
  request.types = *types;
  if (args.method != "best" && args.method != "ggml") {
    return ReportError(Status::InvalidArgument("--method must be 'best' or 'ggml'"));
  }
  request.method = args.method == "ggml" ? formats::QuantMethod::kGgml : formats::QuantMethod::kBest;
  request.threads = args.threads;
  const std::string& output = args.output;
  auto input = OpenDiffusionInput(global, args.model, {output});
  if (!input) return ReportError(input.error());
  auto m = MeasureDiffusion(global, *input, request);
  if (!m) return ReportError(m.error());
  if (Status s = plan::SaveMeasurement(*m, output); !s.ok()) return ReportError(s);
  auto sizes = plan::AchievableSizes(*m, {});
  if (!sizes) return ReportError(sizes.error());
  const double weights = static_cast<double>(plan::TotalWeights(*m));
  auto bpw = [&](int64_t file_bytes) {
    // Tensor bytes of a plan of this size: the file less its non-tensor bytes.
    const int64_t non_tensor = m->fixed_n_bytes - m->fixed_tensor_n_bytes;
    return 8.0 * static_cast<double>(file_bytes - non_tensor) / weights;
  };
  if (global.json) {
    EmitJsonBegin("measure");
    for (const auto& u : m->units) {
      nlohmann::json options = nlohmann::json::array();
      for (const auto& o : u.options)
        options.push_back({{"type", o.type}, {"size_bytes", o.n_bytes}, {"cost", o.cost}});
      EmitJson("unit",
               {{"name", u.name}, {"n_tensors", u.tensors.size()}, {"n_weights", u.n_weights}, {"options", options}});
    }
    EmitJson("summary", {{"output", output},
                         {"architecture", input->model.architecture},
                         {"n_units", m->units.size()},
                         {"fixed_n_bytes", m->fixed_n_bytes},
                         {"min_file_bytes", sizes->min_file_n_bytes},
                         {"max_file_bytes", sizes->max_file_n_bytes},
                         {"cost_model", m->cost_model}});
  } else if (!global.quiet) {
    std::fprintf(stderr, "mixq: measured %zu units -> %s; plans from %s (%.2f bpw) to %s (%.2f bpw)\n", m->units.size(),
                 output.c_str(), FormatBytes(static_cast<uint64_t>(sizes->min_file_n_bytes)).c_str(),
                 bpw(sizes->min_file_n_bytes), FormatBytes(static_cast<uint64_t>(sizes->max_file_n_bytes)).c_str(),
                 bpw(sizes->max_file_n_bytes));
  }
  return kExitOk;
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
  auto p = plan::LoadPlan(path);
  MIXQ_TRY(p);
  MIXQ_TRY(diffusion::ApplyPlan(*p, input.model, &options->rules).WithContext("plan '" + path + "'"));
  return p;
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
  DiffusionTypeFlags types = args.types;
  if (types.type.empty() && args.plan.empty()) types.type = "Q4_K";  // quantize's default
  auto options = BuildConvertOptions(types);
  if (!options) return ReportError(options.error());
  auto input = OpenDiffusionInput(global, args.input, {args.output});
  if (!input) return ReportError(input.error());
  std::optional<plan::Plan> plan;
  if (!args.plan.empty()) {
    auto p = LoadDiffusionPlan(args.plan, *input, &*options);
    if (!p) return ReportError(p.error());
    plan = std::move(p).value();
  }
  DiffusionWrite write;
  write.options = std::move(options).value();
  write.plan = plan ? &*plan : nullptr;
  write.output = args.output;
  write.command = "quantize";
  return WriteDiffusion(global, *input, std::move(write));
}

int WriteDiffusion(const GlobalOptions& global, const DiffusionInput& input, DiffusionWrite write) {
  auto conversion = diffusion::PlanConversion(input.model, write.options);
  if (!conversion) return ReportError(conversion.error());
  const quantize::QuantizeReport& predicted = conversion->report;
  if (write.plan != nullptr && static_cast<int64_t>(predicted.file_bytes) != write.plan->file_n_bytes) {
    // Expected with --tensor-type overrides; otherwise the plan covers another layout.
    Info(global, "note: the plan predicted " + std::to_string(write.plan->file_n_bytes) + " bytes, the file has " +
                     std::to_string(predicted.file_bytes));
  }
  const std::string output = write.output.empty()
                                 ? diffusion::OutputName(input.source->path(), TypeLabel(write.options, predicted),
                                                         write.plan != nullptr, predicted.bpw())
                                 : write.output;
  if (write.output.empty()) {  // a name made up here was not checked with the command's flags
    if (Status s = CheckOutputsAreNotInputs(input.source->files(), {output}); !s.ok()) return ReportError(s);
  }
  quantize::QuantizeReport report = predicted;
  double secs = 0;
  if (!write.dry_run) {
    Progress progress(global, write.command, input.model.tensors.size());
    write.options.on_progress = [&](size_t done, size_t, const std::string& name) { progress.Update(done, name); };
    write.options.on_note = [&](const std::string& note) { Info(global, note); };
    auto start = std::chrono::steady_clock::now();
    auto written = diffusion::Convert(*input.source, input.model, output, write.options);
    progress.Finish();
    if (!written) return ReportError(written.error());
    report = std::move(written).value();
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  PrintSummary(global, input, write, output, report, secs);
  return kExitOk;
}

}  // namespace mixq::cli
