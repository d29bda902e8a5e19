// mixq eval MODEL.gguf --text FILE [--ctx 512] [--chunks N] [--base M.gguf | --base-logits F] [--save-logits F]
#include <chrono>
#include <cstdio>
#include <optional>

#include "base/file_identity.h"
#include "base/parallel.h"
#include "cli/cli.h"
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

std::string ProgressDetail(int64_t done, int64_t total, int64_t tokens, std::chrono::steady_clock::time_point start) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char buf[96];
  std::snprintf(buf, sizeof(buf), "chunk %lld/%lld, %.0f tokens/s", static_cast<long long>(done),
                static_cast<long long>(total), secs > 0 ? static_cast<double>(tokens) / secs : 0.0);
  return buf;
}

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
  auto file = gguf::GgufFile::Open(opt.model);
  if (!file) return ReportError(file.error());
  auto model = engine::Model::Load(*file, *load);
  if (!model) return ReportError(model.error());
  auto tok = tokenizer::Tokenizer::FromGguf(*file);
  if (!tok) return ReportError(tok.error());

  engine::EvalOptions eo;
  eo.n_ctx = opt.ctx;
  eo.n_chunks = opt.chunks;
  eo.n_threads = ResolveThreadCount(opt.threads);
  eo.bos_id = tok->add_bos() ? tok->bos_id() : -1;
  eo.save_logits = opt.save_logits;
  eo.activations = opt.activations == "f32" ? engine::Activations::kF32 : engine::Activations::kGgml;

  std::vector<int32_t> tokens;
  if (!opt.text.empty()) {
    auto text = tokenizer::ReadTextFile(opt.text);
    if (!text) return ReportError(text.error());
    tokens = engine::TokenizeForEval(*tok, *text);
  }

  std::optional<Progress> progress;
  auto start = std::chrono::steady_clock::now();
  eo.on_progress = [&](int64_t done, int64_t total, int64_t n_tokens) {
    if (!progress) progress.emplace(global, "eval", static_cast<uint64_t>(total));
    progress->Update(static_cast<uint64_t>(done), ProgressDetail(done, total, n_tokens, start));
  };

  Result<engine::EvalResult> result = Status::Internal("eval did not run");
  if (!opt.base_logits.empty()) {
    auto base = engine::BaseLogits::Open(opt.base_logits);
    if (!base) return ReportError(base.error());
    if (!tokens.empty()) {
      const size_t n = base->tokens().size();
      if (tokens.size() < n || !std::equal(base->tokens().begin(), base->tokens().end(), tokens.begin())) {
        return ReportError(Status::Corruption("--text does not tokenize to the tokens stored in " + opt.base_logits +
                                              "; drop --text to reuse the stored tokens"));
      }
    }
    result = engine::EvaluateVsLogits(*model, *base, eo);
  } else if (!opt.base.empty()) {
    auto base_file = gguf::GgufFile::Open(opt.base);
    if (!base_file) return ReportError(base_file.error());
    auto base_model = engine::Model::Load(*base_file, *load);
    if (!base_model) return ReportError(base_model.error());
    result = engine::EvaluateVsModel(*model, *base_model, tokens, eo);
  } else {
    result = engine::Evaluate(*model, tokens, eo);
  }
  if (progress) progress->Finish();
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
