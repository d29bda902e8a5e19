// Input covariances H = Σ x xᵀ through the activation hook, one layer per
// pass, for error-feedback quantization (formats.h, QuantizeRowsFeedback).
#include <algorithm>

#include "base/parallel.h"
#include "engine/gemm.h"
#include "engine/internal.h"

namespace mixq::engine {
namespace {

// Rows of H per work item: a multiple of every panel width (8, 16, 32), so
// that each item's first column starts a panel.
constexpr int64_t kRowsPerItem = 64;

// Adds xᵀx (x: n_tokens rows of n_in) to the upper triangle of `sums`
// (n_in x n_in, row-major). Products are summed in float over one batch of
// tokens, then added in double, so long texts lose nothing to rounding.
void AddOuterProducts(const float* x, int64_t n_tokens, int64_t n_in, double* sums, int n_threads) {
  // A = xᵀ row-major; B = xᵀ too, packed from x's columns.
  std::vector<float> xt(static_cast<size_t>(n_in * n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t j = 0; j < n_in; ++j) xt[j * n_tokens + t] = x[t * n_in + j];
  }
  std::vector<float> packed(static_cast<size_t>(PackedFloats(n_in, n_tokens)));
  PackTransposed(x, n_in, n_tokens, n_in, packed.data());
  const int64_t n_items = (n_in + kRowsPerItem - 1) / kRowsPerItem;
  ParallelFor(n_items, 1, n_threads, [&](int64_t begin, int64_t end) {
    std::vector<float> c;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i0 = item * kRowsPerItem;
      const int64_t rows = std::min(kRowsPerItem, n_in - i0);
      const int64_t cols = n_in - i0;  // columns i0.. cover the upper triangle of these rows
      c.resize(static_cast<size_t>(rows * cols));
      Gemm(rows, cols, n_tokens, xt.data() + i0 * n_tokens, n_tokens, packed.data() + PackedFloats(i0, n_tokens),
           n_tokens, c.data(), cols);
      for (int64_t r = 0; r < rows; ++r) {
        double* dst = sums + (i0 + r) * n_in + i0;
        for (int64_t j = r; j < cols; ++j) dst[j] += c[r * cols + j];
      }
    }
  });
}

class LayerCovarianceSource final : public quantize::CovarianceSource {
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
    by_name_.clear();
    // Routed experts are left out: each would need its own H from the tokens
    // routed to it, and their tensors are rounded without feedback.
    ActivationHook hook = [this](const std::string& name, int64_t expert, const float* x, int64_t n_tokens,
                                 int64_t n_in) {
      if (expert < 0) Accumulate(name, x, n_tokens, n_in);
    };
    RunOptions run;
    run.n_threads = n_threads_;
    run.seq_len = n_ctx_;
    run.hook = &hook;
    // Chunks share a pass over the weights, up to about 2048 tokens, as in CollectImatrix.
    const int64_t batch = std::max<int64_t>(1, 2048 / n_ctx_) * n_ctx_;
    const int64_t n = static_cast<int64_t>(tokens_.size());
    for (int64_t t0 = 0; t0 < n; t0 += batch) {
      const int64_t nt = std::min(batch, n - t0);
      float* h = hidden_.data() + t0 * c.n_embd;
      last_x_ = nullptr;
      if (pass < c.n_layer) {
        MIXQ_TRY(model_.RunLayers(pass, pass + 1, h, nt, run));
      } else {
        MIXQ_TRY(model_.Logits(h, nt, nullptr, run));
      }
    }
    for (const auto& cov : owned_) MirrorUpperTriangle(*cov);
    if (pass == c.n_layer) std::vector<float>().swap(hidden_);  // the last pass: the states are done
    return Status::Ok();
  }

  const quantize::InputCovariance* Find(const std::string& tensor) const override {
    auto it = by_name_.find(tensor);
    return it == by_name_.end() ? nullptr : it->second;
  }

 private:
  void Accumulate(const std::string& name, const float* x, int64_t n_tokens, int64_t n_in) {
    quantize::InputCovariance*& cov = by_name_[name];
    // Consecutive calls with the same input are weights that share it (the hook's contract).
    const bool shared = x == last_x_ && n_tokens == last_n_tokens_ && last_cov_ != nullptr && last_cov_->n_in == n_in;
    if (cov == nullptr) {
      if (shared) {
        cov = last_cov_;
      } else {
        owned_.push_back(std::make_unique<quantize::InputCovariance>());
        cov = owned_.back().get();
        cov->n_in = n_in;
        cov->sums.assign(static_cast<size_t>(n_in * n_in), 0.0);
      }
    }
    if (!(shared && cov == last_cov_)) {
      AddOuterProducts(x, n_tokens, n_in, cov->sums.data(), n_threads_);
      cov->n_tokens += n_tokens;
    }
    last_x_ = x;
    last_n_tokens_ = n_tokens;
    last_cov_ = cov;
  }

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
  std::vector<std::unique_ptr<quantize::InputCovariance>> owned_;
  std::map<std::string, quantize::InputCovariance*> by_name_;
  const float* last_x_ = nullptr;
  int64_t last_n_tokens_ = 0;
  quantize::InputCovariance* last_cov_ = nullptr;
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
