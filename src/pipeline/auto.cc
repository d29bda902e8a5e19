// RunAuto: imatrix -> measure -> plan -> quantize -> eval, caching the
// expensive steps in one directory.
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/content_hash.h"
#include "base/file_identity.h"
#include "base/file_lock.h"
#include "base/parallel.h"
#include "base/text_file.h"
#include "pipeline/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace mixq::pipeline {
namespace {

// What auto keeps between runs, all in one directory.
struct AutoCache {
  explicit AutoCache(const AutoOptions& opt)
      : dir(opt.cache_dir.empty() ? opt.output + ".mixq-cache" : opt.cache_dir),
        imatrix(dir + "/imatrix.gguf"),
        measure(dir + "/measure.cache"),
        measurement(dir + "/measurement.json"),
        plan(dir + "/plan.json") {}
  std::string dir;
  std::string imatrix;  // written only when no imatrix is given
  std::string measure;
  std::string measurement;
  std::string plan;
};

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Without an eval text the text is split at the line nearest its middle: the
// first half calibrates, the second evaluates, so the reported KLD is held out.
std::pair<std::string, std::string> SplitText(const std::string& text) {
  size_t mid = text.find('\n', text.size() / 2);
  if (mid == std::string::npos) mid = text.size() / 2;
  return {text.substr(0, mid + 1), text.substr(mid + 1)};
}

// The imatrix cache records the key it was made with in its metadata, so
// that the file and its key are replaced together.
constexpr const char* kCacheKeyMetadata = "mixq.cache_key";

CacheKey ImatrixCacheKey(const gguf::GgufFile& file, const AutoOptions& opt, const TextTokens& calib) {
  return {{"mixq version", MIXQ_VERSION},
          {"model", file.ContentHash()},
          // The devices' forward passes agree to rounding only.
          {"device", std::string(engine::DeviceName(opt.load.device))},
          {"calibration tokens", HashOfValues(std::span<const int32_t>(calib.tokens))},
          {"n_ctx", std::to_string(opt.ctx)},
          {"chunks", std::to_string(opt.imatrix_chunks)},
          {"bos_id", std::to_string(calib.bos_id)}};
}

// The key a cached imatrix was made with; empty when there is none.
CacheKey CachedImatrixKey(const std::string& path) {
  auto file = gguf::GgufFile::Open(path);
  if (!file) return {};
  auto json = nlohmann::json::parse(file->GetString(kCacheKeyMetadata).value_or(""), nullptr, false);
  if (!json.is_object()) return {};
  CacheKey key;
  for (const auto& [field, value] : json.items()) {
    if (value.is_string()) key[field] = value.get<std::string>();
  }
  return key;
}

Result<quantize::Imatrix> GetImatrix(const AutoOptions& opt, engine::Model& model, const TextTokens& calib,
                                     const std::string& cache_file, const Hooks& hooks) {
  if (!opt.imatrix.empty()) return quantize::LoadImatrix(opt.imatrix);
  const CacheKey key = ImatrixCacheKey(model.file(), opt, calib);
  if (std::filesystem::exists(cache_file)) {
    const std::string why = StaleReason(CachedImatrixKey(cache_file), key);
    if (why.empty()) {
      hooks.Note("imatrix: reusing " + cache_file);
      return quantize::LoadImatrix(cache_file);
    }
    hooks.Note("imatrix: cache '" + cache_file + "' is stale (" + why + "); computing afresh");
  }
  engine::ImatrixOptions io;
  io.n_ctx = opt.ctx;
  io.n_chunks = opt.imatrix_chunks;
  io.n_threads = ResolveThreadCount(opt.threads);
  io.bos_id = calib.bos_id;
  io.dataset = opt.text;
  io.on_progress = [&](int64_t done, int64_t total, int64_t) {
    hooks.Progress("imatrix", static_cast<uint64_t>(done), static_cast<uint64_t>(total));
  };
  auto im = engine::CollectImatrix(model, calib.tokens, io);
  hooks.StageDone("imatrix");
  MIXQ_TRY(im);
  MIXQ_TRY(
      quantize::SaveImatrix(*im, cache_file, {{kCacheKeyMetadata, gguf::Value::String(nlohmann::json(key).dump())}}));
  return im;
}

// The output model against the input on the held-out text.
Result<engine::EvalResult> EvaluateOutput(const AutoOptions& opt, const gguf::GgufFile& input,
                                          engine::Model& input_model, const std::string& eval_text,
                                          const Hooks& hooks) {
  MIXQ_ASSIGN_OR_RETURN(auto out_file, gguf::GgufFile::Open(opt.output));
  MIXQ_ASSIGN_OR_RETURN(auto out_model, engine::Model::Load(out_file, opt.load));
  MIXQ_ASSIGN_OR_RETURN(TextTokens eval_tokens, TokenizeText(input, eval_text));
  engine::EvalOptions eo;
  eo.n_ctx = opt.ctx;
  eo.n_chunks = opt.eval_chunks;
  eo.n_threads = ResolveThreadCount(opt.threads);
  eo.bos_id = eval_tokens.bos_id;
  eo.on_progress = [&](int64_t done, int64_t total, int64_t) {
    hooks.Progress("eval", static_cast<uint64_t>(done), static_cast<uint64_t>(total));
  };
  auto ev = engine::EvaluateVsModel(out_model, input_model, eval_tokens.tokens, eo);
  hooks.StageDone("eval");
  return ev;
}

}  // namespace

Result<AutoResult> RunAuto(const AutoOptions& opt, const Hooks& hooks) {
  const auto start = std::chrono::steady_clock::now();
  const AutoCache cache(opt);
  MIXQ_TRY(
      CheckOutputsAreNotInputs({opt.model, opt.text, opt.eval_text, opt.imatrix},
                               {opt.output, opt.tensor_type_file, cache.dir, opt.imatrix.empty() ? cache.imatrix : "",
                                cache.measure, cache.measurement, cache.plan}));
  MIXQ_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(opt.model));
  MIXQ_ASSIGN_OR_RETURN(auto model, engine::Model::Load(file, opt.load));

  MIXQ_ASSIGN_OR_RETURN(std::string text, ReadTextFile(opt.text));
  std::string calib_text = text, eval_text;
  if (!opt.eval_text.empty()) {
    MIXQ_ASSIGN_OR_RETURN(eval_text, ReadTextFile(opt.eval_text));
  } else {
    std::tie(calib_text, eval_text) = SplitText(text);
  }
  MIXQ_ASSIGN_OR_RETURN(TextTokens calib, TokenizeText(file, calib_text));

  std::error_code ec;
  std::filesystem::create_directories(cache.dir, ec);
  if (ec) return Status::IOError("cannot create cache directory '" + cache.dir + "': " + ec.message());
  // One run at a time per cache directory: its files (imatrix, measure cache,
  // measurement, plan) are one run's consistent set.
  MIXQ_ASSIGN_OR_RETURN(
      auto lock, FileLock::Acquire(cache.dir, [&] {
        hooks.Note("auto: waiting for cache directory '" + cache.dir + "', locked by another mixq run");
      }));

  AutoResult result;
  auto t0 = std::chrono::steady_clock::now();
  MIXQ_ASSIGN_OR_RETURN(quantize::Imatrix imatrix, GetImatrix(opt, model, calib, cache.imatrix, hooks));
  result.seconds_imatrix = SecondsSince(t0);

  t0 = std::chrono::steady_clock::now();
  measure::MeasureOptions mo;
  mo.types = opt.types;
  mo.imatrix = &imatrix;
  mo.imatrix_path = opt.imatrix.empty() ? cache.imatrix : opt.imatrix;
  mo.n_ctx = opt.ctx;
  mo.n_chunks = opt.measure_chunks;
  mo.error_rows = opt.error_rows;
  mo.bos_id = calib.bos_id;
  mo.n_threads = ResolveThreadCount(opt.threads);
  mo.load = opt.load;
  mo.cache_path = cache.measure;
  MIXQ_ASSIGN_OR_RETURN(measure::MeasureResult measured, MeasureLanguageModel(file, calib.tokens, mo, hooks));
  MIXQ_TRY(plan::SaveMeasurement(measured.measurement, cache.measurement));
  result.measurement = measured.measurement;
  result.seconds_measure = SecondsSince(t0);

  plan::PlanRequest req;
  req.budget = opt.budget;
  req.constraints.keep = opt.keep;
  MIXQ_ASSIGN_OR_RETURN(result.plan, plan::SolvePlan(measured.measurement, req));
  MIXQ_TRY(plan::SavePlan(result.plan, cache.plan));
  result.plan_path = cache.plan;
  if (!opt.tensor_type_file.empty()) MIXQ_TRY(plan::SaveTensorTypeFile(result.plan, opt.tensor_type_file));
  if (opt.dry_run) {
    result.seconds = SecondsSince(start);
    return result;
  }

  t0 = std::chrono::steady_clock::now();
  quantize::QuantizeOptions qo;
  MIXQ_ASSIGN_OR_RETURN(qo.rules, RulesFromPlan(result.plan, file));
  qo.imatrix = &imatrix;
  qo.imatrix_path = mo.imatrix_path;
  qo.n_threads = ResolveThreadCount(opt.threads);
  qo.method = opt.method;
  std::unique_ptr<quantize::CovarianceSource> covariances;
  if (opt.gptq) {
    // gptq's covariances come from the imatrix's calibration chunks.
    engine::CovarianceOptions co;
    co.n_ctx = opt.ctx;
    co.n_chunks = opt.imatrix_chunks;
    co.n_threads = ResolveThreadCount(opt.threads);
    co.bos_id = calib.bos_id;
    MIXQ_ASSIGN_OR_RETURN(covariances, engine::LayerCovariances(model, calib.tokens, co));
    qo.covariances = covariances.get();
  }
  qo.on_progress = [&](size_t done, size_t total, const std::string& name) {
    hooks.Progress("quantize", done, total, name);
  };
  auto report = quantize::QuantizeModel(file, opt.output, qo);
  hooks.StageDone("quantize");
  MIXQ_TRY(report);
  result.report = std::move(report).value();
  result.seconds_quantize = SecondsSince(t0);

  if (opt.eval) {
    t0 = std::chrono::steady_clock::now();
    MIXQ_ASSIGN_OR_RETURN(result.eval, EvaluateOutput(opt, file, model, eval_text, hooks));
    result.seconds_eval = SecondsSince(t0);
  }
  result.seconds = SecondsSince(start);
  return result;
}

}  // namespace mixq::pipeline
