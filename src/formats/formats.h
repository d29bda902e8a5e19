// formats: the ggml tensor types, described by one table.
//
// Every ggml type id has one Format entry: its ggml name, block geometry and,
// for the types mixq can encode, its codec. Everything else in mixq (GGUF
// reader and writer, CLI help, planner candidates, tests, benchmarks) iterates
// this table; nothing outside src/formats switches on a type id.
//
// Codecs work on whole rows (n_elems a multiple of block_elems):
//  - dequantize_row decodes exactly as ggml's to_float does (bit-exact);
//  - quantize_row_ggml encodes byte-for-byte as ggml_quantize_chunk does;
//  - quantize_row_best is mixq's own search: same block format, and per block
//    an importance-weighted squared error never larger than quantize_row_ggml's:
//    sum_j w_j (x_j - y_j)^2 with y the decoded block, w_j = importance[j], or
//    w_j = 1 without importance (docs/formats.md gives the measured ratios).
// Decoders exist for every type of tests/data/refvectors (28); encoders for the
// types EncodableFormatNames() lists.
// `importance` is the per-column imatrix vector (length n_elems, the mean of
// squared activations), or nullptr. Codecs are pure functions: thread-safe.
//
// Format facts are in docs/reference/ggml-formats.md, cited by section.
#ifndef MIXQ_FORMATS_FORMATS_H_
#define MIXQ_FORMATS_FORMATS_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace mixq::formats {

using DequantizeRowFn = void (*)(const uint8_t* src, float* dst, int64_t n_elems);
using QuantizeRowFn = void (*)(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

struct IntDecoding;    // formats/int_rows.h
struct FeedbackCodec;  // formats/feedback.h

// An absent id in the columns that name another type or a llama_ftype.
inline constexpr int32_t kNoType = -1;

// One ggml type and every fact mixq keeps about it. A new type is one entry in
// the table (table.cc); TableTest checks that each entry fills the columns its
// kind needs.
struct Format {
  std::string_view name;  // ggml's spelling, e.g. "Q4_K", "IQ4_XS", "F16"
  uint32_t ggml_id = 0;
  int32_t block_elems = 0;  // 0 for ids ggml removed
  int32_t block_bytes = 0;
  bool quantized = false;                     // false for plain float/int storage
  DequantizeRowFn dequantize_row = nullptr;   // nullptr: mixq cannot decode it
  QuantizeRowFn quantize_row_ggml = nullptr;  // nullptr: mixq cannot encode it
  QuantizeRowFn quantize_row_best = nullptr;  // nullptr: mixq cannot encode it
  // The type ggml's CPU backend rounds activations to before a dot product
  // with this one (its vec_dot_type); kNoType: activations stay F32.
  int32_t vec_dot_id = kNoType;
  // general.file_type (llama_ftype) of a file in which this type holds the
  // most weights; kNoType: llama.cpp has none for it.
  int32_t llama_ftype = kNoType;
  // The next type llama-quantize tries when a row does not fit this type's
  // block; kNoType: F16, which ends every chain.
  int32_t shape_fallback_id = kNoType;
  // The output head's type when this is a file's default type: llama.cpp keeps
  // the most sensitive tensor higher. kNoType: the default itself.
  int32_t output_head_id = kNoType;
  bool needs_imatrix = false;  // ggml refuses to encode it without importance
  bool comfyui_gpu = false;    // ComfyUI-GGUF dequantizes it on the GPU
  // Measured by real KLD when it is a candidate and no calibration types are given.
  bool default_calibration = false;
  // Integer form for the engine's integer products; nullptr: none.
  const IntDecoding* int_decoding = nullptr;
  // Its error-feedback encoder (QuantizeRowsFeedback); nullptr: none.
  const FeedbackCodec* feedback = nullptr;

  double bpw() const { return block_elems > 0 ? 8.0 * block_bytes / block_elems : 0.0; }
  bool can_encode() const { return quantize_row_ggml != nullptr; }
  bool can_decode() const { return dequantize_row != nullptr; }
  bool can_feedback() const { return feedback != nullptr; }
  bool removed() const { return block_elems == 0; }
  // The formats the id columns name; nullptr for kNoType.
  const Format* vec_dot() const;
  const Format* shape_fallback() const;
  const Format* output_head() const;
};

// All ggml type ids 0..kGgmlTypeCount-1, indexed by id.
inline constexpr uint32_t kGgmlTypeCount = 43;
std::span<const Format> AllFormats();

// nullptr when the id is out of range.
const Format* FindFormat(uint32_t ggml_id);
// Case-insensitive ggml name ("q4_k", "Q4_K"); nullptr when unknown.
const Format* FindFormatByName(std::string_view name);
// Comma-separated names of the types mixq can encode, in table order.
std::string EncodableFormatNames();
// Those mixq can decode but not encode.
std::string DecodeOnlyFormatNames();

// Bytes of one row of n_elems; InvalidArgument when n_elems is not a multiple of
// the block size or the format is removed.
Result<int64_t> RowBytes(const Format& format, int64_t n_elems);
bool RowFits(const Format& format, int64_t n_elems);

enum class QuantMethod {
  kGgml,  // byte-identical to llama.cpp
  kBest,  // mixq's search (default): never a larger weighted error
};

// Encodes n_rows rows of n_per_row floats into dst (n_rows * RowBytes bytes),
// spreading rows over n_threads (<= 0: all cores). The output does not depend
// on the thread count. Fails with InvalidArgument for shape mismatches,
// NotSupported for a needs_imatrix type without importance, and Corruption
// when the input holds NaN or Inf (naming the row).
// REQUIRES: importance is nullptr or has n_per_row values.
Status QuantizeRows(const Format& format, QuantMethod method, const float* src, uint8_t* dst, int64_t n_rows,
                    int64_t n_per_row, const float* importance, int n_threads);

// ---- error feedback (GPTQ/OBQ) ----
//
// Rounding that knows the whole second moment H = Σ x xᵀ of a weight's inputs
// x, not only its diagonal, to lower the output error tr(ΔW H ΔWᵀ) (GPTQ,
// Frantar et al. 2022). Each row's columns (input dimensions) are quantized
// in order; the error of each is spread over the columns not yet quantized
// through the factor U below. A block's scales are fixed when its first
// column is reached: quantize_row_best on the weights as updated so far, with
// the importance (H's diagonal) as its weights; then its columns are rounded
// one by one to the nearest value those scales allow. In the super-block
// types (K-quants, IQ4_XS) the block search fixes the f16 multipliers, and
// each 16/32-column group's integer scale (and min) is chosen again when its
// first column is reached, from its weights as updated by then: the unit of
// the sequential step is the group (internal::RechooseGroup). The output is
// the format itself: every GGUF loader decodes it.

// What the feedback encoder needs of one weight's input covariance H (n x n,
// row-major, symmetric): the damped H_d = H + damp · mean(diag H) · I and U,
// upper triangular with Uᵀ U = H_d⁻¹, both n x n floats, row-major (8 n²
// bytes together), and the number of independent tokens H is worth
// (`tokens`; 0: H is exact), from which the refinement sets how far it
// trusts H's off-diagonal (internal::CrossTermShrinkage). An all-zero H gives
// the identity for both (no feedback: plain rounding at the best scales).
// When rounding leaves the damped H indefinite, the damping grows tenfold, up
// to three times; Corruption after that, and for non-finite H. Runs on
// n_threads (<= 0: all cores); the result does not depend on the thread
// count.
struct FeedbackMatrices {
  std::vector<float> u;
  std::vector<float> h;
  double tokens = 0;
};
Result<FeedbackMatrices> FeedbackFactor(std::span<const double> h, int64_t n, double damp, int n_threads = 1,
                                        double tokens = 0);

// As QuantizeRows with the error-feedback encoder; NotSupported for formats
// without one (can_feedback()), InvalidArgument when `feedback` is not
// n_per_row x n_per_row. After a row's feedback pass its codes are refined,
// every group's scale held, by coordinate descent on the row's output error
// (w − y)ᵀ H_d (w − y), H_d's off-diagonal shrunk by as much as its token
// count leaves uncertain (internal::RefineRow, CrossTermShrinkage); in the super-block types each
// group's integer scale (and min) is then chosen again on that error, its
// codes re-refined with it, the f16 multipliers held (internal::RefitGroups).
// REQUIRES: feedback from FeedbackFactor for n_per_row; importance nullptr or n_per_row values.
Status QuantizeRowsFeedback(const Format& format, const float* src, uint8_t* dst, int64_t n_rows, int64_t n_per_row,
                            const float* importance, const FeedbackMatrices& feedback, int n_threads);

// Decodes n_rows rows; NotSupported when the format has no decoder.
Status DequantizeRows(const Format& format, const uint8_t* src, float* dst, int64_t n_rows, int64_t n_per_row,
                      int n_threads);

// Index of the first NaN or infinite value among x[0..n), or -1.
int64_t FirstNonFinite(const float* x, int64_t n);

// IEEE conversions exactly as ggml performs them (ggml-formats.md §2.2).
float F16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);
float BF16ToF32(uint16_t bits);
uint16_t F32ToBF16(float value);

}  // namespace mixq::formats

#endif  // MIXQ_FORMATS_FORMATS_H_
