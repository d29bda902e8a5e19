// The CUDA backend: hidden states and scratch stay in device memory; matrix
// products run through cuBLAS in F16 with F32 accumulation, their inputs
// rounded first as the CPU rounds them (Q8_0/Q8_K blocks for quantized
// weights under Activations::kGgml, then F16); weights are
// uploaded as F16 (an F16 file's bytes as they are, other formats decoded on
// the host) through pinned staging on a stream of their own, the next
// block's while the current one runs (Prefetch), and kept in a cache, least
// recently used first out, so that a model larger than --gpu-mem streams its
// layers. Everything mixq allocates on the device (weights, scratch, Grams)
// stays under --gpu-mem less a margin for the CUDA context. Attention is two
// batched cuBLAS products per group of sequences around a causal softmax
// kernel. Routing choices are made on the
// host from the device's router logits (RouteTokens, as on the CPU), and
// so are qwen2moe's shared-expert gates (SigmoidOfLogits).
//
// A CUDA error is not recoverable here: it is reported in one line and mixq
// exits with status 4 (internal error).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "base/parallel.h"
#include "engine/backend.h"
#include "engine/cuda/kernels.h"
#include "engine/internal.h"

namespace mixq::engine {
namespace {

using cuda::Half;

// Device memory that mixq does not allocate itself (the CUDA context and
// cuBLAS's workspace, ~600 MiB on an H200 with CUDA 13), kept out of
// --gpu-mem.
constexpr int64_t kContextMargin = int64_t{768} << 20;
// Pinned staging of weight uploads: two slices of this size.
constexpr size_t kSliceBytes = size_t{64} << 20;

[[noreturn]] void Fail(const char* what, const char* detail) {
  std::fprintf(stderr, "mixq: error: CUDA error in %s: %s\n", what, detail);
  std::exit(4);
}
// What one step needs does not fit --gpu-mem: exit 3, as any budget that
// cannot be met.
[[noreturn]] void FailBudget(const char* what, size_t bytes, int64_t used, int64_t limit) {
  constexpr double kGiB = 1 << 30;
  std::fprintf(stderr,
               "mixq: error: --gpu-mem is too small: %s needs %.2f GiB more with %.2f GiB held in use, over the "
               "%.2f GiB that mixq may take (--gpu-mem less %.2f GiB for the CUDA context)\n",
               what, static_cast<double>(bytes) / kGiB, static_cast<double>(used) / kGiB,
               static_cast<double>(limit) / kGiB, static_cast<double>(kContextMargin) / kGiB);
  std::exit(3);
}
void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) Fail(what, cudaGetErrorString(e));
}
void Check(cublasStatus_t e, const char* what) {
  if (e != CUBLAS_STATUS_SUCCESS) Fail(what, cublasGetStatusString(e));
}

float* F(Tensor t) { return static_cast<float*>(t.handle); }

class CudaBackend;

// The device memory that the process's CUDA backends hold (scratch, Grams,
// weight blocks). Each backend keeps it under its own limit, shedding
// weights (its own first) to make room.
struct DeviceMemory {
  int64_t used = 0;
  std::vector<CudaBackend*> backends;
};
DeviceMemory& Memory() {
  static DeviceMemory memory;
  return memory;
}

// Device memory that grows on demand and is never shrunk, counted in Memory().
class DeviceBuffer {
 public:
  explicit DeviceBuffer(CudaBackend* owner) : owner_(owner) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    Memory().used -= static_cast<int64_t>(bytes_);
  }
  void* Get(size_t bytes);  // after CudaBackend
  void Release() {
    if (ptr_ != nullptr) Check(cudaFree(ptr_), "cudaFree");
    Memory().used -= static_cast<int64_t>(bytes_);
    ptr_ = nullptr;
    bytes_ = 0;
  }

 private:
  CudaBackend* owner_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

template <size_t... I>
std::array<DeviceBuffer, sizeof...(I)> MakeBuffers(CudaBackend* owner, std::index_sequence<I...>) {
  return {{(static_cast<void>(I), DeviceBuffer(owner))...}};
}

// Gram sums die before their backend (covariance.cc's sink holds the model).
struct CudaGram final : Gram {
  explicit CudaGram(CudaBackend* owner) : sums(owner) {}
  int64_t n_in = 0;
  DeviceBuffer sums;  // n_in x n_in doubles
};

// Pinned host memory that grows on demand.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }
  void* Get(size_t bytes) {
    if (bytes > bytes_) {
      if (ptr_ != nullptr) Check(cudaFreeHost(ptr_), "cudaFreeHost");
      ptr_ = nullptr;
      Check(cudaMallocHost(&ptr_, bytes), "cudaMallocHost");
      bytes_ = bytes;
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& config, int64_t limit) : config_(config), limit_(limit) {
    Check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    Check(cudaStreamCreateWithFlags(&upload_, cudaStreamNonBlocking), "cudaStreamCreate");
    for (size_t s = 0; s < pinned_slices_.size(); ++s) {
      Check(cudaMallocHost(&pinned_slices_[s], kSliceBytes), "cudaMallocHost");
      Check(cudaEventCreateWithFlags(&slice_free_[s], cudaEventDisableTiming), "cudaEventCreate");
    }
    Memory().backends.push_back(this);
    Check(cublasCreate(&blas_), "cublasCreate");
    Check(cublasSetStream(blas_, stream_), "cublasSetStream");
    Check(cudaMalloc(&flag_, sizeof(unsigned long long)), "cudaMalloc");
    Check(cudaMemset(flag_, 0xFF, sizeof *flag_), "cudaMemset");
    Check(cudaMallocHost(&flag_host_, sizeof *flag_host_), "cudaMallocHost");
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cudaStreamSynchronize(upload_);
    for (auto& [key, c] : cache_) FreeBlock(c.block);
    for (Block& b : free_) FreeBlock(b);
    std::erase(Memory().backends, this);
    for (size_t s = 0; s < pinned_slices_.size(); ++s) {
      cudaFreeHost(pinned_slices_[s]);
      cudaEventDestroy(slice_free_[s]);
    }
    cudaStreamDestroy(upload_);
    cudaFree(flag_);
    cudaFreeHost(flag_host_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  Tensor Scratch(Slot slot, int64_t n) override {
    return {slots_[static_cast<size_t>(slot)].Get(static_cast<size_t>(n) * sizeof(float))};
  }
  Tensor Attach(Slot slot, float* host, int64_t n, bool copy_in) override {
    const Tensor t = Scratch(slot, n);
    if (copy_in) {
      Check(cudaMemcpyAsync(t.handle, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
    }
    return t;
  }
  float* HostBuffer(Slot slot, int64_t n) override {
    return static_cast<float*>(pinned_[static_cast<size_t>(slot)].Get(static_cast<size_t>(n) * sizeof(float)));
  }
  void Download(Tensor x, int64_t n, float* host) override {
    Check(cudaMemcpyAsync(host, x.handle, n * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download");
    Check(cudaStreamSynchronize(stream_), "download");
  }
  // The flag holds the smallest (tag, index, not-NaN) key noted; all ones
  // when none is.
  void NoteNonFinite(Tensor x, int64_t n, int64_t tag) override { cuda::NoteNonFinite(F(x), n, tag, flag_, stream_); }
  bool TakeNonFinite(NonFinite* first) override {
    Check(cudaMemcpyAsync(flag_host_, flag_, sizeof *flag_, cudaMemcpyDeviceToHost, stream_), "download");
    Check(cudaStreamSynchronize(stream_), "TakeNonFinite");
    const unsigned long long key = *flag_host_;
    if (key == std::numeric_limits<unsigned long long>::max()) return false;
    Check(cudaMemsetAsync(flag_, 0xFF, sizeof *flag_, stream_), "cudaMemset");
    *first = {static_cast<int64_t>(key >> cuda::kTagShift),
              static_cast<int64_t>((key & ((1ull << cuda::kTagShift) - 1)) >> 1), (key & 1) == 0};
    return true;
  }
  bool DefersChecks() const override { return true; }

  void Prefetch(std::span<Weight* const> weights) override;
  void RmsNorm(Tensor x, const Weight& weight, int64_t rows, int64_t n, float eps, Tensor y) override {
    Cached& w = Lookup(weight, false);
    cuda::RmsNorm(F(x), static_cast<const float*>(w.block.ptr), rows, n, eps, F(y), stream_);
    Used(w);
  }
  void MatMul(std::initializer_list<TensorProduct> products, Tensor x, int64_t n_tokens,
              const RunOptions& options) override {
    const int64_t n_in = products.begin()->w->n_in;
    const size_t n = static_cast<size_t>(n_tokens * n_in);
    const bool any_split = std::any_of(products.begin(), products.end(), [&](const TensorProduct& p) {
      return RoundingOf(*p.w, options) != ActRounding::kF16;
    });
    Half* xh = static_cast<Half*>(half_x_.Get((any_split ? 2 : 1) * n * sizeof(Half)));
    Half* xl = xh + n;
    ++use_;  // the weights of these products stay cached while they run
    bool prepared = false;
    ActRounding done = ActRounding::kNone;
    bool split = false;
    for (const TensorProduct& p : products) {
      // Activations rounded as the CPU rounds them for this weight (ggml's
      // vec_dot types), then to F16 for the product: as two halves unless
      // the rounding was to F16 itself.
      const ActRounding rounding = RoundingOf(*p.w, options);
      if (!prepared || rounding != done) {
        split = rounding != ActRounding::kF16;
        PrepareInput(F(x), rounding, n_tokens * n_in, xh, split ? xl : nullptr);
        prepared = true;
        done = rounding;
      }
      Product(p, xh, split ? xl : nullptr, n_tokens);
    }
  }
  // Where the down projection's input needs no rounding but F16's and no
  // hook sees it, silu(gate)·up goes straight to F16 (what MatMul would
  // compute from the float result, without writing it).
  void SwigluMatMul(Tensor gate, Tensor up, int64_t n_tokens, const TensorProduct& down, const Weight* hooked,
                    int64_t expert, const RunOptions& options) override {
    const ActRounding rounding = RoundingOf(*down.w, options);
    if ((hooked != nullptr && (options.hook != nullptr || options.grams != nullptr)) || rounding != ActRounding::kF16 ||
        SplitInHalves(*down.w)) {
      Backend::SwigluMatMul(gate, up, n_tokens, down, hooked, expert, options);
      return;
    }
    const int64_t n = n_tokens * down.w->n_in;
    Half* xh = static_cast<Half*>(half_x_.Get(static_cast<size_t>(n) * sizeof(Half)));
    ++use_;
    cuda::SwigluToHalf(F(gate), F(up), n, xh, stream_);
    Product(down, xh, nullptr, n_tokens);
  }
  void Hook(const RunOptions& options, const Weight* w, int64_t expert, Tensor x, int64_t n_tokens) override {
    if (w == nullptr) return;
    if (options.grams != nullptr) options.grams->Add(*this, *w, expert, x, n_tokens);
    if (options.hook == nullptr) return;
    host_.resize(static_cast<size_t>(n_tokens * w->n_in));
    Download(x, n_tokens * w->n_in, host_.data());
    engine::Hook(options, w, expert, host_.data(), n_tokens);
  }
  // Sums in double on the device; each call's products in one cublasSsyrk
  // (F32, no tensor-op rounding), which writes the row-major upper triangle
  // as the column-major lower one.
  std::unique_ptr<Gram> MakeGram(int64_t n_in) override {
    auto gram = std::make_unique<CudaGram>(this);
    gram->n_in = n_in;
    gram->sums.Get(static_cast<size_t>(n_in * n_in) * sizeof(double));
    Check(cudaMemsetAsync(gram->sums.Get(0), 0, static_cast<size_t>(n_in * n_in) * sizeof(double), stream_),
          "cudaMemset");
    return gram;
  }
  void AddGram(Tensor x, int64_t n_tokens, int64_t n_in, Gram& gram, int) override {
    float* products = static_cast<float*>(gram_products_.Get(static_cast<size_t>(n_in * n_in) * sizeof(float)));
    const float one = 1.0f, zero = 0.0f;
    Check(cublasSsyrk(blas_, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(n_in), static_cast<int>(n_tokens),
                      &one, F(x), static_cast<int>(n_in), &zero, products, static_cast<int>(n_in)),
          "cublasSsyrk");
    cuda::AddLowerTriangle(products, n_in, static_cast<double*>(static_cast<CudaGram&>(gram).sums.Get(0)), stream_);
  }
  void TakeGram(Gram& gram, std::vector<double>* sums) override {
    CudaGram& g = static_cast<CudaGram&>(gram);
    sums->resize(static_cast<size_t>(g.n_in * g.n_in));
    Check(cudaMemcpyAsync(sums->data(), g.sums.Get(0), sums->size() * sizeof(double), cudaMemcpyDeviceToHost, stream_),
          "download");
    Check(cudaStreamSynchronize(stream_), "TakeGram");
    g.sums.Release();
  }
  void Rope(Tensor x, int64_t n_tokens, int64_t seq_len, int64_t n_heads, const float* freq_factors) override {
    const int64_t half = config_.n_rot / 2;
    RopeTables(seq_len, freq_factors);
    cuda::Rope(F(x), static_cast<float*>(rope_cos_.Get(0)), static_cast<float*>(rope_sin_.Get(0)), n_tokens, seq_len,
               n_heads, config_.head_dim, half, config_.rope_neox, stream_);
  }
  void RoundToF16(Tensor x, int64_t n) override { cuda::RoundToHalf(F(x), n, stream_); }
  void Attention(Tensor q, Tensor k, Tensor v, int64_t n_tokens, int64_t seq_len, Tensor out,
                 const RunOptions&) override;
  void Swiglu(Tensor gate, Tensor up, int64_t n) override { cuda::Swiglu(F(gate), F(up), n, stream_); }

  void Route(Tensor probs, int64_t n_tokens, std::span<int32_t> chosen, std::span<float> weights) override {
    host_.resize(static_cast<size_t>(n_tokens * config_.n_expert));
    Download(probs, n_tokens * config_.n_expert, host_.data());
    RouteTokens(config_, host_.data(), n_tokens, chosen, weights);
  }
  void SigmoidGates(Tensor logits, int64_t n_tokens, std::span<float> gates) override {
    host_.resize(static_cast<size_t>(n_tokens));
    Download(logits, n_tokens, host_.data());
    SigmoidOfLogits(host_.data(), n_tokens, gates);
  }
  void GatherRows(Tensor src, std::span<const int64_t> slots, int64_t k, int64_t n, Tensor dst) override {
    const int64_t* s = UploadSlots(slots);
    cuda::GatherRows(F(src), s, static_cast<int64_t>(slots.size()), k, n, F(dst), stream_);
  }
  void ScatterWeighted(Tensor y, std::span<const int64_t> slots, std::span<const float> weights, int64_t n,
                       Tensor out) override {
    const int64_t* s = UploadSlots(slots);
    std::vector<float> w(slots.size());
    for (size_t i = 0; i < slots.size(); ++i) w[i] = weights[slots[i]];
    float* wd = static_cast<float*>(slot_weights_.Get(w.size() * sizeof(float)));
    Check(cudaMemcpyAsync(wd, w.data(), w.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
    cuda::ScatterWeighted(F(y), s, wd, static_cast<int64_t>(slots.size()), n, F(out), stream_);
  }
  void AddRanks(Tensor out, int64_t n_tokens, int64_t k, int64_t n, Tensor hidden) override {
    cuda::AddRanks(F(out), n_tokens, k, n, F(hidden), stream_);
  }
  void ScoreRows(Tensor logits, const ScoreSpec& spec, std::span<RowScore> out, int n_threads) override;

  // Adds `bytes` of scratch to Memory(), shedding weights to keep it under
  // the limit; exits (FailBudget) when even that cannot.
  void Claim(size_t bytes, const char* what);
  // Frees one weight block: an evicted one, else the least recently used
  // weight not in the running product. False when there is none.
  bool Shed();

 private:
  // Device memory of one weight, and the events that order its reuse:
  // `ready` when its upload is done, `done` when the last kernel that read
  // it is (a block is reused for weights of its size, never freed while the
  // model streams).
  struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
    cudaEvent_t ready = nullptr;
    cudaEvent_t done = nullptr;
  };
  struct Cached {
    Block block;
    uint64_t last_use = 0;
    bool waited = false;  // stream_ waits for `ready` once
  };
  // A weight's device copy: its data, generation and form (matrix or vector).
  using Key = std::tuple<const uint8_t*, uint64_t, bool>;

  // The copy of `w` (uploaded now when missing) for a kernel about to be
  // queued on stream_; call Used once that kernel is queued.
  Cached& Lookup(const Weight& w, bool matrix);
  void Used(const Cached& c) { Check(cudaEventRecord(c.block.done, stream_), "cudaEventRecord"); }
  // The copy of `w`, its upload queued when missing; null when no room can
  // be made without evicting weights used at or after `protect`.
  Cached* Fetch(const Weight& w, bool matrix, uint64_t protect);
  std::optional<Block> TakeBlock(size_t bytes, uint64_t protect);
  // Moves the least recently used weight used before `protect` to free_.
  bool Evict(uint64_t protect);
  void FreeBlock(Block& b);
  void Upload(const Weight& w, bool matrix, const Block& b);
  static ActRounding RoundingOf(const Weight& w, const RunOptions& options) {
    return options.activations == Activations::kGgml ? RoundingFor(*w.format) : ActRounding::kNone;
  }
  // The CPU multiplies exact values: a quantized block's d·q, BF16 or F32
  // weights, by activations rounded to Q8 blocks, BF16 or not at all. F16
  // copies of those lose bits (22 of 24 are kept as two F16 halves, w = hi +
  // lo, and the same for the input), so only an F16 weight with its
  // F16-rounded input (ggml's activations) is one product.
  static bool SplitInHalves(const Weight& w) { return w.format->name != "F16"; }
  static size_t MatrixBytes(const Weight& w, bool matrix) {
    const size_t n = static_cast<size_t>(w.n_in * w.n_out);
    if (!matrix) return n * sizeof(float);
    return n * sizeof(Half) * (SplitInHalves(w) ? 2 : 1);
  }
  // p.y (+)= x · Wᵀ (+ bias), x = xh + xl (xl null: x is exact in F16). The
  // product of two split operands is hi·hi + lo·hi + hi·lo (lo·lo is below
  // F32's rounding). A residual without bias is accumulated by cuBLAS (beta =
  // 1, as the CPU's add).
  void Product(const TensorProduct& p, const Half* xh, const Half* xl, int64_t n_tokens) {
    const int64_t n_out = p.w->n_out;
    const bool accumulate = p.add && p.bias == nullptr;
    float* y = F(p.y);
    if (p.add && !accumulate)
      y = static_cast<float*>(added_.Get(static_cast<size_t>(n_tokens * n_out) * sizeof(float)));
    const Cached& w = Lookup(*p.w, true);
    const int n_in = static_cast<int>(p.w->n_in);
    const Half* wh = static_cast<const Half*>(w.block.ptr);
    auto gemm = [&](const Half* weights, const Half* input, float beta) {
      const float one = 1.0f;
      Check(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n_out), static_cast<int>(n_tokens), n_in,
                         &one, weights, CUDA_R_16F, n_in, input, CUDA_R_16F, n_in, &beta, y, CUDA_R_32F,
                         static_cast<int>(n_out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
    };
    gemm(wh, xh, accumulate ? 1.0f : 0.0f);
    if (SplitInHalves(*p.w)) gemm(wh + static_cast<size_t>(n_out) * static_cast<size_t>(n_in), xh, 1.0f);
    if (xl != nullptr) gemm(wh, xl, 1.0f);
    Used(w);
    if (p.bias != nullptr) {
      const Cached& bias = Lookup(*p.bias, false);
      cuda::AddBias(y, static_cast<const float*>(bias.block.ptr), n_tokens, n_out, stream_);
      Used(bias);
    }
    if (p.add && !accumulate) cuda::Add(F(p.y), y, n_tokens * n_out, stream_);
  }
  // xh = x rounded as `rounding` says, in F16; with xl, the two halves of it.
  void PrepareInput(const float* x, ActRounding rounding, int64_t n, Half* xh, Half* xl) {
    const float* r = x;
    if (rounding != ActRounding::kNone && rounding != ActRounding::kF16) {
      float* rounded = static_cast<float*>(rounded_.Get(static_cast<size_t>(n) * sizeof(float)));
      if (rounding == ActRounding::kQ8_0) cuda::RoundQ8_0(x, n, rounded, stream_);
      if (rounding == ActRounding::kQ8_K) cuda::RoundQ8_K(x, n, rounded, stream_);
      if (rounding == ActRounding::kBF16) cuda::RoundBf16(x, n, rounded, stream_);
      r = rounded;
    }
    if (xl != nullptr) {
      cuda::SplitHalf(r, n, xh, xl, stream_);
    } else {
      cuda::ToHalf(r, n, xh, stream_);
    }
  }
  void RopeTables(int64_t seq_len, const float* freq_factors);
  const int64_t* UploadSlots(std::span<const int64_t> slots) {
    int64_t* d = static_cast<int64_t*>(slot_ids_.Get(slots.size() * sizeof(int64_t)));
    Check(cudaMemcpyAsync(d, slots.data(), slots.size() * sizeof(int64_t), cudaMemcpyHostToDevice, stream_), "upload");
    return d;
  }

  const ModelConfig& config_;
  const int64_t limit_;  // bytes of Memory() this backend allows
  cudaStream_t stream_ = nullptr;
  cudaStream_t upload_ = nullptr;  // weight uploads
  // Pinned staging for uploads, used in turn; slice_free_[s] when slice s's
  // copy to the device is done.
  std::array<void*, 2> pinned_slices_{};
  std::array<cudaEvent_t, 2> slice_free_{};
  std::array<DeviceBuffer, 2> device_slices_ = MakeBuffers(this, std::make_index_sequence<2>());  // F32 to convert
  size_t next_slice_ = 0;
  cublasHandle_t blas_ = nullptr;
  unsigned long long* flag_ = nullptr;       // NoteNonFinite's, on the device
  unsigned long long* flag_host_ = nullptr;  // pinned
  std::array<DeviceBuffer, static_cast<size_t>(Slot::kCount)> slots_ =
      MakeBuffers(this, std::make_index_sequence<static_cast<size_t>(Slot::kCount)>());
  std::array<PinnedBuffer, static_cast<size_t>(Slot::kCount)> pinned_;
  DeviceBuffer half_x_{this}, rounded_{this}, half_q_{this}, half_k_{this}, half_v_{this}, scores_{this}, probs_{this},
      pointers_{this};
  DeviceBuffer gram_products_{this};  // one AddGram call's xᵀx in float
  DeviceBuffer rope_cos_{this}, rope_sin_{this}, slot_ids_{this}, slot_weights_{this}, targets_{this},
      row_results_{this}, added_{this};
  PinnedBuffer row_results_host_;
  // Attention's pointer arrays as last uploaded, and what they were built from.
  std::vector<const void*> attention_ptrs_;
  std::tuple<const void*, const void*, const void*, const void*, const void*, const void*, int64_t, int64_t, int64_t>
      attention_key_{};
  int64_t rope_seq_len_ = -1;
  const float* rope_factors_ = nullptr;
  std::vector<float> host_;
  std::map<Key, Cached> cache_;
  std::vector<Block> free_;  // evicted weights' blocks
  uint64_t use_ = 0;
  uint64_t prefetch_mark_ = 0;  // use_ at the last Prefetch
  const int n_threads_ = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
};

CudaBackend::Cached& CudaBackend::Lookup(const Weight& w, bool matrix) {
  Cached* c = Fetch(w, matrix, use_);
  if (c == nullptr) {
    const size_t bytes = MatrixBytes(w, matrix);
    FailBudget(("weight '" + w.name + "'").c_str(), bytes, Memory().used, limit_);
  }
  c->last_use = use_;
  if (!c->waited) {
    Check(cudaStreamWaitEvent(stream_, c->block.ready, 0), "cudaStreamWaitEvent");
    c->waited = true;
  }
  return *c;
}

CudaBackend::Cached* CudaBackend::Fetch(const Weight& w, bool matrix, uint64_t protect) {
  const Key key{w.data, w.generation, matrix};
  auto it = cache_.find(key);
  if (it != cache_.end()) return &it->second;
  const size_t bytes = MatrixBytes(w, matrix);
  std::optional<Block> block = TakeBlock(bytes, protect);
  if (!block) return nullptr;
  Upload(w, matrix, *block);
  return &cache_.emplace(key, Cached{*block, use_, false}).first->second;
}

// Weights of one shape follow each other through the layers, so an evicted
// block is kept for the next weight of its size: no cudaMalloc or cudaFree
// (which waits for the whole device) while a model streams.
std::optional<CudaBackend::Block> CudaBackend::TakeBlock(size_t bytes, uint64_t protect) {
  DeviceMemory& memory = Memory();
  for (;;) {
    auto same = std::find_if(free_.begin(), free_.end(), [&](const Block& b) { return b.bytes == bytes; });
    if (same != free_.end()) {
      const Block b = *same;
      free_.erase(same);
      return b;
    }
    if (memory.used + static_cast<int64_t>(bytes) <= limit_) {
      Block b;
      b.bytes = bytes;
      Check(cudaMalloc(&b.ptr, bytes), "cudaMalloc (weights)");
      Check(cudaEventCreateWithFlags(&b.ready, cudaEventDisableTiming), "cudaEventCreate");
      Check(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming), "cudaEventCreate");
      memory.used += static_cast<int64_t>(bytes);
      return b;
    }
    if (Evict(protect)) continue;
    if (!free_.empty()) {
      FreeBlock(free_.front());
      free_.erase(free_.begin());
      continue;
    }
    bool shed = false;
    for (CudaBackend* other : memory.backends) {
      if (other != this && other->Shed()) {
        shed = true;
        break;
      }
    }
    if (!shed) return std::nullopt;
  }
}

bool CudaBackend::Evict(uint64_t protect) {
  auto oldest = cache_.end();
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->second.last_use < protect && (oldest == cache_.end() || it->second.last_use < oldest->second.last_use)) {
      oldest = it;
    }
  }
  if (oldest == cache_.end()) return false;
  free_.push_back(oldest->second.block);
  cache_.erase(oldest);
  return true;
}

void CudaBackend::FreeBlock(Block& b) {
  cudaFree(b.ptr);  // waits for the device: no kernel reads it any more
  cudaEventDestroy(b.ready);
  cudaEventDestroy(b.done);
  Memory().used -= static_cast<int64_t>(b.bytes);
  b = {};
}

bool CudaBackend::Shed() {
  if (free_.empty() && !Evict(use_)) return false;
  FreeBlock(free_.back());
  free_.pop_back();
  return true;
}

void CudaBackend::Claim(size_t bytes, const char* what) {
  DeviceMemory& memory = Memory();
  while (memory.used + static_cast<int64_t>(bytes) > limit_) {
    bool shed = Shed();
    for (size_t i = 0; !shed && i < memory.backends.size(); ++i) {
      if (memory.backends[i] != this) shed = memory.backends[i]->Shed();
    }
    if (!shed) FailBudget(what, bytes, memory.used, limit_);
  }
  memory.used += static_cast<int64_t>(bytes);
}

void* DeviceBuffer::Get(size_t bytes) {
  if (bytes > bytes_) {
    Release();
    owner_->Claim(bytes, "scratch");
    Check(cudaMalloc(&ptr_, bytes), "cudaMalloc (scratch)");
    bytes_ = bytes;
  }
  return ptr_;
}

// Queued on upload_ after the work queued so far on stream_: the copies wait
// only for the kernels that read the blocks they overwrite. Routed experts
// are left for the layer itself (routing picks them); a 2-D weight is taken
// for a matrix, a 1-D one for a vector, as the blocks use them.
void CudaBackend::Prefetch(std::span<Weight* const> weights) {
  const uint64_t protect = prefetch_mark_;  // what the block just queued reads
  prefetch_mark_ = ++use_;
  for (const Weight* w : weights) {
    if (w == nullptr || w->n_expert > 1) continue;
    Cached* c = Fetch(*w, w->n_out > 1, protect);
    if (c == nullptr) return;  // the rest are uploaded when used
    c->last_use = use_;
  }
}

// In slices through pinned memory, two in turn, so that the host fills one
// (copying from the file, or decoding to F32 on all threads) while the other
// goes to the device. An F16 matrix is copied as stored; anything else is
// decoded and, for a matrix, split into its two F16 halves on the device (hi
// in the block's first half, lo in its second). The file's pages are released
// once read.
void CudaBackend::Upload(const Weight& w, bool matrix, const Block& b) {
  Check(cudaStreamWaitEvent(upload_, b.done, 0), "cudaStreamWaitEvent");  // a reused block's last reader
  const bool raw = matrix && !SplitInHalves(w);
  const int64_t slice_row = raw ? w.row_bytes : w.n_in * static_cast<int64_t>(sizeof(float));
  const int64_t rows_per_slice = std::max<int64_t>(1, static_cast<int64_t>(kSliceBytes) / slice_row);
  if (slice_row > static_cast<int64_t>(kSliceBytes)) Fail("upload", "a weight row larger than the staging slice");
  for (int64_t r0 = 0; r0 < w.n_out; r0 += rows_per_slice) {
    const int64_t rows = std::min(rows_per_slice, w.n_out - r0);
    const size_t s = next_slice_;
    next_slice_ = (next_slice_ + 1) % pinned_slices_.size();
    Check(cudaEventSynchronize(slice_free_[s]), "upload");
    uint8_t* host = static_cast<uint8_t*>(pinned_slices_[s]);
    const uint8_t* src = w.data + r0 * w.row_bytes;
    ParallelFor(rows, 16, n_threads_, [&](int64_t begin, int64_t end) {
      if (raw) {
        std::memcpy(host + begin * w.row_bytes, src + begin * w.row_bytes,
                    static_cast<size_t>((end - begin) * w.row_bytes));
        return;
      }
      for (int64_t r = begin; r < end; ++r) {
        w.format->dequantize_row(src + r * w.row_bytes, reinterpret_cast<float*>(host) + r * w.n_in, w.n_in);
      }
    });
    w.ReleasePages({src, static_cast<size_t>(rows * w.row_bytes)});
    const size_t n = static_cast<size_t>(rows * slice_row);
    uint8_t* dst = static_cast<uint8_t*>(b.ptr);
    if (raw || !matrix) {
      Check(cudaMemcpyAsync(dst + r0 * slice_row, host, n, cudaMemcpyHostToDevice, upload_), "upload");
    } else {
      float* stage = static_cast<float*>(device_slices_[s].Get(kSliceBytes));
      Check(cudaMemcpyAsync(stage, host, n, cudaMemcpyHostToDevice, upload_), "upload");
      Half* hi = reinterpret_cast<Half*>(dst);
      Half* lo = hi + static_cast<size_t>(w.n_out) * static_cast<size_t>(w.n_in);
      cuda::SplitHalf(stage, rows * w.n_in, hi + r0 * w.n_in, lo + r0 * w.n_in, upload_);
    }
    Check(cudaEventRecord(slice_free_[s], upload_), "cudaEventRecord");
  }
  Check(cudaEventRecord(b.ready, upload_), "cudaEventRecord");
}

// The CPU's tables (ApplyRope), computed the same way on the host.
void CudaBackend::RopeTables(int64_t seq_len, const float* freq_factors) {
  if (seq_len == rope_seq_len_ && freq_factors == rope_factors_) return;
  const int64_t half = config_.n_rot / 2;
  std::vector<float> cs(static_cast<size_t>(seq_len * half)), sn(cs.size());
  const float theta_scale = std::pow(config_.rope_freq_base, -2.0f / static_cast<float>(config_.n_rot));
  for (int64_t pos = 0; pos < seq_len; ++pos) {
    float theta = static_cast<float>(pos);
    for (int64_t i = 0; i < half; ++i) {
      const float ff = freq_factors != nullptr ? freq_factors[i] : 1.0f;
      const float angle = config_.rope_freq_scale * (theta / ff);
      cs[pos * half + i] = std::cos(angle);
      sn[pos * half + i] = std::sin(angle);
      theta *= theta_scale;
    }
  }
  const size_t bytes = cs.size() * sizeof(float);
  Check(cudaMemcpy(rope_cos_.Get(bytes), cs.data(), bytes, cudaMemcpyHostToDevice), "upload");
  Check(cudaMemcpy(rope_sin_.Get(bytes), sn.data(), bytes, cudaMemcpyHostToDevice), "upload");
  rope_seq_len_ = seq_len;
  rope_factors_ = freq_factors;
}

// Per group of sequences: S = K·Qᵀ for every (sequence, head) in batched
// products, the causal softmax into P, then out = P·V. K and V hold F16
// values already (ggml's F16 cache); Q and P are floats on the CPU, so each
// goes in as two F16 halves (x = hi + lo, 22 bits), one product per half.
void CudaBackend::Attention(Tensor q, Tensor k, Tensor v, int64_t n_tokens, int64_t seq_len, Tensor out,
                            const RunOptions&) {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim, L = seq_len;
  const int64_t q_stride = c.n_head * hd, kv_stride = c.n_head_kv * hd;
  const int64_t group = c.n_head / c.n_head_kv;
  const int64_t n_seqs = n_tokens / L;
  Half* qh = static_cast<Half*>(half_q_.Get(static_cast<size_t>(2 * n_tokens * q_stride) * sizeof(Half)));
  Half* ql = qh + n_tokens * q_stride;
  Half* kh = static_cast<Half*>(half_k_.Get(static_cast<size_t>(n_tokens * kv_stride) * sizeof(Half)));
  Half* vh = static_cast<Half*>(half_v_.Get(static_cast<size_t>(n_tokens * kv_stride) * sizeof(Half)));
  cuda::SplitHalf(F(q), n_tokens * q_stride, qh, ql, stream_);
  cuda::ToHalf(F(k), n_tokens * kv_stride, kh, stream_);
  cuda::ToHalf(F(v), n_tokens * kv_stride, vh, stream_);
  // Scores of at most ~512 MiB at a time.
  const int64_t per_seq = c.n_head * L * L;
  const int64_t seqs_per_group = std::clamp<int64_t>((int64_t{512} << 20) / (8 * per_seq), 1, n_seqs);
  float* scores = static_cast<float*>(scores_.Get(static_cast<size_t>(seqs_per_group * per_seq) * sizeof(float)));
  Half* probs = static_cast<Half*>(probs_.Get(static_cast<size_t>(2 * seqs_per_group * per_seq) * sizeof(Half)));
  Half* probs_lo = probs + seqs_per_group * per_seq;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Pointer arrays for every group (K, Q, S, V, P, out, Q's low half, P's
  // low half), built and uploaded only when the buffers or shapes change:
  // within a pass every layer uses the same ones.
  const decltype(attention_key_) key{qh, kh, vh, scores, probs, out.handle, n_tokens, L, seqs_per_group};
  const int64_t per_group = 8 * seqs_per_group * c.n_head;
  const int64_t n_groups = (n_seqs + seqs_per_group - 1) / seqs_per_group;
  void** d = static_cast<void**>(pointers_.Get(static_cast<size_t>(n_groups * per_group) * sizeof(void*)));
  if (key != attention_key_) {
    attention_ptrs_.assign(static_cast<size_t>(n_groups * per_group), nullptr);
    for (int64_t s0 = 0, g = 0; s0 < n_seqs; s0 += seqs_per_group, ++g) {
      const int64_t ns = std::min(seqs_per_group, n_seqs - s0);
      const int64_t batch = ns * c.n_head;
      const void** ptrs = attention_ptrs_.data() + g * per_group;
      for (int64_t s = 0; s < ns; ++s) {
        for (int64_t h = 0; h < c.n_head; ++h) {
          const int64_t i = s * c.n_head + h;
          const int64_t row0 = (s0 + s) * L;
          ptrs[i] = kh + row0 * kv_stride + (h / group) * hd;
          ptrs[batch + i] = qh + row0 * q_stride + h * hd;
          ptrs[2 * batch + i] = scores + i * L * L;
          ptrs[3 * batch + i] = vh + row0 * kv_stride + (h / group) * hd;
          ptrs[4 * batch + i] = probs + i * L * L;
          ptrs[5 * batch + i] = F(out) + row0 * q_stride + h * hd;
          ptrs[6 * batch + i] = ql + row0 * q_stride + h * hd;
          ptrs[7 * batch + i] = probs_lo + i * L * L;
        }
      }
    }
    // From pageable memory: the copy is taken before this call returns.
    Check(cudaMemcpyAsync(d, attention_ptrs_.data(), attention_ptrs_.size() * sizeof(void*), cudaMemcpyHostToDevice,
                          stream_),
          "upload");
    attention_key_ = key;
  }
  for (int64_t s0 = 0, g = 0; s0 < n_seqs; s0 += seqs_per_group, ++g) {
    const int64_t ns = std::min(seqs_per_group, n_seqs - s0);
    const int64_t batch = ns * c.n_head;
    void** p = d + g * per_group;
    const int L32 = static_cast<int>(L), hd32 = static_cast<int>(hd), b32 = static_cast<int>(batch);
    for (int half = 0; half < 2; ++half) {
      const float one = 1.0f, beta = half == 0 ? 0.0f : 1.0f;
      Check(cublasGemmBatchedEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, L32, L32, hd32, &one, p, CUDA_R_16F,
                                static_cast<int>(kv_stride), p + (half == 0 ? 1 : 6) * batch, CUDA_R_16F,
                                static_cast<int>(q_stride), &beta, p + 2 * batch, CUDA_R_32F, L32, b32,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmBatchedEx (scores)");
    }
    cuda::CausalSoftmax(scores, batch * L, L, scale, probs, probs_lo, stream_);
    for (int half = 0; half < 2; ++half) {
      const float one = 1.0f, beta = half == 0 ? 0.0f : 1.0f;
      Check(cublasGemmBatchedEx(blas_, CUBLAS_OP_N, CUBLAS_OP_N, hd32, L32, L32, &one, p + 3 * batch, CUDA_R_16F,
                                static_cast<int>(kv_stride), p + (half == 0 ? 4 : 7) * batch, CUDA_R_16F, L32, &beta,
                                p + 5 * batch, CUDA_R_32F, static_cast<int>(q_stride), b32, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
            "cublasGemmBatchedEx (values)");
    }
  }
}

// Per row results come back as nll and kld (doubles) then argmax (int32).
void CudaBackend::ScoreRows(Tensor logits, const ScoreSpec& spec, std::span<RowScore> out, int) {
  const int64_t n_rows = spec.n_chunks * spec.n_scored;
  float* lp = F(Scratch(Slot::kLogProbs, n_rows * spec.n_vocab));
  int32_t* targets = static_cast<int32_t*>(targets_.Get(static_cast<size_t>(n_rows) * sizeof(int32_t)));
  Check(cudaMemcpyAsync(targets, spec.targets.data(), static_cast<size_t>(n_rows) * sizeof(int32_t),
                        cudaMemcpyHostToDevice, stream_),
        "upload");
  const size_t bytes = static_cast<size_t>(n_rows) * (2 * sizeof(double) + sizeof(int32_t));
  double* results = static_cast<double*>(row_results_.Get(bytes));
  cuda::ScoreRows(F(logits), spec.stride, spec.n_scored, n_rows, spec.n_vocab, targets, F(spec.base_lp), lp, results,
                  results + n_rows, reinterpret_cast<int32_t*>(results + 2 * n_rows), stream_);
  double* host = static_cast<double*>(row_results_host_.Get(bytes));
  Check(cudaMemcpyAsync(host, results, bytes, cudaMemcpyDeviceToHost, stream_), "download");
  Check(cudaStreamSynchronize(stream_), "ScoreRows");
  const int32_t* argmax = reinterpret_cast<const int32_t*>(host + 2 * n_rows);
  for (int64_t i = 0; i < n_rows; ++i) out[i] = {host[i], host[n_rows + i], argmax[i]};
}

}  // namespace

Status CudaStatus() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return Status::NotSupported(std::string("no usable CUDA GPU: ") + cudaGetErrorString(e));
  if (n == 0) return Status::NotSupported("no CUDA GPU found");
  return Status::Ok();
}

Result<std::unique_ptr<Backend>> MakeCudaBackend(const ModelConfig& config, int64_t gpu_mem_bytes) {
  MIXQ_TRY(CudaStatus());
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return Status::NotSupported("cannot read the GPU's memory");
  // What this process's backends hold counts as available to this one.
  const int64_t available = static_cast<int64_t>(free) + Memory().used;
  const int64_t cap = gpu_mem_bytes > 0 ? std::min(gpu_mem_bytes, available) : available;
  if (cap <= kContextMargin) {
    return Status::Infeasible("--gpu-mem or the GPU's free memory (" + std::to_string(free >> 20) +
                              " MiB) leaves nothing beside the CUDA context's " + std::to_string(kContextMargin >> 20) +
                              " MiB");
  }
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(config, cap - kContextMargin));
}

}  // namespace mixq::engine
