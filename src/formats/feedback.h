// Internal: what the error-feedback quantizer (feedback.cc) needs to know of a
// block format, one FeedbackCodec per format (feedback_codecs.cc).
//
// Once a block's scales are fixed, element j (group g = j / group_size)
// decodes to scale[g] * level(q) - offset[g] for one code q in qmin..qmax,
// level(q) = q, or levels[q - qmin] for a codebook. That is all the quantizer
// needs to round one column at a time and to know the value it wrote.
#ifndef MIXQ_FORMATS_FEEDBACK_H_
#define MIXQ_FORMATS_FEEDBACK_H_

#include <cstdint>
#include <vector>

namespace mixq::formats {

struct Format;

struct FeedbackCodec {
  int group_size = 0;
  int qmin = 0;
  int qmax = 0;
  const int8_t* levels = nullptr;  // nullptr: level(q) = q
  // Every group's scale and offset of an encoded block, as its decoder
  // computes them (offset 0 for the symmetric types).
  void (*read_grid)(const uint8_t* block, float* scale, float* offset) = nullptr;
  // Replaces the block's quants with codes[block_elems] (qmin..qmax), keeping its scales.
  void (*store_codes)(const int* codes, uint8_t* block) = nullptr;
  // For the super-block types: scale[g] = d · sc[g] and offset[g] = dmin ·
  // m[g] with d, dmin the block's f16 multipliers (at byte d_at, dmin_at;
  // dmin_at -1: no offsets) and integers sc in sc_min..sc_max, m in
  // 0..m_max; set_group stores group g's sc (and m). nullptr: one group per
  // block (the 32-element types), whose scale is the block's search.
  void (*set_group)(uint8_t* block, int g, int sc, int m) = nullptr;
  int d_at = 0;
  int dmin_at = -1;
  int sc_min = 0;
  int sc_max = 0;
  int m_max = 0;
};

namespace internal {

// U = V⁻¹ (n x n floats, row major, zero below the diagonal) where H = V Vᵀ
// with V upper triangular (Cholesky from the last index down), so that
// Uᵀ U = H⁻¹. a holds H (row major; its upper triangle is read) and is
// overwritten. False when a pivot is not positive (H not positive definite
// in floating point). Spreads over n_threads (<= 0: all cores); the result
// does not depend on the thread count (feedback_factor.cc).
bool InverseUpperFactor(std::vector<double>& a, int64_t n, int n_threads, std::vector<float>* u);

// Encodes n_rows rows of n values with error feedback through the factor u
// (FeedbackMatrices::u), then refines each row with the damped covariance h
// (RefineRow; for the super-block types RefitGroups, and RefineRow again when
// a group moved; h nullptr: the feedback pass alone), h's off-diagonal
// shrunk by CrossTermShrinkage of the pass's row for H's `tokens`
// (FeedbackMatrices::tokens): the work of QuantizeRowsFeedback for one range
// of rows.
void QuantizeRowsWithFeedback(const Format& format, const float* src, uint8_t* dst, int64_t n_rows, int64_t n,
                              int64_t row_bytes, const float* importance, const float* u, const float* h,
                              double tokens = 0);

// How far the refinement shrinks h's off-diagonal towards 0 (its diagonal
// held) for the row w decoded to y, h summed over `tokens` independent
// tokens (0 or less: h is exact, no shrinkage): α in [0, 1], the refinement
// then using h_x = diag(h) + (1 − α) offdiag(h).
//
// Why: besides h_jj, a column's move is decided by its cross term c_j =
// Σ_{k≠j} h_jk Δ_k (Δ = w − y), how far it can make up for the other
// columns' errors. An entry of a second-moment sum over T independent tokens
// varies by about h_jj h_kk / T (Wishart), so the cross terms carry noise of
// Σ_j Var(c_j) ≈ tr(h) · Σ_k h_kk Δ_k² / T in all, of the order of n / T
// times the diagonal's share: the refinement, which optimizes against the
// measured h, fits that noise where the tokens are few against n. Scaling
// the cross terms by 1 − α with α = that noise / Σ_j c_j² (the measured
// ones: signal plus noise), capped at 1, is Wiener's filter for them: the
// factor with the least expected squared error. α falls as 1 / T, so with
// many tokens h is used as measured.
double CrossTermShrinkage(const float* h, int64_t n, const float* w, const float* y, double tokens);

// Sweeps of RefineRow at most.
inline constexpr int kRefineSweeps = 3;

// The feedback pass rounds each column once, knowing only the columns before
// it; RefineRow revisits every code knowing all the others. With every
// group's scale and offset held (element j of group g = j / c.group_size
// decodes to scale[g] · level(codes[j]) − offset[g]), it lowers the row's
// output error E(y) = (w − y)ᵀ h (w − y) by coordinate descent: for column j
// in order, given all other columns, E is least at y_j + r_j / h_jj with
// r = h (w − y), and the nearest value the group allows there is the best
// code for j; a code changes only when that lowers E, and r follows each
// change (O(n)). At most kRefineSweeps sweeps over the row, fewer when a
// sweep changes nothing. E never increases; codes stay in c.qmin..c.qmax.
// Returns the number of code changes. Columns with h_jj <= 0 are left alone.
//
// REQUIRES: w and codes hold n values, n a multiple of c.group_size; scale and
// offset n / c.group_size; h n x n, row-major, symmetric.
// `cross` multiplies h's off-diagonal entries (CrossTermShrinkage: 1 − α);
// E and the coordinate minimum are those of that matrix.
int64_t RefineRow(const FeedbackCodec& c, const float* w, int64_t n, const float* h, const float* scale,
                  const float* offset, int* codes, double cross = 1);

// The step that makes a 16/32-column group of a super-block the unit of the
// sequential step: when the encoder reaches group g's first column, with the
// block's multipliers d and dmin fixed, it re-chooses the group's sc and m
// for the group's weights v as updated so far (the block search saw them
// before the feedback of the block's earlier groups reached them). Coordinate
// descent from the current sc and m (steps of up to 8 in sc, then in m, until
// neither moves; one pass over sc for the types without mins) on the
// importance-weighted error of nearest rounding of v; a move is taken only
// when it lowers that error, so the group never ends worse than with the
// block search's choice. *scale and *offset (the group's, read_grid's
// values) become the chosen ones.
//
// REQUIRES: c.set_group; v and importance (nullptr: all 1) hold c.group_size values.
void RechooseGroup(const FeedbackCodec& c, uint8_t* block, int g, const float* v, const float* importance, float* scale,
                   float* offset);

// After RefineRow, for the super-block types: each group's sc (and m) chosen
// again on the row's output error (w − y)ᵀ h (w − y), the block's d and dmin
// held: every sc, m within kRefit steps of the group's own, each with the
// group's codes re-refined by coordinate descent given all other columns; the
// best is taken when it lowers the error, stored in the row's block
// (set_group) with the group's codes in `codes`. Returns how many groups moved.
// REQUIRES: c.set_group; row holds the row's n / block_elems blocks, codes its n codes.
// `cross` as for RefineRow.
int64_t RefitGroups(const FeedbackCodec& c, const float* w, int64_t n, const float* h, int64_t block_elems,
                    int64_t block_bytes, uint8_t* row, int* codes, double cross = 1);

extern const FeedbackCodec kFeedbackQ4_0;
extern const FeedbackCodec kFeedbackQ8_0;
extern const FeedbackCodec kFeedbackQ2K;
extern const FeedbackCodec kFeedbackQ3K;
extern const FeedbackCodec kFeedbackQ4K;
extern const FeedbackCodec kFeedbackQ5K;
extern const FeedbackCodec kFeedbackQ6K;
extern const FeedbackCodec kFeedbackIQ4XS;

}  // namespace internal
}  // namespace mixq::formats

#endif  // MIXQ_FORMATS_FEEDBACK_H_
