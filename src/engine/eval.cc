// Perplexity and KLD the way llama-perplexity computes them: non-overlapping
// chunks of n_ctx tokens, BOS substituted for each chunk's first token, and
// only the second half of each chunk scored. The statistics (standard errors,
// quantiles, covariance-based ln(PPL ratio) error) follow its formulas.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "base/parallel.h"
#include "engine/internal.h"

namespace mixq::engine {
namespace {

// The base of chunks [first_chunk, first_chunk + n_chunks) (their scored
// rows, chunk after chunk): argmax and NLL in *rows, the log-probs in
// *source (a base model's last pass, or rows->lp); `input` holds those
// chunks' tokens as the model sees them.
using BaseFn = std::function<Status(int64_t first_chunk, int64_t n_chunks, std::span<const int32_t> input,
                                    BaseRows* rows, ScoreBase* source)>;

// The next token of every scored row of chunks `text`, chunk after chunk.
std::vector<int32_t> Targets(std::span<const int32_t> text, int64_t n_chunks, int64_t n_ctx, int64_t first) {
  const int64_t n_scored = n_ctx - 1 - first;
  std::vector<int32_t> targets(static_cast<size_t>(n_chunks * n_scored));
  for (int64_t i = 0; i < n_chunks * n_scored; ++i) {
    targets[i] = text[(i / n_scored) * n_ctx + first + i % n_scored + 1];
  }
  return targets;
}

// Chunks per forward pass: several chunks share each pass over the weights,
// as llama-perplexity batches 2048 tokens, while their logits stay small.
int64_t BatchChunks(int64_t n_ctx, int64_t n_scored, int64_t n_vocab) {
  constexpr int64_t kBatchTokens = 2048;
  constexpr int64_t kMaxLogitBytes = int64_t{256} << 20;
  const int64_t by_tokens = std::max<int64_t>(1, kBatchTokens / n_ctx);
  const int64_t by_memory = std::max<int64_t>(1, kMaxLogitBytes / (4 * (n_scored + 1) * n_vocab));
  return std::min(by_tokens, by_memory);
}

// Per-row results of one chunk, filled in parallel and summed in order.
struct RowStats {
  double nll = 0;
  double kld = 0;
  double dp = 0;
  double nll_base = 0;
  bool same_top = false;
};

struct Sums {
  int64_t count = 0;
  double nll = 0, nll2 = 0;
  double nll_base = 0, nll_base2 = 0, nll_nll_base = 0;
  double kld = 0, kld2 = 0;
  double dp = 0, dp2 = 0;
  int64_t same_top = 0;
  std::vector<float> kld_values;
};

std::pair<double, double> MeanAndError(double sum, double sum2, int64_t count) {
  if (count < 1) return {0.0, 0.0};
  const double mean = sum / static_cast<double>(count);
  double var = sum2 / static_cast<double>(count) - mean * mean;
  return {mean, var > 0 && count > 10 ? std::sqrt(var / static_cast<double>(count - 1)) : 0.0};
}

// Linear interpolation between order statistics, as llama-perplexity does.
double Percentile(const std::vector<float>& sorted, double fraction) {
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  double p = fraction * static_cast<double>(sorted.size() - 1);
  size_t ip = static_cast<size_t>(p);
  p -= static_cast<double>(ip);
  return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

KldStats Finish(Sums& s) {
  KldStats k;
  std::sort(s.kld_values.begin(), s.kld_values.end());
  const double n = static_cast<double>(s.count);
  auto kld = MeanAndError(s.kld, s.kld2, s.count);
  k.kld_mean = kld.first;
  k.kld_stderr = kld.second;
  k.kld_median = Percentile(s.kld_values, 0.5);
  k.kld_p90 = Percentile(s.kld_values, 0.90);
  k.kld_p95 = Percentile(s.kld_values, 0.95);
  k.kld_p99 = Percentile(s.kld_values, 0.99);
  k.kld_max = s.kld_values.back();
  k.same_top = static_cast<double>(s.same_top) / n;
  k.same_top_stderr = s.count > 1 ? std::sqrt(k.same_top * (1 - k.same_top) / (n - 1)) : 0.0;
  auto q = MeanAndError(s.nll, s.nll2, s.count);
  auto p = MeanAndError(s.nll_base, s.nll_base2, s.count);
  double cov = 0.0;
  if (s.count >= 10) cov = (s.nll_nll_base / n - (s.nll / n) * (s.nll_base / n)) / (n - 1);
  k.ln_ppl_ratio = q.first - p.first;
  k.ln_ppl_ratio_stderr = std::sqrt(std::max(0.0, q.second * q.second + p.second * p.second - 2.0 * cov));
  k.base_ppl = std::exp(p.first);
  k.base_ppl_stderr = k.base_ppl * p.second;
  auto dp = MeanAndError(s.dp, s.dp2, s.count);
  k.dp_mean = dp.first;
  k.dp_stderr = dp.second;
  k.dp_rms = std::sqrt(s.dp2 / n);
  return k;
}

Result<EvalResult> RunEval(Model& model, std::span<const int32_t> tokens, int64_t n_ctx, int64_t n_chunks,
                           const EvalOptions& options, const BaseFn* base) {
  // Zero chunks would average over nothing: a NaN perplexity.
  if (options.n_chunks == 0) return Status::InvalidArgument("--chunks must be positive, or -1 for all");
  const auto start = std::chrono::steady_clock::now();
  const int64_t n_vocab = model.config().n_vocab;
  const int64_t first = n_ctx / 2;
  const int64_t n_scored = n_ctx - 1 - first;
  EvalResult result;
  result.n_ctx = n_ctx;
  result.n_chunks = n_chunks;
  result.first_scored = first;

  BaseLogitsWriter writer;
  if (!options.save_logits.empty()) {
    MIXQ_TRY(writer.Begin(options.save_logits, n_ctx, n_vocab, options.bos_id >= 0,
                          tokens.first(static_cast<size_t>(n_chunks * n_ctx))));
  }
  RunOptions run;
  run.n_threads = options.n_threads;
  run.seq_len = n_ctx;
  run.activations = options.activations;
  const int64_t batch = BatchChunks(n_ctx, n_scored, n_vocab);
  Sums sums;
  std::vector<float> lp;
  std::vector<RowScore> scores(batch * n_scored);
  std::vector<RowStats> rows(batch * n_scored);
  BaseRows base_rows;
  auto after_first = start;
  int64_t first_tokens = 0;
  for (int64_t c0 = 0; c0 < n_chunks; c0 += batch) {
    const int64_t nb = std::min(batch, n_chunks - c0);
    std::span<const int32_t> text = tokens.subspan(static_cast<size_t>(c0 * n_ctx), static_cast<size_t>(nb * n_ctx));
    std::vector<int32_t> input(text.begin(), text.end());
    if (options.bos_id >= 0) {
      for (int64_t b = 0; b < nb; ++b) input[b * n_ctx] = options.bos_id;
    }
    ScoreBase source;
    if (base != nullptr) MIXQ_TRY((*base)(c0, nb, input, &base_rows, &source));
    const std::vector<int32_t> targets = Targets(text, nb, n_ctx, first);
    const std::span<RowScore> scored(scores.data(), targets.size());
    MIXQ_TRY(model.ForwardScores(input, first, targets, source, scored, run)
                 .WithContext("chunks from " + std::to_string(c0)));
    if (!options.save_logits.empty()) model.LastLogProbs(&lp);
    for (int64_t i = 0; i < nb * n_scored; ++i) {
      RowStats& r = rows[i];
      r.nll = scores[i].nll;
      if (base == nullptr) continue;
      r.kld = scores[i].kld;
      r.nll_base = base_rows.nll[i];
      r.dp = std::exp(-r.nll) - std::exp(-r.nll_base);
      r.same_top = scores[i].argmax == base_rows.argmax[i];
    }
    for (int64_t i = 0; i < nb * n_scored; ++i) {
      if (!std::isfinite(rows[i].nll)) {
        return Status::Corruption("non-finite logits in chunk " + std::to_string(c0 + i / n_scored) + " of " +
                                  model.file().path() + "; the weights may hold NaN or Inf");
      }
    }
    for (int64_t b = 0; b < nb; ++b) {
      double chunk_nll = 0.0;
      for (int64_t i = b * n_scored; i < (b + 1) * n_scored; ++i) {
        const RowStats& r = rows[i];
        chunk_nll += r.nll;
        sums.nll += r.nll;
        sums.nll2 += r.nll * r.nll;
        if (!options.save_logits.empty()) {
          MIXQ_TRY(writer.AddRow(lp.data() + i * n_vocab, n_vocab, scores[i].argmax, r.nll));
        }
        if (base == nullptr) continue;
        sums.nll_base += r.nll_base;
        sums.nll_base2 += r.nll_base * r.nll_base;
        sums.nll_nll_base += r.nll * r.nll_base;
        sums.kld += r.kld;
        sums.kld2 += r.kld * r.kld;
        sums.dp += r.dp;
        sums.dp2 += r.dp * r.dp;
        sums.same_top += r.same_top ? 1 : 0;
        sums.kld_values.push_back(static_cast<float>(r.kld));
      }
      sums.count += n_scored;
      result.chunk_ppl.push_back(std::exp(chunk_nll / static_cast<double>(n_scored)));
    }
    if (options.on_progress) options.on_progress(c0 + nb, n_chunks, (c0 + nb) * n_ctx);
    if (c0 == 0) {
      after_first = std::chrono::steady_clock::now();
      first_tokens = nb * n_ctx;
    }
  }
  if (!options.save_logits.empty()) MIXQ_TRY(writer.Finish());

  result.n_scored = sums.count;
  const double n = static_cast<double>(sums.count);
  result.nll_mean = sums.nll / n;
  const double var = sums.nll2 / n - result.nll_mean * result.nll_mean;
  result.nll_stderr = var > 0 && sums.count > 1 ? std::sqrt(var / (n - 1)) : 0.0;
  result.ppl = std::exp(result.nll_mean);
  result.ppl_stderr = result.ppl * result.nll_stderr;
  if (base != nullptr) result.kld = Finish(sums);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.tokens_per_second = result.seconds > 0 ? static_cast<double>(n_chunks * n_ctx) / result.seconds : 0.0;
  const double steady = std::chrono::duration<double>(std::chrono::steady_clock::now() - after_first).count();
  if (n_chunks * n_ctx > first_tokens && steady > 0) {
    result.steady_tokens_per_second = static_cast<double>(n_chunks * n_ctx - first_tokens) / steady;
  }
  return result;
}

Result<int64_t> ChunkCount(int64_t n_tokens, const EvalOptions& options) {
  if (options.n_ctx < 8)
    return Status::InvalidArgument("--ctx must be at least 8, got " + std::to_string(options.n_ctx));
  const int64_t available = n_tokens / options.n_ctx;
  if (available == 0) {
    return Status::InvalidArgument("the text has " + std::to_string(n_tokens) + " tokens, fewer than one chunk of " +
                                   std::to_string(options.n_ctx) + "; use a longer text or a smaller --ctx");
  }
  return options.n_chunks < 0 ? available : std::min(available, options.n_chunks);
}

}  // namespace

std::vector<int32_t> TokenizeForEval(const tokenizer::Tokenizer& tokenizer, std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return tokenizer.Encode(text, true);
}

Result<EvalResult> Evaluate(Model& model, std::span<const int32_t> tokens, const EvalOptions& options) {
  auto n_chunks = ChunkCount(static_cast<int64_t>(tokens.size()), options);
  MIXQ_TRY(n_chunks);
  return RunEval(model, tokens, options.n_ctx, *n_chunks, options, nullptr);
}

Result<EvalResult> EvaluateVsModel(Model& model, Model& base, std::span<const int32_t> tokens,
                                   const EvalOptions& options) {
  if (base.config().n_vocab != model.config().n_vocab) {
    return Status::Corruption("base vocab " + std::to_string(base.config().n_vocab) + " differs from " +
                              std::to_string(model.config().n_vocab));
  }
  auto n_chunks = ChunkCount(static_cast<int64_t>(tokens.size()), options);
  MIXQ_TRY(n_chunks);
  const int64_t first = options.n_ctx / 2;
  RunOptions run;
  run.n_threads = options.n_threads;
  run.seq_len = options.n_ctx;
  run.activations = options.activations;
  std::vector<RowScore> scores;
  BaseFn fn = [&](int64_t c0, int64_t nb, std::span<const int32_t> input, BaseRows* rows, ScoreBase* source) -> Status {
    const std::span<const int32_t> text = tokens.subspan(static_cast<size_t>(c0 * options.n_ctx));
    const std::vector<int32_t> targets = Targets(text, nb, options.n_ctx, first);
    scores.resize(targets.size());
    MIXQ_TRY(base.ForwardScores(input, first, targets, {}, scores, run)
                 .WithContext("base model, chunks from " + std::to_string(c0)));
    rows->n_rows = static_cast<int64_t>(targets.size());
    rows->n_vocab = base.config().n_vocab;
    rows->argmax.resize(targets.size());
    rows->nll.resize(targets.size());
    for (size_t i = 0; i < targets.size(); ++i) {
      rows->argmax[i] = scores[i].argmax;
      rows->nll[i] = scores[i].nll;
    }
    source->model = &base;
    return Status::Ok();
  };
  return RunEval(model, tokens, options.n_ctx, *n_chunks, options, &fn);
}

Result<EvalResult> EvaluateVsLogits(Model& model, const BaseLogits& base, const EvalOptions& options) {
  if (base.n_vocab() != model.config().n_vocab) {
    return Status::Corruption("base logits have a vocab of " + std::to_string(base.n_vocab()) + ", the model " +
                              std::to_string(model.config().n_vocab));
  }
  if (base.bos_at_chunk_start() && options.bos_id < 0) {
    return Status::Corruption("the base logits put BOS at chunk starts, but the model's vocab has no BOS");
  }
  EvalOptions o = options;
  o.n_ctx = base.n_ctx();
  if (!base.bos_at_chunk_start()) o.bos_id = -1;
  const int64_t n_chunks = options.n_chunks < 0 ? base.n_chunks() : std::min(base.n_chunks(), options.n_chunks);
  BaseRows one;
  BaseFn fn = [&](int64_t c0, int64_t nb, std::span<const int32_t>, BaseRows* rows, ScoreBase* source) -> Status {
    rows->lp.clear();
    rows->argmax.clear();
    rows->nll.clear();
    for (int64_t c = c0; c < c0 + nb; ++c) {
      MIXQ_TRY(ReadBaseChunk(base, c, &one));
      rows->lp.insert(rows->lp.end(), one.lp.begin(), one.lp.end());
      rows->argmax.insert(rows->argmax.end(), one.argmax.begin(), one.argmax.end());
      rows->nll.insert(rows->nll.end(), one.nll.begin(), one.nll.end());
    }
    rows->n_rows = static_cast<int64_t>(rows->nll.size());
    rows->n_vocab = one.n_vocab;
    source->lp = rows->lp.data();
    return Status::Ok();
  };
  return RunEval(model, base.tokens(), o.n_ctx, n_chunks, o, &fn);
}

}  // namespace mixq::engine
