// eval: perplexity the way llama-perplexity computes it, and KL divergence
// and friends against a reference's logits (LGT2). The tokens are cut into
// chunks of n_ctx; each chunk starts with BOS (when the vocab adds one), is
// decoded from an empty KV cache, and only its second half is scored: the
// logits at positions n_ctx/2 .. n_ctx-2 predict the tokens after them.
#include <algorithm>
#include <cmath>
#include <fstream>

#include "common.h"
#include "lgt2.h"

namespace oracle {
namespace {

// Mean with llama-perplexity's standard error: sqrt((E[x²] - E[x]²) / (n - 1)).
class Mean {
 public:
  void Add(double x) {
    sum_ += x;
    sum2_ += x * x;
    ++n_;
  }
  double mean() const { return sum_ / static_cast<double>(n_); }
  double std_error() const {
    const double var = sum2_ / static_cast<double>(n_) - mean() * mean();
    return var > 0 && n_ > 1 ? std::sqrt(var / static_cast<double>(n_ - 1)) : 0.0;
  }
  double rms() const { return std::sqrt(sum2_ / static_cast<double>(n_)); }

 private:
  double sum_ = 0, sum2_ = 0;
  int64_t n_ = 0;
};

double LogSumExp(const float* z, int64_t n) {
  const double max = *std::max_element(z, z + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(z[i] - max);
  return max + std::log(sum);
}

int64_t ArgMax(const float* z, int64_t n) { return std::max_element(z, z + n) - z; }

// The statistics over all scored positions.
struct Scores {
  Mean nll;
  int64_t n_nonfinite = 0;
  // Against the reference P (this model is Q).
  Mean ref_nll, ln_ratio, kld, same_top, dp_ref_top, dp;
  std::vector<double> kld_values;
  double max_abs_diff = 0;

  // One position: this model's logits `q`, the reference's `p` (or null), the token that follows.
  // Returns the position's negative log-likelihood.
  double Add(const float* q, const float* p, int64_t n_vocab, int32_t next) {
    n_nonfinite += std::count_if(q, q + n_vocab, [](float x) { return !std::isfinite(x); });
    const double lse_q = LogSumExp(q, n_vocab);
    const double nll_q = lse_q - q[next];
    nll.Add(nll_q);
    if (p == nullptr) return nll_q;
    const double lse_p = LogSumExp(p, n_vocab);
    double kl = 0;
    for (int64_t i = 0; i < n_vocab; ++i) {
      const double log_p = p[i] - lse_p;
      kl += std::exp(log_p) * (log_p - (q[i] - lse_q));
      max_abs_diff = std::max(max_abs_diff, std::fabs(double(q[i]) - p[i]));
    }
    kld.Add(kl);
    kld_values.push_back(kl);
    const int64_t top_p = ArgMax(p, n_vocab);
    same_top.Add(ArgMax(q, n_vocab) == top_p ? 1.0 : 0.0);
    dp_ref_top.Add(std::exp(q[top_p] - lse_q) - std::exp(p[top_p] - lse_p));
    dp.Add(std::exp(q[next] - lse_q) - std::exp(p[next] - lse_p));
    const double nll_p = lse_p - p[next];
    ref_nll.Add(nll_p);
    ln_ratio.Add(nll_q - nll_p);
    return nll_q;
  }
};

// Linear interpolation between order statistics, as llama-perplexity's KLD percentiles.
double Percentile(const std::vector<double>& sorted, double fraction) {
  const double pos = fraction * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const double w = pos - static_cast<double>(lo);
  return (1 - w) * sorted[lo] + w * sorted[std::min(lo + 1, sorted.size() - 1)];
}

void AddReferenceFields(Scores& s, JsonObject* j) {
  const double ref_ppl = std::exp(s.ref_nll.mean());
  j->Num("ref_ppl", ref_ppl);
  j->Num("ref_ppl_stderr", ref_ppl * s.ref_nll.std_error());
  j->Num("ln_ppl_ratio", s.ln_ratio.mean());
  j->Num("ln_ppl_ratio_stderr", s.ln_ratio.std_error());
  j->Num("ppl_ratio", std::exp(s.ln_ratio.mean()));
  j->Num("kld_mean", s.kld.mean());
  j->Num("kld_stderr", s.kld.std_error());
  std::sort(s.kld_values.begin(), s.kld_values.end());
  j->Num("kld_median", Percentile(s.kld_values, 0.5));
  j->Num("kld_p90", Percentile(s.kld_values, 0.90));
  j->Num("kld_p95", Percentile(s.kld_values, 0.95));
  j->Num("kld_p99", Percentile(s.kld_values, 0.99));
  j->Num("kld_p999", Percentile(s.kld_values, 0.999));
  j->Num("kld_max", s.kld_values.back());
  j->Num("same_top_p", s.same_top.mean());
  j->Num("same_top_p_stderr", s.same_top.std_error());
  j->Num("dp_ref_top_mean", s.dp_ref_top.mean());
  j->Num("dp_ref_top_stderr", s.dp_ref_top.std_error());
  j->Num("dp_mean", s.dp.mean());
  j->Num("dp_stderr", s.dp.std_error());
  j->Num("dp_rms", s.dp.rms());
  j->Num("max_abs_diff", s.max_abs_diff);
}

struct ContextDeleter {
  void operator()(llama_context* c) const { llama_free(c); }
};

// The evaluation's inputs once the options, the text and the reference are read.
struct Plan {
  std::vector<int32_t> tokens;  // as tokenized, before the BOS substitution
  int64_t n_ctx = 0, n_chunks = 0;
  bool add_bos = false;
  int32_t bos = -1;
  int64_t n_vocab = 0;
  int64_t first() const { return n_ctx / 2; }
  int64_t n_scored() const { return n_ctx - 1 - first(); }
};

// Reads the tokens from the text file, the token file or the reference; "" or the reason it fails.
std::string ReadTokens(const Args& args, const llama_vocab* vocab, const Lgt2Reader* ref, JsonObject* j,
                       std::vector<int32_t>* tokens) {
  Stopwatch clock;
  if (const std::optional<std::string> path = args.Value("--text-file")) {
    j->Str("text_file", *path);
    const std::optional<std::string> text = ReadText(*path);
    if (!text) return "cannot read " + *path;
    j->Int("n_bytes", static_cast<int64_t>(text->size()));
    *tokens = Tokenize(vocab, *text, /*add_special=*/true);
  } else if (const std::optional<std::string> token_file = args.Value("--token-file")) {
    j->Str("token_file", *token_file);
    std::ifstream in(*token_file, std::ios::binary);
    const int64_t bytes = FileSize(*token_file);
    if (!in || bytes < 0 || bytes % 4 != 0) return "cannot read " + *token_file + " as int32 tokens";
    tokens->resize(static_cast<size_t>(bytes / 4));
    in.read(reinterpret_cast<char*>(tokens->data()), bytes);
    if (!in) return "cannot read " + *token_file;
  } else {
    *tokens = ref->tokens();
  }
  j->Secs("tokenize_s", clock.Seconds());
  return "";
}

// Whether the reference was made on the same tokens, chunks and vocab; "" or the difference.
std::string CheckReference(const Lgt2Header& h, const std::vector<int32_t>& ref_tokens, const Plan& plan) {
  if (h.n_vocab != plan.n_vocab) return "the reference has n_vocab " + std::to_string(h.n_vocab);
  if (h.bos() != plan.add_bos) return "the reference differs in BOS at chunk starts";
  if (h.first != plan.first() || h.n_scored != plan.n_scored()) return "the reference scores other positions";
  if (plan.tokens.size() < ref_tokens.size() ||
      !std::equal(ref_tokens.begin(), ref_tokens.end(), plan.tokens.begin())) {
    return "the text tokenizes differently from the reference's tokens";
  }
  return "";
}

std::unique_ptr<llama_context, ContextDeleter> MakeContext(llama_model* model, const Plan& plan, int threads) {
  llama_context_params p = llama_context_default_params();
  p.n_ctx = static_cast<uint32_t>(plan.n_ctx);
  p.n_batch = static_cast<uint32_t>(plan.n_ctx);
  p.n_ubatch = static_cast<uint32_t>(std::min<int64_t>(plan.n_ctx, 512));
  p.n_seq_max = 1;
  p.n_threads = p.n_threads_batch = threads;
  p.no_perf = true;
  return std::unique_ptr<llama_context, ContextDeleter>(llama_init_from_model(model, p));
}

}  // namespace

int RunEval(int argc, char** argv) {
  Args args(argc, argv, {"--text-file", "--token-file", "--ctx", "--chunks", "--threads", "--out", "--ref"}, {});
  if (args.n_positional() != 1) throw UsageError("eval takes one MODEL");
  if (!args.Has("--text-file") && !args.Has("--token-file") && !args.Has("--ref")) {
    throw UsageError("eval needs --text-file, --token-file or --ref");
  }
  if (args.Has("--text-file") && args.Has("--token-file")) throw UsageError("--text-file or --token-file, not both");
  const int threads = static_cast<int>(args.Positive("--threads", 2));
  if (args.Positive("--ctx", 512) < 3) throw UsageError("--ctx must be at least 3");
  const std::string path = args.positional(0);
  JsonObject j;
  j.Str("file", path);
  j.Str("mode", "text");
  j.Bool("load_ok", false);
  j.Bool("decode_ok", false);
  for (const char* key : {"load_s", "tokenize_s", "decode_s", "stats_s"}) j.Secs(key, 0);
  j.Int("n_threads", threads);
  auto fail = [&j](const std::string& error) {
    j.Str("error", error);
    return Finish(j, false);
  };

  Stopwatch load;
  ModelPtr model = LoadModel(path, /*vocab_only=*/false);
  if (!model) return fail("llama.cpp could not load the model: " + LastLlamaError());
  j.Bool("load_ok", true);
  j.Secs("load_s", load.Seconds());
  AddModelFields(*model, &j);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());

  std::optional<Lgt2Reader> ref;
  if (const std::optional<std::string> ref_path = args.Value("--ref")) {
    ref.emplace();
    if (const std::string error = ref->Open(*ref_path); !error.empty()) {
      j.Bool("ref_ok", false);
      return fail(error);
    }
  }
  Plan plan;
  if (const std::string error = ReadTokens(args, vocab, ref ? &*ref : nullptr, &j, &plan.tokens); !error.empty()) {
    return fail(error);
  }
  plan.add_bos = llama_vocab_get_add_bos(vocab);
  plan.bos = llama_vocab_bos(vocab);
  plan.n_vocab = llama_vocab_n_tokens(vocab);
  plan.n_ctx = ref ? ref->header().n_ctx : args.Positive("--ctx", 512);
  const int64_t n_chunks_max = static_cast<int64_t>(plan.tokens.size()) / plan.n_ctx;
  plan.n_chunks = ref ? ref->header().n_chunk : std::min(n_chunks_max, args.Positive("--chunks", n_chunks_max));
  j.Int("n_text_tokens", static_cast<int64_t>(plan.tokens.size()));
  j.Bool("add_bos", plan.add_bos);
  j.Int("n_ctx", plan.n_ctx);
  j.Int("n_ubatch", std::min<int64_t>(plan.n_ctx, 512));
  j.Int("n_chunks", plan.n_chunks);
  j.Int("n_chunks_max", n_chunks_max);
  j.Int("first_scored", plan.first());
  j.Int("n_scored", plan.n_chunks * plan.n_scored());
  j.Bool("ctx_exceeds_train", plan.n_ctx > llama_model_n_ctx_train(model.get()));
  if (ref) {
    std::string error;
    if (args.Has("--ctx") && args.Positive("--ctx", 0) != plan.n_ctx) error = "the reference has another --ctx";
    if (args.Has("--chunks") && args.Positive("--chunks", 0) != plan.n_chunks) error = "the reference has other chunks";
    if (error.empty()) error = CheckReference(ref->header(), ref->tokens(), plan);
    if (!error.empty()) {
      j.Bool("ref_ok", false);
      j.Str("ref", *args.Value("--ref"));
      return fail(error);
    }
  }
  if (plan.n_chunks == 0) {
    return fail("the text has " + std::to_string(plan.tokens.size()) + " tokens, less than one chunk of " +
                std::to_string(plan.n_ctx));
  }
  plan.tokens.resize(static_cast<size_t>(plan.n_chunks * plan.n_ctx));

  auto ctx = MakeContext(model.get(), plan, threads);
  if (!ctx) return fail("llama.cpp could not create a context: " + LastLlamaError());
  std::optional<Lgt2Writer> out;
  if (const std::optional<std::string> out_path = args.Value("--out")) {
    const Lgt2Header h{static_cast<uint32_t>(plan.n_ctx),      static_cast<uint32_t>(plan.n_chunks),
                       static_cast<uint32_t>(plan.n_vocab),    static_cast<uint32_t>(plan.first()),
                       static_cast<uint32_t>(plan.n_scored()), plan.add_bos ? kLgt2Bos : 0};
    out.emplace();
    if (!out->Open(*out_path, h, plan.tokens)) return fail("cannot write " + *out_path);
  }

  Scores scores;
  std::vector<double> chunk_ppl;
  std::vector<float> ref_logits;
  double decode_s = 0, stats_s = 0;
  bool out_ok = true;
  llama_batch batch = llama_batch_init(static_cast<int32_t>(plan.n_ctx), 0, 1);
  for (int64_t c = 0; c < plan.n_chunks; ++c) {
    Stopwatch decode;
    const int32_t* chunk = plan.tokens.data() + c * plan.n_ctx;
    batch.n_tokens = static_cast<int32_t>(plan.n_ctx);
    for (int64_t i = 0; i < plan.n_ctx; ++i) {
      batch.token[i] = i == 0 && plan.add_bos ? plan.bos : chunk[i];
      batch.pos[i] = static_cast<llama_pos>(i);
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = i >= plan.first() && i < plan.n_ctx - 1;
    }
    llama_memory_clear(llama_get_memory(ctx.get()), true);
    if (llama_decode(ctx.get(), batch) != 0) {
      llama_batch_free(batch);
      return fail("llama_decode failed on chunk " + std::to_string(c) + ": " + LastLlamaError());
    }
    llama_synchronize(ctx.get());
    decode_s += decode.Seconds();

    Stopwatch stats;
    if (ref && !ref->ReadChunk(static_cast<uint32_t>(c), &ref_logits)) {
      llama_batch_free(batch);
      return fail("cannot read the reference's logits of chunk " + std::to_string(c));
    }
    Mean chunk_nll;
    for (int64_t k = 0; k < plan.n_scored(); ++k) {
      const float* q = llama_get_logits_ith(ctx.get(), static_cast<int32_t>(plan.first() + k));
      const float* p = ref ? ref_logits.data() + k * plan.n_vocab : nullptr;
      chunk_nll.Add(scores.Add(q, p, plan.n_vocab, chunk[plan.first() + k + 1]));
      if (out) out_ok = out->WriteRow(q, static_cast<uint32_t>(plan.n_vocab)) && out_ok;
    }
    chunk_ppl.push_back(std::exp(chunk_nll.mean()));
    stats_s += stats.Seconds();
  }
  llama_batch_free(batch);

  j.Bool("decode_ok", true);
  j.Secs("decode_s", decode_s);
  j.Secs("stats_s", stats_s);
  j.Int("n_nonfinite", scores.n_nonfinite);
  const double ppl = std::exp(scores.nll.mean());
  j.Num("nll_mean", scores.nll.mean());
  j.Num("nll_stderr", scores.nll.std_error());
  j.Num("ppl", ppl);
  j.Num("ppl_stderr", ppl * scores.nll.std_error());
  std::vector<std::string> chunks;
  for (double x : chunk_ppl) chunks.push_back(JsonNumber(x));
  j.SetRaw("chunk_ppl", JsonArray(chunks));
  if (out) {
    out_ok = out->Close() && out_ok;
    j.Str("out", *args.Value("--out"));
    j.Str("out_format", "LGT2");
    j.Bool("out_ok", out_ok);
    j.Int("out_bytes", out_ok ? FileSize(*args.Value("--out")) : 0);
    if (!out_ok) return fail("cannot write " + *args.Value("--out"));
  }
  if (ref) {
    j.Bool("ref_ok", true);
    j.Str("ref", *args.Value("--ref"));
    AddReferenceFields(scores, &j);
  }
  return Finish(j, true);
}

}  // namespace oracle
