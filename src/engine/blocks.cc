// The shared sub-blocks, as llama.cpp's graphs compute them (the order of the
// float operations included, so that results track ggml's), written over the
// backend's operations so that they run unchanged on every backend.
#include "engine/blocks.h"

#include <algorithm>
#include <vector>

#include "engine/internal.h"

namespace mixq::engine {
namespace {

// The norm slot = RMS norm of the hidden states times the weight of `role`.
Tensor NormInput(LayerContext& c, Role role) {
  const Tensor norm = c.ops.Scratch(Slot::kNorm, c.n_tokens * c.config.n_embd);
  c.ops.RmsNorm(c.hidden, *c.weights[role], c.n_tokens, c.config.n_embd, c.config.rms_eps, norm);
  return norm;
}

// One SwiGLU feed-forward, down(silu(gate·x) ⊙ up·x), of n rows of x into y
// (n × down's outputs; added to y with `add`). The activation hook sees the inputs under `named`'s
// weights and `expert` (an expert's slice multiplies, its 3-D tensor is named).
struct SwigluWeights {
  const Weight *gate, *up, *down;
  const Weight *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
};
void SwigluFfn(const SwigluWeights& w, const SwigluWeights& named, int64_t expert, Tensor x, int64_t n, Tensor y,
               bool add, Backend& ops, const RunOptions& options) {
  const int64_t n_ff = w.gate->n_out;
  const Tensor gate = ops.Scratch(Slot::kGate, n * n_ff);
  const Tensor up = ops.Scratch(Slot::kUp, n * n_ff);
  ops.Hook(options, named.gate, expert, x, n);
  ops.Hook(options, named.up, expert, x, n);
  ops.MatMul({{w.gate, w.gate_bias, gate}, {w.up, w.up_bias, up}}, x, n, options);
  ops.SwigluMatMul(gate, up, n, {w.down, w.down_bias, y, add}, named.down, expert, options);
}

// The shared expert's SwiGLU on every token into the last of each token's
// `ranks` slots of `out`, weighted by the sigmoid of its gate logit.
void SharedExpert(LayerContext& c, Tensor norm, int64_t ranks, std::vector<float>& slot_weights, Tensor out) {
  const LayerWeights& l = c.weights;
  Backend& ops = c.ops;
  const int64_t n_tokens = c.n_tokens;
  const Weight* gate = l[Role::kFfnGateInpShexp];
  const Tensor gate_logits = ops.Scratch(Slot::kProbs, n_tokens);
  ops.Hook(c.options, gate, -1, norm, n_tokens);
  ops.MatMul({{gate, nullptr, gate_logits}}, norm, n_tokens, c.options);
  std::vector<float> gates(static_cast<size_t>(n_tokens));
  ops.SigmoidGates(gate_logits, n_tokens, gates);
  std::vector<int64_t> slots(static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    slots[t] = t * ranks + ranks - 1;
    slot_weights[slots[t]] = gates[t];
  }
  const SwigluWeights w{l[Role::kFfnGateShexp], l[Role::kFfnUpShexp], l[Role::kFfnDownShexp]};
  const Tensor y = ops.Scratch(Slot::kExpertY, n_tokens * c.config.n_embd);
  SwigluFfn(w, w, -1, norm, n_tokens, y, false, ops, c.options);
  ops.ScatterWeighted(y, slots, slot_weights, c.config.n_embd, out);
}

}  // namespace

void AttentionBlock(LayerContext& c) {
  const ModelConfig& cfg = c.config;
  const LayerWeights& l = c.weights;
  Backend& ops = c.ops;
  const int64_t n_tokens = c.n_tokens;
  const int64_t q_dim = cfg.n_head * cfg.head_dim;
  const int64_t kv_dim = cfg.n_head_kv * cfg.head_dim;
  const Tensor q = ops.Scratch(Slot::kQ, n_tokens * std::max(q_dim, cfg.n_embd));
  const Tensor k = ops.Scratch(Slot::kK, n_tokens * kv_dim);
  const Tensor v = ops.Scratch(Slot::kV, n_tokens * kv_dim);
  const Tensor attn = ops.Scratch(Slot::kAttn, n_tokens * q_dim);

  const Tensor norm = NormInput(c, Role::kAttnNorm);
  const Weight* wq = l[Role::kAttnQ];
  const Weight* wk = l[Role::kAttnK];
  const Weight* wv = l[Role::kAttnV];
  ops.Hook(c.options, wq, -1, norm, n_tokens);
  ops.Hook(c.options, wk, -1, norm, n_tokens);
  ops.Hook(c.options, wv, -1, norm, n_tokens);
  ops.MatMul({{wq, l[Role::kAttnQBias], q}, {wk, l[Role::kAttnKBias], k}, {wv, l[Role::kAttnVBias], v}}, norm, n_tokens,
             c.options);
  if (const Weight* q_norm = l[Role::kAttnQNorm]) {
    ops.RmsNorm(q, *q_norm, n_tokens * cfg.n_head, cfg.head_dim, cfg.rms_eps, q);
  }
  if (const Weight* k_norm = l[Role::kAttnKNorm]) {
    ops.RmsNorm(k, *k_norm, n_tokens * cfg.n_head_kv, cfg.head_dim, cfg.rms_eps, k);
  }
  const int64_t seq_len = c.options.seq_len > 0 ? c.options.seq_len : n_tokens;
  ops.Rope(q, n_tokens, seq_len, cfg.n_head, c.rope_factors);
  ops.Rope(k, n_tokens, seq_len, cfg.n_head_kv, c.rope_factors);
  if (c.options.activations == Activations::kGgml) {
    // llama.cpp keeps K and V in an F16 cache.
    ops.RoundToF16(k, n_tokens * kv_dim);
    ops.RoundToF16(v, n_tokens * kv_dim);
  }
  ops.Attention(q, k, v, n_tokens, seq_len, attn, c.options);
  const Weight* wo = l[Role::kAttnOut];
  ops.Hook(c.options, wo, -1, attn, n_tokens);
  ops.MatMul({{wo, l[Role::kAttnOutBias], c.hidden, true}}, attn, n_tokens, c.options);
}

void FfnBlock(LayerContext& c) {
  const LayerWeights& l = c.weights;
  const Tensor norm = NormInput(c, Role::kFfnNorm);
  const SwigluWeights w{l[Role::kFfnGate],     l[Role::kFfnUp],     l[Role::kFfnDown],
                        l[Role::kFfnGateBias], l[Role::kFfnUpBias], l[Role::kFfnDownBias]};
  SwigluFfn(w, w, -1, norm, c.n_tokens, c.hidden, true, c.ops, c.options);
}

// Tokens are grouped by expert, so that each expert's weights are decoded
// once per call and multiply all of its tokens in one product. Each token's
// outputs sit in `ranks` slots (token · ranks + rank): its k routed experts in
// order of rank, then the shared expert when the block has one, so that one
// rank-ordered sum adds them as llama.cpp's graph does.
void MoeBlock(LayerContext& c) {
  const ModelConfig& cfg = c.config;
  const LayerWeights& l = c.weights;
  Backend& ops = c.ops;
  const int64_t n_tokens = c.n_tokens;
  const int64_t n_embd = cfg.n_embd;
  const int64_t k = cfg.n_expert_used;
  const bool shared = l[Role::kFfnUpShexp] != nullptr;
  const int64_t ranks = k + (shared ? 1 : 0);
  const Weight* gate = l[Role::kFfnGateExps];
  const Weight* up = l[Role::kFfnUpExps];
  const Weight* down = l[Role::kFfnDownExps];
  const Tensor norm = NormInput(c, Role::kFfnNorm);

  const Weight* router = l[Role::kFfnRouter];
  const Tensor probs = ops.Scratch(Slot::kProbs, n_tokens * cfg.n_expert);
  ops.Hook(c.options, router, -1, norm, n_tokens);
  ops.MatMul({{router, nullptr, probs}}, norm, n_tokens, c.options);
  std::vector<int32_t> chosen(static_cast<size_t>(n_tokens * k));
  std::vector<float> route_weights(static_cast<size_t>(n_tokens * k));
  ops.Route(probs, n_tokens, chosen, route_weights);

  // The slots of each routed expert, token by token, and every slot's weight.
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(cfg.n_expert));
  std::vector<float> slot_weights(static_cast<size_t>(n_tokens * ranks));
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < k; ++r) {
      slots[chosen[t * k + r]].push_back(t * ranks + r);
      slot_weights[t * ranks + r] = route_weights[t * k + r];
    }
  }
  const Tensor expert_out = ops.Scratch(Slot::kExpertOut, n_tokens * ranks * n_embd);
  for (int64_t e = 0; e < cfg.n_expert; ++e) {
    const std::vector<int64_t>& rows = slots[e];
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n == 0) continue;
    const Tensor expert_in = ops.Scratch(Slot::kExpertIn, n * n_embd);
    ops.GatherRows(norm, rows, ranks, n_embd, expert_in);
    const Weight gate_e = gate->Expert(e), up_e = up->Expert(e), down_e = down->Expert(e);
    const Tensor expert_y = ops.Scratch(Slot::kExpertY, n * n_embd);
    SwigluFfn({&gate_e, &up_e, &down_e}, {gate, up, down}, e, expert_in, n, expert_y, false, ops, c.options);
    ops.ScatterWeighted(expert_y, rows, slot_weights, n_embd, expert_out);
  }
  if (shared) SharedExpert(c, norm, ranks, slot_weights, expert_out);
  // ggml adds the weighted outputs in order of rank, then the residual.
  ops.AddRanks(expert_out, n_tokens, ranks, n_embd, c.hidden);
}

}  // namespace mixq::engine
