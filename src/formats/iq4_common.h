// Pieces of the IQ4_NL / IQ4_XS encoders shared by ggml's search (iq4.cc) and
// mixq's (iq4_best.cc). Formats: ggml-formats.md §2.4, §2.6, §2.8.
#ifndef MIXQ_FORMATS_IQ4_COMMON_H_
#define MIXQ_FORMATS_IQ4_COMMON_H_

#include <cstdint>

#include "formats/blocks.h"

namespace mixq::formats::internal {

// 2 * mean of x^2 over n elements, computed as ggml does.
float IQ4Sigma2(const float* x, int n);
// The 32 search weights of a group: qw * sqrt(sigma2 + x^2), or x^2 without importance.
void IQ4Weights(const float* x, const float* qw, float sigma2, float* w);
// ggml's scale search for one group of 32 (ntry = 7); 0 for an all-zero group.
float IQ4GroupScaleGgml(const float* x, const float* w);
// 32 indices (0..15) into 16 bytes: element j low nibble, j + 16 high nibble.
void IQ4PackNibbles(const uint8_t* L, uint8_t* qs);
// ls[g] in -32..31.
void IQ4XSSetScales(const int* ls, BlockIQ4XS* b);
int IQ4XSGetScale(const BlockIQ4XS& b, int g);

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_IQ4_COMMON_H_
