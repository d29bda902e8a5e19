// The CPU backend: tensors are host floats, and every operation is the
// engine's reference kernel (kernels.cc, gemm.cc, activation_rounding.cc).
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "base/parallel.h"
#include "engine/backend.h"
#include "engine/gemm.h"
#include "engine/internal.h"

namespace mixq::engine {
namespace {

float* F(Tensor t) { return static_cast<float*>(t.handle); }

// Rows of a Gram per work item: a multiple of every panel width (8, 16, 32),
// so that each item's first column starts a panel.
constexpr int64_t kGramRowsPerItem = 64;

struct CpuGram final : Gram {
  std::vector<double> sums;
};

// Adds the upper triangle of xᵀx (x: n_tokens rows of n_in) to sums
// (n_in x n_in, row-major), summing the products in float.
void AddOuterProducts(const float* x, int64_t n_tokens, int64_t n_in, double* sums, int n_threads) {
  // A = xᵀ row-major; B = xᵀ too, packed from x's columns.
  std::vector<float> xt(static_cast<size_t>(n_in * n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t j = 0; j < n_in; ++j) xt[j * n_tokens + t] = x[t * n_in + j];
  }
  std::vector<float> packed(static_cast<size_t>(PackedFloats(n_in, n_tokens)));
  PackTransposed(x, n_in, n_tokens, n_in, packed.data());
  const int64_t n_items = (n_in + kGramRowsPerItem - 1) / kGramRowsPerItem;
  ParallelFor(n_items, 1, n_threads, [&](int64_t begin, int64_t end) {
    std::vector<float> c;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i0 = item * kGramRowsPerItem;
      const int64_t rows = std::min(kGramRowsPerItem, n_in - i0);
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

void Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const ModelConfig& config) : config_(config) {}

  Tensor Scratch(Slot slot, int64_t n) override {
    std::vector<float>& v = SlotVector(slot);
    Grow(v, n);
    return {v.data()};
  }
  Tensor Attach(Slot, float* host, int64_t, bool) override { return {host}; }
  float* HostBuffer(Slot slot, int64_t n) override { return F(Scratch(slot, n)); }
  void Download(Tensor x, int64_t n, float* host) override {
    if (F(x) != host) std::copy_n(F(x), n, host);
  }
  void NoteNonFinite(Tensor x, int64_t n, int64_t tag) override {
    if (first_.tag >= 0 && first_.tag <= tag) return;
    const int64_t bad = formats::FirstNonFinite(F(x), n);
    if (bad >= 0) first_ = {tag, bad, std::isnan(F(x)[bad])};
  }
  bool TakeNonFinite(NonFinite* first) override {
    *first = first_;
    first_ = {};
    return first->tag >= 0;
  }
  bool DefersChecks() const override { return false; }

  void RmsNorm(Tensor x, const Weight& weight, int64_t rows, int64_t n, float eps, Tensor y) override {
    DecodeVector(weight, b_.vec);
    engine::RmsNorm(F(x), b_.vec.data(), rows, n, eps, F(y));
  }
  void MatMul(std::initializer_list<TensorProduct> products, Tensor x, int64_t n_tokens,
              const RunOptions& options) override {
    // At most the three products of q/k/v share an input; a residual's
    // product goes to a buffer of its own first.
    std::array<Product, 3> p{};
    size_t n = 0;
    const TensorProduct* residual = nullptr;
    for (const TensorProduct& t : products) {
      float* y = F(t.y);
      if (t.add) {
        residual = &t;
        Grow(added_, n_tokens * t.w->n_out);
        y = added_.data();
      }
      p[n++] = {t.w, t.bias, y};
    }
    switch (n) {
      case 1:
        engine::MatMul({p[0]}, F(x), n_tokens, b_, options);
        break;
      case 2:
        engine::MatMul({p[0], p[1]}, F(x), n_tokens, b_, options);
        break;
      default:
        engine::MatMul({p[0], p[1], p[2]}, F(x), n_tokens, b_, options);
        break;
    }
    if (residual != nullptr) {
      float* h = F(residual->y);
      for (int64_t i = 0; i < n_tokens * residual->w->n_out; ++i) h[i] += added_[i];
    }
  }
  void Hook(const RunOptions& options, const Weight* w, int64_t expert, Tensor x, int64_t n_tokens) override {
    if (options.grams != nullptr && w != nullptr) options.grams->Add(*this, *w, expert, x, n_tokens);
    engine::Hook(options, w, expert, F(x), n_tokens);
  }
  std::unique_ptr<Gram> MakeGram(int64_t n_in) override {
    auto gram = std::make_unique<CpuGram>();
    gram->sums.assign(static_cast<size_t>(n_in * n_in), 0.0);
    return gram;
  }
  void AddGram(Tensor x, int64_t n_tokens, int64_t n_in, Gram& gram, int n_threads) override {
    AddOuterProducts(F(x), n_tokens, n_in, static_cast<CpuGram&>(gram).sums.data(), n_threads);
  }
  void TakeGram(Gram& gram, std::vector<double>* sums) override {
    sums->swap(static_cast<CpuGram&>(gram).sums);
    std::vector<double>().swap(static_cast<CpuGram&>(gram).sums);
  }
  void Rope(Tensor x, int64_t n_tokens, int64_t seq_len, int64_t n_heads, const float* freq_factors) override {
    ApplyRope(config_, F(x), n_tokens, seq_len, n_heads, freq_factors, b_);
  }
  void RoundToF16(Tensor x, int64_t n) override { RoundActivations(ActRounding::kF16, F(x), 1, n, F(x)); }
  void Attention(Tensor q, Tensor k, Tensor v, int64_t n_tokens, int64_t seq_len, Tensor out,
                 const RunOptions& options) override {
    engine::Attention(config_, F(q), F(k), F(v), n_tokens, seq_len, F(out), b_, options.n_threads);
  }
  void Swiglu(Tensor gate, Tensor up, int64_t n) override { engine::Swiglu(F(gate), F(up), n); }

  void Route(Tensor probs, int64_t n_tokens, std::span<int32_t> chosen, std::span<float> weights) override {
    RouteTokens(config_, F(probs), n_tokens, chosen, weights);
  }
  void SigmoidGates(Tensor logits, int64_t n_tokens, std::span<float> gates) override {
    SigmoidOfLogits(F(logits), n_tokens, gates);
  }
  void GatherRows(Tensor src, std::span<const int64_t> slots, int64_t k, int64_t n, Tensor dst) override {
    for (size_t i = 0; i < slots.size(); ++i) {
      const float* x = F(src) + (slots[i] / k) * n;
      std::copy(x, x + n, F(dst) + static_cast<int64_t>(i) * n);
    }
  }
  void ScatterWeighted(Tensor y, std::span<const int64_t> slots, std::span<const float> weights, int64_t n,
                       Tensor out) override {
    for (size_t i = 0; i < slots.size(); ++i) {
      const float w = weights[slots[i]];
      const float* yi = F(y) + static_cast<int64_t>(i) * n;
      float* o = F(out) + slots[i] * n;
      for (int64_t j = 0; j < n; ++j) o[j] = yi[j] * w;
    }
  }
  void AddRanks(Tensor out, int64_t n_tokens, int64_t k, int64_t n, Tensor hidden) override {
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* o = F(out) + t * k * n;
      float* h = F(hidden) + t * n;
      for (int64_t j = 0; j < n; ++j) {
        float sum = o[j];
        for (int64_t r = 1; r < k; ++r) sum += o[r * n + j];
        h[j] = sum + h[j];
      }
    }
  }

  void ScoreRows(Tensor logits, const ScoreSpec& spec, std::span<RowScore> out, int n_threads) override {
    const int64_t n_vocab = spec.n_vocab;
    float* lp = F(Scratch(Slot::kLogProbs, spec.n_chunks * spec.n_scored * n_vocab));
    const float* base = F(spec.base_lp);
    ParallelFor(spec.n_chunks * spec.n_scored, 16, n_threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t row = (i / spec.n_scored) * spec.stride + i % spec.n_scored;
        float* q = lp + i * n_vocab;
        RowScore& r = out[i];
        LogSoftmaxRow(F(logits) + row * n_vocab, n_vocab, spec.targets[i], q, &r.argmax, &r.nll);
        if (base == nullptr) continue;
        const float* p = base + i * n_vocab;
        double kld = 0.0;
        for (int64_t j = 0; j < n_vocab; ++j) {
          const double pj = std::exp(static_cast<double>(p[j]));
          kld += pj * (static_cast<double>(p[j]) - static_cast<double>(q[j]));
        }
        r.kld = kld;
      }
    });
  }

 private:
  std::vector<float>& SlotVector(Slot slot) {
    switch (slot) {
      case Slot::kNorm:
        return b_.norm;
      case Slot::kQ:
        return b_.q;
      case Slot::kK:
        return b_.k;
      case Slot::kV:
        return b_.v;
      case Slot::kAttn:
        return b_.attn;
      case Slot::kGate:
        return b_.gate;
      case Slot::kUp:
        return b_.up;
      case Slot::kProbs:
        return b_.probs;
      case Slot::kExpertIn:
        return b_.expert_in;
      case Slot::kExpertY:
        return b_.expert_y;
      case Slot::kExpertOut:
        return b_.expert_out;
      default:
        return other_[static_cast<size_t>(slot)];
    }
  }

  const ModelConfig& config_;
  Buffers b_;
  NonFinite first_;
  std::vector<float> added_;  // a residual's product
  std::array<std::vector<float>, static_cast<size_t>(Slot::kCount)> other_;
};

}  // namespace

void Backend::SwigluMatMul(Tensor gate, Tensor up, int64_t n_tokens, const TensorProduct& down, const Weight* hooked,
                           int64_t expert, const RunOptions& options) {
  Swiglu(gate, up, n_tokens * down.w->n_in);
  Hook(options, hooked, expert, gate, n_tokens);
  MatMul({down}, gate, n_tokens, options);
}

void RouteTokens(const ModelConfig& cfg, float* probs, int64_t n_tokens, std::span<int32_t> chosen_out,
                 std::span<float> weights_out) {
  const int64_t n_expert = cfg.n_expert;
  const int64_t k = cfg.n_expert_used;
  std::vector<int32_t> order(static_cast<size_t>(n_expert));
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* p = probs + t * n_expert;
    SoftmaxRow(p, n_expert, 1.0f);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [p](int32_t x, int32_t y) { return p[x] > p[y]; });
    int32_t* chosen = chosen_out.data() + t * k;
    float* w = weights_out.data() + t * k;
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      chosen[j] = order[j];
      w[j] = p[order[j]];
      sum += w[j];
    }
    if (cfg.expert_weights_norm) {
      // ggml sums rows in double and clamps the sum to the smallest F16 normal.
      const float total = std::max(static_cast<float>(sum), 6.103515625e-5f);
      for (int64_t j = 0; j < k; ++j) w[j] /= total;
    }
  }
}

void SigmoidOfLogits(const float* logits, int64_t n, std::span<float> gates) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = logits[i];
    gates[i] = x / (1.0f + std::exp(-x)) / x;
  }
}

std::unique_ptr<Backend> MakeCpuBackend(const ModelConfig& config) { return std::make_unique<CpuBackend>(config); }

}  // namespace mixq::engine
