// mixq quantize IN.gguf|IN.safetensors OUT.gguf --type T [--imatrix F] [--tensor-type REGEX=T ...] [--plan plan.json]
#include "quantize/quantize.h"

#include <chrono>
#include <cstdio>

#include "base/file_identity.h"
#include "base/parallel.h"
#include "cli/cli.h"
#include "cli/diffusion_pipeline.h"
#include "cli/workflow.h"
#include "engine/engine.h"
#include "gguf/gguf.h"

namespace mixq::cli {
namespace {

struct QuantizeCliOptions {
  std::string input;
  std::string output;
  std::string type = "Q4_K";
  std::string imatrix;
  std::vector<std::string> tensor_types;
  std::string output_type;
  std::string token_embd_type;
  std::string method = "best";
  std::string text;  // calibration text of --method gptq
  int64_t ctx = 512;
  int64_t chunks = -1;
  std::string plan;
  int threads = 0;
  bool type_given = false;
};

Result<const formats::Format*> ParseType(const std::string& name, const char* flag) {
  const formats::Format* f = formats::FindFormatByName(name);
  if (f == nullptr || !f->can_encode()) {
    return Status::InvalidArgument(std::string(flag) + ": unknown or unsupported type '" + name +
                                   "'; valid types: " + formats::EncodableFormatNames());
  }
  return f;
}

Result<quantize::QuantizeOptions> BuildOptions(const QuantizeCliOptions& opt) {
  quantize::QuantizeOptions q;
  auto def = ParseType(opt.type, "--type");
  MIXQ_TRY(def);
  q.rules.default_format = *def;
  for (const auto& text : opt.tensor_types) {
    auto o = quantize::ParseTensorTypeOverride(text);
    MIXQ_TRY(o);
    q.rules.overrides.push_back(std::move(o).value());
  }
  if (!opt.output_type.empty()) {
    auto f = ParseType(opt.output_type, "--output-tensor-type");
    MIXQ_TRY(f);
    q.rules.output_format = *f;
  }
  if (!opt.token_embd_type.empty()) {
    auto f = ParseType(opt.token_embd_type, "--token-embedding-type");
    MIXQ_TRY(f);
    q.rules.token_embd_format = *f;
  }
  if (opt.method == "ggml") {
    q.method = formats::QuantMethod::kGgml;
  } else if (opt.method != "best" && opt.method != "gptq") {
    return Status::InvalidArgument("--method must be 'best', 'ggml' or 'gptq', not '" + opt.method + "'");
  }
  if ((opt.method == "gptq") != !opt.text.empty()) {
    return Status::InvalidArgument(opt.text.empty() ? "--method gptq needs calibration text (--text FILE)"
                                                    : "--text is the calibration text of --method gptq only");
  }
  q.n_threads = opt.threads;
  return q;
}

// The plan's types, checked against the model it is applied to.
Status ApplyPlan(const std::string& path, const gguf::GgufFile& input, quantize::TypeRules* rules) {
  auto p = plan::LoadPlan(path);
  MIXQ_TRY(p);
  auto from_plan = RulesFromPlan(*p, input);
  MIXQ_TRY(from_plan.status().WithContext("plan '" + path + "'"));
  rules->exact = std::move(from_plan->exact);
  return Status::Ok();
}

int RunQuantize(const GlobalOptions& global, const QuantizeCliOptions& opt) {
  if (Status s = CheckOutputsAreNotInputs({opt.input, opt.imatrix, opt.plan, opt.text}, {opt.output}); !s.ok()) {
    return ReportError(s);
  }
  QuantizeArgs diffusion_args;
  diffusion_args.input = opt.input;
  diffusion_args.output = opt.output;
  diffusion_args.plan = opt.plan;
  diffusion_args.types = {opt.type_given ? opt.type : "", "", opt.tensor_types, opt.method, opt.threads};
  diffusion_args.llm_flags =
      !opt.imatrix.empty() || !opt.output_type.empty() || !opt.token_embd_type.empty() || !opt.text.empty();
  if (auto code = QuantizeIfDiffusion(global, diffusion_args)) return *code;
  auto options = BuildOptions(opt);
  if (!options) return ReportError(options.error());
  auto input = gguf::GgufFile::Open(opt.input);
  if (!input) return ReportError(input.error());
  if (!opt.plan.empty()) {
    if (Status s = ApplyPlan(opt.plan, *input, &options->rules); !s.ok()) return ReportError(s);
  }
  std::optional<quantize::Imatrix> imatrix;
  if (!opt.imatrix.empty()) {
    auto im = quantize::LoadImatrix(opt.imatrix);
    if (!im) return ReportError(im.error());
    imatrix = std::move(im).value();
    options->imatrix = &*imatrix;
    options->imatrix_path = opt.imatrix;
    Info(global, "imatrix: " + std::to_string(imatrix->entries.size()) + " entries from " + opt.imatrix);
  }
  // The covariance passes run the model through the engine; it must outlive the quantization.
  std::optional<engine::Model> model;
  std::unique_ptr<quantize::CovarianceSource> covariances;
  if (opt.method == "gptq") {
    auto m = engine::Model::Load(*input);
    if (!m) return ReportError(m.error());
    model.emplace(std::move(m).value());
    auto text = TokenizeTextFile(*input, opt.text);
    if (!text) return ReportError(text.error());
    engine::CovarianceOptions co;
    co.n_ctx = opt.ctx;
    co.n_chunks = opt.chunks;
    co.n_threads = ResolveThreadCount(opt.threads);
    co.bos_id = text->bos_id;
    auto source = engine::LayerCovariances(*model, text->tokens, co);
    if (!source) return ReportError(source.error());
    covariances = std::move(source).value();
    options->covariances = covariances.get();
  }
  Progress progress(global, "quantize", input->tensors().size());
  options->on_progress = [&](size_t done, size_t, const std::string& name) { progress.Update(done, name); };
  options->on_note = [&](const std::string& note) { Info(global, note); };

  auto start = std::chrono::steady_clock::now();
  auto report = quantize::QuantizeModel(*input, opt.output, *options);
  progress.Finish();
  if (!report) return ReportError(report.error());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (global.json) {
    EmitJsonBegin("quantize");
    for (const auto& t : report->tensors) {
      EmitJson("tensor", {{"name", t.name},
                          {"type", t.type},
                          {"n_weights", t.n_weights},
                          {"size_bytes", t.n_bytes},
                          {"seconds", t.seconds}});
    }
    EmitJson("summary", {{"input", opt.input},
                         {"output", opt.output},
                         {"method", opt.method},
                         {"file_bytes", report->file_bytes},
                         {"tensor_bytes", report->tensor_bytes},
                         {"n_weights", report->n_weights},
                         {"bpw", report->bpw()},
                         {"type_counts", report->type_counts},
                         {"covariance_seconds", report->covariance_seconds},
                         {"seconds", secs}});
  } else if (!global.quiet) {
    std::string types;
    for (const auto& [type, n] : report->type_counts) types += " " + type + " x" + std::to_string(n);
    std::string passes;
    if (covariances) {
      char text[64];
      std::snprintf(text, sizeof(text), " (covariance passes %.2f s)", report->covariance_seconds);
      passes = text;
    }
    std::fprintf(stderr, "mixq: wrote %s: %s (%llu bytes), %.4f bpw, %.2f s%s;%s\n", opt.output.c_str(),
                 FormatBytes(report->file_bytes).c_str(), static_cast<unsigned long long>(report->file_bytes),
                 report->bpw(), secs, passes.c_str(), types.c_str());
  }
  return kExitOk;
}

}  // namespace

void AddQuantize(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<QuantizeCliOptions>();
  CLI::App* sub = app.add_subcommand("quantize", "quantize a GGUF model to one type or a mix");
  sub->add_option("input", opt->input,
                  "input GGUF (F32/F16/BF16 or quantized), or a diffusion checkpoint (.safetensors, written as "
                  "`mixq convert` writes it)")
      ->required();
  sub->add_option("output", opt->output, "output GGUF (written atomically)")->required();
  CLI::Option* type =
      sub->add_option("--type", opt->type, "default type for quantizable tensors: " + formats::EncodableFormatNames())
          ->capture_default_str();
  sub->add_option("--imatrix", opt->imatrix, "importance matrix (llama.cpp GGUF or legacy .dat)");
  sub->add_option("--tensor-type", opt->tensor_types, "REGEX=TYPE override, first match wins (repeatable)");
  sub->add_option("--output-tensor-type", opt->output_type, "type of output.weight (default: Q6_K, or Q8_0)");
  sub->add_option("--token-embedding-type", opt->token_embd_type, "type of token_embd.weight (default: --type)");
  sub->add_option("--plan", opt->plan,
                  "per-tensor types from `mixq plan`, made for this model: it must give a type to exactly the tensors "
                  "mixq quantizes");
  sub->add_option("--method", opt->method,
                  "block search: best (mixq's, default), ggml (byte-identical) or gptq (error feedback through the "
                  "input covariance of the --text; same formats)")
      ->capture_default_str();
  sub->add_option("--text", opt->text, "calibration text of --method gptq (gzip accepted)");
  sub->add_option("--ctx", opt->ctx, "tokens per calibration chunk (--method gptq)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  sub->add_option("--chunks", opt->chunks, "use at most N calibration chunks (-1: all)")->capture_default_str();
  AddThreadsOption(sub, &opt->threads);
  sub->callback([&global, opt, action, type] {
    opt->type_given = type->count() > 0;
    *action = [&global, opt] { return RunQuantize(global, *opt); };
  });
}

}  // namespace mixq::cli
