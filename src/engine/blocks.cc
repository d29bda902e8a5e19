// The shared sub-blocks, as llama.cpp's graphs compute them (the order of the
// float operations included, so that results track ggml's).
#include "engine/blocks.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/gemm.h"

namespace mixq::engine {
namespace {

void Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// hidden += delta, element by element.
void AddResidual(float* hidden, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) hidden[i] += delta[i];
}

// b.norm = RMS norm of the hidden states times the weight of `role`.
void NormInput(LayerContext& c, Role role) {
  Buffers& b = c.buffers;
  Grow(b.norm, c.n_tokens * c.config.n_embd);
  DecodeVector(*c.weights[role], b.vec);
  RmsNorm(c.hidden, b.vec.data(), c.n_tokens, c.config.n_embd, c.config.rms_eps, b.norm.data());
}

// Routing of every token: the chosen experts in order of falling probability
// (ggml's argsort, descending) and their weights, softmax probabilities
// renormalised over the chosen ones when the model says so.
void Route(LayerContext& c) {
  const ModelConfig& cfg = c.config;
  Buffers& b = c.buffers;
  const int64_t n_expert = cfg.n_expert;
  const int64_t k = cfg.n_expert_used;
  const Weight* router = c.weights[Role::kFfnRouter];
  Grow(b.probs, c.n_tokens * n_expert);
  Hook(c.options, router, -1, b.norm.data(), c.n_tokens);
  MatMul({{router, nullptr, b.probs.data()}}, b.norm.data(), c.n_tokens, b, c.options);
  b.chosen.resize(static_cast<size_t>(c.n_tokens * k));
  Grow(b.route_weights, c.n_tokens * k);
  std::vector<int32_t> order(static_cast<size_t>(n_expert));
  for (int64_t t = 0; t < c.n_tokens; ++t) {
    float* p = b.probs.data() + t * n_expert;
    SoftmaxRow(p, n_expert, 1.0f);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [p](int32_t x, int32_t y) { return p[x] > p[y]; });
    int32_t* chosen = b.chosen.data() + t * k;
    float* w = b.route_weights.data() + t * k;
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

}  // namespace

void Swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

namespace {

// One SwiGLU feed-forward, down(silu(gate·x) ⊙ up·x), of n rows of x into y
// (n × down's outputs). The activation hook sees the inputs under `named`'s
// weights and `expert` (an expert's slice multiplies, its 3-D tensor is named).
struct SwigluWeights {
  const Weight *gate, *up, *down;
  const Weight *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
};
void SwigluFfn(const SwigluWeights& w, const SwigluWeights& named, int64_t expert, const float* x, int64_t n, float* y,
               Buffers& b, const RunOptions& options) {
  const int64_t n_ff = w.gate->n_out;
  Grow(b.gate, n * n_ff);
  Grow(b.up, n * n_ff);
  Hook(options, named.gate, expert, x, n);
  Hook(options, named.up, expert, x, n);
  MatMul({{w.gate, w.gate_bias, b.gate.data()}, {w.up, w.up_bias, b.up.data()}}, x, n, b, options);
  Swiglu(b.gate.data(), b.up.data(), n * n_ff);
  Hook(options, named.down, expert, b.gate.data(), n);
  MatMul({{w.down, w.down_bias, y}}, b.gate.data(), n, b, options);
}

}  // namespace

void AttentionBlock(LayerContext& c) {
  const ModelConfig& cfg = c.config;
  const LayerWeights& l = c.weights;
  Buffers& b = c.buffers;
  const int64_t n_tokens = c.n_tokens;
  const int64_t q_dim = cfg.n_head * cfg.head_dim;
  const int64_t kv_dim = cfg.n_head_kv * cfg.head_dim;
  Grow(b.q, n_tokens * std::max(q_dim, cfg.n_embd));
  Grow(b.k, n_tokens * kv_dim);
  Grow(b.v, n_tokens * kv_dim);
  Grow(b.attn, n_tokens * q_dim);

  NormInput(c, Role::kAttnNorm);
  const Weight* wq = l[Role::kAttnQ];
  const Weight* wk = l[Role::kAttnK];
  const Weight* wv = l[Role::kAttnV];
  Hook(c.options, wq, -1, b.norm.data(), n_tokens);
  Hook(c.options, wk, -1, b.norm.data(), n_tokens);
  Hook(c.options, wv, -1, b.norm.data(), n_tokens);
  MatMul({{wq, l[Role::kAttnQBias], b.q.data()},
          {wk, l[Role::kAttnKBias], b.k.data()},
          {wv, l[Role::kAttnVBias], b.v.data()}},
         b.norm.data(), n_tokens, b, c.options);
  if (const Weight* q_norm = l[Role::kAttnQNorm]) {
    DecodeVector(*q_norm, b.vec);
    RmsNorm(b.q.data(), b.vec.data(), n_tokens * cfg.n_head, cfg.head_dim, cfg.rms_eps, b.q.data());
  }
  if (const Weight* k_norm = l[Role::kAttnKNorm]) {
    DecodeVector(*k_norm, b.vec);
    RmsNorm(b.k.data(), b.vec.data(), n_tokens * cfg.n_head_kv, cfg.head_dim, cfg.rms_eps, b.k.data());
  }
  const int64_t seq_len = c.options.seq_len > 0 ? c.options.seq_len : n_tokens;
  ApplyRope(cfg, b.q.data(), n_tokens, seq_len, cfg.n_head, c.rope_factors, b);
  ApplyRope(cfg, b.k.data(), n_tokens, seq_len, cfg.n_head_kv, c.rope_factors, b);
  if (c.options.activations == Activations::kGgml) {
    // llama.cpp keeps K and V in an F16 cache.
    RoundActivations(ActRounding::kF16, b.k.data(), n_tokens, kv_dim, b.k.data());
    RoundActivations(ActRounding::kF16, b.v.data(), n_tokens, kv_dim, b.v.data());
  }
  Attention(cfg, b.q.data(), b.k.data(), b.v.data(), n_tokens, seq_len, b.attn.data(), b, c.options.n_threads);
  const Weight* wo = l[Role::kAttnOut];
  Hook(c.options, wo, -1, b.attn.data(), n_tokens);
  MatMul({{wo, l[Role::kAttnOutBias], b.q.data()}}, b.attn.data(), n_tokens, b, c.options);
  AddResidual(c.hidden, b.q.data(), n_tokens * cfg.n_embd);
}

void FfnBlock(LayerContext& c) {
  const LayerWeights& l = c.weights;
  Buffers& b = c.buffers;
  NormInput(c, Role::kFfnNorm);
  Grow(b.q, c.n_tokens * c.config.n_embd);
  const SwigluWeights w{l[Role::kFfnGate],     l[Role::kFfnUp],     l[Role::kFfnDown],
                        l[Role::kFfnGateBias], l[Role::kFfnUpBias], l[Role::kFfnDownBias]};
  SwigluFfn(w, w, -1, b.norm.data(), c.n_tokens, b.q.data(), b, c.options);
  AddResidual(c.hidden, b.q.data(), c.n_tokens * c.config.n_embd);
}

// Tokens are grouped by expert, so that each expert's weights are decoded
// once per call and multiply all of its tokens in one product.
void MoeBlock(LayerContext& c) {
  const ModelConfig& cfg = c.config;
  const LayerWeights& l = c.weights;
  Buffers& b = c.buffers;
  const int64_t n_tokens = c.n_tokens;
  const int64_t n_embd = cfg.n_embd;
  const int64_t k = cfg.n_expert_used;
  const Weight* gate = l[Role::kFfnGateExps];
  const Weight* up = l[Role::kFfnUpExps];
  const Weight* down = l[Role::kFfnDownExps];
  NormInput(c, Role::kFfnNorm);
  Route(c);

  // Slots (token · k + rank) of each expert, token by token.
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(cfg.n_expert));
  for (int64_t s = 0; s < n_tokens * k; ++s) slots[b.chosen[s]].push_back(s);
  Grow(b.expert_out, n_tokens * k * n_embd);
  for (int64_t e = 0; e < cfg.n_expert; ++e) {
    const std::vector<int64_t>& rows = slots[e];
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n == 0) continue;
    Grow(b.expert_in, n * n_embd);
    for (int64_t i = 0; i < n; ++i) {
      const float* x = b.norm.data() + (rows[i] / k) * n_embd;
      std::copy(x, x + n_embd, b.expert_in.data() + i * n_embd);
    }
    const Weight gate_e = gate->Expert(e), up_e = up->Expert(e), down_e = down->Expert(e);
    Grow(b.expert_y, n * n_embd);
    SwigluFfn({&gate_e, &up_e, &down_e}, {gate, up, down}, e, b.expert_in.data(), n, b.expert_y.data(), b, c.options);
    for (int64_t i = 0; i < n; ++i) {
      const float w = b.route_weights[rows[i]];
      const float* y = b.expert_y.data() + i * n_embd;
      float* out = b.expert_out.data() + rows[i] * n_embd;
      for (int64_t j = 0; j < n_embd; ++j) out[j] = y[j] * w;
    }
  }
  // ggml adds the weighted outputs in order of rank, then the residual.
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* out = b.expert_out.data() + t * k * n_embd;
    float* h = c.hidden + t * n_embd;
    for (int64_t j = 0; j < n_embd; ++j) {
      float sum = out[j];
      for (int64_t r = 1; r < k; ++r) sum += out[r * n_embd + j];
      h[j] = sum + h[j];
    }
  }
}

}  // namespace mixq::engine
