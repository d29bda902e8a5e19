// C = A · Bᵀ kernels. Each kernel computes an MR x NR block of C from MR rows
// of A (read in place, one broadcast value per row and k) and one packed
// panel of B (NR values per k), keeping the block in registers over a k block
// of kKBlock values; the block loop adds each k block's partial sums to C.
#include "engine/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/internal.h"

namespace mixq::engine {
namespace {

// 256 k values: a panel slice of 32 floats x 256 stays in L1 while the
// kernel walks down A.
constexpr int64_t kKBlock = 256;

constexpr int kScalarMr = 4, kScalarNr = 8;
constexpr int kAvx2Mr = 6, kAvx2Nr = 16;
constexpr int kAvx512Mr = 8, kAvx512Nr = 32;

using KernelFn = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int mr,
                          int nr, bool accumulate);

void KernelScalar(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int mr, int nr,
                  bool accumulate) {
  float acc[kScalarMr][kScalarNr] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b + k * kScalarNr;
    for (int i = 0; i < mr; ++i) {
      const float ai = a[i * lda + k];
      for (int j = 0; j < kScalarNr; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < nr; ++j) ci[j] = accumulate ? ci[j] + acc[i][j] : acc[i][j];
  }
}

__attribute__((target("avx2,fma"))) void KernelAvx2(int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                                                    int64_t ldc, int mr, int nr, bool accumulate) {
  // Rows past mr repeat row 0 so that every load stays inside A; their sums are dropped.
  const float* rows[kAvx2Mr];
  for (int i = 0; i < kAvx2Mr; ++i) rows[i] = a + (i < mr ? i : 0) * lda;
  __m256 acc[kAvx2Mr][2];
  for (int i = 0; i < kAvx2Mr; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kAvx2Nr);
    const __m256 b1 = _mm256_loadu_ps(b + k * kAvx2Nr + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2Mr; ++i) {
      const __m256 ai = _mm256_broadcast_ss(rows[i] + k);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    if (nr == kAvx2Nr) {
      if (accumulate) {
        acc[i][0] = _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][0]);
        acc[i][1] = _mm256_add_ps(_mm256_loadu_ps(ci + 8), acc[i][1]);
      }
      _mm256_storeu_ps(ci, acc[i][0]);
      _mm256_storeu_ps(ci + 8, acc[i][1]);
      continue;
    }
    float tmp[kAvx2Nr];
    _mm256_storeu_ps(tmp, acc[i][0]);
    _mm256_storeu_ps(tmp + 8, acc[i][1]);
    for (int j = 0; j < nr; ++j) ci[j] = accumulate ? ci[j] + tmp[j] : tmp[j];
  }
}

__attribute__((target("avx512f"))) void KernelAvx512(int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                                                     int64_t ldc, int mr, int nr, bool accumulate) {
  const float* rows[kAvx512Mr];
  for (int i = 0; i < kAvx512Mr; ++i) rows[i] = a + (i < mr ? i : 0) * lda;
  __m512 acc[kAvx512Mr][2];
  for (int i = 0; i < kAvx512Mr; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b + k * kAvx512Nr);
    const __m512 b1 = _mm512_loadu_ps(b + k * kAvx512Nr + 16);
#pragma GCC unroll 8
    for (int i = 0; i < kAvx512Mr; ++i) {
      const __m512 ai = _mm512_set1_ps(rows[i][k]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  const __mmask16 m0 = nr >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? static_cast<__mmask16>((1u << (nr - 16)) - 1) : 0;
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc[i][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), acc[i][0]);
      acc[i][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), acc[i][1]);
    }
    _mm512_mask_storeu_ps(ci, m0, acc[i][0]);
    _mm512_mask_storeu_ps(ci + 16, m1, acc[i][1]);
  }
}

void SoftmaxScalar(float* row, int64_t n, float scale) {
  for (int64_t j = 0; j < n; ++j) row[j] *= scale;
  float max = row[0];
  for (int64_t j = 1; j < n; ++j) max = std::max(max, row[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    row[j] = ExpNonPositive(row[j] - max);
    sum += row[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
}

// e^x for x <= 0, 16 lanes: the polynomial of ExpNonPositive, with the power
// of two applied by vscalefps.
__attribute__((target("avx512f"))) __m512 ExpAvx512(__m512 x) {
  x = _mm512_mask_max_ps(x, 0xFFFF, x, _mm512_set1_ps(-87.0f));
  // The masked forms avoid GCC 12's -Wmaybe-uninitialized in the plain intrinsics.
  const __m512 n =
      _mm512_mask_roundscale_ps(x, 0xFFFF, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f)));
  r = _mm512_add_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(2.12194440e-4f)));
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  for (float coef : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f}) {
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(coef));
  }
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_mask_scalef_ps(p, 0xFFFF, p, n);
}

__attribute__((target("avx512f"))) void SoftmaxAvx512(float* row, int64_t n, float scale) {
  const __m512 vscale = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), vscale);
    _mm512_mask_storeu_ps(row + j, m, v);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, vmax);
  const __m512 max = _mm512_set1_ps(*std::max_element(lanes, lanes + 16));
  __m512d sum_lo = _mm512_setzero_pd(), sum_hi = _mm512_setzero_pd();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 e = _mm512_maskz_mov_ps(m, ExpAvx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), max)));
    _mm512_mask_storeu_ps(row + j, m, e);
    const __m256d lo = _mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, _mm512_castps_pd(e), 0);
    const __m256d hi = _mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, _mm512_castps_pd(e), 1);
    sum_lo = _mm512_add_pd(sum_lo, _mm512_mask_cvtps_pd(_mm512_setzero_pd(), 0xFF, _mm256_castpd_ps(lo)));
    sum_hi = _mm512_add_pd(sum_hi, _mm512_mask_cvtps_pd(_mm512_setzero_pd(), 0xFF, _mm256_castpd_ps(hi)));
  }
  double sums[8];
  _mm512_storeu_pd(sums, _mm512_add_pd(sum_lo, sum_hi));
  double sum = 0.0;
  for (double v : sums) sum += v;
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
  }
}

struct IsaInfo {
  int mr;
  int nr;
  KernelFn kernel;
};

IsaInfo Info(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kAvx512:
      return {kAvx512Mr, kAvx512Nr, KernelAvx512};
    case GemmIsa::kAvx2:
      return {kAvx2Mr, kAvx2Nr, KernelAvx2};
    case GemmIsa::kScalar:
      break;
  }
  return {kScalarMr, kScalarNr, KernelScalar};
}

}  // namespace

int64_t PanelWidth(GemmIsa isa) { return Info(isa).nr; }

int64_t PackedFloats(int64_t n, int64_t k, GemmIsa isa) {
  const int64_t w = PanelWidth(isa);
  return (n + w - 1) / w * w * k;
}

void PackRow(const float* row, int64_t r, int64_t k, float* packed, GemmIsa isa) {
  const int64_t w = PanelWidth(isa);
  float* dst = packed + (r / w) * w * k + r % w;
  for (int64_t i = 0; i < k; ++i) dst[i * w] = row[i];
}

void PackTransposed(const float* v, int64_t ldv, int64_t k, int64_t n, float* packed, GemmIsa isa) {
  const int64_t w = PanelWidth(isa);
  for (int64_t p = 0; p * w < n; ++p) {
    const int64_t cols = std::min(w, n - p * w);
    float* panel = packed + p * w * k;
    for (int64_t i = 0; i < k; ++i) {
      std::memcpy(panel + i * w, v + i * ldv + p * w, static_cast<size_t>(cols) * sizeof(float));
      std::fill(panel + i * w + cols, panel + (i + 1) * w, 0.0f);
    }
  }
}

void SoftmaxRow(float* row, int64_t n, float scale, GemmIsa isa) {
  // AVX2 machines use the scalar form, which the compiler vectorizes in part.
  if (isa == GemmIsa::kAvx512) {
    SoftmaxAvx512(row, n, scale);
  } else {
    SoftmaxScalar(row, n, scale);
  }
}

void Gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* packed, int64_t packed_k, float* c,
          int64_t ldc, GemmIsa isa) {
  const IsaInfo info = Info(isa);
  for (int64_t k0 = 0; k0 < k; k0 += kKBlock) {
    const int64_t kc = std::min(kKBlock, k - k0);
    for (int64_t p = 0; p * info.nr < n; ++p) {
      const float* panel = packed + p * info.nr * packed_k + k0 * info.nr;
      const int nr = static_cast<int>(std::min<int64_t>(info.nr, n - p * info.nr));
      for (int64_t i0 = 0; i0 < m; i0 += info.mr) {
        const int mr = static_cast<int>(std::min<int64_t>(info.mr, m - i0));
        info.kernel(kc, a + i0 * lda + k0, lda, panel, c + i0 * ldc + p * info.nr, ldc, mr, nr, k0 > 0);
      }
    }
  }
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  }
}

}  // namespace mixq::engine
