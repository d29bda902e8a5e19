// The CUDA backend's kernels (kernels.h). Each follows the CPU reference's
// order of float operations where that is cheap (RMS norm in double, the
// residual added last), so that results differ from it by rounding only.
#include <cuda_fp16.h>

#include "engine/cuda/kernels.h"

namespace mixq::engine::cuda {
namespace {

constexpr int kThreads = 256;

unsigned Blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void RmsNormKernel(const float* x, const float* w, int64_t n, float eps, float* y) {
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += static_cast<double>(xr[i] * xr[i]);
  __shared__ double partial[kThreads];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float mean = static_cast<float>(partial[0] / static_cast<double>(n));
  const float scale = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
}

__global__ void ToHalfKernel(const float* x, int64_t n, __half* y) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2half_rn(x[i]);
}

__device__ void Split(float x, __half* hi, __half* lo) {
  *hi = __float2half_rn(x);
  *lo = __float2half_rn(__fsub_rn(x, __half2float(*hi)));
}

__global__ void SplitHalfKernel(const float* x, int64_t n, __half* hi, __half* lo) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) Split(x[i], hi + i, lo + i);
}

__global__ void RoundToHalfKernel(float* x, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = __half2float(__float2half_rn(x[i]));
}

// Round half to even for |v| < 2^22, as RoundToInt in internal.h.
__device__ float RoundToInt(float v) { return __fsub_rn(__fadd_rn(v, 12582912.0f), 12582912.0f); }

// One thread per block of 32.
__global__ void RoundQ8_0Kernel(const float* x, int64_t n_blocks, float* y) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= n_blocks) return;
  const float* xb = x + b * 32;
  float* yb = y + b * 32;
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(xb[j]));
  const float id = amax != 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
  const float d = __half2float(__float2half_rn(__fdiv_rn(amax, 127.0f)));
  for (int j = 0; j < 32; ++j) {
    const float q = static_cast<float>(static_cast<int8_t>(RoundToInt(__fmul_rn(xb[j], id))));
    yb[j] = __fmul_rn(d, q);
  }
}

// One thread per block of 256; the scale comes from the first value of
// largest magnitude, as ggml's x86 code picks it.
__global__ void RoundQ8_KKernel(const float* x, int64_t n_blocks, float* y) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= n_blocks) return;
  const float* xb = x + b * 256;
  float* yb = y + b * 256;
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 256; ++j) {
    const float ax = fabsf(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  if (amax == 0.0f) {
    for (int j = 0; j < 256; ++j) yb[j] = 0.0f;
    return;
  }
  const float iscale = __fdiv_rn(-127.0f, max);
  const float d = __fdiv_rn(1.0f, iscale);
  for (int j = 0; j < 256; ++j) {
    const float q = static_cast<float>(static_cast<int8_t>(fminf(127.0f, RoundToInt(__fmul_rn(iscale, xb[j])))));
    yb[j] = __fmul_rn(d, q);
  }
}

__global__ void RoundBf16Kernel(const float* x, int64_t n, float* y) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const uint32_t u = __float_as_uint(x[i]);
  y[i] = (u & 0x7FFFFFFFu) > 0x7F800000u ? x[i] : __uint_as_float((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}

__global__ void AddBiasKernel(float* y, const float* bias, int64_t total, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < total) y[i] = __fadd_rn(y[i], bias[i % n]);
}

__global__ void AddKernel(float* h, const float* d, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) h[i] = __fadd_rn(h[i], d[i]);
}

// c and acc are n x n column-major; the lower triangle (row >= column) is
// the one cublasSsyrk wrote.
__global__ void AddLowerTriangleKernel(const float* c, int64_t n, double* acc) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n * n && i % n >= i / n) acc[i] += static_cast<double>(c[i]);
}

__device__ float SiluTimes(float x, float u) { return __fmul_rn(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), u); }

__global__ void SwigluKernel(float* g, const float* u, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) g[i] = SiluTimes(g[i], u[i]);
}

__global__ void SwigluToHalfKernel(const float* g, const float* u, int64_t n, __half* y) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2half_rn(SiluTimes(g[i], u[i]));
}

__global__ void RopeKernel(float* x, const float* cs, const float* sn, int64_t total, int64_t seq_len, int64_t n_heads,
                           int64_t head_dim, int64_t half, bool neox) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t i = idx % half;
  const int64_t head = (idx / half) % n_heads;
  const int64_t row = idx / (half * n_heads);
  float* v = x + (row * n_heads + head) * head_dim;
  const int64_t a = neox ? i : 2 * i;
  const int64_t b = a + (neox ? half : 1);
  const float c = cs[(row % seq_len) * half + i];
  const float s = sn[(row % seq_len) * half + i];
  const float x0 = v[a], x1 = v[b];
  v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  v[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
}

// One block per row of scores.
__global__ void CausalSoftmaxKernel(const float* scores, int64_t len, float scale, __half* hi, __half* lo) {
  const int64_t row = blockIdx.x;
  const int64_t n_valid = row % len + 1;
  const float* s = scores + row * len;
  __shared__ float red[kThreads];
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n_valid; j += blockDim.x) m = fmaxf(m, s[j] * scale);
  red[threadIdx.x] = m;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + stride]);
    __syncthreads();
  }
  m = red[0];
  __syncthreads();
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n_valid; j += blockDim.x) sum += expf(s[j] * scale - m);
  red[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();
  }
  const float inv = 1.0f / red[0];
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    Split(j < n_valid ? expf(s[j] * scale - m) * inv : 0.0f, hi + row * len + j, lo + row * len + j);
  }
}

__global__ void NoteNonFiniteKernel(const float* x, int64_t n, unsigned long long tag, unsigned long long* flag) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n && !isfinite(x[i])) {
    atomicMin(flag, tag << kTagShift | static_cast<unsigned long long>(i) << 1 | (isnan(x[i]) ? 0ull : 1ull));
  }
}

constexpr int kScoreThreads = 512;

// The block's sum of v (every thread gets it).
__device__ double BlockSum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kScoreThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();
  }
  const double sum = red[0];
  __syncthreads();
  return sum;
}

// One block per scored row.
__global__ void ScoreRowsKernel(const float* logits, int64_t stride, int64_t n_scored, int64_t n_vocab,
                                const int32_t* targets, const float* base_lp, float* lp, double* nll, double* kld,
                                int32_t* argmax) {
  const int64_t i = blockIdx.x;
  const float* z = logits + ((i / n_scored) * stride + i % n_scored) * n_vocab;
  float* q = lp + i * n_vocab;
  __shared__ double red[kScoreThreads];
  __shared__ float best_v[kScoreThreads];
  __shared__ int32_t best_i[kScoreThreads];
  // The first index of the largest value, as LogSoftmaxRow's strict '>'.
  float bv = -INFINITY;
  int32_t bi = -1;
  for (int64_t j = threadIdx.x; j < n_vocab; j += blockDim.x) {
    if (bi < 0 || z[j] > bv) {
      bv = z[j];
      bi = static_cast<int32_t>(j);
    }
  }
  best_v[threadIdx.x] = bv;
  best_i[threadIdx.x] = bi;
  __syncthreads();
  for (int s = kScoreThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      const float ov = best_v[threadIdx.x + s];
      const int32_t oi = best_i[threadIdx.x + s];
      if (oi >= 0 && (best_i[threadIdx.x] < 0 || ov > best_v[threadIdx.x] ||
                      (ov == best_v[threadIdx.x] && oi < best_i[threadIdx.x]))) {
        best_v[threadIdx.x] = ov;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  const float max = best_v[0];
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < n_vocab; j += blockDim.x) sum += exp(static_cast<double>(__fsub_rn(z[j], max)));
  const double lse = log(BlockSum(sum, red));
  double k = 0.0;
  for (int64_t j = threadIdx.x; j < n_vocab; j += blockDim.x) {
    const float qj = static_cast<float>(static_cast<double>(__fsub_rn(z[j], max)) - lse);
    q[j] = qj;
    if (base_lp != nullptr) {
      const double p = base_lp[i * n_vocab + j];
      k += exp(p) * (p - static_cast<double>(qj));
    }
  }
  k = BlockSum(k, red);
  if (threadIdx.x == 0) {
    argmax[i] = best_i[0];
    nll[i] = lse - static_cast<double>(__fsub_rn(z[targets[i]], max));
    kld[i] = k;
  }
}

__global__ void GatherRowsKernel(const float* src, const int64_t* slots, int64_t total, int64_t k, int64_t n,
                                 float* dst) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t i = idx / n, j = idx % n;
  dst[idx] = src[(slots[i] / k) * n + j];
}

__global__ void ScatterWeightedKernel(const float* y, const int64_t* slots, const float* w, int64_t total, int64_t n,
                                      float* out) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t i = idx / n, j = idx % n;
  out[slots[i] * n + j] = __fmul_rn(y[idx], w[i]);
}

__global__ void AddRanksKernel(const float* out, int64_t total, int64_t k, int64_t n, float* h) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t t = idx / n, j = idx % n;
  const float* o = out + t * k * n + j;
  float sum = o[0];
  for (int64_t r = 1; r < k; ++r) sum = __fadd_rn(sum, o[r * n]);
  h[idx] = __fadd_rn(sum, h[idx]);
}

}  // namespace

void RmsNorm(const float* x, const float* w, int64_t rows, int64_t n, float eps, float* y, cudaStream_t s) {
  if (rows > 0) RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(x, w, n, eps, y);
}
void ToHalf(const float* x, int64_t n, Half* y, cudaStream_t s) {
  if (n > 0) ToHalfKernel<<<Blocks(n), kThreads, 0, s>>>(x, n, reinterpret_cast<__half*>(y));
}
void RoundToHalf(float* x, int64_t n, cudaStream_t s) {
  if (n > 0) RoundToHalfKernel<<<Blocks(n), kThreads, 0, s>>>(x, n);
}
void RoundQ8_0(const float* x, int64_t n, float* y, cudaStream_t s) {
  if (n > 0) RoundQ8_0Kernel<<<Blocks(n / 32), kThreads, 0, s>>>(x, n / 32, y);
}
void RoundQ8_K(const float* x, int64_t n, float* y, cudaStream_t s) {
  if (n > 0) RoundQ8_KKernel<<<Blocks(n / 256), kThreads, 0, s>>>(x, n / 256, y);
}
void RoundBf16(const float* x, int64_t n, float* y, cudaStream_t s) {
  if (n > 0) RoundBf16Kernel<<<Blocks(n), kThreads, 0, s>>>(x, n, y);
}
void AddBias(float* y, const float* bias, int64_t rows, int64_t n, cudaStream_t s) {
  if (rows * n > 0) AddBiasKernel<<<Blocks(rows * n), kThreads, 0, s>>>(y, bias, rows * n, n);
}
void Add(float* h, const float* d, int64_t n, cudaStream_t s) {
  if (n > 0) AddKernel<<<Blocks(n), kThreads, 0, s>>>(h, d, n);
}
void Swiglu(float* g, const float* u, int64_t n, cudaStream_t s) {
  if (n > 0) SwigluKernel<<<Blocks(n), kThreads, 0, s>>>(g, u, n);
}
void SwigluToHalf(const float* g, const float* u, int64_t n, Half* y, cudaStream_t s) {
  if (n > 0) SwigluToHalfKernel<<<Blocks(n), kThreads, 0, s>>>(g, u, n, reinterpret_cast<__half*>(y));
}
void Rope(float* x, const float* cos, const float* sin, int64_t n_tokens, int64_t seq_len, int64_t n_heads,
          int64_t head_dim, int64_t half, bool neox, cudaStream_t s) {
  const int64_t total = n_tokens * n_heads * half;
  if (total > 0)
    RopeKernel<<<Blocks(total), kThreads, 0, s>>>(x, cos, sin, total, seq_len, n_heads, head_dim, half, neox);
}
void SplitHalf(const float* x, int64_t n, Half* hi, Half* lo, cudaStream_t s) {
  if (n > 0) {
    SplitHalfKernel<<<Blocks(n), kThreads, 0, s>>>(x, n, reinterpret_cast<__half*>(hi), reinterpret_cast<__half*>(lo));
  }
}
void CausalSoftmax(const float* scores, int64_t rows, int64_t len, float scale, Half* hi, Half* lo, cudaStream_t s) {
  if (rows > 0) {
    CausalSoftmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(
        scores, len, scale, reinterpret_cast<__half*>(hi), reinterpret_cast<__half*>(lo));
  }
}
void AddLowerTriangle(const float* c, int64_t n, double* acc, cudaStream_t s) {
  if (n > 0) AddLowerTriangleKernel<<<Blocks(n * n), kThreads, 0, s>>>(c, n, acc);
}

void NoteNonFinite(const float* x, int64_t n, int64_t tag, unsigned long long* flag, cudaStream_t s) {
  if (n > 0) NoteNonFiniteKernel<<<Blocks(n), kThreads, 0, s>>>(x, n, static_cast<unsigned long long>(tag), flag);
}
void ScoreRows(const float* logits, int64_t stride, int64_t n_scored, int64_t n_rows, int64_t n_vocab,
               const int32_t* targets, const float* base_lp, float* lp, double* nll, double* kld, int32_t* argmax,
               cudaStream_t s) {
  if (n_rows > 0) {
    ScoreRowsKernel<<<static_cast<unsigned>(n_rows), kScoreThreads, 0, s>>>(logits, stride, n_scored, n_vocab, targets,
                                                                           base_lp, lp, nll, kld, argmax);
  }
}
void GatherRows(const float* src, const int64_t* slots, int64_t count, int64_t k, int64_t n, float* dst,
                cudaStream_t s) {
  if (count * n > 0) GatherRowsKernel<<<Blocks(count * n), kThreads, 0, s>>>(src, slots, count * n, k, n, dst);
}
void ScatterWeighted(const float* y, const int64_t* slots, const float* w, int64_t count, int64_t n, float* out,
                     cudaStream_t s) {
  if (count * n > 0) ScatterWeightedKernel<<<Blocks(count * n), kThreads, 0, s>>>(y, slots, w, count * n, n, out);
}
void AddRanks(const float* out, int64_t n_tokens, int64_t k, int64_t n, float* h, cudaStream_t s) {
  if (n_tokens * n > 0) AddRanksKernel<<<Blocks(n_tokens * n), kThreads, 0, s>>>(out, n_tokens * n, k, n, h);
}

}  // namespace mixq::engine::cuda
