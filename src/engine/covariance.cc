// Input covariances H = Σ x xᵀ summed by the model's backend, one layer per
// pass, for error-feedback quantization (formats.h, QuantizeRowsFeedback).
// Each batch's sums are taken from the backend and added on the host, so that
// how much they differ from batch to batch gives H's effective token count
// (quantize::EffectiveTokens).
#include <algorithm>

#include "engine/backend.h"
#include "engine/internal.h"

namespace mixq::engine {
namespace {

class LayerCovarianceSource final : public quantize::CovarianceSource, public GramSink {
 public:
  LayerCovarianceSource(Model& model, std::vector<int32_t> tokens, int64_t n_ctx, int n_threads)
      : model_(model), tokens_(std::move(tokens)), n_ctx_(n_ctx), n_threads_(n_threads) {
    const ModelConfig& c = model.config();
    std::vector<std::string> linear = model.LinearWeights();
    // The last one is the output projection (token_embd.weight when tied).
    for (size_t i = 0; i + 1 < linear.size(); ++i) {
      pass_of_[linear[i]] = std::stoll(linear[i].substr(4, linear[i].find('.', 4) - 4));
    }
    pass_of_[linear.back()] = c.n_layer;
  }

  Status Start() {
    hidden_.resize(tokens_.size() * static_cast<size_t>(model_.config().n_embd));
    return model_.Embed(tokens_, hidden_.data());
  }

  int64_t n_passes() const override { return model_.config().n_layer + 1; }

  int64_t PassOf(const std::string& tensor) const override {
    auto it = pass_of_.find(tensor);
    return it == pass_of_.end() ? -1 : it->second;
  }

  Status Run(int64_t pass) override {
    const ModelConfig& c = model_.config();
    if (pass != next_pass_) {
      return Status::Internal("covariance pass " + std::to_string(pass) + " run out of order (expected " +
                              std::to_string(next_pass_) + ")");
    }
    ++next_pass_;
    owned_.clear();
    inputs_.clear();
    RunOptions run;
    run.n_threads = n_threads_;
    run.seq_len = n_ctx_;
    run.grams = this;
    // Chunks share a pass over the weights, up to about 2048 tokens, as in CollectImatrix.
    const int64_t batch = std::max<int64_t>(1, 2048 / n_ctx_) * n_ctx_;
    const int64_t n = static_cast<int64_t>(tokens_.size());
    for (int64_t t0 = 0; t0 < n; t0 += batch) {
      const int64_t nt = std::min(batch, n - t0);
      float* h = hidden_.data() + t0 * c.n_embd;
      last_dense_ = last_expert_ = {};
      if (pass < c.n_layer) {
        MIXQ_TRY(model_.RunLayers(pass, pass + 1, h, nt, run));
      } else {
        MIXQ_TRY(model_.Logits(h, nt, nullptr, run));
      }
      for (const auto& input : owned_) TakeBatch(*input);
    }
    for (const auto& input : owned_) {
      quantize::InputCovariance& cov = input->cov;
      MirrorUpperTriangle(cov);
      cov.effective_tokens =
          quantize::EffectiveTokens(cov.sums, cov.n_in, cov.n_tokens, input->batches, input->batch_spread);
    }
    if (pass == c.n_layer) std::vector<float>().swap(hidden_);  // the last pass: the states are done
    return Status::Ok();
  }

  const quantize::InputCovariance* Find(const std::string& tensor, int64_t expert) const override {
    auto it = inputs_.find({tensor, expert});
    return it == inputs_.end() ? nullptr : &it->second->cov;
  }

  void Add(Backend& backend, const Weight& w, int64_t expert, Tensor x, int64_t n_tokens) override {
    backend_ = &backend;
    Input*& input = inputs_[{w.name, expert}];
    // Weights that share an input (q/k/v; gate/up, an expert's too) are
    // hooked one after the other with the same tensor, which nothing writes
    // in between. Routed experts are tracked apart: their calls come between
    // a layer's router and its shared expert, which read one input.
    Last& last = expert >= 0 ? last_expert_ : last_dense_;
    const bool shared =
        last.input != nullptr && x.handle == last.x && n_tokens == last.n_tokens && last.input->cov.n_in == w.n_in;
    if (input == nullptr) {
      if (shared) {
        input = last.input;
      } else {
        owned_.push_back(std::make_unique<Input>());
        input = owned_.back().get();
        input->cov.n_in = w.n_in;
        input->gram = backend.MakeGram(w.n_in);
      }
    }
    if (!(shared && input == last.input)) {
      backend.AddGram(x, n_tokens, w.n_in, *input->gram, n_threads_);
      input->cov.n_tokens += n_tokens;
    }
    last = {x.handle, n_tokens, input};
  }

 private:
  // One distinct input: the sums of the current batch on the backend, of the
  // batches before in cov.sums, and what EffectiveTokens needs of them.
  struct Input {
    quantize::InputCovariance cov;
    std::unique_ptr<Gram> gram;
    int64_t batches = 0;
    int64_t tokens_taken = 0;
    double batch_spread = 0;  // Σ over batches of ‖offdiag G_b‖²_F / t_b
  };

  // Adds the batch's sums G_b (the upper triangle) to the input's and starts
  // a new batch; nothing when no token of the batch reached the input (an
  // expert no token was routed to).
  void TakeBatch(Input& input) {
    const int64_t tokens = input.cov.n_tokens - input.tokens_taken;
    if (tokens == 0) return;
    const int64_t n = input.cov.n_in;
    backend_->TakeGram(*input.gram, &batch_);
    if (input.cov.sums.empty()) input.cov.sums.assign(batch_.size(), 0.0);
    double off_sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double* g = batch_.data() + i * n;
      double* sums = input.cov.sums.data() + i * n;
      sums[i] += g[i];
      for (int64_t j = i + 1; j < n; ++j) {
        sums[j] += g[j];
        off_sq += 2 * g[j] * g[j];
      }
    }
    input.batch_spread += off_sq / static_cast<double>(tokens);
    ++input.batches;
    input.tokens_taken = input.cov.n_tokens;
    input.gram = backend_->MakeGram(n);
  }
  // The input of the last hooked call of a kind (dense or routed expert).
  struct Last {
    const void* x = nullptr;
    int64_t n_tokens = 0;
    Input* input = nullptr;
  };

  static void MirrorUpperTriangle(quantize::InputCovariance& cov) {
    const int64_t n = cov.n_in;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = i + 1; j < n; ++j) cov.sums[j * n + i] = cov.sums[i * n + j];
    }
  }

  Model& model_;
  std::vector<int32_t> tokens_;
  int64_t n_ctx_;
  int n_threads_;
  std::map<std::string, int64_t> pass_of_;
  std::vector<float> hidden_;  // every token's state entering the next pass's layer
  int64_t next_pass_ = 0;
  Backend* backend_ = nullptr;  // the model's, as the hook last gave it
  std::vector<std::unique_ptr<Input>> owned_;
  std::vector<double> batch_;                                 // one batch's sums, as TakeBatch downloads them
  std::map<std::pair<std::string, int64_t>, Input*> inputs_;  // by weight and expert (-1: none)
  Last last_dense_, last_expert_;
};

}  // namespace

Result<std::unique_ptr<quantize::CovarianceSource>> LayerCovariances(Model& model, std::span<const int32_t> tokens,
                                                                     const CovarianceOptions& options) {
  if (options.n_ctx < 2) return Status::InvalidArgument("--ctx must be at least 2");
  if (options.n_chunks == 0 || options.n_chunks < -1) {
    return Status::InvalidArgument("--chunks must be at least 1, or -1 for all, not " +
                                   std::to_string(options.n_chunks));
  }
  const int64_t available = static_cast<int64_t>(tokens.size()) / options.n_ctx;
  if (available == 0) {
    return Status::InvalidArgument("the calibration text has " + std::to_string(tokens.size()) +
                                   " tokens, fewer than one chunk of " + std::to_string(options.n_ctx));
  }
  const int64_t n_chunks = options.n_chunks < 0 ? available : std::min(available, options.n_chunks);
  std::vector<int32_t> input(tokens.begin(), tokens.begin() + n_chunks * options.n_ctx);
  if (options.bos_id >= 0) {
    for (int64_t b = 0; b < n_chunks; ++b) input[b * options.n_ctx] = options.bos_id;
  }
  auto source = std::make_unique<LayerCovarianceSource>(model, std::move(input), options.n_ctx, options.n_threads);
  MIXQ_TRY(source->Start());
  return std::unique_ptr<quantize::CovarianceSource>(std::move(source));
}

}  // namespace mixq::engine
