// mixq auto MODEL.gguf (--target 4.5bpw | --target-size 2GiB) --text calib.txt -o OUT.gguf
// imatrix -> measure -> plan -> quantize -> eval, caching the expensive steps.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "base/content_hash.h"
#include "base/file_identity.h"
#include "base/file_lock.h"
#include "cli/workflow.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

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
  std::string tensor_type_file;
  std::vector<std::string> keep;
  int64_t ctx = 512;
  int64_t imatrix_chunks = 40;
  int64_t measure_chunks = 4;
  int64_t eval_chunks = 20;
  int threads = 0;
  bool no_eval = false;
  bool dry_run = false;
};

// What auto keeps between runs, all in one directory.
struct AutoCache {
  explicit AutoCache(const AutoCliOptions& opt)
      : dir(opt.cache_dir.empty() ? opt.output + ".mixq-cache" : opt.cache_dir),
        imatrix(dir + "/imatrix.gguf"),
        measure(dir + "/measure.cache"),
        measurement(dir + "/measurement.json"),
        plan(dir + "/plan.json") {}
  std::string dir;
  std::string imatrix;  // written only when no --imatrix is given
  std::string measure;
  std::string measurement;
  std::string plan;
};

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Without --eval-text the text is split at the line nearest its middle: the
// first half calibrates, the second evaluates, so the reported KLD is held out.
std::pair<std::string, std::string> SplitText(const std::string& text) {
  size_t mid = text.find('\n', text.size() / 2);
  if (mid == std::string::npos) mid = text.size() / 2;
  return {text.substr(0, mid + 1), text.substr(mid + 1)};
}

// The imatrix cache records the key it was made with in its metadata, so
// that the file and its key are replaced together.
constexpr const char* kCacheKeyMetadata = "mixq.cache_key";

CacheKey ImatrixCacheKey(const gguf::GgufFile& file, const AutoCliOptions& opt, const TextTokens& calib) {
  return {{"mixq version", MIXQ_VERSION},
          {"model", file.ContentHash()},
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

Result<quantize::Imatrix> GetImatrix(const GlobalOptions& global, const AutoCliOptions& opt, engine::Model& model,
                                     const TextTokens& calib, const std::string& cache_file) {
  if (!opt.imatrix.empty()) return quantize::LoadImatrix(opt.imatrix);
  const CacheKey key = ImatrixCacheKey(model.file(), opt, calib);
  if (std::filesystem::exists(cache_file)) {
    const std::string why = StaleReason(CachedImatrixKey(cache_file), key);
    if (why.empty()) {
      Info(global, "imatrix: reusing " + cache_file);
      return quantize::LoadImatrix(cache_file);
    }
    Info(global, "imatrix: cache '" + cache_file + "' is stale (" + why + "); computing afresh");
  }
  engine::ImatrixOptions io;
  io.n_ctx = opt.ctx;
  io.n_chunks = opt.imatrix_chunks;
  io.n_threads = ResolveThreadCount(opt.threads);
  io.bos_id = calib.bos_id;
  io.dataset = opt.text;
  Progress progress(global, "imatrix", 1);
  io.on_progress = [&](int64_t done, int64_t total, int64_t) {
    progress.SetTotal(static_cast<uint64_t>(total));
    progress.Update(static_cast<uint64_t>(done));
  };
  auto im = engine::CollectImatrix(model, calib.tokens, io);
  MIXQ_TRY(im);
  MIXQ_TRY(
      quantize::SaveImatrix(*im, cache_file, {{kCacheKeyMetadata, gguf::Value::String(nlohmann::json(key).dump())}}));
  return im;
}

int RunAuto(const GlobalOptions& global, const AutoCliOptions& opt) {
  const auto start = std::chrono::steady_clock::now();
  const AutoCache cache(opt);
  if (Status s = CheckOutputsAreNotInputs(
          {opt.model, opt.text, opt.eval_text, opt.imatrix},
          {opt.output, opt.tensor_type_file, cache.dir, opt.imatrix.empty() ? cache.imatrix : "", cache.measure,
           cache.measurement, cache.plan});
      !s.ok()) {
    return ReportError(s);
  }
  auto budget = ParseBudget(opt.target, opt.target_size);
  if (!budget) return ReportError(budget.error());
  auto types = ParseTypeList(opt.types, "--types");
  if (!types) return ReportError(types.error());
  auto file = gguf::GgufFile::Open(opt.model);
  if (!file) return ReportError(file.error());
  auto model = engine::Model::Load(*file);
  if (!model) return ReportError(model.error());

  auto text = tokenizer::ReadTextFile(opt.text);
  if (!text) return ReportError(text.error());
  std::string calib_text = *text, eval_text;
  if (!opt.eval_text.empty()) {
    auto e = tokenizer::ReadTextFile(opt.eval_text);
    if (!e) return ReportError(e.error());
    eval_text = std::move(e).value();
  } else {
    std::tie(calib_text, eval_text) = SplitText(*text);
  }
  auto calib = TokenizeText(*file, calib_text);
  if (!calib) return ReportError(calib.error());

  std::error_code ec;
  std::filesystem::create_directories(cache.dir, ec);
  if (ec) return ReportError(Status::IOError("cannot create cache directory '" + cache.dir + "': " + ec.message()));
  // One run at a time per cache directory: its files (imatrix, measure cache,
  // measurement, plan) are one run's consistent set.
  auto lock = FileLock::Acquire(cache.dir, [&] {
    Info(global, "auto: waiting for cache directory '" + cache.dir + "', locked by another mixq run");
  });
  if (!lock) return ReportError(lock.error());

  auto t0 = std::chrono::steady_clock::now();
  auto imatrix = GetImatrix(global, opt, *model, *calib, cache.imatrix);
  if (!imatrix) return ReportError(imatrix.error());
  const double imatrix_s = SecondsSince(t0);

  t0 = std::chrono::steady_clock::now();
  measure::MeasureOptions mo;
  mo.types = *types;
  mo.imatrix = &*imatrix;
  mo.imatrix_path = opt.imatrix.empty() ? cache.imatrix : opt.imatrix;
  mo.n_ctx = opt.ctx;
  mo.n_chunks = opt.measure_chunks;
  mo.bos_id = calib->bos_id;
  mo.n_threads = ResolveThreadCount(opt.threads);
  mo.cache_path = cache.measure;
  auto measured = MeasureWithProgress(global, *file, calib->tokens, mo);
  if (!measured) return ReportError(measured.error());
  if (Status s = plan::SaveMeasurement(measured->measurement, cache.measurement); !s.ok()) {
    return ReportError(s);
  }
  const double measure_s = SecondsSince(t0);

  plan::PlanRequest req;
  req.budget = *budget;
  for (const auto& k : opt.keep) {
    auto rule = plan::ParseKeepRule(k);
    if (!rule) return ReportError(rule.error());
    req.constraints.keep.push_back(*rule);
  }
  auto p = plan::SolvePlan(measured->measurement, req);
  if (!p) return ReportError(p.error());
  if (Status s = plan::SavePlan(*p, cache.plan); !s.ok()) return ReportError(s);
  if (!opt.tensor_type_file.empty()) {
    if (Status s = plan::SaveTensorTypeFile(*p, opt.tensor_type_file); !s.ok()) return ReportError(s);
  }
  if (opt.dry_run) {
    ReportPlan(global, "auto", *p, false);
    Info(global, "dry run: plan in " + cache.plan + "; " + opt.output + " not written");
    return kExitOk;
  }

  t0 = std::chrono::steady_clock::now();
  quantize::QuantizeOptions qo;
  auto rules = RulesFromPlan(*p, *file);
  if (!rules) return ReportError(rules.error());
  qo.rules = std::move(rules).value();
  qo.imatrix = &*imatrix;
  qo.imatrix_path = mo.imatrix_path;
  qo.n_threads = ResolveThreadCount(opt.threads);
  Progress qprogress(global, "quantize", file->tensors().size());
  qo.on_progress = [&](size_t done, size_t, const std::string& name) { qprogress.Update(done, name); };
  auto report = quantize::QuantizeModel(*file, opt.output, qo);
  qprogress.Finish();
  if (!report) return ReportError(report.error());
  const double quantize_s = SecondsSince(t0);

  nlohmann::json summary = {{"output", opt.output},
                            {"file_bytes", report->file_bytes},
                            {"budget_bytes", p->budget_file_n_bytes},
                            {"tensor_bytes", report->tensor_bytes},
                            {"bpw", report->bpw()},
                            {"predicted_kld", p->cost},
                            {"plan_optimal", p->optimal},
                            {"type_counts", report->type_counts},
                            {"seconds_imatrix", imatrix_s},
                            {"seconds_measure", measure_s},
                            {"seconds_quantize", quantize_s}};
  summary.update(PlanBreakdown(*p));

  if (!opt.no_eval) {
    t0 = std::chrono::steady_clock::now();
    auto out_file = gguf::GgufFile::Open(opt.output);
    if (!out_file) return ReportError(out_file.error());
    auto out_model = engine::Model::Load(*out_file);
    if (!out_model) return ReportError(out_model.error());
    auto eval_tokens = TokenizeText(*file, eval_text);
    if (!eval_tokens) return ReportError(eval_tokens.error());
    engine::EvalOptions eo;
    eo.n_ctx = opt.ctx;
    eo.n_chunks = opt.eval_chunks;
    eo.n_threads = ResolveThreadCount(opt.threads);
    eo.bos_id = eval_tokens->bos_id;
    Progress eprogress(global, "eval", 1);
    eo.on_progress = [&](int64_t done, int64_t total, int64_t) {
      eprogress.SetTotal(static_cast<uint64_t>(total));
      eprogress.Update(static_cast<uint64_t>(done));
    };
    auto ev = engine::EvaluateVsModel(*out_model, *model, eval_tokens->tokens, eo);
    eprogress.Finish();
    if (!ev) return ReportError(ev.error());
    summary["ppl"] = ev->ppl;
    summary["ppl_stderr"] = ev->ppl_stderr;
    summary["base_ppl"] = ev->kld->base_ppl;
    summary["kld"] = ev->kld->kld_mean;
    summary["kld_stderr"] = ev->kld->kld_stderr;
    summary["kld_p99"] = ev->kld->kld_p99;
    summary["same_top"] = ev->kld->same_top;
    summary["eval_chunks"] = ev->n_chunks;
    summary["seconds_eval"] = SecondsSince(t0);
  }
  summary["seconds"] = SecondsSince(start);

  if (global.json) {
    EmitJsonBegin("auto");
    for (const auto& u : p->units) EmitJson("tensor", {{"name", u.name}, {"type", u.type}, {"size_bytes", u.n_bytes}});
    EmitJson("summary", summary);
  } else if (!global.quiet) {
    std::fprintf(stderr, "mixq: wrote %s: %s (%llu bytes, budget %llu), %.4f bpw\n", opt.output.c_str(),
                 FormatBytes(report->file_bytes).c_str(), static_cast<unsigned long long>(report->file_bytes),
                 static_cast<unsigned long long>(p->budget_file_n_bytes), report->bpw());
    std::string types_line;
    for (const auto& [type, n] : report->type_counts) types_line += " " + type + " x" + std::to_string(n);
    std::fprintf(stderr, "  types:%s\n", types_line.c_str());
    PrintPlanBreakdown(*p);
    if (summary.contains("kld")) {
      std::fprintf(stderr,
                   "  held-out text (%lld chunks of %lld): KLD %.5f ± %.5f (predicted %.5f), p99 %.4f, "
                   "same top %.2f%%, PPL %.4f (base %.4f)\n",
                   static_cast<long long>(summary["eval_chunks"].get<int64_t>()), static_cast<long long>(opt.ctx),
                   summary["kld"].get<double>(), summary["kld_stderr"].get<double>(), p->cost,
                   summary["kld_p99"].get<double>(), 100 * summary["same_top"].get<double>(),
                   summary["ppl"].get<double>(), summary["base_ppl"].get<double>());
    }
    std::fprintf(stderr, "  time: imatrix %.1f s, measure %.1f s, quantize %.1f s, total %.1f s\n", imatrix_s,
                 measure_s, quantize_s, summary["seconds"].get<double>());
  }
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
  sub->add_option("--ctx", opt->ctx, "tokens per chunk")->capture_default_str()->check(CLI::Range(8, 1 << 20));
  sub->add_option("--imatrix-chunks", opt->imatrix_chunks, "chunks for the imatrix (-1: all)")
      ->capture_default_str()
      ->check(PositiveOrAll());
  sub->add_option("--measure-chunks", opt->measure_chunks, "chunks for KLD calibration")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--eval-chunks", opt->eval_chunks, "chunks for the final evaluation (-1: all)")
      ->capture_default_str()
      ->check(PositiveOrAll());
  sub->add_flag("--no-eval", opt->no_eval, "skip the final evaluation");
  sub->add_flag("--dry-run", opt->dry_run,
                "stop after the plan: print it and its file size, write no model (imatrix and measurement are "
                "still computed and cached)");
  sub->add_option("--tensor-type-file", opt->tensor_type_file,
                  "also write the plan as llama-quantize --tensor-type-file input (PATTERN=TYPE lines)");
  AddThreadsOption(sub, &opt->threads);
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunAuto(global, *opt); }; });
}

}  // namespace mixq::cli
