// ggml's per-group scale searches (ggml-formats.md §2.7), reproduced operation
// for operation: float accumulators, ascending index, ggml's operand grouping.
// Any change here changes output bytes; the refvector tests are the judge.
#ifndef MIXQ_FORMATS_QUANT_SEARCH_H_
#define MIXQ_FORMATS_QUANT_SEARCH_H_

#include <cstdint>

namespace mixq::formats::internal {

// Symmetric search (ggml's rmse_type 1); L[i] = l + nmax with l in
// -nmax..nmax-1. Weights: qw, or x^2 when qw == nullptr. Returns the scale.
// REQUIRES: n <= 32.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, const float* qw);

// Q3_K reference search with weights x^2; L as MakeQxQuants.
float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);

// Scale + offset searches; L in 0..nmax, *the_min >= 0 is the negated offset.
// Qkx3 treats weights == nullptr as x^2. REQUIRES: n <= 32.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, float rmin,
                     float rdelta, int nstep, bool use_mad);
float MakeQkx3Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, float rmin,
                     float rdelta, int nstep, bool use_mad);

// Quantizes non-negative values (group scales or mins) to 0..nmax.
float MakeQpQuants(int n, int nmax, const float* x, uint8_t* L, const float* qw);

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_QUANT_SEARCH_H_
