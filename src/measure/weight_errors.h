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
// Types asked for in full are encoded on every row (their bytes are kept: the
// calibration types' forward passes run them). The others are encoded on a
// sample of at most `error_rows` rows, spread evenly over each matrix, and
// their whole-tensor error is a ratio estimate: the full type nearest in bits
// per weight (the control) has its error on every row, so
//   E_T ≈ E_control(all rows) · Σ_sample e_T / Σ_sample e_control.
// A row that is hard for one type is hard for its neighbours, so the ratio
// varies far less from row to row than the errors themselves, and the
// estimate needs far fewer rows than scaling Σ_sample e_T by all rows / rows
// kept (which is used when no full type fits the tensor, or the control's
// sampled error is 0). The estimator's accuracy on real models:
// docs/measure.md, "Sampled rows".
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
  // many (an MoE tensor of E matrices keeps error_rows / E rows of each).
  // <= 0: every row.
  int64_t error_rows = 1024;
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

// The rows WeightErrors encodes for the sampled types: for each matrix the
// middle row of each of `error_rows / matrices` equal stretches; every row
// when that is all of them or error_rows <= 0.
std::vector<int64_t> SampledRows(const gguf::TensorInfo& t, int64_t error_rows);

}  // namespace mixq::measure

#endif  // MIXQ_MEASURE_WEIGHT_ERRORS_H_
