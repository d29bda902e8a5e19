// mixq quantize IN.gguf|IN.safetensors OUT.gguf --type T [--imatrix F] [--tensor-type REGEX=T ...] [--plan plan.json]
#include "quantize/quantize.h"

#include <chrono>
#include <cstdio>

#include "base/file_identity.h"
#include "base/parallel.h"
#include "cli/cli.h"
#include "cli/diffusion.h"
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
  std::string text;         // calibration text of --method gptq
  DeviceCliOptions device;  // of gptq's covariance passes
  int64_t ctx = 512;
  int64_t chunks = -1;
  std::string plan;
  int threads = 0;
  bool type_given = false;
};

Result<quantize::QuantizeOptions> BuildOptions(const QuantizeCliOptions& opt) {
  quantize::QuantizeOptions q;
  MIXQ_ASSIGN_OR_RETURN(q.rules.default_format, quantize::ParseTypeName(opt.type, "--type"));
  for (const auto& text : opt.tensor_types) {
    MIXQ_ASSIGN_OR_RETURN(auto o, quantize::ParseTensorTypeOverride(text));
    q.rules.overrides.push_back(std::move(o));
  }
  if (!opt.output_type.empty()) {
    MIXQ_ASSIGN_OR_RETURN(q.rules.output_format, quantize::ParseTypeName(opt.output_type, "--output-tensor-type"));
  }
  if (!opt.token_embd_type.empty()) {
    MIXQ_ASSIGN_OR_RETURN(q.rules.token_embd_format,
                          quantize::ParseTypeName(opt.token_embd_type, "--token-embedding-type"));
  }
  if ((opt.method == "gptq") != !opt.text.empty()) {
    return Status::InvalidArgument(opt.text.empty() ? "--method gptq needs calibration text (--text FILE)"
                                                    : "--text is the calibration text of --method gptq only");
  }
  q.method = opt.method == "ggml" ? formats::QuantMethod::kGgml : formats::QuantMethod::kBest;
  q.n_threads = opt.threads;
  return q;
}

int RunQuantize(const GlobalOptions& global, const QuantizeCliOptions& opt) {
  if (Status s = CheckOutputsAreNotInputs({opt.input, opt.imatrix, opt.plan, opt.text}, {opt.output}); !s.ok()) {
    return ReportError(s);
  }
  QuantizeArgs diffusion_args;
  diffusion_args.input = opt.input;
  diffusion_args.output = opt.output;
  diffusion_args.plan = opt.plan;
  const auto method = opt.method == "ggml" ? formats::QuantMethod::kGgml : formats::QuantMethod::kBest;
  diffusion_args.types = {opt.type_given ? opt.type : "", "", opt.tensor_types, method, opt.threads};
  diffusion_args.llm_flags =
      !opt.imatrix.empty() || !opt.output_type.empty() || !opt.token_embd_type.empty() || !opt.text.empty();
  if (auto code = QuantizeIfDiffusion(global, diffusion_args)) return *code;
  auto options = BuildOptions(opt);
  if (!options) return ReportError(options.error());
  pipeline::QuantizeRequest request;
  request.input = opt.input;
  request.output = opt.output;
  request.options = std::move(options).value();
  request.plan = opt.plan;
  request.imatrix = opt.imatrix;
  if (opt.method == "gptq") {
    request.text = opt.text;
    request.ctx = opt.ctx;
    request.chunks = opt.chunks;
    auto device = ResolveDeviceOptions(global, opt.device);
    if (!device) return ReportError(device.error());
    request.device = *device;
  }
  auto start = std::chrono::steady_clock::now();
  auto report = pipeline::QuantizeLanguageModel(request, CliHooks(global));
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
    if (opt.method == "gptq") {
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
      ->capture_default_str()
      ->check(CLI::IsMember({"best", "ggml", "gptq"}));
  sub->add_option("--text", opt->text, "calibration text of --method gptq (gzip accepted)");
  AddCtxOption(sub, &opt->ctx, "tokens per calibration chunk (--method gptq)");
  sub->add_option("--chunks", opt->chunks, "use at most N calibration chunks (-1: all)")
      ->capture_default_str()
      ->check(PositiveOrAll());
  AddThreadsOption(sub, &opt->threads);
  AddDeviceOptions(sub, &opt->device);
  sub->callback([&global, opt, action, type] {
    opt->type_given = type->count() > 0;
    *action = [&global, opt] { return RunQuantize(global, *opt); };
  });
}

}  // namespace mixq::cli
