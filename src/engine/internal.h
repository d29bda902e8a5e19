// Internal pieces of the engine shared between its files.
#ifndef MIXQ_ENGINE_INTERNAL_H_
#define MIXQ_ENGINE_INTERNAL_H_

#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/thread_pool.h"

namespace mixq::engine {

// One stored tensor as the forward pass sees it: the file's bytes, or an
// override's. For matrices, row r (of n_out) holds n_in values.
struct Weight {
  std::string name;
  const gguf::TensorInfo* info = nullptr;
  const formats::Format* format = nullptr;
  const uint8_t* data = nullptr;
  int64_t n_in = 0;   // ne[0]
  int64_t n_out = 0;  // rows
  int64_t row_bytes = 0;
};

struct LayerWeights {
  Weight* attn_norm = nullptr;
  Weight* wq = nullptr;
  Weight* wk = nullptr;
  Weight* wv = nullptr;
  Weight* wo = nullptr;
  Weight* bq = nullptr;  // optional biases
  Weight* bk = nullptr;
  Weight* bv = nullptr;
  Weight* bo = nullptr;
  Weight* q_norm = nullptr;  // qwen3
  Weight* k_norm = nullptr;
  Weight* ffn_norm = nullptr;
  Weight* gate = nullptr;
  Weight* up = nullptr;
  Weight* down = nullptr;
  Weight* b_gate = nullptr;
  Weight* b_up = nullptr;
  Weight* b_down = nullptr;
};

// Per-thread scratch: attention scores, one decoded weight row.
struct ThreadScratch {
  std::vector<float> scores;
  std::vector<float> row;
};

// Reusable activation buffers (grown on demand, never shrunk).
struct Buffers {
  std::vector<float> norm;   // n_tokens x n_embd
  std::vector<float> rounded;  // activations as ggml would round them
  std::vector<float> weights;  // one decoded row block of the current weight, packed
  std::vector<float> keys, values;  // packed K and Vᵀ per sequence and KV head
  std::vector<float> q, k, v, attn;
  std::vector<float> gate, up;
  std::vector<float> vec;    // a decoded norm or bias vector
  std::vector<float> rope_cos, rope_sin;
  std::vector<ThreadScratch> threads;
  ThreadPool pool;
};

Result<ModelConfig> ReadConfig(const gguf::GgufFile& file);

// One product y[n_tokens][w.n_out] = x[n_tokens][w.n_in] · Wᵀ (+ bias).
struct Product {
  const Weight* w;
  const Weight* bias;  // optional
  float* y;
};
// Runs products that share their input x (q/k/v, gate/up), rounding x once
// for all of them when their weights round activations alike.
void MatMul(std::initializer_list<Product> products, const float* x, int64_t n_tokens, Buffers& buffers,
            const RunOptions& options);

// The rounding ggml's CPU backend applies to activations before a dot
// product with weights of a format (its vec_dot_type).
enum class ActRounding { kNone, kF16, kBF16, kQ8_0, kQ8_K };
ActRounding RoundingFor(const formats::Format& weight_format);
// x rounded to the nearest F16 value (ties to even, overflow to infinity),
// as an F32: the same as formats::F16ToF32(formats::F32ToF16(x)), inline so
// that whole rows round quickly.
inline float RoundToHalf(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t magnitude = u & 0x7FFFFFFFu;
  if (magnitude >= 0x7F800000u) return x;  // infinity, NaN
  if (magnitude >= 0x38800000u) {          // at least 2^-14: F16 normals keep 10 mantissa bits
    const uint32_t r = (u + 0xFFFu + ((u >> 13) & 1u)) & ~0x1FFFu;
    if ((r & 0x7FFFFFFFu) > 0x477FE000u) return std::copysign(INFINITY, x);  // past 65504
    return std::bit_cast<float>(r);
  }
  return std::nearbyint(x * 16777216.0f) * (1.0f / 16777216.0f);  // F16 subnormals: multiples of 2^-24
}

// The same for BF16 (8 mantissa bits).
inline float RoundToBFloat16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return x;  // NaN
  return std::bit_cast<float>((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}

// out[n_rows][n] = x rounded as `rounding` does it, block by block.
// REQUIRES: n is a multiple of the rounding's block (32 or 256).
void RoundActivations(ActRounding rounding, const float* x, int64_t n_rows, int64_t n, float* out);
// Decodes a 1-D tensor (norm weights, biases) into `out`.
void DecodeVector(const Weight& w, std::vector<float>& out);
// ggml's RMS norm times `weight`, row by row: y = x / sqrt(mean(x²) + eps) · weight.
void RmsNorm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* y);

// Causal multi-head attention within each sequence of seq_len rows:
// q [n_tokens][n_head*head_dim], k and v [n_tokens][n_head_kv*head_dim],
// out [n_tokens][n_head*head_dim].
void Attention(const ModelConfig& config, const float* q, const float* k, const float* v, int64_t n_tokens,
               int64_t seq_len, float* out, Buffers& buffers, int n_threads);
// Rotates the first n_rot dims of every head of x [n_tokens][n_heads*head_dim];
// row r is at position r % seq_len. `freq_factors` (n_rot/2 values) may be null.
void ApplyRope(const ModelConfig& config, float* x, int64_t n_tokens, int64_t seq_len, int64_t n_heads,
               const float* freq_factors, Buffers& buffers);

// Log-softmax of one row of logits (sums in double), its argmax, and the
// negative log-likelihood of `target`.
void LogSoftmaxRow(const float* logits, int64_t n_vocab, int32_t target, float* lp, int32_t* argmax, double* nll);

// Base log-probs of one chunk's scored rows.
struct BaseRows {
  int64_t n_rows = 0;
  int64_t n_vocab = 0;
  std::vector<float> lp;  // n_rows x n_vocab
  std::vector<int32_t> argmax;
  std::vector<double> nll;  // of each row's next token
};
Status ReadBaseChunk(const BaseLogits& base, int64_t chunk, BaseRows* rows);

// Writes an MQBL file (base_logits.cc describes the layout) row by row.
class BaseLogitsWriter {
 public:
  BaseLogitsWriter();
  ~BaseLogitsWriter();
  // `tokens` holds every chunk (n_chunks * n_ctx), before the BOS substitution.
  Status Begin(const std::string& path, int64_t n_ctx, int64_t n_vocab, bool bos, std::span<const int32_t> tokens);
  Status AddRow(const float* lp, int64_t n_vocab, int32_t argmax, double nll);
  Status Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_INTERNAL_H_
