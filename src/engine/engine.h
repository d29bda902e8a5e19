// engine: a forward pass for llama-family GGUF models, and what is built on
// it: perplexity/KLD evaluation as llama-perplexity computes it, base logits
// files, and importance-matrix collection as llama-imatrix does it. It runs on
// the CPU (the reference) or, in builds with MIXQ_CUDA, on a CUDA GPU
// (LoadOptions; backend.h, docs/gpu.md).
//
// Architectures: "llama" (Llama 2/3, Mistral: GQA, tied or untied output,
// rope_freqs factors, linear RoPE scaling; Mixtral: routed experts),
// "qwen2" (q/k/v biases, NeoX RoPE), "qwen3" (per-head q/k RMS norms, NeoX
// RoPE), "qwen3moe" (qwen3 with routed experts). Optional biases on any
// linear layer are applied when the file has them. Each architecture is one
// entry of architectures.cc (docs/extending.md).
//
// Weights stay in the GGUF mapping in their stored format (any format that
// src/formats can decode) and are dequantized one row block at a time (at most
// 64 MiB) into the packed layout of the engine's own matrix-product kernels:
// F32 (AVX-512, AVX2 or scalar), or, for Q4_K, Q5_K, Q6_K and Q8_0 with
// ggml-rounded activations, integer (AVX-512 VNNI or scalar) as llama.cpp
// multiplies them; the model is never converted to F32 as a whole. Whole
// chunks of tokens, several at once, go through each product.
//
// The forward pass is split so that measurements can reuse work:
//   Embed -> RunLayers(0, L) -> RunLayers(L, n_layer) -> Logits
// e.g. cache the hidden states entering layer L once, then rerun only layers
// L.. with a substituted weight (SetWeight). Hidden states are row-major
// [n_tokens][n_embd] floats for one sequence at positions 0..n_tokens-1.
//
// Thread safety: a Model runs one call at a time (it owns scratch buffers);
// several Models may share one GgufFile and run concurrently. The GgufFile
// must outlive every Model made from it.
#ifndef MIXQ_ENGINE_ENGINE_H_
#define MIXQ_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "quantize/quantize.h"
#include "tokenizer/tokenizer.h"

namespace mixq::engine {

// "llama, qwen2, ...", for messages.
std::string_view SupportedArchitectures();

// What a weight does in the forward pass.
// kSharedExpert: the expert every token passes through besides the routed
// ones, with its gate (qwen2moe's ffn_*_shexp).
enum class WeightPart { kEmbedding, kNorm, kAttention, kFfn, kRouter, kExperts, kSharedExpert, kOutput, kOther };
// "embedding", "norm", "attention", "ffn", "router", "experts", "shared expert", "output", "other".
std::string_view WeightPartName(WeightPart part);

struct WeightInfo {
  std::string name;
  std::string role;    // the name without "blk.N." and ".weight": "attn_q", "ffn_down_exps", "output", "attn_q.bias"
  int64_t layer = -1;  // its block; -1 outside the blocks
  WeightPart part = WeightPart::kOther;
  bool per_expert = false;  // one slice per routed expert, stacked along the last dimension
};

// The meaning of a tensor name in the engine's architectures' tensor tables;
// nullopt for names none of them has. Needs no model: plans and reports that
// hold only names use it.
std::optional<WeightInfo> DescribeWeight(std::string_view name);

struct ModelConfig {
  std::string arch;
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;  // per head, for q, k and v
  int64_t n_ff = 0;
  int64_t n_vocab = 0;
  int64_t n_rot = 0;  // rotated dims per head
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1/factor for linear scaling
  bool rope_neox = false;        // rotate (i, i + n_rot/2) pairs instead of (2i, 2i+1)
  bool tied_output = false;      // output projection is token_embd.weight
  // Routed experts (0: a dense feed-forward block).
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;         // experts per token
  int64_t n_ff_exp = 0;              // feed-forward width of one expert
  int64_t n_ff_shexp = 0;            // of the shared expert, for architectures that have one (qwen2moe)
  bool expert_weights_norm = false;  // routing weights renormalised over the chosen experts
};

// Called with the input of each linear layer during RunLayers/Logits: `x` is
// row-major [n_tokens][n_in] and valid only during the call. Weights that
// share an input (q/k/v, gate/up) get one call each. For a weight of routed
// experts, one call per expert that tokens were routed to, with `expert` its
// index and `x` the inputs of those tokens only; -1 for other weights.
using ActivationHook =
    std::function<void(const std::string& weight, int64_t expert, const float* x, int64_t n_tokens, int64_t n_in)>;

// How activations enter products with stored weights. kGgml rounds them the
// way ggml's CPU backend converts them for its dot products (F16 for F16
// weights, BF16 for BF16, Q8_0 blocks for 32-element quantized formats, Q8_K
// blocks for 256-element ones), so that results, KLD included, track
// llama.cpp's. kF32 keeps them exact (F32 weights are never rounded).
enum class Activations { kGgml, kF32 };

struct GramSink;  // internal (backend.h): input second moments summed on the pass's backend

struct RunOptions {
  int n_threads = 2;
  // > 0: the rows are independent sequences of seq_len tokens each (positions
  // restart at 0, no attention across them), so several chunks share one pass
  // over the weights. 0: all rows are one sequence.
  int64_t seq_len = 0;
  const ActivationHook* hook = nullptr;  // optional; sees activations before rounding
  GramSink* grams = nullptr;             // optional; LayerCovariances' accumulator
  Activations activations = Activations::kGgml;
};

// Where a Model runs its forward pass. The CPU is the reference; CUDA
// (builds with MIXQ_CUDA, docs/gpu.md) agrees with it to rounding.
enum class Device { kCpu, kCuda };
struct LoadOptions {
  Device device = Device::kCpu;
  // CUDA: most device memory that mixq allocates (weights, scratch, Grams),
  // besides a margin for the CUDA context (0: what the GPU has free).
  int64_t gpu_mem_bytes = 0;
};
// The smallest --gpu-mem the CLI takes; less is taken for a typing mistake.
inline constexpr int64_t kMinGpuMemBytes = int64_t{1} << 30;
// Whether this build has the CUDA backend and a GPU is usable, and if not,
// why not ("cuda usable" when it is).
bool CudaUsable();
std::string CudaStatusMessage();
// The device a "--device" value names: "cpu", "cuda" (NotSupported when it
// is not usable, saying why) or "auto"/"" (cuda when usable, else cpu).
Result<Device> ResolveDevice(std::string_view name);
std::string_view DeviceName(Device device);

class Model;

// One scored position of an eval pass: the NLL of its next token, the KLD
// from the base's log-probs (0 without a base) and the argmax of its logits.
struct RowScore {
  double nll = 0;
  double kld = 0;
  int32_t argmax = 0;
};
// The base log-probs a pass is scored against: another model's last
// ForwardScores (loaded on the same device), or rows in host memory.
struct ScoreBase {
  const Model* model = nullptr;
  const float* lp = nullptr;
};

class Model {
 public:
  // Reads the architecture metadata and checks every tensor the forward pass
  // needs (presence, shape, decodable format, every value finite: Corruption
  // names the tensor and index). NotSupported names the architecture and
  // lists the supported ones.
  static Result<Model> Load(const gguf::GgufFile& file, const LoadOptions& options = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const;
  const gguf::GgufFile& file() const;

  // Names of the matrices the forward pass multiplies with, in execution
  // order (blk.N.attn_q.weight ... output.weight, or token_embd.weight when
  // the output is tied).
  std::vector<std::string> LinearWeights() const;
  // Every tensor the forward pass reads, outside the blocks first, then block
  // by block, in the order of the architecture's tensor table.
  const std::vector<WeightInfo>& Weights() const;

  // Replaces one tensor of the file for later calls without touching the
  // file: `bytes` must hold the tensor's shape in `format` (any decodable
  // format, F32 included). InvalidArgument for unknown names, wrong sizes or
  // undecodable formats. The bytes are owned by the model.
  Status SetWeight(const std::string& name, const formats::Format& format, std::vector<uint8_t> bytes);
  Status SetWeightF32(const std::string& name, const std::vector<float>& values);
  void ClearWeight(const std::string& name);
  void ClearAllWeights();

  // hidden[n_tokens][n_embd] = token embeddings. InvalidArgument on ids
  // outside the vocabulary.
  Status Embed(std::span<const int32_t> tokens, float* hidden);
  // Runs layers [first, last) in place on hidden[n_tokens][n_embd].
  // REQUIRES: 0 <= first <= last <= n_layer; n_tokens a multiple of
  // options.seq_len when that is set (InvalidArgument otherwise).
  // Corruption, naming the layer, when the activations overflow to NaN or
  // infinity (Logits likewise for the logits).
  Status RunLayers(int64_t first, int64_t last, float* hidden, int64_t n_tokens, const RunOptions& options);
  // logits[n_tokens][n_vocab] from hidden states leaving the last layer
  // (final norm and output projection); `hidden` is not modified. With
  // logits == nullptr only the hook sees the projection's input.
  Status Logits(const float* hidden, int64_t n_tokens, float* logits, const RunOptions& options);

  // The whole pass: logits for positions logits_from..n_tokens-1 in
  // *logits ((n_tokens - logits_from) x n_vocab). With options.seq_len set,
  // positions logits_from..seq_len-1 of every sequence, sequence after
  // sequence. With layer_inputs, also the hidden states entering each layer
  // (n_layer + 1 entries; the last one enters the final norm).
  Status Forward(std::span<const int32_t> tokens, int64_t logits_from, std::vector<float>* logits,
                 const RunOptions& options, std::vector<std::vector<float>>* layer_inputs = nullptr);
  // The pass of eval: with options.seq_len > 0, the rows logits_from ..
  // seq_len - 2 of every sequence are scored against targets (their next
  // tokens, sequence after sequence): log-softmax, NLL, argmax and the KLD
  // from `base` (when it names one) into out[i]. Hidden states, logits and
  // log-probs stay in the backend's memory; only the per-row results come
  // back. The log-probs are kept until the next call (LastLogProbs, or as
  // another model's ScoreBase).
  Status ForwardScores(std::span<const int32_t> tokens, int64_t logits_from, std::span<const int32_t> targets,
                       const ScoreBase& base, std::span<RowScore> out, const RunOptions& options);
  // lp[rows][n_vocab] = the log-probs of the last ForwardScores.
  void LastLogProbs(std::vector<float>* lp);

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---- evaluation (perplexity, KLD) ----

// Tokens of a text as llama-perplexity sees it: one trailing '\n' removed,
// BOS first when the vocab adds it.
std::vector<int32_t> TokenizeForEval(const tokenizer::Tokenizer& tokenizer, std::string_view text);

// Base log-probabilities over the scored positions, saved once so that many
// candidates can be compared without rerunning the base model. Our own file
// ("MQBL") stores per position the exact next-token log-prob, the argmax id,
// and all log-probs quantized to 16 bits over [lp_min, 0] (2 bytes per vocab
// entry, half of raw f32 logits). The oracle's LGT2 files are read too.
class BaseLogits {
 public:
  static Result<BaseLogits> Open(const std::string& path);
  BaseLogits(BaseLogits&&) noexcept;
  BaseLogits& operator=(BaseLogits&&) noexcept;
  ~BaseLogits();

  int64_t n_vocab() const;
  int64_t n_ctx() const;
  int64_t n_chunks() const;
  bool bos_at_chunk_start() const;
  // The text tokens, n_chunks * n_ctx (before the BOS substitution).
  const std::vector<int32_t>& tokens() const;

 private:
  struct Impl;
  friend struct BaseAccess;
  explicit BaseLogits(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct EvalOptions {
  int64_t n_ctx = 512;
  int64_t n_chunks = -1;  // -1: every whole chunk
  int n_threads = 2;
  int32_t bos_id = -1;  // >= 0: replaces each chunk's first token (llama-perplexity)
  Activations activations = Activations::kGgml;
  std::string save_logits;  // non-empty: write this model's log-probs as a base file
  // Optional; called after each chunk.
  std::function<void(int64_t chunks_done, int64_t n_chunks, int64_t tokens_done)> on_progress;
};

struct KldStats {
  double kld_mean = 0, kld_stderr = 0;
  double kld_median = 0, kld_p90 = 0, kld_p95 = 0, kld_p99 = 0, kld_max = 0;
  double same_top = 0, same_top_stderr = 0;          // share of positions with the same argmax
  double ln_ppl_ratio = 0, ln_ppl_ratio_stderr = 0;  // mean of nll - nll_base (paired)
  double base_ppl = 0, base_ppl_stderr = 0;
  double dp_mean = 0, dp_stderr = 0, dp_rms = 0;  // p(next) - p_base(next)
};

struct EvalResult {
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;
  int64_t first_scored = 0;  // n_ctx / 2
  int64_t n_scored = 0;      // over all chunks
  double nll_mean = 0, nll_stderr = 0;
  double ppl = 0, ppl_stderr = 0;  // exp(nll_mean), ppl * nll_stderr
  std::vector<double> chunk_ppl;
  std::optional<KldStats> kld;
  double seconds = 0;            // forward passes and statistics
  double tokens_per_second = 0;  // n_chunks * n_ctx / seconds
  // The same after the first forward pass (which on a GPU uploads the
  // weights); 0 with a single pass.
  double steady_tokens_per_second = 0;
};

// Perplexity of `model` over non-overlapping chunks of options.n_ctx tokens
// (a trailing partial chunk is dropped), scoring positions n_ctx/2 .. n_ctx-2
// of each chunk. InvalidArgument when there is not one whole chunk.
Result<EvalResult> Evaluate(Model& model, std::span<const int32_t> tokens, const EvalOptions& options);
// The same, plus KLD against a base model evaluated chunk by chunk alongside.
Result<EvalResult> EvaluateVsModel(Model& model, Model& base, std::span<const int32_t> tokens,
                                   const EvalOptions& options);
// The same against saved base log-probs; the tokens, n_ctx and chunk count
// come from the file (options.n_chunks may lower the count). InvalidArgument
// when vocab sizes differ.
Result<EvalResult> EvaluateVsLogits(Model& model, const BaseLogits& base, const EvalOptions& options);

// ---- importance matrix ----

struct ImatrixOptions {
  int64_t n_ctx = 512;
  int64_t n_chunks = -1;
  int n_threads = 2;
  int32_t bos_id = -1;         // as in EvalOptions
  bool include_output = true;  // also output.weight (llama-imatrix --process-output)
  std::string dataset;         // recorded in imatrix.datasets
  std::function<void(int64_t chunks_done, int64_t n_chunks, int64_t tokens_done)> on_progress;
};

// Sums of squared input activations per input column, and token counts, for
// every linear weight in blk.* (and output.weight), over every token of each
// chunk, as llama-imatrix collects them. Tensors of routed experts get one
// slice of sums and one count per expert, from the tokens routed to it; an
// expert no token reached keeps zeros (llama-quantize then uses 1).
Result<quantize::Imatrix> CollectImatrix(Model& model, std::span<const int32_t> tokens, const ImatrixOptions& options);

// ---- input covariances ----

struct CovarianceOptions {
  int64_t n_ctx = 512;
  int64_t n_chunks = -1;  // -1: every whole chunk
  int n_threads = 2;
  int32_t bos_id = -1;  // as in EvalOptions
};

// H = Σ x xᵀ of the input of every linear weight (of each routed expert's
// slice: over the tokens routed to it), one layer per pass (pass L
// runs layer L; pass n_layer the output projection's input), over every token
// of each chunk, the way CollectImatrix sees them: its diagonal is the
// imatrix. The tokens go through `model` as it is when each pass runs (its
// file's weights unless SetWeight replaced some). The products xᵀx are summed
// where the model runs (on the GPU for a CUDA model). Holds the hidden states
// of all tokens (n_tokens x n_embd floats) and one pass's covariances. `model`
// must outlive the source.
Result<std::unique_ptr<quantize::CovarianceSource>> LayerCovariances(Model& model, std::span<const int32_t> tokens,
                                                                     const CovarianceOptions& options);

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_ENGINE_H_
