// pipeline: the workflows behind mixq's commands, for language models and
// diffusion models, below the command line.
//
//  - language models: tokenizing calibration text, measuring with progress,
//    a plan's types as quantize::TypeRules, quantizing (with a plan and an
//    imatrix), evaluating, collecting an imatrix, and `auto` (imatrix ->
//    measure -> plan -> quantize -> eval, caching the expensive steps);
//  - measurements in any format `mixq plan` reads;
//  - diffusion models: opening and inspecting a checkpoint, conversion
//    options, measuring (or fitting the seed cost table), `convert`'s plan
//    (saved, or solved in a budget), applying a plan and writing (or
//    predicting) the GGUF.
//
// Every route writes through quantize::WriteOutput, so a plan's file_n_bytes
// is the size written. Nothing here parses argv or prints: workflows report
// through Hooks, and src/cli maps flags to these options and prints results.
// Functions are thread-compatible.
#ifndef MIXQ_PIPELINE_PIPELINE_H_
#define MIXQ_PIPELINE_PIPELINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "diffusion/diffusion.h"
#include "engine/engine.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "measure/measure.h"
#include "plan/plan.h"
#include "quantize/quantize.h"

namespace mixq::pipeline {

// How a workflow reports while it runs. Every member is optional.
struct Hooks {
  // One line worth showing (a cache reused, a fallback, what was found).
  std::function<void(const std::string& line)> note;
  // Progress of a stage ("imatrix", "measure", "quantize", "eval"): `done` of
  // `total` (the total may change as the stage learns it), `what` is at work.
  std::function<void(const std::string& stage, uint64_t done, uint64_t total, const std::string& what)> progress;
  // The stage made its last progress call.
  std::function<void(const std::string& stage)> stage_done;

  void Note(const std::string& line) const {
    if (note) note(line);
  }
  void Progress(const std::string& stage, uint64_t done, uint64_t total, const std::string& what = "") const {
    if (progress) progress(stage, done, total, what);
  }
  void StageDone(const std::string& stage) const {
    if (stage_done) stage_done(stage);
  }
};

// ---- language models ----

struct TextTokens {
  std::vector<int32_t> tokens;
  int32_t bos_id = -1;  // replaces each chunk's first token; -1: none
};
// Tokens of a text file (gzip accepted) with the model's tokenizer, as eval sees them.
Result<TextTokens> TokenizeTextFile(const gguf::GgufFile& model, const std::string& path);
// The same for a text already in memory.
Result<TextTokens> TokenizeText(const gguf::GgufFile& model, const std::string& text);

// measure::MeasureModel reporting as stage "measure".
Result<measure::MeasureResult> MeasureLanguageModel(const gguf::GgufFile& file, std::span<const int32_t> tokens,
                                                    measure::MeasureOptions options, const Hooks& hooks);

// Plan -> exact per-tensor types for quantizing `model`; the plan must fit
// the model exactly (plan::MatchPlanToModel).
Result<quantize::TypeRules> RulesFromPlan(const plan::Plan& plan, const gguf::GgufFile& model);

struct QuantizeRequest {
  std::string input;
  std::string output;
  quantize::QuantizeOptions options;  // rules, method, threads; the hooks and the imatrix are set here
  std::string plan;                   // a plan's exact types on top of the rules (must fit the model)
  std::string imatrix;
  // Calibration text for error-feedback rounding ("gptq"); empty: none.
  std::string text;
  int64_t ctx = 512;
  int64_t chunks = -1;         // -1: all
  engine::LoadOptions device;  // where the covariance passes run
};
// Quantizes a GGUF language model (or a diffusion GGUF without a plan) as
// stage "quantize".
Result<quantize::QuantizeReport> QuantizeLanguageModel(QuantizeRequest request, const Hooks& hooks);

struct EvalRequest {
  std::string model;
  std::string text;         // empty: the tokens stored in base_logits
  std::string base;         // a base model run alongside for KLD
  std::string base_logits;  // or its saved log-probs
  std::string save_logits;  // write this model's log-probs here
  int64_t ctx = 512;
  int64_t chunks = -1;  // -1: all
  int threads = 0;
  engine::Activations activations = engine::Activations::kGgml;
  engine::LoadOptions load;  // where forward passes run
};
// Perplexity of the model on the text (and KLD against a base model or its
// saved log-probs), as stage "eval". Corruption when --text does not
// tokenize to the tokens stored in base_logits.
Result<engine::EvalResult> EvaluateLanguageModel(const EvalRequest& request, const Hooks& hooks);

struct ImatrixRequest {
  std::string model;
  std::string text;
  std::string output;  // the imatrix GGUF, written atomically
  int64_t ctx = 512;
  int64_t chunks = -1;         // -1: all
  bool include_output = true;  // collect output.weight too
  int threads = 0;
  engine::LoadOptions load;
};
struct ImatrixResult {
  quantize::Imatrix imatrix;
  double seconds = 0;  // collecting and saving
};
// The model's importance matrix on the text, as stage "imatrix", saved to
// request.output.
Result<ImatrixResult> CollectImatrixToFile(const ImatrixRequest& request, const Hooks& hooks);

struct AutoOptions {
  std::string model;
  std::string text;
  std::string eval_text;  // empty: the second half of `text`
  std::string output;
  plan::Budget budget;
  std::string imatrix;  // empty: computed (and cached)
  std::vector<const formats::Format*> types;
  std::string cache_dir;  // empty: OUTPUT.mixq-cache
  std::vector<plan::KeepRule> keep;
  int64_t ctx = 512;
  int64_t imatrix_chunks = 40;
  int64_t measure_chunks = 4;
  int64_t eval_chunks = 20;
  int64_t error_rows = measure::MeasureOptions{}.error_rows;
  int threads = 0;
  bool eval = true;
  engine::LoadOptions load;  // where forward passes run
  // Error-feedback rounding (quantize::CovarianceSource) from the imatrix's
  // calibration chunks; false: options' plain method.
  bool gptq = true;
  formats::QuantMethod method = formats::QuantMethod::kBest;
  std::string tensor_type_file;  // non-empty: the plan also as llama-quantize --tensor-type-file input
  bool dry_run = false;          // stop after the plan: no model written, no report/quantize/eval
};

struct AutoResult {
  plan::Plan plan;
  quantize::QuantizeReport report;
  std::optional<engine::EvalResult> eval;  // held-out text, against the input model
  double seconds_imatrix = 0;
  double seconds_measure = 0;
  double seconds_quantize = 0;
  double seconds_eval = 0;
  double seconds = 0;
  plan::Measurement measurement;
  std::string plan_path;  // the plan as kept in the cache directory
};

// imatrix -> measure -> plan -> quantize -> eval. The imatrix, the measure
// cache, the measurement and the plan are kept in the cache directory (one run
// at a time per directory) and reused only when everything they depend on is
// the same.
Result<AutoResult> RunAuto(const AutoOptions& options, const Hooks& hooks);

// ---- measurements ----

// The measurement in `path`, in the format `format` names
// (plan::ParseMeasurementFormatName) or, when empty, the one its content
// shows; a per-layer cost table is fitted to Flux.1-dev. Notes what it was
// read as; errors say it too.
Result<plan::Measurement> LoadAnyMeasurement(const std::string& path, const std::string& format, const Hooks& hooks);

// ---- diffusion models ----

struct DiffusionInput {
  std::unique_ptr<diffusion::Source> source;
  diffusion::Model model;  // points into *source
};
// Opens and inspects a checkpoint or stage-1 GGUF; notes what was found and
// every difference from the Flux.1 layout. InvalidArgument when one of
// `outputs` is one of its files (a shard of an index included).
Result<DiffusionInput> OpenDiffusionInput(const std::string& path, const std::vector<std::string>& outputs,
                                          const Hooks& hooks);

// How tensors are stored: `type` (a quantized type for the block weights, or
// F32/F16/BF16 for everything; empty: not given), `float_type`, REGEX=TYPE
// overrides; names as the user gave them.
struct DiffusionTypes {
  std::string type;
  std::string float_type;
  std::vector<std::string> tensor_types;
  formats::QuantMethod method = formats::QuantMethod::kBest;
  int threads = 0;
};
Result<diffusion::ConvertOptions> BuildConvertOptions(const DiffusionTypes& types);

struct DiffusionMeasureRequest {
  bool per_tensor = false;     // one unit per tensor, not per block
  int64_t measure_rows = 256;  // rows measured per tensor (0: all)
  std::string cost_table;      // the seed's Flux.1-dev cost table, fitted to the model instead of measuring
  std::vector<const formats::Format*> types;  // empty: ComfyUI-GGUF's GPU types
  formats::QuantMethod method = formats::QuantMethod::kBest;
  int threads = 0;
};
// The weight-space measurement of the model, or the cost table fitted to it.
Result<plan::Measurement> MeasureDiffusion(const DiffusionInput& input, const DiffusionMeasureRequest& request,
                                           const Hooks& hooks);

// Whether a plan's units are diffusion blocks or tensors (double_blocks.N, ...).
bool IsDiffusionPlan(const plan::Plan& plan);

// The plan in `path`, applied to options->rules (see diffusion::ApplyPlan).
Result<plan::Plan> LoadDiffusionPlan(const std::string& path, const DiffusionInput& input,
                                     diffusion::ConvertOptions* options);

// How `convert` chooses the types: a saved plan, or a plan solved in a
// budget on a measurement (a file fitted to the model, or measured now).
struct DiffusionPlanRequest {
  std::string plan;                    // a saved plan (excludes budget)
  std::optional<plan::Budget> budget;  // solve a plan in this budget
  std::string measurement;             // solve on this measurement file instead of measuring
  DiffusionMeasureRequest measure;     // else measure so (method and threads: the options')
  std::string save_measurement;        // also measure (when no plan is given) and write the measurement here
  std::string save_plan;               // write the plan here
};
// The plan, applied to options->rules; nullopt when none is asked for (the
// options' types stand). Notes the solved plan's cost against the greedy
// benefit/cost method at the same budget.
Result<std::optional<plan::Plan>> PlanDiffusion(const DiffusionInput& input, const DiffusionPlanRequest& request,
                                                diffusion::ConvertOptions* options, const Hooks& hooks);

struct DiffusionWrite {
  diffusion::ConvertOptions options;
  const plan::Plan* plan = nullptr;
  std::string output;  // empty: the default name beside the input
  bool dry_run = false;
  std::string stage = "convert";  // the progress stage
};
struct DiffusionWritten {
  std::string output;
  quantize::QuantizeReport report;  // predicted for a dry run
  double seconds = 0;
};
// Writes the GGUF (or, with dry_run, only predicts it).
Result<DiffusionWritten> WriteDiffusion(const DiffusionInput& input, DiffusionWrite write, const Hooks& hooks);

}  // namespace mixq::pipeline

#endif  // MIXQ_PIPELINE_PIPELINE_H_
