// Internal: the CUDA backend's elementwise and reduction kernels (kernels.cu),
// launched on a stream. Plain C++ types only, so that backend_cuda.cc is
// compiled by the host compiler; `half` tensors are 16-bit IEEE floats.
#ifndef MIXQ_ENGINE_CUDA_KERNELS_H_
#define MIXQ_ENGINE_CUDA_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace mixq::engine::cuda {

using Half = uint16_t;

// y[rows][n] = x / sqrt(mean(x²) + eps) · w (sums of squares in double, as the CPU).
void RmsNorm(const float* x, const float* w, int64_t rows, int64_t n, float eps, float* y, cudaStream_t s);
// y[i] = x[i] as F16, rounded to nearest even (overflow to infinity).
void ToHalf(const float* x, int64_t n, Half* y, cudaStream_t s);
// x[i] = x[i] rounded to F16, as a float.
void RoundToHalf(float* x, int64_t n, cudaStream_t s);
// y[n] = x[n] rounded as ggml's CPU backend rounds activations for a dot
// product (activation_rounding.cc, bit for bit): blocks of 32 to Q8_0, blocks
// of 256 to Q8_K (each value d·q as a float), or each value to BF16.
void RoundQ8_0(const float* x, int64_t n, float* y, cudaStream_t s);
void RoundQ8_K(const float* x, int64_t n, float* y, cudaStream_t s);
void RoundBf16(const float* x, int64_t n, float* y, cudaStream_t s);
// y[rows][n] += bias[n].
void AddBias(float* y, const float* bias, int64_t rows, int64_t n, cudaStream_t s);
// h[i] += d[i].
void Add(float* h, const float* d, int64_t n, cudaStream_t s);
// g[i] = silu(g[i]) · u[i].
void Swiglu(float* g, const float* u, int64_t n, cudaStream_t s);
// y[i] = silu(g[i]) · u[i] as F16 (Swiglu, then ToHalf).
void SwigluToHalf(const float* g, const float* u, int64_t n, Half* y, cudaStream_t s);
// Rotates pairs of every head of x[n_tokens][n_heads·head_dim] with the
// tables cos/sin[seq_len][half]; row r is at position r % seq_len.
void Rope(float* x, const float* cos, const float* sin, int64_t n_tokens, int64_t seq_len, int64_t n_heads,
          int64_t head_dim, int64_t half, bool neox, cudaStream_t s);
// hi[i] = x[i] as F16, lo[i] = the rest (x[i] - hi[i]) as F16.
void SplitHalf(const float* x, int64_t n, Half* hi, Half* lo, cudaStream_t s);
// p[rows][len] = softmax(scale · scores) over keys 0..(row % len), zero past
// them, as two F16 halves (SplitHalf).
void CausalSoftmax(const float* scores, int64_t rows, int64_t len, float scale, Half* hi, Half* lo, cudaStream_t s);
// acc[i] += c[i] (as doubles) for the lower triangle of the column-major
// n x n matrices (row >= column), the rest left as it is.
void AddLowerTriangle(const float* c, int64_t n, double* acc, cudaStream_t s);
// *flag = min(*flag, the key of the first NaN or infinity in x[n]): tag <<
// kTagShift | index << 1 | (not NaN), so that the lowest tag, then the lowest
// index wins (*flag starts at all ones).
constexpr int kTagShift = 40;
void NoteNonFinite(const float* x, int64_t n, int64_t tag, unsigned long long* flag, cudaStream_t s);
// For scored row i (row (i / n_scored)·stride + i % n_scored of logits, rows
// of n_vocab): lp[i] = log-softmax (as the CPU's LogSoftmaxRow: exponentials
// summed in double), nll[i] of targets[i], argmax[i] (the first largest),
// and when base_lp is given kld[i] = Σ exp(base)·(base − lp) in double.
void ScoreRows(const float* logits, int64_t stride, int64_t n_scored, int64_t n_rows, int64_t n_vocab,
               const int32_t* targets, const float* base_lp, float* lp, double* nll, double* kld, int32_t* argmax,
               cudaStream_t s);
// dst[i] = src[slots[i] / k] (rows of n).
void GatherRows(const float* src, const int64_t* slots, int64_t count, int64_t k, int64_t n, float* dst,
                cudaStream_t s);
// out[slots[i]] = y[i] · w[i] (rows of n).
void ScatterWeighted(const float* y, const int64_t* slots, const float* w, int64_t count, int64_t n, float* out,
                     cudaStream_t s);
// h[t] = (out[t·k] + out[t·k+1] + ...) + h[t] (rows of n).
void AddRanks(const float* out, int64_t n_tokens, int64_t k, int64_t n, float* h, cudaStream_t s);

}  // namespace mixq::engine::cuda

#endif  // MIXQ_ENGINE_CUDA_KERNELS_H_
