// Internal: the operations that architectures' block functions are made of,
// over opaque tensors in a backend's memory, so that the same block functions
// run on the CPU (backend_cpu.cc, the reference) or on a GPU (cuda/). A block
// function never reads a Tensor's values: it passes handles from one
// operation to the next. Weights are passed as the file describes them
// (Weight); each backend decodes or uploads them as it needs.
#ifndef MIXQ_ENGINE_BACKEND_H_
#define MIXQ_ENGINE_BACKEND_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>

#include "engine/engine.h"

namespace mixq::engine {

struct Weight;

// A handle to floats in a backend's memory (host or device).
struct Tensor {
  void* handle = nullptr;
};

// Scratch tensors a backend keeps between calls, one per slot. Growing a slot
// may move it: take a slot's handle after its last growth in a block.
enum class Slot : uint8_t {
  kHidden,  // the hidden states that RunLayers uploads (devices only)
  kNorm,
  kQ,
  kK,
  kV,
  kAttn,
  kGate,
  kUp,
  kLogits,
  kProbs,
  kExpertIn,
  kExpertY,
  kExpertOut,
  kCount
};

// One product y[n_tokens][w.n_out] = x[n_tokens][w.n_in] · Wᵀ (+ bias).
struct TensorProduct {
  const Weight* w;
  const Weight* bias;  // optional
  Tensor y;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // At least n floats of `slot`.
  virtual Tensor Scratch(Slot slot, int64_t n) = 0;
  // host[n] as a tensor: the CPU uses the host floats in place; a device
  // takes `slot` and copies them in when `copy_in` (else they are outputs).
  virtual Tensor Attach(Slot slot, float* host, int64_t n, bool copy_in) = 0;
  // host[n] = x[n] (nothing to do when x is host itself).
  virtual void Download(Tensor x, int64_t n, float* host) = 0;
  // Index of the first NaN or infinity among x[n] and its value, or -1.
  virtual int64_t FirstNonFinite(Tensor x, int64_t n, float* value) = 0;

  // y[rows][n] = ggml's RMS norm of x times `weight` (1-D, n values).
  virtual void RmsNorm(Tensor x, const Weight& weight, int64_t rows, int64_t n, float eps, Tensor y) = 0;
  // Products that share their input x (q/k/v, gate/up).
  virtual void MatMul(std::initializer_list<TensorProduct> products, Tensor x, int64_t n_tokens,
                      const RunOptions& options) = 0;
  // options.hook, when there is one, with the input x of `w` (or of its expert).
  virtual void Hook(const RunOptions& options, const Weight* w, int64_t expert, Tensor x, int64_t n_tokens) = 0;
  // RoPE on the first n_rot dims of every head of x [n_tokens][n_heads*head_dim].
  virtual void Rope(Tensor x, int64_t n_tokens, int64_t seq_len, int64_t n_heads, const float* freq_factors) = 0;
  // x[n] rounded to F16 values (llama.cpp's F16 KV cache).
  virtual void RoundToF16(Tensor x, int64_t n) = 0;
  // Causal attention with GQA within each sequence of seq_len rows.
  virtual void Attention(Tensor q, Tensor k, Tensor v, int64_t n_tokens, int64_t seq_len, Tensor out,
                         const RunOptions& options) = 0;
  // gate[n] = silu(gate) · up.
  virtual void Swiglu(Tensor gate, Tensor up, int64_t n) = 0;
  // hidden[n] += delta[n].
  virtual void AddResidual(Tensor hidden, Tensor delta, int64_t n) = 0;

  // Routed experts. probs[n_tokens][n_expert] (router logits) to host-side
  // choices: chosen[n_tokens·k] and their weights, as MoeBlock describes.
  virtual void Route(Tensor probs, int64_t n_tokens, std::span<int32_t> chosen, std::span<float> weights) = 0;
  // gates[t] = sigmoid(logits[t]) for n_tokens logits, computed as ggml's
  // silu(x) / x (qwen2moe's shared-expert gate).
  virtual void SigmoidGates(Tensor logits, int64_t n_tokens, std::span<float> gates) = 0;
  // dst[i] = src[rows[i] / k] for the slots `rows` (rows of n floats).
  virtual void GatherRows(Tensor src, std::span<const int64_t> slots, int64_t k, int64_t n, Tensor dst) = 0;
  // out[slots[i]] = y[i] · weights[slots[i]] (rows of n floats).
  virtual void ScatterWeighted(Tensor y, std::span<const int64_t> slots, std::span<const float> weights, int64_t n,
                               Tensor out) = 0;
  // hidden[t] += Σ_r out[t·k + r], summed in order of rank, as ggml does.
  virtual void AddRanks(Tensor out, int64_t n_tokens, int64_t k, int64_t n, Tensor hidden) = 0;
};

// The CPU backend: the engine's reference kernels (kernels.cc, gemm.cc).
std::unique_ptr<Backend> MakeCpuBackend(const ModelConfig& config);
// The CUDA backend (cuda/), or NotSupported when this build has none or no
// GPU is usable.
Result<std::unique_ptr<Backend>> MakeCudaBackend(const ModelConfig& config, int64_t gpu_mem_bytes);
// Ok when the CUDA backend can run here, else NotSupported saying why.
Status CudaStatus();

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_BACKEND_H_
