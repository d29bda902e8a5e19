// The weight-space errors of one tensor in every candidate type (docs/measure.md,
// "Weight-space errors"): E = Σ_rows Σ_j imp_j (w_j − q_j)², q the type's
// encoding (the `best` search or ggml's) decoded back.
//
// Every (type, block of rows) pair is one task on the thread pool, so all
// threads stay busy across types and the stage has no serial part: each task
// encodes its rows, decodes them into scratch and sums each row's error. The
// per-row errors are added in row order afterwards, so nothing depends on the
// thread count.
//
// Types asked for in full are encoded on every row first (their bytes are
// kept: the calibration types' forward passes run them). Each other type is
// encoded on at most `error_rows` rows, and its whole-tensor error estimated
// from them through its control, the full type nearest in bits per weight,
// whose error e_C,r is known for every row r:
//   - the rows are drawn with probability proportional to e_C,r (systematic
//     sampling over the running sum of e_C, so a row holding a large share of
//     the error is drawn, once or more, and an easy one seldom);
//   - E_T ≈ (E_C / picks) · Σ_picks e_T,r / e_C,r.
// A row that is hard for one type is hard for its neighbours, so e_T / e_C
// varies far less from row to row than e_T itself: the estimate needs far
// fewer rows than scaling the sum of evenly spread rows by all rows / rows
// kept, which is what is done when no full type fits the tensor or the
// control's error is 0. Accuracy on real models: docs/measure.md, "Sampled rows".
#ifndef MIXQ_MEASURE_WEIGHT_ERRORS_H_
#define MIXQ_MEASURE_WEIGHT_ERRORS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "formats/formats.h"
#include "gguf/gguf.h"

namespace mixq::measure {

struct WeightErrorOptions {
  formats::QuantMethod method = formats::QuantMethod::kBest;
  // Rows of the tensor encoded for a type not asked for in full: at most this
  // many (MeasureOptions::error_rows). <= 0: every row.
  int64_t error_rows = 0;
  int n_threads = 2;
};

struct TypeError {
  const formats::Format* format = nullptr;
  int64_t n_bytes = 0;  // the whole tensor's encoding, unpadded: exact
  double error = 0;     // over every row, or the estimate from the sample
  bool estimated = false;
  std::vector<uint8_t> bytes;  // the whole tensor's encoding, for the types asked for in full
  double cpu_seconds = 0;      // thread CPU time of its encodings, decodings and errors
};

// `values`: the tensor as F32 (quantize::TensorToF32); `importance`: ne[0]
// values per matrix (quantize::TensorImportance), or nullptr for unit weights.
// `full[i]`: types[i] is encoded on every row. Fails as formats::QuantizeRows
// does (a type that does not fit the rows, NaN weights).
Result<std::vector<TypeError>> WeightErrors(const gguf::TensorInfo& t, const std::vector<float>& values,
                                            const std::vector<float>* importance,
                                            std::span<const formats::Format* const> types, std::span<const bool> full,
                                            const WeightErrorOptions& options);

// Evenly spread rows: for each matrix the middle row of each of
// `error_rows / matrices` equal stretches; every row when that is all of them
// or error_rows <= 0. WeightErrors draws as many rows as this holds, and these
// ones when a type has no control.
std::vector<int64_t> SampledRows(const gguf::TensorInfo& t, int64_t error_rows);

}  // namespace mixq::measure

#endif  // MIXQ_MEASURE_WEIGHT_ERRORS_H_
