// Pieces of the IQ1_S / IQ1_M formats shared by the decoder
// (iq_grid_dequant.cc), ggml's search (iq1_quants.cc) and mixq's
// (iq1_best.cc). Formats: ggml-formats.md §2.9.
//
// An IQ1 element decodes as dl * (g + delta): g in {-1, 0, 1} from the grid
// point of its 8-element vector, delta = +-1/8 (IQ1_S: per group of 32, IQ1_M:
// per vector), dl = d * (2s + 1) with a 3-bit group scale code s.
#ifndef MIXQ_FORMATS_IQ1_COMMON_H_
#define MIXQ_FORMATS_IQ1_COMMON_H_

#include <cstdint>

namespace mixq::formats::internal {

inline constexpr float kIQ1Delta = 0.125f;

// The three values of g + delta for each sign of delta, by level (g + 1).
struct IQ1Shifted {
  float plus[3];
  float minus[3];
};
inline constexpr IQ1Shifted kIQ1Shifted = {{-1 + kIQ1Delta, kIQ1Delta, 1 + kIQ1Delta},
                                           {-1 - kIQ1Delta, -kIQ1Delta, 1 - kIQ1Delta}};

// Every grid point's values g + delta as float, 16 per point: the 8 with
// delta = +1/8, then the 8 with -1/8 (for searching four points at a time).
const float* IQ1ShiftedTable();
inline const float* IQ1Values(const float* table, int p, bool plus) { return table + 16 * p + (plus ? 0 : 8); }

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_IQ1_COMMON_H_
