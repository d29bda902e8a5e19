// Internal: the engine's integer matrix product C = A · Bᵀ, for weights with
// an integer form (formats/int_rows.h: value = scale · q − min per group) and
// activations rounded to Q8_K or Q8_0 blocks (value = d · q per block). It
// computes what the F32 kernel computes from the same rounded values, with
// every group's dot product exact in int32: per group
//   Σ a·w = scale · Σ q_a·q_w − min · Σ q_a,
// times the activation block's d. Only the float scaling and summation order
// differ from the F32 path (a few ulp of each output).
//
// Packed B: panels of kIntPanel rows, as in gemm.h; panel p holds one record
// per group of `group` k values, in k order:
//   int8  q[group / 4][kIntPanel][4]  values k 4j..4j+3 of each row, together
//   int32 bias[kIntPanel]             −128 · Σ q over the group
//   float scale[kIntPanel]
//   float min[kIntPanel]              only for formats with mins
// Activations are stored as uint8 (q + 128) so that the VNNI instruction
// (unsigned × signed bytes) applies; the bias takes the 128 back out.
//
// Kernels: AVX-512 VNNI and a scalar reference, chosen with the F32 kernel:
// VNNI where gemm.h uses AVX-512 and the CPU has it, scalar where gemm.h runs
// scalar (MIXQ_ISA=scalar); elsewhere (AVX2) there is no integer kernel and
// the engine multiplies in F32. SetIntGemmIsa overrides the choice, so that
// tests can compare the paths in one process.
#ifndef MIXQ_ENGINE_INT_GEMM_H_
#define MIXQ_ENGINE_INT_GEMM_H_

#include <cstdint>

namespace mixq::engine {

enum class IntGemmIsa { kNone, kScalar, kVnni };

// The kernel the forward pass uses (kNone: every product in F32).
IntGemmIsa ActiveIntGemmIsa();
// REQUIRES: IntGemmIsaSupported(isa); no forward pass running.
void SetIntGemmIsa(IntGemmIsa isa);
bool IntGemmIsaSupported(IntGemmIsa isa);

inline constexpr int64_t kIntPanel = 32;

struct IntLayout {
  int group;  // k values per scale: 16 or 32 (the VNNI kernel has no other)
  bool has_mins;
};
int64_t IntGroupBytes(const IntLayout& layout);
// Bytes of a packed B of n rows of k values.
int64_t IntPackedBytes(int64_t n, int64_t k, const IntLayout& layout);
// Writes row r of B (its k int8 values and k / group scales and mins; mins
// may be null without has_mins) into its place in `packed`.
void PackIntRow(const int8_t* q, const float* scales, const float* mins, int64_t r, int64_t k, const IntLayout& layout,
                uint8_t* packed);

// Rounded activations, row-major: q[m][ldq] (value + 128), d[m][ldd] per
// block of `block` values (32 or 256), sums[m][lds] of the int8 values per
// group (used only with mins).
struct IntActivations {
  const uint8_t* q;
  int64_t ldq;
  const float* d;
  int64_t ldd;
  const float* sums;
  int64_t lds;
  int block;
};

// C[m][n] = A[m][k] · Bᵀ. `a` starts at A's row 0; `packed` at the panel of
// B's row 0 (a multiple of kIntPanel), packed with packed_k >= k values.
// REQUIRES: k a multiple of a.block, a.block a multiple of layout.group.
void IntGemm(int64_t m, int64_t n, int64_t k, const IntActivations& a, const uint8_t* packed, int64_t packed_k,
             const IntLayout& layout, float* c, int64_t ldc, IntGemmIsa isa);

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_INT_GEMM_H_
