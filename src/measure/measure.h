// measure: predicted cost of quantizing each tensor of an LLM to each type,
// as the planner's Measurement (src/plan/plan.h).
//
// The cost model (docs/measure.md):
//  (a) E[t][T]: importance-weighted squared quantization error of tensor t in
//      type T, Σ_rows Σ_j imp_j (w_j - q_j)², from mixq's own quantizer;
//  (b) a per-tensor map from E to ΔKLD of the model's output, calibrated with
//      real forward passes: for a few calibration types, t alone is replaced by
//      its quantized version and t's layer is rerun on cached hidden states;
//      its KLD against the original logits on the calibration text, either
//      propagated to the output or predicted from the layer's local change
//      (CalibrationScheme), gives points (E, KLD) through which
//      cost = g_t · E^α_t is fitted in log-log space (α_t = 1 with one point);
//  (c) additivity: ValidateMixes compares predicted (Σ costs) with real KLD of
//      whole random mixes.
// Each tensor's results are appended to a cache file as soon as they exist,
// so a killed run resumes where it stopped. Thread-compatible.
#ifndef MIXQ_MEASURE_MEASURE_H_
#define MIXQ_MEASURE_MEASURE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "plan/plan.h"
#include "quantize/quantize.h"

namespace mixq::measure {

// How the real ΔKLD of each tensor in a calibration type is obtained.
enum class CalibrationScheme {
  // The substitution is propagated to the output: n_layer - l layer passes
  // for a layer-l tensor, quadratic in depth over the model.
  kExact,
  // Only the tensor's layer is rerun; its local perturbation of the residual
  // stream is scaled by a factor per tensor role and type, interpolated over
  // depth from exact propagation at `probe_layers` evenly spaced layers.
  // Linear in depth for a fixed number of probe layers.
  kLinear,
};

struct MeasureOptions {
  // Candidate types (empty: every encodable quantized type plus the tensor's
  // stored float type at cost 0). Types that need an imatrix (the format
  // table's needs_imatrix) are candidates only for tensors the imatrix covers;
  // asking for one without an imatrix is InvalidArgument.
  std::vector<const formats::Format*> types;
  // Types whose real ΔKLD is measured per tensor (empty: Q2_K and Q4_K, or the
  // lowest and a middle candidate).
  std::vector<const formats::Format*> calibration_types;
  CalibrationScheme scheme = CalibrationScheme::kLinear;
  int probe_layers = 4;  // kLinear: layers measured exactly, first and last included
  const quantize::Imatrix* imatrix = nullptr;
  // Recorded in the output's metadata by quantization, so it counts in the
  // fixed bytes: pass the same string to QuantizeOptions::imatrix_path.
  std::string imatrix_path;
  formats::QuantMethod method = formats::QuantMethod::kBest;
  int64_t n_ctx = 512;
  int64_t n_chunks = 4;  // calibration chunks of n_ctx tokens
  int32_t bos_id = -1;   // >= 0: replaces each chunk's first token, as in evaluation
  int n_threads = 2;
  // Rows of a tensor whose weight-space error is computed for a candidate that
  // is not a calibration type: at most this many, spread evenly over the rows
  // of each matrix, from which the whole tensor's error is estimated
  // (measure/weight_errors.h; the candidate's bytes are exact). <= 0: every row.
  int64_t error_rows = 256;
  engine::LoadOptions load;  // the device the forward passes run on
  std::string cache_path;    // empty: no resume
  std::function<void(size_t done, size_t total, const std::string& what)> on_progress;
  // Called with one line for each noteworthy event (a stale cache). Optional.
  std::function<void(const std::string&)> on_note;
};

struct TensorFit {
  std::string name;
  double gain = 0;                                // g_t
  double alpha = 1;                               // α_t
  std::vector<std::pair<double, double>> points;  // (E, measured KLD)
};

struct MeasureResult {
  plan::Measurement measurement;
  std::vector<TensorFit> fits;
  double seconds = 0;
  // Of `seconds`, in the calibration's forward passes (the rest is mostly the
  // weight-space errors of every candidate type).
  double forward_seconds = 0;
  // Of `seconds`, in the weight-space errors (measure/weight_errors.h), and
  // the thread CPU seconds of those of each candidate type, by name; both
  // over the tensors measured by this run (not those read from the cache).
  double weight_seconds = 0;
  std::map<std::string, double> type_cpu_seconds;
  int64_t n_forward_layers = 0;  // layer passes run for calibration (cost measure)
};

// `tokens`: the calibration text's tokens (without BOS handling; chunks get BOS
// as in evaluation). InvalidArgument when there is not one whole chunk.
Result<MeasureResult> MeasureModel(const gguf::GgufFile& file, std::span<const int32_t> tokens,
                                   const MeasureOptions& options);

struct MixCheck {
  double predicted = 0;  // Σ unit costs of the mix
  double measured = 0;   // real mean KLD of the whole mix on the same text
  double bpw = 0;
};
struct ValidationResult {
  std::vector<MixCheck> mixes;
  double spearman = 0;      // rank correlation predicted vs measured
  double median_ratio = 0;  // median of measured / predicted
};

// Builds n_mixes random mixes (each unit a random candidate, biased to span a
// range of sizes), and measures their real KLD with every tensor substituted.
Result<ValidationResult> ValidateMixes(const gguf::GgufFile& file, std::span<const int32_t> tokens,
                                       const MeasureResult& measured, const MeasureOptions& options, int n_mixes,
                                       uint64_t seed);

}  // namespace mixq::measure

#endif  // MIXQ_MEASURE_MEASURE_H_
