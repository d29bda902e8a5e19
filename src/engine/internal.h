// Internal pieces of the engine shared between its files.
#ifndef MIXQ_ENGINE_INTERNAL_H_
#define MIXQ_ENGINE_INTERNAL_H_

#include <bit>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "engine/engine.h"

namespace mixq::engine {

// One stored tensor as the forward pass sees it: the file's bytes, or an
// override's. For matrices, row r (of n_out) holds n_in values; a tensor of
// routed experts holds n_expert such matrices one after another.
struct Weight {
  std::string name;
  const gguf::TensorInfo* info = nullptr;
  const formats::Format* format = nullptr;
  const uint8_t* data = nullptr;
  int64_t n_in = 0;      // ne[0]
  int64_t n_out = 0;     // rows of one matrix: ne[1]
  int64_t n_expert = 1;  // ne[2]
  int64_t row_bytes = 0;
  // 0 for the file's bytes; a new number for each override
  // (NextWeightGeneration), so that a device's copy of an earlier override is
  // never mistaken for a later one at the same address.
  uint64_t generation = 0;
  const gguf::GgufFile* file = nullptr;  // whose mapping holds `data` when generation is 0

  // Drops the resident pages of `part` (bytes of `data`) when they are the
  // file's, for a device that has copied them (GgufFile::ReleasePages).
  void ReleasePages(std::span<const uint8_t> part) const {
    if (generation == 0 && file != nullptr) file->ReleasePages(part);
  }
  // All of data's bytes.
  std::span<const uint8_t> Bytes() const { return {data, static_cast<size_t>(n_expert * n_out * row_bytes)}; }

  // Expert e's matrix, as a 2-D weight of the same name.
  Weight Expert(int64_t e) const {
    Weight w = *this;
    w.data = data + e * n_out * row_bytes;
    w.n_expert = 1;
    return w;
  }
};

// A number no weight had before (thread-safe).
uint64_t NextWeightGeneration();

// Per-thread scratch: attention scores, one decoded weight row (as floats,
// or as int8 values with group scales and mins).
struct ThreadScratch {
  std::vector<float> scores;
  std::vector<float> row;
  std::vector<int8_t> int_row;
  std::vector<float> group_scales, group_mins;
};

// Reusable activation buffers (grown on demand, never shrunk).
struct Buffers {
  std::vector<float> norm;           // n_tokens x n_embd
  std::vector<float> rounded;        // activations as ggml would round them
  std::vector<float> weights;        // one decoded row block of the current weight, packed
  std::vector<uint8_t> int_weights;  // the same in integer form (int_gemm.h)
  std::vector<uint8_t> int_acts;     // activations rounded for IntGemm, their block d and group sums
  std::vector<float> int_act_d, int_act_sums;
  std::vector<float> keys, values;  // packed K and Vᵀ per sequence and KV head
  std::vector<float> q, k, v, attn;
  std::vector<float> gate, up;
  // Routed experts: routing probabilities, one expert's gathered inputs and
  // outputs, and every chosen expert's weighted output per token.
  std::vector<float> probs;
  std::vector<float> expert_in, expert_y, expert_out;
  std::vector<float> vec;  // a decoded norm or bias vector
  std::vector<float> rope_cos, rope_sin;
  std::vector<ThreadScratch> threads;
};

struct Architecture;
// The hyperparameters of a file whose architecture is `arch`.
Result<ModelConfig> ReadConfig(const gguf::GgufFile& file, const Architecture& arch);
// The architecture a file names; NotSupported lists the supported ones.
Result<const Architecture*> ArchitectureOf(const gguf::GgufFile& file);

// Calls options.hook, when there is one, with the input of `w` (or of its
// expert `expert`, >= 0).
inline void Hook(const RunOptions& options, const Weight* w, int64_t expert, const float* x, int64_t n_tokens) {
  if (options.hook != nullptr && w != nullptr) (*options.hook)(w->name, expert, x, n_tokens, w->n_in);
}

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
  const uint32_t sign = u & 0x80000000u;
  // F16 normals keep 10 mantissa bits (ties to even through the carry).
  uint32_t normal = (u + 0xFFFu + ((u >> 13) & 1u)) & ~0x1FFFu;
  const uint32_t overflow = (normal & 0x7FFFFFFFu) > 0x477FE000u ? ~0u : 0u;  // past 65504
  normal = (normal & ~overflow) | ((sign | 0x7F800000u) & overflow);
  // F16 subnormals are multiples of 2^-24, the spacing of floats in [0.5, 1).
  const float small = (std::bit_cast<float>(magnitude) + 0.5f) - 0.5f;
  const uint32_t subnormal = sign | std::bit_cast<uint32_t>(small);
  // Selects by masks rather than branches, so that loops over rows vectorize.
  const uint32_t is_normal = magnitude >= 0x38800000u ? ~0u : 0u;
  const uint32_t is_special = magnitude >= 0x7F800000u ? ~0u : 0u;  // infinity, NaN
  const uint32_t r = (normal & is_normal) | (subnormal & ~is_normal);
  return std::bit_cast<float>((u & is_special) | (r & ~is_special));
}

// Rounds to the nearest integer, ties to even, for |v| < 2^22: adding and
// subtracting 1.5 · 2^23 leaves no fraction bits. Inline and vectorizable,
// unlike std::nearbyint without SSE4.1.
inline float RoundToInt(float v) { return (v + 12582912.0f) - 12582912.0f; }

// The same for BF16 (8 mantissa bits).
inline float RoundToBFloat16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return x;  // NaN
  return std::bit_cast<float>((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}

// out[n_rows][n] = x rounded as `rounding` does it, block by block.
// REQUIRES: n is a multiple of the rounding's block (32 or 256).
void RoundActivations(ActRounding rounding, const float* x, int64_t n_rows, int64_t n, float* out);
// Rounds one row of n values as `rounding` (kQ8_0 or kQ8_K) does, in the form
// IntGemm reads (int_gemm.h): q[n] (int8 value + 128), d per block, and the
// sum of the int8 values per group of `group`.
void QuantizeActivations(ActRounding rounding, const float* x, int64_t n, int group, uint8_t* q, float* d, float* sums);
// Decodes a 1-D tensor (norm weights, biases) into `out`.
void DecodeVector(const Weight& w, std::vector<float>& out);
// ggml's RMS norm times `weight`, row by row: y = x / sqrt(mean(x²) + eps) · weight.
void RmsNorm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* y);

// Routing of every token from its router logits probs[n_tokens][n_expert]
// (turned into probabilities in place): the chosen experts in order of falling
// probability (ggml's argsort, descending) and their weights, renormalised over
// the chosen ones when config.expert_weights_norm says so.
void RouteTokens(const ModelConfig& config, float* probs, int64_t n_tokens, std::span<int32_t> chosen,
                 std::span<float> weights);

// gates[i] = sigmoid(logits[i]) as qwen2moe's graph computes it in ggml:
// silu(x) / x.
void SigmoidOfLogits(const float* logits, int64_t n, std::span<float> gates);

// y[i] = silu(gate[i]) · up[i] in place in gate, as ggml's swiglu.
void Swiglu(float* gate, const float* up, int64_t n);

// Causal multi-head attention within each sequence of seq_len rows:
// q [n_tokens][n_head*head_dim], k and v [n_tokens][n_head_kv*head_dim],
// out [n_tokens][n_head*head_dim].
void Attention(const ModelConfig& config, const float* q, const float* k, const float* v, int64_t n_tokens,
               int64_t seq_len, float* out, Buffers& buffers, int n_threads);
// Rotates the first n_rot dims of every head of x [n_tokens][n_heads*head_dim];
// row r is at position r % seq_len. `freq_factors` (n_rot/2 values) may be null.
void ApplyRope(const ModelConfig& config, float* x, int64_t n_tokens, int64_t seq_len, int64_t n_heads,
               const float* freq_factors, Buffers& buffers);

// e^x for the softmax, within 2 ulp of std::exp for x <= 0 (arguments below
// -87 give 0), written without calls or branches so that loops vectorize.
inline float ExpNonPositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  // e^x = 2^n · e^r with n = round(x / ln 2) and |r| <= ln(2)/2; ln 2 is
  // split in two parts so that n · ln 2 loses nothing.
  const float n = RoundToInt(x * 1.44269504f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

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
