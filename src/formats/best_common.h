// Shared machinery of mixq's own encoders (quantize_<type>_best).
//
// Every best encoder first writes ggml's encoding of the row, then refines each
// block starting from ggml's solution, and stores the refined block only when
// its error, measured on the decoded values, is strictly smaller. The error of
// a block is sum_j w_j * (x_j - y_j)^2 in double, y the block decoded by the
// type's own dequantizer, w_j = importance[j] (or 1 without importance); so
// "never worse than ggml" holds by construction, block by block.
//
// The searches themselves use float arithmetic and four-lane partial sums; they
// only propose candidates, the exact measure above decides.
#ifndef MIXQ_FORMATS_BEST_COMMON_H_
#define MIXQ_FORMATS_BEST_COMMON_H_

#include <cstdint>
#include <cstring>

#include "formats/blocks.h"
#include "formats/lanes.h"

namespace mixq::formats::internal {

// 256 ones: the weights of blocks quantized without importance.
const float* UnitWeights();

// The weighted squared error of decoded values y against x, in double.
double WeightedError(const float* x, const float* y, const float* w, int n);

// Decodes one block with `dequantize` (a dequantize_<type> kernel) and returns its error.
template <typename Block>
double BlockError(void (*dequantize)(const uint8_t*, float*, int64_t), const Block& b, int n_elems, const float* x,
                  const float* w) {
  uint8_t bytes[sizeof(Block)];
  std::memcpy(bytes, &b, sizeof(Block));
  float y[kQKK];
  dequantize(bytes, y, n_elems);
  return WeightedError(x, y, w, n_elems);
}

// The frame of every best encoder: `dst` already holds ggml's encoding of the
// row; refine(x, w, &block) improves a copy of each block, which replaces
// ggml's only when its decoded error is strictly smaller.
template <typename Block, int kElems, typename Refine>
void RefineRow(const float* src, uint8_t* dst, int64_t n_elems, const float* importance,
               void (*dequantize)(const uint8_t*, float*, int64_t), Refine&& refine) {
  for (int64_t i = 0; i < n_elems / kElems; ++i) {
    const float* x = src + i * kElems;
    const float* w = importance != nullptr ? importance + i * kElems : UnitWeights();
    Block ggml = LoadBlock<Block>(dst, i);
    Block ours = ggml;
    refine(x, w, &ours);
    if (BlockError(dequantize, ours, kElems, x, w) < BlockError(dequantize, ggml, kElems, x, w)) {
      StoreBlock(ours, dst, i);
    }
  }
}

// Error of a group of n (a multiple of 4) values coded as y = a*q - b, q in
// 0..qmax chosen by rounding; writes q when codes != nullptr.
float AffineGroupError(const float* x, const float* w, int n, float a, float b, float qmax, uint8_t* codes);

// Error of a group coded as y = a*q, q in qmin..qmax chosen by rounding.
float SymmetricGroupError(const float* x, const float* w, int n, float a, float qmin, float qmax, int8_t* codes);

// Many candidates at once: errors[k] is AffineGroupError(tries[k].x,
// tries[k].w, n, tries[k].a, tries[k].b, qmax, nullptr), bit for bit. The wide
// ISAs put several candidates in one vector (four elements each), which
// shortens the latency-bound chains of additions that a single group's error
// is; searches collect the candidates of a step and then scan the errors in
// their own order, so their choices do not change.
struct AffineTry {
  const float* x;
  const float* w;
  float a;
  float b;
};
void AffineGroupErrors(const AffineTry* tries, int count, int n, float qmax, float* errors);

// The same for SymmetricGroupError (codes nullptr).
struct SymmetricTry {
  const float* x;
  const float* w;
  float a;
};
void SymmetricGroupErrors(const SymmetricTry* tries, int count, int n, float qmin, float qmax, float* errors);

// The f16 value `steps` representable values away from h in magnitude, same
// sign; h itself when that would leave the finite range or cross zero.
uint16_t HalfNeighbor(uint16_t h, int steps);

// The rounded codes for scale a (y = a*q, q in qmin..qmax), then the
// least-squares scale for those codes; 0 when all codes are 0. One pass.
float RefitSymmetricScale(const float* x, const float* w, int n, float a, float qmin, float qmax);

// The rounded codes for y = a*q - b (q in 0..qmax), then the least-squares
// (a, b) for those codes; false when the fit is degenerate. One pass.
bool RefitAffine(const float* x, const float* w, int n, float a, float b, float qmax, float* fitted_a, float* fitted_b);

// Least-squares fits for fixed integer codes.
// y = s * t: returns s (0 when sum w t^2 == 0).
float FitScale(const float* x, const float* w, const float* t, int n);
// y = s * t - m * u: writes s and m; false when the system is singular.
bool FitScaleOffset(const float* x, const float* w, const float* t, const float* u, int n, float* s, float* m);

// The f16 scale of a block with fixed codes, decoded as d * t_j: the
// energy-matching d = sqrt(sum w x^2 / sum w t^2) rounded to f16, then of it
// and its two f16 neighbours on each side the one with the least
// sum w (x - d t)^2; `current` when the fit is degenerate. The least-squares d
// (sum w x t / sum w t^2) is smaller by the correlation of x and t: it lowers
// that error but shrinks the block, which at 1.5-3.5 bits raised the model's
// KLD (docs/formats.md); ggml's fudge factors on its IQ scales make the same
// correction by constants.
uint16_t EnergyMatchedScale(const float* x, const float* w, const float* t, int n, uint16_t current);

inline float SumLanes(Lanes4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_BEST_COMMON_H_
