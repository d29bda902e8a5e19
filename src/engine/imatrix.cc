// Importance-matrix collection through the activation hook: per linear weight,
// the sum over every token of each chunk of its squared input, per column;
// for a tensor of routed experts, per expert over the tokens routed to it,
// with one token count per expert, as llama-imatrix collects them.
#include <algorithm>

#include "engine/internal.h"

namespace mixq::engine {

Result<quantize::Imatrix> CollectImatrix(Model& model, std::span<const int32_t> tokens, const ImatrixOptions& options) {
  if (options.n_ctx < 2) return Status::InvalidArgument("--ctx must be at least 2");
  if (options.n_chunks == 0) return Status::InvalidArgument("--chunks must be positive, or -1 for all");
  const int64_t available = static_cast<int64_t>(tokens.size()) / options.n_ctx;
  if (available == 0) {
    return Status::InvalidArgument("the text has " + std::to_string(tokens.size()) +
                                   " tokens, fewer than one chunk of " + std::to_string(options.n_ctx));
  }
  const int64_t n_chunks = options.n_chunks < 0 ? available : std::min(available, options.n_chunks);

  struct Accumulator {
    std::vector<double> sum2;    // n_mat x n_in
    std::vector<int64_t> count;  // n_mat
  };
  std::map<std::string, Accumulator> acc;
  const int64_t n_expert = model.config().n_expert;
  ActivationHook hook = [&](const std::string& name, int64_t expert, const float* x, int64_t n_tokens, int64_t n_in) {
    if (!name.starts_with("blk.") && !(options.include_output && name == "output.weight")) return;
    Accumulator& a = acc[name];
    const int64_t n_mat = expert < 0 ? 1 : n_expert;
    a.sum2.resize(static_cast<size_t>(n_in * n_mat), 0.0);
    a.count.resize(static_cast<size_t>(n_mat), 0);
    const int64_t m = std::max<int64_t>(expert, 0);
    double* sum2 = a.sum2.data() + m * n_in;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* row = x + t * n_in;
      for (int64_t j = 0; j < n_in; ++j) sum2[j] += static_cast<double>(row[j]) * row[j];
    }
    a.count[m] += n_tokens;
  };
  RunOptions run;
  run.n_threads = options.n_threads;
  run.hook = &hook;
  run.seq_len = options.n_ctx;
  // Chunks share a pass over the weights, up to about 2048 tokens, as in
  // llama-imatrix's batches.
  const int64_t batch = std::max<int64_t>(1, 2048 / options.n_ctx);
  const ModelConfig& c = model.config();
  constexpr int64_t kLogitRows = 256;  // the output projection runs in slices to bound memory
  std::vector<float> hidden, logits;
  for (int64_t c0 = 0; c0 < n_chunks; c0 += batch) {
    const int64_t nb = std::min(batch, n_chunks - c0);
    const int64_t n = nb * options.n_ctx;
    std::vector<int32_t> input(tokens.begin() + c0 * options.n_ctx, tokens.begin() + c0 * options.n_ctx + n);
    if (options.bos_id >= 0) {
      for (int64_t b = 0; b < nb; ++b) input[b * options.n_ctx] = options.bos_id;
    }
    hidden.resize(static_cast<size_t>(n * c.n_embd));
    MIXQ_TRY(model.Embed(input, hidden.data()));
    MIXQ_TRY(model.RunLayers(0, c.n_layer, hidden.data(), n, run).WithContext("chunks from " + std::to_string(c0)));
    if (options.include_output) {
      logits.resize(static_cast<size_t>(kLogitRows * c.n_vocab));
      for (int64_t r = 0; r < n; r += kLogitRows) {
        MIXQ_TRY(model.Logits(hidden.data() + r * c.n_embd, std::min(kLogitRows, n - r), logits.data(), run));
      }
    }
    if (options.on_progress) options.on_progress(c0 + nb, n_chunks, (c0 + nb) * options.n_ctx);
  }

  quantize::Imatrix im;
  im.chunk_count = static_cast<uint32_t>(n_chunks);
  im.chunk_size = static_cast<uint32_t>(options.n_ctx);
  if (!options.dataset.empty()) im.datasets.push_back(options.dataset);
  for (auto& [name, a] : acc) {
    quantize::ImatrixEntry e;
    e.in_sum2.assign(a.sum2.begin(), a.sum2.end());
    e.counts.assign(a.count.begin(), a.count.end());
    im.entries.emplace(name, std::move(e));
  }
  return im;
}

}  // namespace mixq::engine
