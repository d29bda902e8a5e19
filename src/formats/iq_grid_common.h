// ggml's search for one group of an IQ2/IQ3 super-block (ggml-formats.md
// §2.9), shared by the five lattice types' encoders (iq_grid_quants.cc).
//
// A group (16 or 32 elements) is stored as one scale, grid points for its
// 4- or 8-element vectors and a sign byte per 8 elements. ggml folds the signs
// out (|x|, and for the types whose sign bytes have 7 bits, an even number of
// negatives: the least important element of an odd set is left negative),
// then tries scales around max/(2n-1): each element is rounded to a level,
// a vector whose levels are not a grid point takes the best of the grid points
// listed for it, and the least-squares scale of the resulting points is kept
// when it explains more of the group. A second pass re-rounds with the kept
// scale. Floats are combined in ggml's order: any change changes output bytes.
#ifndef MIXQ_FORMATS_IQ_GRID_COMMON_H_
#define MIXQ_FORMATS_IQ_GRID_COMMON_H_

#include <cstdint>

#include "formats/iq_lattice.h"

namespace mixq::formats::internal {

struct GridSearchRule {
  Grid grid;
  int n_levels;  // ggml's kMaxQ
  int first_try, last_try;
  float try_step;
  bool even_signs;     // 7-bit sign fields: an even number of negatives per 8
  bool qp_start;       // IQ2_XXS: the tries spread around make_qp_quants' maximum
  bool start_on_grid;  // what the second pass assumes when no try was taken
  bool refit_all;      // the second pass re-rounds every vector, not only off-grid ones
  bool refit_always;   // IQ2_XXS: the second pass runs whenever the scale is positive
  float eps;           // groups whose maximum is below this are stored as zeros
};

struct GridGroup {
  float scale = 0;
  uint16_t index[8] = {};  // grid point per vector
  uint8_t signs[4] = {};   // per 8 elements: bit i = element i negative
  bool skipped = true;     // an all-zero group: nothing of it is stored
};

// kDims: elements per grid point (8 for IQ2, 4 for IQ3); kGroup: 16 or 32.
template <int kDims, int kGroup>
void GgmlGridGroup(const GridSearchRule& rule, const float* x, const float* weight, GridGroup* out);

// Sum of squares in element order (ggml's sumx2).
float SumOfSquares(const float* x, int n);

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_IQ_GRID_COMMON_H_
