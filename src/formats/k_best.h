// The searches behind mixq's K-quant encoders (k_best.cc, k_best_types.cc).
//
// A K-quant super-block stores f16 multipliers (d, and dmin for the types with
// an offset), small integer codes per group (scale, min) and per-element
// quants. For fixed multipliers and codes the best quants are the rounded
// ones, so the searches move over the multipliers and codes: each group's
// codes by local search, then the multipliers by a least-squares refit
// rounded to f16 and its neighbours, a few rounds, starting from ggml's block.
#ifndef MIXQ_FORMATS_K_BEST_H_
#define MIXQ_FORMATS_K_BEST_H_

#include <cstdint>

namespace mixq::formats::internal {

// y = (d*sc_j)*q - (dmin*m_j), q in 0..qmax, sc_j and m_j in 0..code_max (Q2_K, Q4_K, Q5_K).
struct AffineLayout {
  int n_groups;
  int group_size;
  float qmax;
  int code_max;
};

struct AffineState {
  uint16_t d;
  uint16_t dmin;
  int sc[16];
  int m[16];
};

// Improves `s` in place (never increasing the search's own error estimate);
// `quants` receives the final quants of all n_groups * group_size elements.
void SearchAffineSuperBlock(const float* x, const float* w, const AffineLayout& layout, AffineState* s,
                            uint8_t* quants);

// y = (d*s_j)*q, q in qmin..qmax, s_j in smin..smax (Q3_K, Q6_K).
struct SymmetricLayout {
  int n_groups;
  int group_size;
  float qmin;
  float qmax;
  int smin;
  int smax;
};

struct SymmetricState {
  uint16_t d;
  int s[16];
};

void SearchSymmetricSuperBlock(const float* x, const float* w, const SymmetricLayout& layout, SymmetricState* s,
                               int8_t* quants);

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_K_BEST_H_
