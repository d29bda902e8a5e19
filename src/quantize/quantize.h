// quantize: turning a GGUF model into another GGUF with chosen per-tensor
// types, streaming tensor by tensor.
//
// Three pieces:
//  - Imatrix: llama.cpp importance matrices (GGUF and legacy .dat), read and
//    written (ggml-formats.md §3);
//  - TypeRules: which type each tensor gets (a default type, REGEX=TYPE
//    overrides, exact per-tensor assignments from a plan, llama.cpp's defaults
//    for token_embd/output, 1-D tensors kept F32, shape fallbacks);
//  - QuantizeModel: reads the input through the mapping, converts one tensor at
//    a time and writes the output atomically. Peak memory is about one tensor
//    in F32 plus its encoding.
// All functions are thread-compatible; QuantizeModel uses n_threads workers.
#ifndef MIXQ_QUANTIZE_QUANTIZE_H_
#define MIXQ_QUANTIZE_QUANTIZE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/name_pattern.h"
#include "base/status.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "plan/plan.h"

namespace mixq::quantize {

// ---- importance matrices ----

struct ImatrixEntry {
  std::vector<float> in_sum2;  // raw sums of squared activations, n_in * n_mat
  std::vector<float> counts;   // tokens seen, one per matrix (n_mat; 1 unless MoE)
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // by weight name, e.g. "blk.0.ffn_down.weight"
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0;
  uint32_t chunk_size = 0;

  // Per-column importance (mean squared activation) for a weight of n_mat
  // matrices (3-D tensors of routed experts: ne[2]) with rows of n_per_row:
  // n_mat slices of n_per_row values, each from its matrix's own token count
  // (1 for matrices no token reached, as llama-quantize does), or nullopt
  // when absent. Corruption on a size mismatch (an imatrix of another model).
  Result<std::optional<std::vector<float>>> Importance(const std::string& tensor, int64_t n_per_row,
                                                       int64_t n_mat = 1) const;
};

// Checks an imatrix against the tensors that will be quantized with it:
// Corruption when an entry's length differs from its tensor's rows, or when
// no entry names any of them (an imatrix made for another model). Returns a
// one-line note listing the tensors it has no entry for (they are quantized
// without importance), or "" when it covers them all. token_embd.weight is
// not counted: a lookup table sees no activations, so no imatrix has it.
Result<std::string> CheckImatrixCoverage(const Imatrix& imatrix, std::span<const gguf::TensorInfo* const> tensors);

// Reads a GGUF imatrix, falling back to the legacy .dat format. Corruption on
// malformed files and on NaN/Inf or negative values.
Result<Imatrix> LoadImatrix(const std::string& path);
// The same for an in-memory image (tests, fuzzing); `name` goes into errors.
Result<Imatrix> ParseImatrix(std::span<const uint8_t> bytes, const std::string& name);
// Writes the GGUF imatrix format llama-quantize reads (atomically), with
// `extra_metadata` after the imatrix's own keys.
Status SaveImatrix(const Imatrix& imatrix, const std::string& path,
                   const std::vector<gguf::KeyValue>& extra_metadata = {});

// ---- input covariances (for error-feedback quantization) ----

// H = Σ x xᵀ over the calibration tokens of one linear layer's input x: n_in ×
// n_in, row-major, symmetric. Weights that read the same input share one.
struct InputCovariance {
  int64_t n_in = 0;
  int64_t n_tokens = 0;
  // How many independent tokens H's off-diagonal is worth (<= n_tokens):
  // neighbouring tokens of a text are alike, so sums over them vary more
  // than sums over as many independent draws would. Estimated from how the
  // sums of the source's batches of tokens differ (EffectiveTokens); 0: not
  // estimated (H is then taken as exact).
  double effective_tokens = 0;
  std::vector<double> sums;

  // The mean squared input per column: the imatrix of the same tokens.
  std::vector<float> MeanDiagonal() const;
};

// The effective token count of H = sums (n x n, symmetric, over n_tokens
// tokens), from the spread of the sums of n_batches disjoint batches of those
// tokens, G_b over t_b tokens: batch_spread = Σ_b ‖offdiag G_b‖²_F / t_b.
// The batch means vary about H / n_tokens as much as the tokens' dependence
// makes them; the count returned is the number of independent Gaussian
// tokens that would make H's off-diagonal vary as much (quantize/covariance.cc
// derives it). In 1..n_tokens; n_tokens when fewer than 2 batches or no
// spread can be measured.
double EffectiveTokens(std::span<const double> sums, int64_t n, int64_t n_tokens, int64_t n_batches,
                       double batch_spread);

// Covariances delivered pass by pass (e.g. a forward pass one layer at a
// time), so that only one pass's matrices are ever held: a 14336-wide FFN
// input alone takes 1.6 GB in double.
class CovarianceSource {
 public:
  virtual ~CovarianceSource() = default;
  virtual int64_t n_passes() const = 0;
  // The pass that sees `tensor`'s input; -1 when none does (token_embd, norms).
  virtual int64_t PassOf(const std::string& tensor) const = 0;
  // Runs pass p. REQUIRES: passes run in order 0, 1, ...; each drops the
  // covariances of the one before.
  virtual Status Run(int64_t pass) = 0;
  // The covariance of `tensor`'s input from the pass run last; for a routed
  // expert's slice (expert >= 0), of the tokens routed to it. nullptr when
  // that pass did not see it (or routed no token to the expert).
  virtual const InputCovariance* Find(const std::string& tensor, int64_t expert) const = 0;
  const InputCovariance* Find(const std::string& tensor) const { return Find(tensor, -1); }
};

// ---- type choice ----

// A type named on the command line (`what`, e.g. "--type"): one mixq can
// encode, else InvalidArgument listing the valid names.
Result<const formats::Format*> ParseTypeName(std::string_view name, std::string_view what);

struct TensorTypeOverride {
  NamePattern pattern;  // searched in the tensor name (llama-quantize semantics)
  const formats::Format* format = nullptr;
};
// Parses "REGEX=TYPE"; InvalidArgument with the valid type names otherwise.
Result<TensorTypeOverride> ParseTensorTypeOverride(const std::string& text);

// What differs between model families in the choice of types, as data: which
// tensors are quantized at all and whether llama.cpp's output/token-embedding
// rules apply. Diffusion models follow city96's patched llama-quantize
// (comfyui-gguf.md §2.7): only 2-D weights, entry/exit layers kept as they are.
struct ArchProfile {
  std::string_view architecture;                      // general.architecture; "" for the language-model default
  bool only_2d = false;                               // quantize tensors of exactly 2 dims, no more
  std::span<const std::string_view> keep_input_type;  // name fragments of weights never quantized
  bool llm_head_rules = true;                         // output.weight / token_embd.weight get llama.cpp's types
};
// The profile of an architecture; the language-model default for unknown ones.
const ArchProfile& ProfileFor(std::string_view architecture);
// The profile of a file's general.architecture.
const ArchProfile& ProfileOf(const gguf::GgufFile& file);

struct TypeRules {
  const formats::Format* default_format = nullptr;      // the --type; nullptr: quantize nothing
  std::vector<TensorTypeOverride> overrides;            // first match wins
  std::map<std::string, const formats::Format*> exact;  // from a plan: tensor name -> type
  const formats::Format* output_format = nullptr;       // nullptr: llama.cpp's default
  const formats::Format* token_embd_format = nullptr;   // nullptr: llama.cpp's default
  const ArchProfile* profile = nullptr;                 // nullptr: ChooseAllTypes uses the input's architecture
};

// Whether llama.cpp would quantize this tensor at all (≥ 2 dims, a weight, not
// a norm or one of the small special tensors, and what the profile allows).
bool IsQuantizable(const gguf::TensorInfo& tensor, const ArchProfile& profile = ProfileFor(""));
// The type a tensor that is not quantized is written in: 1-D tensors (norms,
// biases) widened to F32, others as stored.
const formats::Format* KeptFormat(const gguf::TensorInfo& tensor);

struct TypeChoice {
  const formats::Format* format = nullptr;
  std::string note;  // non-empty when a fallback or rule changed the request
};

// The type a tensor gets. `tied_embeddings`: the model has no output.weight.
// Uses rules.profile, or the language-model profile when it is null.
// NotSupported when the chosen type cannot be encoded by mixq.
Result<TypeChoice> ChooseType(const gguf::TensorInfo& tensor, const TypeRules& rules, bool tied_embeddings);

// Shape fallback: the nearest encodable type whose block fits the row length.
const formats::Format* FallbackFor(const formats::Format& wanted, int64_t row_length);

// The exact type of every quantizable tensor under `plan`, for TypeRules::exact:
// the plan must fit these tensors exactly (plan::MatchPlanToModel, with the
// profile's choice of quantizable tensors).
Result<std::map<std::string, const formats::Format*>> PlanTypes(const plan::Plan& plan,
                                                                std::span<const gguf::TensorInfo> tensors,
                                                                const ArchProfile& profile);

// ---- whole-model quantization ----

// GPTQ's damping: H + 1% of its mean diagonal. It makes H invertible when
// inputs are rank deficient (fewer tokens than columns, dead or collinear
// channels) and bounds how far one column's error is pushed onto the others:
// damping → ∞ turns the feedback off (plain rounding at best's scales).
// docs/gptq.md has the measured choice.
inline constexpr double kFeedbackDamp = 0.01;

// "best" or "ggml", as flags and file metadata name the methods.
std::string_view MethodName(formats::QuantMethod method);

struct QuantizeOptions {
  TypeRules rules;
  const Imatrix* imatrix = nullptr;
  std::string imatrix_path;
  formats::QuantMethod method = formats::QuantMethod::kBest;
  // Non-null: error-feedback rounding (formats::QuantizeRowsFeedback, "gptq")
  // for every tensor whose input the source measures and whose type has it;
  // the others get `method`. Tensors are then written in the order of the
  // passes that measure their inputs, and the importance is the imatrix when
  // given, else H's diagonal.
  CovarianceSource* covariances = nullptr;
  double feedback_damp = kFeedbackDamp;
  int n_threads = 0;
  // Called after each tensor with (tensors done, total, name). Optional.
  std::function<void(size_t, size_t, const std::string&)> on_progress;
  // Called with one line for each noteworthy decision (fallbacks). Optional.
  std::function<void(const std::string&)> on_note;
};

struct TensorReport {
  std::string name;
  std::string type;
  int64_t n_weights = 0;
  uint64_t n_bytes = 0;
  double seconds = 0;  // converting it (with feedback: its factor too, when it is the first to need it)
};

struct QuantizeReport {
  std::vector<TensorReport> tensors;
  std::map<std::string, int> type_counts;
  uint64_t tensor_bytes = 0;
  uint64_t file_bytes = 0;
  double covariance_seconds = 0;  // the covariance passes
  int64_t n_weights = 0;
  double bpw() const {
    return n_weights ? 8.0 * static_cast<double>(tensor_bytes) / static_cast<double>(n_weights) : 0;
  }
};

// general.file_type (the llama_ftype, ggml-formats.md §4.2) of a file of these
// tensors: that of its dominant type, the quantized type holding the most
// weights, else the float type holding the most (F16 with F32 norms is F16).
// nullopt when that type has no llama_ftype.
std::optional<uint32_t> FileTypeOf(const std::vector<TensorReport>& tensors);

// ---- the output file: one writer for every command that writes a GGUF ----
//
// Every size mixq predicts (measure's option bytes, a plan's file bytes, a dry
// run) and every file it writes come from here and from gguf::PaddedBytes /
// GgufWriter::HeaderBytes, so that a prediction and the file cannot disagree.

// Everything of an output file but its tensor data.
struct OutputPlan {
  std::vector<gguf::KeyValue> metadata;
  std::vector<gguf::TensorSpec> specs;  // in file order, each with its chosen type
  std::vector<std::string> notes;       // fallbacks and other decisions worth a line
  QuantizeReport report;                // file_bytes is the exact size written
};
// The metadata of a file of this mix: `file_type` is FileTypeOf the tensors.
using OutputMetadataFn = std::function<std::vector<gguf::KeyValue>(const std::map<std::string, int>& type_counts,
                                                                   std::optional<uint32_t> file_type)>;
// Sizes every tensor of `specs`, decides general.file_type, and sizes the file.
Result<OutputPlan> PlanOutput(std::vector<gguf::TensorSpec> specs, const OutputMetadataFn& metadata);

// The bytes of tensor `index` of the plan: a span into the input, or into
// *buffer (which the callee may reuse from call to call).
using TensorBytesFn = std::function<Result<std::span<const uint8_t>>(size_t index, std::vector<uint8_t>* buffer)>;
// Writes the file of `plan` atomically, tensor by tensor; on_written(index)
// after each tensor (optional). Internal when the written size differs from
// plan.report.file_bytes.
Status WriteOutput(const OutputPlan& plan, const std::string& path, const TensorBytesFn& tensor_bytes,
                   const std::function<void(size_t index)>& on_written);

// Decides every tensor's type without writing anything (used by plans and dry runs).
Result<std::vector<TypeChoice>> ChooseAllTypes(const gguf::GgufFile& input, const TypeRules& rules);

Result<QuantizeReport> QuantizeModel(const gguf::GgufFile& input, const std::string& output_path,
                                     const QuantizeOptions& options);

// Upper bound on the bytes QuantizeModel writes before the tensor data
// (header, metadata, tensor infos, padding), whatever the types: planners add
// it to the tensor bytes so that a plan never outgrows a file-size budget.
Result<uint64_t> MaxHeaderBytes(const gguf::GgufFile& input, const QuantizeOptions& options);

// Converts one stored tensor to F32 (any decodable type). Corruption, naming
// the tensor and the index, when a value is NaN or infinite (a NaN scale of a
// quantized block included).
Status TensorToF32(const gguf::GgufFile& file, const gguf::TensorInfo& tensor, std::vector<float>* out, int n_threads);
// The same check without keeping the values (decoded about 4 MiB at a time):
// what every command that reads or copies a stored tensor runs on it. A
// tensor already found finite in this GgufFile is not decoded again.
Status CheckTensorFinite(const gguf::GgufFile& file, const gguf::TensorInfo& tensor, int n_threads);

// The importance of a tensor's columns from `imatrix` (which may be null),
// one slice per matrix of a 3-D tensor (Imatrix::Importance).
Result<std::optional<std::vector<float>>> TensorImportance(const Imatrix* imatrix, const gguf::TensorInfo& tensor);

// Encodes a tensor's F32 values (TensorToF32) in `format` into *out, row by
// row; each matrix of a 3-D tensor (an expert) with its own slice of
// `importance` (TensorImportance; may be null). `feedback_factors` is empty
// or holds one entry per matrix: where an entry is given
// (formats::FeedbackFactor of that matrix's input covariance) its rows are
// rounded with error feedback (and refined) instead of by `method`.
Status QuantizeTensor(const gguf::TensorInfo& tensor, const formats::Format& format, formats::QuantMethod method,
                      const std::vector<float>& values, const std::vector<float>* importance, std::vector<uint8_t>* out,
                      int n_threads, std::span<const formats::FeedbackMatrices* const> feedback_factors = {});

}  // namespace mixq::quantize

#endif  // MIXQ_QUANTIZE_QUANTIZE_H_
