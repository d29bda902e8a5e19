// Integer forms of block formats, for integer dot products with activations
// rounded to Q8_K or Q8_0 blocks (the engine's integer matrix product).
//
// A row decodes to int8 values q and, per group of group_elems values, a
// float scale and min such that value = scale · q − min reproduces
// dequantize_row bit for bit (ggml computes the same products in the same
// order). Formats without mins (symmetric ones) write none.
#ifndef MIXQ_FORMATS_INT_ROWS_H_
#define MIXQ_FORMATS_INT_ROWS_H_

#include <cstdint>

#include "formats/formats.h"

namespace mixq::formats {

// Format::int_decoding, for the formats that have one (Q4_K, Q5_K, Q6_K, Q8_0).
struct IntDecoding {
  int32_t group_elems;  // divides the format's block_elems
  bool has_mins;
  // q: n_elems values; scales (and mins when has_mins): n_elems / group_elems.
  void (*decode_row)(const uint8_t* src, int8_t* q, float* scales, float* mins, int64_t n_elems);
};

}  // namespace mixq::formats

#endif  // MIXQ_FORMATS_INT_ROWS_H_
