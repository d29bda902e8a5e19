// mixq eval MODEL.gguf --text FILE [--ctx 512] [--chunks N] [--base M.gguf | --base-logits F] [--save-logits F]
#include <cstdio>

#include "base/file_identity.h"
#include "cli/cli.h"
#include "cli/workflow.h"
#include "engine/engine.h"

namespace mixq::cli {
namespace {

struct EvalCliOptions {
  std::string model;
  std::string text;
  int64_t ctx = 512;
  int64_t chunks = -1;
  std::string base;
  std::string base_logits;
  std::string save_logits;
  std::string activations = "ggml";
  int threads = 0;
  DeviceCliOptions device;
};

nlohmann::json SummaryJson(const EvalCliOptions& opt, const engine::EvalResult& r) {
  nlohmann::json j = {{"model", opt.model},
                      {"n_ctx", r.n_ctx},
                      {"n_chunks", r.n_chunks},
                      {"first_scored", r.first_scored},
                      {"n_scored", r.n_scored},
                      {"nll_mean", r.nll_mean},
                      {"nll_stderr", r.nll_stderr},
                      {"ppl", r.ppl},
                      {"ppl_stderr", r.ppl_stderr},
                      {"seconds", r.seconds},
                      {"tokens_per_second", r.tokens_per_second},
                      {"steady_tokens_per_second", r.steady_tokens_per_second}};
  if (r.kld) {
    const engine::KldStats& k = *r.kld;
    j["base"] = opt.base.empty() ? opt.base_logits : opt.base;
    j["base_ppl"] = k.base_ppl;
    j["base_ppl_stderr"] = k.base_ppl_stderr;
    j["kld_mean"] = k.kld_mean;
    j["kld_stderr"] = k.kld_stderr;
    j["kld_median"] = k.kld_median;
    j["kld_p90"] = k.kld_p90;
    j["kld_p95"] = k.kld_p95;
    j["kld_p99"] = k.kld_p99;
    j["kld_max"] = k.kld_max;
    j["same_top_p"] = k.same_top;
    j["same_top_p_stderr"] = k.same_top_stderr;
    j["ln_ppl_ratio"] = k.ln_ppl_ratio;
    j["ln_ppl_ratio_stderr"] = k.ln_ppl_ratio_stderr;
    j["dp_mean"] = k.dp_mean;
    j["dp_stderr"] = k.dp_stderr;
    j["dp_rms"] = k.dp_rms;
  }
  if (!opt.save_logits.empty()) j["saved_logits"] = opt.save_logits;
  return j;
}

void PrintText(const EvalCliOptions& opt, const engine::EvalResult& r) {
  std::printf("%s: %lld chunks x %lld tokens, %lld scored positions, %.2f s (%.0f tokens/s)\n", opt.model.c_str(),
              static_cast<long long>(r.n_chunks), static_cast<long long>(r.n_ctx), static_cast<long long>(r.n_scored),
              r.seconds, r.tokens_per_second);
  std::printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
  if (!r.kld) return;
  const engine::KldStats& k = *r.kld;
  std::printf("base PPL = %.4f +/- %.5f\n", k.base_ppl, k.base_ppl_stderr);
  std::printf("ln(PPL/PPL base) = %.6f +/- %.6f\n", k.ln_ppl_ratio, k.ln_ppl_ratio_stderr);
  std::printf("KLD mean = %.6f +/- %.6f, median %.6f, p90 %.6f, p99 %.6f, max %.6f\n", k.kld_mean, k.kld_stderr,
              k.kld_median, k.kld_p90, k.kld_p99, k.kld_max);
  std::printf("same top p = %.3f +/- %.3f %%\n", 100.0 * k.same_top, 100.0 * k.same_top_stderr);
  std::printf("delta p = %.3f +/- %.3f %%, RMS %.3f %%\n", 100.0 * k.dp_mean, 100.0 * k.dp_stderr, 100.0 * k.dp_rms);
}

int RunEval(const GlobalOptions& global, const EvalCliOptions& opt) {
  if (Status s = CheckOutputsAreNotInputs({opt.model, opt.text, opt.base, opt.base_logits}, {opt.save_logits});
      !s.ok()) {
    return ReportError(s);
  }
  if (opt.text.empty() && opt.base_logits.empty()) {
    return ReportError(Status::InvalidArgument("eval needs --text (or --base-logits, whose tokens are reused)"));
  }
  if (!opt.base.empty() && !opt.base_logits.empty()) {
    return ReportError(Status::InvalidArgument("--base and --base-logits exclude each other; give one"));
  }
  if (opt.activations != "ggml" && opt.activations != "f32") {
    return ReportError(Status::InvalidArgument("--activations must be 'ggml' or 'f32', not '" + opt.activations + "'"));
  }
  auto load = ResolveDeviceOptions(global, opt.device);
  if (!load) return ReportError(load.error());
  pipeline::EvalRequest request;
  request.model = opt.model;
  request.text = opt.text;
  request.base = opt.base;
  request.base_logits = opt.base_logits;
  request.save_logits = opt.save_logits;
  request.ctx = opt.ctx;
  request.chunks = opt.chunks;
  request.threads = opt.threads;
  request.activations = opt.activations == "f32" ? engine::Activations::kF32 : engine::Activations::kGgml;
  request.load = *load;
  auto result = pipeline::EvaluateLanguageModel(request, CliHooks(global));
  if (!result) return ReportError(result.error());

  if (global.json) {
    EmitJsonBegin("eval");
    for (size_t i = 0; i < result->chunk_ppl.size(); ++i) {
      EmitJson("chunk", {{"chunk", i}, {"ppl", result->chunk_ppl[i]}});
    }
    EmitJson("summary", SummaryJson(opt, *result));
  } else {
    PrintText(opt, *result);
  }
  return kExitOk;
}

}  // namespace

void AddEval(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<EvalCliOptions>();
  CLI::App* sub = app.add_subcommand(
      "eval", "perplexity of a GGUF model on a text as llama-perplexity computes it, and KLD against a base");
  sub->add_option("model", opt->model, "GGUF model")->required();
  sub->add_option("--text", opt->text, "UTF-8 text file (gzip accepted); one trailing newline is ignored");
  AddCtxOption(sub, &opt->ctx, "tokens per chunk");
  sub->add_option("--chunks", opt->chunks, "use at most N chunks (-1: all)")
      ->capture_default_str()
      ->check(PositiveOrAll());
  auto* base = sub->add_option("--base", opt->base, "base GGUF model to compute KLD against (run alongside)");
  auto* base_logits = sub->add_option("--base-logits", opt->base_logits,
                                      "saved base log-probs (from --save-logits, or gguf-oracle LGT2 logits)");
  base->excludes(base_logits);
  sub->add_option("--save-logits", opt->save_logits, "write this model's log-probs as a base file for later runs");
  sub->add_option("--activations", opt->activations,
                  "ggml: round activations as llama.cpp's CPU backend does (F16/Q8_0/Q8_K), so results match it; "
                  "f32: exact activations")
      ->capture_default_str();
  AddThreadsOption(sub, &opt->threads);
  AddDeviceOptions(sub, &opt->device);
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunEval(global, *opt); }; });
}

}  // namespace mixq::cli
