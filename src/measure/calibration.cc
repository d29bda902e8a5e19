#include "measure/calibration.h"

#include <cmath>

#include "base/parallel.h"

namespace mixq::measure {
namespace {

void LogSoftmax(const float* z, int64_t n, float* out) {
  float mx = z[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, z[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(z[i] - mx));
  const float lse = mx + static_cast<float>(std::log(sum));
  for (int64_t i = 0; i < n; ++i) out[i] = z[i] - lse;
}

}  // namespace

int64_t FirstLayerOf(const std::string& tensor, int64_t n_layer) {
  auto info = engine::DescribeWeight(tensor);
  if (!info) return n_layer;
  if (info->layer >= 0) return info->layer;
  return info->part == engine::WeightPart::kEmbedding ? -1 : n_layer;
}

Result<Calibration> Calibration::Build(engine::Model& model, std::span<const int32_t> tokens,
                                       const MeasureOptions& options) {
  Calibration c;
  const auto& cfg = model.config();
  c.n_ctx_ = options.n_ctx;
  c.n_layer_ = cfg.n_layer;
  c.n_embd_ = cfg.n_embd;
  c.n_vocab_ = cfg.n_vocab;
  c.n_threads_ = options.n_threads;
  const int64_t available = static_cast<int64_t>(tokens.size()) / c.n_ctx_;
  c.n_chunks_ = std::min(available, options.n_chunks);
  if (c.n_ctx_ < 4 || c.n_chunks_ < 1) {
    return Status::InvalidArgument("calibration text has " + std::to_string(tokens.size()) +
                                   " tokens, fewer than one chunk of " + std::to_string(c.n_ctx_) +
                                   "; give a longer --text or a smaller --ctx");
  }
  c.tokens_.assign(tokens.begin(), tokens.begin() + c.n_chunks_ * c.n_ctx_);
  if (options.bos_id >= 0) {
    for (int64_t k = 0; k < c.n_chunks_; ++k) c.tokens_[k * c.n_ctx_] = options.bos_id;
  }
  engine::RunOptions run;
  run.n_threads = c.n_threads_;
  run.seq_len = c.n_ctx_;
  std::vector<float> logits;
  MIXQ_TRY(model.Forward(c.tokens_, c.n_ctx_ / 2, &logits, run, &c.layer_inputs_));
  c.base_lp_.resize(logits.size());
  const int64_t n_rows = static_cast<int64_t>(logits.size()) / c.n_vocab_;
  ParallelFor(n_rows, 16, c.n_threads_, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      LogSoftmax(logits.data() + r * c.n_vocab_, c.n_vocab_, c.base_lp_.data() + r * c.n_vocab_);
    }
  });
  return c;
}

Status Calibration::RunFrom(engine::Model& model, int64_t first_layer, int64_t last_layer) {
  const int64_t n = n_chunks_ * n_ctx_;
  if (first_layer < 0) {
    hidden_.resize(static_cast<size_t>(n * n_embd_));
    MIXQ_TRY(model.Embed(tokens_, hidden_.data()));
    first_layer = 0;
  } else {
    hidden_ = layer_inputs_[static_cast<size_t>(std::min(first_layer, n_layer_))];
  }
  return RunLayers(model, first_layer, last_layer);
}

Status Calibration::RunLayers(engine::Model& model, int64_t first_layer, int64_t last_layer) {
  if (first_layer >= last_layer) return Status::Ok();
  engine::RunOptions run;
  run.n_threads = n_threads_;
  run.seq_len = n_ctx_;
  MIXQ_TRY(model.RunLayers(first_layer, last_layer, hidden_.data(), n_chunks_ * n_ctx_, run));
  layer_passes_ += last_layer - first_layer;
  return Status::Ok();
}

Result<double> Calibration::Kld(engine::Model& model, int64_t first_layer) {
  MIXQ_TRY(RunFrom(model, first_layer, n_layer_));
  return KldOfHidden(model);
}

Result<Perturbation> Calibration::Perturb(engine::Model& model, int64_t layer, bool propagate) {
  Perturbation p;
  const int64_t end = std::min(layer + 1, n_layer_);
  MIXQ_TRY(RunFrom(model, layer, end));
  if (layer < n_layer_) p.local = LocalChange(end);
  if (!propagate && layer < n_layer_) return p;
  MIXQ_TRY(RunLayers(model, end, n_layer_));
  auto kld = KldOfHidden(model);
  MIXQ_TRY(kld);
  p.kld = *kld;
  return p;
}

// Relative rather than absolute change: the next layer sees the residual
// stream through an RMS norm, so scale-free changes compare across depths.
double Calibration::LocalChange(int64_t boundary) const {
  const std::vector<float>& base = layer_inputs_[static_cast<size_t>(boundary)];
  const int64_t n = n_chunks_ * n_ctx_;
  std::vector<double> per_token(static_cast<size_t>(n));
  ParallelFor(n, 64, n_threads_, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* h = base.data() + i * n_embd_;
      const float* q = hidden_.data() + i * n_embd_;
      double d2 = 0, h2 = 0;
      for (int64_t j = 0; j < n_embd_; ++j) {
        const double d = static_cast<double>(q[j]) - h[j];
        d2 += d * d;
        h2 += static_cast<double>(h[j]) * h[j];
      }
      per_token[static_cast<size_t>(i)] = h2 > 0 ? d2 / h2 : 0.0;
    }
  });
  double sum = 0;
  for (double v : per_token) sum += v;
  return sum / static_cast<double>(n);
}

Result<double> Calibration::KldOfHidden(engine::Model& model) {
  engine::RunOptions run;
  run.n_threads = n_threads_;
  run.seq_len = n_ctx_;
  const int64_t from = n_ctx_ / 2, per_seq = n_ctx_ - from;
  gathered_.resize(static_cast<size_t>(n_chunks_ * per_seq * n_embd_));
  for (int64_t s = 0; s < n_chunks_; ++s) {
    std::copy_n(hidden_.data() + (s * n_ctx_ + from) * n_embd_, per_seq * n_embd_,
                gathered_.data() + s * per_seq * n_embd_);
  }
  const int64_t n_rows = n_chunks_ * per_seq;
  logits_.resize(static_cast<size_t>(n_rows * n_vocab_));
  MIXQ_TRY(model.Logits(gathered_.data(), n_rows, logits_.data(), run));
  std::vector<double> row_kld(static_cast<size_t>(n_rows));
  ParallelFor(n_rows, 16, n_threads_, [&](int64_t begin, int64_t end) {
    std::vector<float> lp(static_cast<size_t>(n_vocab_));
    for (int64_t r = begin; r < end; ++r) {
      LogSoftmax(logits_.data() + r * n_vocab_, n_vocab_, lp.data());
      const float* base = base_lp_.data() + r * n_vocab_;
      double kld = 0;
      for (int64_t i = 0; i < n_vocab_; ++i) kld += std::exp(static_cast<double>(base[i])) * (base[i] - lp[i]);
      row_kld[static_cast<size_t>(r)] = kld;
    }
  });
  double sum = 0;
  for (double k : row_kld) sum += k;
  return sum / static_cast<double>(n_rows);
}

}  // namespace mixq::measure
