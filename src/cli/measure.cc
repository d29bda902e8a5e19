// mixq measure MODEL.gguf --text calib.txt [--imatrix F] [--types ...] -o measurement.json
#include <cstdio>

#include "base/file_identity.h"
#include "cli/diffusion.h"
#include "cli/workflow.h"

namespace mixq::cli {
namespace {

struct MeasureCliOptions {
  std::string model;
  std::string text;
  std::string imatrix;
  std::string types;
  std::string calibration_types;
  std::string output;
  std::string cache;
  formats::QuantMethod method = formats::QuantMethod::kBest;
  std::string calibration = "linear";
  int probe_layers = 4;
  int64_t error_rows = measure::MeasureOptions{}.error_rows;
  int64_t ctx = 512;
  int64_t chunks = 4;
  int validate = 0;
  int threads = 0;
  DeviceCliOptions device;
  DiffusionMeasureFlags diffusion;
};

int RunMeasure(const GlobalOptions& global, const MeasureCliOptions& opt) {
  const std::string cache_path = opt.cache.empty() ? opt.output + ".partial" : opt.cache;
  if (Status s = CheckOutputsAreNotInputs({opt.model, opt.text, opt.imatrix, opt.diffusion.cost_table},
                                          {opt.output, cache_path});
      !s.ok()) {
    return ReportError(s);
  }
  if (auto code = MeasureIfDiffusion(
          global, {opt.model, opt.text, opt.imatrix, opt.output, opt.types, opt.method, opt.threads, opt.diffusion})) {
    return *code;
  }
  auto load = ResolveDeviceOptions(global, opt.device);
  if (!load) return ReportError(load.error());
  auto file = gguf::GgufFile::Open(opt.model);
  if (!file) return ReportError(file.error());
  auto text = pipeline::TokenizeTextFile(*file, opt.text);
  if (!text) return ReportError(text.error());
  measure::MeasureOptions mo;
  mo.load = *load;
  auto types = ParseTypeList(opt.types, "--types");
  if (!types) return ReportError(types.error());
  mo.types = *types;
  auto calib_types = ParseTypeList(opt.calibration_types, "--calibration-types");
  if (!calib_types) return ReportError(calib_types.error());
  mo.calibration_types = *calib_types;
  std::optional<quantize::Imatrix> imatrix;
  if (!opt.imatrix.empty()) {
    auto im = quantize::LoadImatrix(opt.imatrix);
    if (!im) return ReportError(im.error());
    imatrix = std::move(im).value();
    mo.imatrix = &*imatrix;
    mo.imatrix_path = opt.imatrix;
  }
  mo.method = opt.method;
  mo.scheme = opt.calibration == "exact" ? measure::CalibrationScheme::kExact : measure::CalibrationScheme::kLinear;
  mo.probe_layers = opt.probe_layers;
  mo.error_rows = opt.error_rows;
  mo.n_ctx = opt.ctx;
  mo.n_chunks = opt.chunks;
  mo.bos_id = text->bos_id;
  mo.n_threads = ResolveThreadCount(opt.threads);
  mo.cache_path = cache_path;
  auto result = pipeline::MeasureLanguageModel(*file, text->tokens, mo, CliHooks(global));
  if (!result) return ReportError(result.error());
  if (Status s = plan::SaveMeasurement(result->measurement, opt.output); !s.ok()) return ReportError(s);

  nlohmann::json summary = {{"output", opt.output},
                            {"n_units", result->measurement.units.size()},
                            {"fixed_n_bytes", result->measurement.fixed_n_bytes},
                            {"seconds", result->seconds},
                            {"forward_layer_passes", result->n_forward_layers}};
  if (opt.validate > 0) {
    auto v = measure::ValidateMixes(*file, text->tokens, *result, mo, opt.validate, 1);
    if (!v) return ReportError(v.error());
    nlohmann::json mixes = nlohmann::json::array();
    for (const auto& m : v->mixes)
      mixes.push_back({{"bpw", m.bpw}, {"predicted_kld", m.predicted}, {"kld", m.measured}});
    summary["validation"] = {{"spearman", v->spearman}, {"median_ratio", v->median_ratio}, {"mixes", mixes}};
  }
  if (global.json) {
    EmitJsonBegin("measure");
    for (const auto& f : result->fits) {
      EmitJson("tensor", {{"name", f.name}, {"gain", f.gain}, {"alpha", f.alpha}, {"points", f.points}});
    }
    EmitJson("summary", summary);
  } else if (!global.quiet) {
    std::fprintf(stderr, "mixq: measured %zu tensors in %.1f s -> %s\n", result->measurement.units.size(),
                 result->seconds, opt.output.c_str());
    if (summary.contains("validation")) {
      std::fprintf(stderr, "mixq: validation on %d random mixes: Spearman %.3f, median real/predicted %.3f\n",
                   opt.validate, summary["validation"]["spearman"].get<double>(),
                   summary["validation"]["median_ratio"].get<double>());
    }
  }
  std::remove(mo.cache_path.c_str());
  return kExitOk;
}

}  // namespace

void AddMeasure(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<MeasureCliOptions>();
  CLI::App* sub = app.add_subcommand("measure", "predict each tensor's cost (ΔKLD) in each type");
  sub->add_option("model", opt->model,
                  "GGUF model (F16/BF16/F32 preferred), or a diffusion checkpoint (.safetensors or its GGUF)")
      ->required();
  sub->add_option("--text", opt->text, "calibration text (gzip accepted); language models only");
  sub->add_option("-o,--output", opt->output, "measurement JSON to write")->required();
  sub->add_option("--imatrix", opt->imatrix, "importance matrix (mixq imatrix or llama-imatrix)");
  sub->add_option("--types", opt->types, "candidate types, comma-separated (default: all mixq can encode)");
  sub->add_option("--calibration-types", opt->calibration_types, "types measured with real KLD (default Q2_K,Q4_K)");
  sub->add_option("--calibration", opt->calibration, "KLD per tensor: linear (probe layers) or exact")
      ->capture_default_str()
      ->check(CLI::IsMember({"linear", "exact"}));
  sub->add_option("--probe-layers", opt->probe_layers, "linear: layers propagated exactly")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  AddCtxOption(sub, &opt->ctx, "tokens per calibration chunk");
  AddErrorRowsOption(sub, &opt->error_rows);
  sub->add_option("--chunks", opt->chunks, "calibration chunks")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  AddMethodOption(sub, &opt->method);
  sub->add_option("--cache", opt->cache, "resume file (default: OUTPUT.partial)");
  sub->add_option("--validate", opt->validate, "also measure N random mixes and compare with the prediction")
      ->check(CLI::Range(0, 1 << 16));
  AddThreadsOption(sub, &opt->threads);
  AddDeviceOptions(sub, &opt->device);
  AddDiffusionMeasureFlags(sub, &opt->diffusion);
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunMeasure(global, *opt); }; });
}

}  // namespace mixq::cli
