// Internal: the shared pieces that architectures' block functions are made
// of. Each runs one pre-norm sub-block in place on the hidden states,
// residual included, reading its weights by role; optional weights (biases,
// q/k norms) are applied when the block has them.
#ifndef MIXQ_ENGINE_BLOCKS_H_
#define MIXQ_ENGINE_BLOCKS_H_

#include "engine/architecture.h"
#include "engine/backend.h"

namespace mixq::engine {

struct LayerContext {
  const ModelConfig& config;
  const LayerWeights& weights;  // this block's
  const float* rope_factors;    // n_rot / 2 values on the host, or null
  Tensor hidden;                // [n_tokens][n_embd]
  int64_t n_tokens;
  Backend& ops;
  const RunOptions& options;
};

// attn_norm, q/k/v (+ biases, + per-head q/k norms), RoPE, causal attention
// over an F16-rounded KV (ggml activations), attn_output (+ bias), residual.
void AttentionBlock(LayerContext& c);
// ffn_norm, SwiGLU feed-forward (gate, up, down, + biases), residual.
void FfnBlock(LayerContext& c);
// ffn_norm, router (ffn_gate_inp) softmax, top n_expert_used experts
// (renormalised weights when config.expert_weights_norm), each expert's
// SwiGLU on the tokens routed to it, weighted sum in order of rank; then, when
// the block has a shared expert (ffn_*_shexp), its SwiGLU on every token times
// the sigmoid of ffn_gate_inp_shexp · x, added last; residual.
void MoeBlock(LayerContext& c);

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_BLOCKS_H_
