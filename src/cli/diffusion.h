// Internal to cli: the flags and printing of diffusion models in `mixq
// convert`, `mixq measure` and `mixq quantize`; the workflows are
// pipeline's (src/pipeline/pipeline.h).
#ifndef MIXQ_CLI_DIFFUSION_H_
#define MIXQ_CLI_DIFFUSION_H_

#include <optional>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "pipeline/pipeline.h"

namespace mixq::cli {

// The measure flags only diffusion models have.
struct DiffusionMeasureFlags {
  bool per_tensor = false;
  int64_t measure_rows = 256;
  std::string cost_table;
};
void AddDiffusionMeasureFlags(CLI::App* sub, DiffusionMeasureFlags* flags);

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
  formats::QuantMethod method = formats::QuantMethod::kBest;
  int threads = 0;
  DiffusionMeasureFlags diffusion;
};
std::optional<int> MeasureIfDiffusion(const GlobalOptions& global, const MeasureArgs& args);

// `mixq quantize`'s dispatch. A checkpoint, or a diffusion GGUF with a plan,
// is written here exactly as `mixq convert` writes it (so the size is the
// plan's) and the exit code returned; nullopt for a language model, and for a
// diffusion GGUF without a plan (the GGUF quantizer already follows the
// family's ArchProfile and also re-quantizes quantized files).
struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string plan;
  pipeline::DiffusionTypes types;  // types.type empty: not given
  bool llm_flags = false;          // --imatrix, --text, --output-tensor-type or --token-embedding-type given
};
std::optional<int> QuantizeIfDiffusion(const GlobalOptions& global, const QuantizeArgs& args);

// pipeline::WriteDiffusion, then the ComfyUI-facing summary: size in GiB,
// bits per weight, the GPUs it fits. `command` names the --json begin line.
int WriteDiffusion(const GlobalOptions& global, const pipeline::DiffusionInput& input, pipeline::DiffusionWrite write,
                   const std::string& command);

}  // namespace mixq::cli

#endif  // MIXQ_CLI_DIFFUSION_H_
