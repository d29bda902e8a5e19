// Internal: the engine's single-threaded F32 matrix product C = A · Bᵀ with B
// pre-packed into column panels, so that weights can be decoded straight into
// the layout the kernel reads; and the softmax of attention rows.
//
// Packed layout: B (n rows of k values) is cut into panels of PanelWidth()
// rows; panel p holds, for each k, the values of rows p·w .. p·w+w-1 (zero
// for rows past n). A is read in place, row-major.
//
// Kernels: AVX-512 (panels of 32), AVX2+FMA (panels of 16) and a scalar
// reference (panels of 8), the one base/isa.h's ActiveIsa() names (so
// MIXQ_ISA=scalar or MIXQ_ISA=avx2 forces a lesser one). A kernel sums each
// output in a fixed order (k ascending, in blocks), so its results do not
// depend on how callers tile m and n; kernels differ from each other only by
// rounding (the SIMD ones fuse multiply and add).
#ifndef MIXQ_ENGINE_GEMM_H_
#define MIXQ_ENGINE_GEMM_H_

#include <cstdint>

#include "base/isa.h"

namespace mixq::engine {

using GemmIsa = Isa;

// The kernel in use.
inline GemmIsa ActiveGemmIsa() { return ActiveIsa(); }

int64_t PanelWidth(GemmIsa isa);
inline int64_t PanelWidth() { return PanelWidth(ActiveGemmIsa()); }
// Floats of a packed B of n rows of k values.
int64_t PackedFloats(int64_t n, int64_t k, GemmIsa isa);
inline int64_t PackedFloats(int64_t n, int64_t k) { return PackedFloats(n, k, ActiveGemmIsa()); }

// Writes row r (k values) of B into its place in `packed`.
void PackRow(const float* row, int64_t r, int64_t k, float* packed, GemmIsa isa);
inline void PackRow(const float* row, int64_t r, int64_t k, float* packed) {
  PackRow(row, r, k, packed, ActiveGemmIsa());
}
// Packs B = Vᵀ where V is k rows of n values (row stride ldv): B's row d is
// V's column d. Attention multiplies by V this way.
void PackTransposed(const float* v, int64_t ldv, int64_t k, int64_t n, float* packed, GemmIsa isa);
inline void PackTransposed(const float* v, int64_t ldv, int64_t k, int64_t n, float* packed) {
  PackTransposed(v, ldv, k, n, packed, ActiveGemmIsa());
}

// C[m][n] = A[m][k] · Bᵀ, with A's rows lda apart and C's rows ldc apart.
// `packed` points at the panel holding B's row 0 (for a slice of a bigger B,
// the panel of its first row: n0 a multiple of PanelWidth()); packed_k is the
// k that B was packed with (>= k: a product may use a prefix of the k values).
void Gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* packed, int64_t packed_k, float* c,
          int64_t ldc, GemmIsa isa);
inline void Gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* packed, int64_t packed_k,
                 float* c, int64_t ldc) {
  Gemm(m, n, k, a, lda, packed, packed_k, c, ldc, ActiveGemmIsa());
}

// row[0..n) = softmax(scale · row[0..n)) in place (n >= 1): the attention
// weights of one query, with the same ISA choice as Gemm.
void SoftmaxRow(float* row, int64_t n, float scale, GemmIsa isa);
inline void SoftmaxRow(float* row, int64_t n, float scale) { SoftmaxRow(row, n, scale, ActiveGemmIsa()); }

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_GEMM_H_
