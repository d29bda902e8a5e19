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
#include <vector>

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
  kRows,      // the hidden states of the rows that get logits
  kLogProbs,  // ScoreRows' log-probs
  kBaseLp,    // base log-probs attached from the host
  kCount
};

// One product y[n_tokens][w.n_out] = x[n_tokens][w.n_in] · Wᵀ (+ bias), or
// with `add` y += that (a residual: the product, bias included, is rounded
// to float before it is added, as the CPU adds a separate result).
struct TensorProduct {
  const Weight* w;
  const Weight* bias;  // optional
  Tensor y;
  bool add = false;
};

// The logits that ScoreRows scores: n_chunks chunks of `stride` rows of
// n_vocab, the first n_scored rows of each scored, row i against targets[i].
struct ScoreSpec {
  int64_t n_chunks = 0;
  int64_t stride = 0;
  int64_t n_scored = 0;
  int64_t n_vocab = 0;
  std::span<const int32_t> targets;
  Tensor base_lp;  // [n_chunks·n_scored][n_vocab], or a null handle: no KLD
};

// The first NaN or infinity that NoteNonFinite found.
struct NonFinite {
  int64_t tag = -1;
  int64_t index = -1;
  bool nan = false;
};

class Backend;

// Sums of xᵀx (an n_in x n_in matrix) kept where a backend computes them.
struct Gram {
  virtual ~Gram() = default;
};

// Receives, through Backend::Hook, each linear input of a pass as the
// backend holds it, to sum its second moments there (covariance.cc).
struct GramSink {
  virtual ~GramSink() = default;
  virtual void Add(Backend& backend, const Weight& w, int64_t expert, Tensor x, int64_t n_tokens) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // At least n floats of `slot`.
  virtual Tensor Scratch(Slot slot, int64_t n) = 0;
  // host[n] as a tensor: the CPU uses the host floats in place; a device
  // takes `slot` and copies them in when `copy_in` (else they are outputs).
  virtual Tensor Attach(Slot slot, float* host, int64_t n, bool copy_in) = 0;
  // Host memory for n floats that Attach(slot, ...) copies in fastest
  // (pinned on a device, the slot itself on the CPU); valid until the next call.
  virtual float* HostBuffer(Slot slot, int64_t n) = 0;
  // host[n] = x[n] (nothing to do when x is host itself).
  virtual void Download(Tensor x, int64_t n, float* host) = 0;
  // Notes the first NaN or infinity among x[n] under `tag`; of all noted
  // since the last TakeNonFinite, the lowest tag wins, then the lowest index.
  virtual void NoteNonFinite(Tensor x, int64_t n, int64_t tag) = 0;
  // The winner of the notes so far (false: none), and forgets them.
  virtual bool TakeNonFinite(NonFinite* first) = 0;
  // Whether TakeNonFinite waits for the device (then it is called once per
  // pass rather than once per layer).
  virtual bool DefersChecks() const = 0;

  // A hint that `weights` (the next block's; null entries skipped) come
  // after the work queued so far, so that a device may copy them while that
  // work runs. The CPU reads weights in place and ignores it.
  virtual void Prefetch([[maybe_unused]] std::span<Weight* const> weights) {}

  // y[rows][n] = ggml's RMS norm of x times `weight` (1-D, n values).
  virtual void RmsNorm(Tensor x, const Weight& weight, int64_t rows, int64_t n, float eps, Tensor y) = 0;
  // Products that share their input x (q/k/v, gate/up).
  virtual void MatMul(std::initializer_list<TensorProduct> products, Tensor x, int64_t n_tokens,
                      const RunOptions& options) = 0;
  // options.grams and options.hook, where given, with the input x of `w` (or
  // of its expert).
  virtual void Hook(const RunOptions& options, const Weight* w, int64_t expert, Tensor x, int64_t n_tokens) = 0;
  // A zeroed n_in x n_in Gram on this backend.
  virtual std::unique_ptr<Gram> MakeGram(int64_t n_in) = 0;
  // Upper triangle of gram (row-major) += xᵀx over the n_tokens rows of
  // x[n_tokens][n_in]: the products summed in float over this call's rows,
  // the calls' sums added in double (so long texts lose nothing).
  virtual void AddGram(Tensor x, int64_t n_tokens, int64_t n_in, Gram& gram, int n_threads) = 0;
  // The sums, row-major n_in x n_in doubles (the strict lower triangle
  // unspecified); gram's memory is released.
  virtual void TakeGram(Gram& gram, std::vector<double>* sums) = 0;
  // RoPE on the first n_rot dims of every head of x [n_tokens][n_heads*head_dim].
  virtual void Rope(Tensor x, int64_t n_tokens, int64_t seq_len, int64_t n_heads, const float* freq_factors) = 0;
  // x[n] rounded to F16 values (llama.cpp's F16 KV cache).
  virtual void RoundToF16(Tensor x, int64_t n) = 0;
  // Causal attention with GQA within each sequence of seq_len rows.
  virtual void Attention(Tensor q, Tensor k, Tensor v, int64_t n_tokens, int64_t seq_len, Tensor out,
                         const RunOptions& options) = 0;
  // gate[n] = silu(gate) · up.
  virtual void Swiglu(Tensor gate, Tensor up, int64_t n) = 0;
  // The down projection of a SwiGLU: Swiglu over gate/up [n_tokens][n_ff],
  // the hook with its result as the input of `hooked` (and `expert`), then
  // MatMul of `down` over it. gate's contents are undefined afterwards (a
  // device may never write them).
  virtual void SwigluMatMul(Tensor gate, Tensor up, int64_t n_tokens, const TensorProduct& down, const Weight* hooked,
                            int64_t expert, const RunOptions& options);

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

  // Log-softmax of the scored rows of `logits` into Slot::kLogProbs (rows
  // of n_vocab), and out[i] for each: NLL of targets[i], argmax, and the KLD
  // Σ exp(base)·(base − lp) when spec.base_lp is given.
  virtual void ScoreRows(Tensor logits, const ScoreSpec& spec, std::span<RowScore> out, int n_threads) = 0;
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
