// Internal to cli: diffusion checkpoints in the standard pipeline. `mixq
// convert` and the diffusion branches of `mixq measure`, `mixq plan` and
// `mixq quantize` share these steps, so every route measures the same units
// and writes the same file, and a plan's file_n_bytes is the size written.
#ifndef MIXQ_CLI_DIFFUSION_PIPELINE_H_
#define MIXQ_CLI_DIFFUSION_PIPELINE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "diffusion/diffusion.h"
#include "plan/plan.h"

namespace mixq::cli {

struct DiffusionInput {
  std::unique_ptr<diffusion::Source> source;
  diffusion::Model model;  // points into *source
};
// Opens and inspects a checkpoint or stage-1 GGUF; prints what was found and
// every difference from the Flux.1 layout. InvalidArgument when one of
// `outputs` is one of its files (a shard of an index included).
Result<DiffusionInput> OpenDiffusionInput(const GlobalOptions& global, const std::string& path,
                                          const std::vector<std::string>& outputs);

// How tensors are stored: --type (a quantized type for the block weights, or
// F32/F16/BF16 for everything), --float-type, --tensor-type REGEX=TYPE,
// --method, --threads.
struct DiffusionTypeFlags {
  std::string type;
  std::string float_type;
  std::vector<std::string> tensor_types;
  std::string method = "best";
  int threads = 0;
};
Result<diffusion::ConvertOptions> BuildConvertOptions(const DiffusionTypeFlags& flags);

// The measure flags only diffusion models have.
struct DiffusionMeasureFlags {
  bool per_tensor = false;
  int64_t measure_rows = 256;
  std::string cost_table;  // seed 000 markdown, fitted to the model instead of measuring
};
void AddDiffusionMeasureFlags(CLI::App* sub, DiffusionMeasureFlags* flags);

struct DiffusionMeasureRequest {
  DiffusionMeasureFlags flags;
  std::vector<const formats::Format*> types;  // empty: ComfyUI-GGUF's GPU types
  formats::QuantMethod method = formats::QuantMethod::kBest;
  int threads = 0;
};
// The weight-space measurement of the model, or the cost table fitted to it.
Result<plan::Measurement> MeasureDiffusion(const GlobalOptions& global, const DiffusionInput& input,
                                           const DiffusionMeasureRequest& request);

// `mixq measure`'s dispatch. A diffusion model is measured here (without
// --text: the cost is in weight space) and the exit code returned; for a
// language model nullopt, after checking that --text was given and no
// diffusion flag was.
struct MeasureArgs {
  std::string model;
  std::string text;
  std::string imatrix;
  std::string output;
  std::string types;
  std::string method;
  int threads = 0;
  DiffusionMeasureFlags diffusion;
};
std::optional<int> MeasureIfDiffusion(const GlobalOptions& global, const MeasureArgs& args);

// Whether a plan's units are diffusion blocks or tensors (double_blocks.N, ...).
bool IsDiffusionPlan(const plan::Plan& plan);

// The plan in `path`, applied to options->rules (see diffusion::ApplyPlan).
Result<plan::Plan> LoadDiffusionPlan(const std::string& path, const DiffusionInput& input,
                                     diffusion::ConvertOptions* options);

// `mixq quantize`'s dispatch. A checkpoint, or a diffusion GGUF with a plan,
// is written here exactly as `mixq convert` writes it (so the size is the
// plan's) and the exit code returned; nullopt for a language model, and for a
// diffusion GGUF without a plan (the GGUF quantizer already follows the
// family's ArchProfile and also re-quantizes quantized files).
struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string plan;
  DiffusionTypeFlags types;  // types.type empty: not given
  bool llm_flags = false;    // --imatrix, --text, --output-tensor-type or --token-embedding-type given
};
std::optional<int> QuantizeIfDiffusion(const GlobalOptions& global, const QuantizeArgs& args);

// Writes the GGUF (or, with dry_run, only predicts it) and prints the
// ComfyUI-facing summary: size in GiB, bits per weight, the GPUs it fits.
// An empty output means the default name beside the input.
struct DiffusionWrite {
  diffusion::ConvertOptions options;
  const plan::Plan* plan = nullptr;
  std::string output;
  bool dry_run = false;
  std::string command;  // for the --json begin line
};
int WriteDiffusion(const GlobalOptions& global, const DiffusionInput& input, DiffusionWrite write);

}  // namespace mixq::cli

#endif  // MIXQ_CLI_DIFFUSION_PIPELINE_H_
