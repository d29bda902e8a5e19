// diffusion: diffusion transformers (Flux-class) from safetensors to GGUF files
// that city96's ComfyUI-GGUF loads (facts and citations: comfyui-gguf.md).
//
//  - Source: where a model's tensors and their bytes come from, a safetensors
//    checkpoint or an unquantized GGUF (ComfyUI-GGUF's stage-1 file).
//  - Inspect: recognises the model family from tensor names (a table of
//    families; today Flux), strips the "model.diffusion_model." prefix and drops
//    what lies outside it (VAE, text encoders), and checks what the loader
//    needs (names of at most 63 bytes, rank at most 4, block indices
//    contiguous from 0).
//  - Convert: writes the GGUF streaming, one tensor at a time, in name order,
//    with the stage-1 storage types of ComfyUI-GGUF's convert.py and, on top,
//    the type rules of quantize::TypeRules with the family's ArchProfile
//    (entry/exit layers and 1-D tensors are never quantized). Memory: the
//    current tensor's output plus a bounded conversion buffer.
//  - Measure: the weight-space cost of every block (or tensor) at every
//    candidate type, as a plan::Measurement for the planner.
//  - GPU fit and output names for ComfyUI users.
//
// Functions are thread-compatible; Convert and Measure use n_threads workers.
#ifndef MIXQ_DIFFUSION_DIFFUSION_H_
#define MIXQ_DIFFUSION_DIFFUSION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "plan/plan.h"
#include "quantize/quantize.h"
#include "safetensors/safetensors.h"

namespace mixq::diffusion {

// ---- sources ----

// The tensors of a diffusion model file, described as safetensors entries
// (torch shape order, a float dtype), and their bytes. Const methods are
// thread-safe; ReleaseData only drops resident pages (the data stay readable).
class Source {
 public:
  virtual ~Source() = default;
  virtual const std::string& path() const = 0;
  // Every file read: path() and, for a sharded checkpoint, each shard.
  virtual std::vector<std::string> files() const = 0;
  virtual const std::vector<safetensors::TensorEntry>& tensors() const = 0;
  // REQUIRES: `tensor` is one of tensors().
  virtual std::span<const uint8_t> Data(const safetensors::TensorEntry& tensor) const = 0;
  virtual void ReleaseData(const safetensors::TensorEntry& tensor, uint64_t begin = 0,
                           uint64_t end = UINT64_MAX) const = 0;
};

// A view of `checkpoint`, which must outlive it.
std::unique_ptr<Source> CheckpointSource(const safetensors::Checkpoint& checkpoint);

// A GGUF or a safetensors checkpoint (a file, or a sharded index JSON), told
// apart by DetectModelFileKind. A GGUF's tensors must be F32, F16 or BF16:
// re-quantizing a quantized file compounds the errors, so NotSupported says
// to start from the checkpoint or the stage-1 file.
Result<std::unique_ptr<Source>> OpenSource(const std::string& path);

// What a model file is, from its first bytes (DetectModelFileKind) and, for a
// GGUF, its general.architecture. IOError when the file cannot be read;
// Corruption when it is neither a GGUF nor a safetensors file.
enum class FileKind {
  kCheckpoint,     // safetensors file or index
  kDiffusionGguf,  // a diffusion family (IsDiffusionArchitecture)
  kOtherGguf,      // a language model, or an unknown architecture
};
Result<FileKind> ClassifyFile(const std::string& path);

// ---- model layout ----

struct ModelTensor {
  std::string name;                                  // the GGUF name: the key, prefix stripped
  const safetensors::TensorEntry* source = nullptr;  // points into the checkpoint
};

// Flux.1's hyperparameters that shapes depend on (comfyui-gguf.md §4); the
// defaults are Flux.1-dev's. head_dim is always 128, the time embedding 256.
struct FluxDims {
  int64_t hidden = 3072;
  int64_t depth = 19;
  int64_t depth_single = 38;
  int64_t vec = 768;  // 0: no vector_in
  int64_t ctx = 4096;
  int64_t in_channels = 64;
  bool guidance = true;
};

struct LayoutTensor {
  std::string name;
  std::vector<int64_t> shape;  // torch order
};

// Every tensor of BFL's Flux model with these dims, in module order.
std::vector<LayoutTensor> FluxLayout(const FluxDims& dims);
// The same as entries without data, sorted by name, every tensor of `dtype`:
// what InspectTensors needs to plan for a checkpoint that is not at hand
// (e.g. the seed table for Flux.1-dev). Offsets are 0.
std::vector<safetensors::TensorEntry> FluxLayoutEntries(const FluxDims& dims, const safetensors::DType& dtype);

struct Model {
  std::string architecture;          // general.architecture, e.g. "flux"
  std::string prefix;                // the stripped prefix, or ""
  std::vector<ModelTensor> tensors;  // sorted by name
  int64_t n_dropped = 0;             // keys outside the prefix
  int64_t n_double_blocks = 0;       // double_blocks.0 .. n-1
  int64_t n_single_blocks = 0;       // single_blocks.0 .. n-1
  FluxDims dims;                     // as ComfyUI derives them from the shapes
  // Differences from the Flux.1 layout of those dims (missing, unexpected or
  // mis-shaped tensors): variants such as Chroma differ on purpose, but for a
  // Flux.1 checkpoint each one means ComfyUI will not load the file.
  std::vector<std::string> layout_notes;
};

// NotSupported for an unknown family or a layout ComfyUI-GGUF refuses
// (diffusers names, tensors of more than 4 dims, non-float dtypes);
// Corruption for names the loader cannot use (too long, gaps in block indices).
// The result points into `checkpoint`, which must outlive it.
Result<Model> Inspect(const Source& source);
Result<Model> Inspect(const safetensors::Checkpoint& checkpoint);
// The same over a tensor list (e.g. a layout without data); `where` names it
// in messages. The result points into `tensors`.
Result<Model> InspectTensors(const std::vector<safetensors::TensorEntry>& tensors, const std::string& where);

// Whether general.architecture names a diffusion family convert.py knows
// ("flux", "sd3", "hyvid", ...), converted by mixq or not.
bool IsDiffusionArchitecture(std::string_view architecture);
// "flux": the families mixq converts, in the table's order, for --version.
std::string ConvertedArchitectures();

// The block a tensor belongs to ("double_blocks.7", "single_blocks.0"), or ""
// for entry/exit tensors.
std::string BlockOf(std::string_view name);

// ---- conversion ----

struct ConvertOptions {
  // Storage of 2-D tensors that are not quantized: F32, F16 or BF16; nullptr
  // keeps convert.py's choice (BF16 stays BF16, everything else F16). 1-D
  // tensors, tensors of at most 1024 elements (for F32/BF16 sources) and
  // norm scales are F32.
  const formats::Format* float_format = nullptr;
  // default_format nullptr: no quantization. The profile is the family's.
  quantize::TypeRules rules;
  formats::QuantMethod method = formats::QuantMethod::kBest;
  int n_threads = 0;
  std::function<void(size_t, size_t, const std::string&)> on_progress;  // (done, total, name)
  std::function<void(const std::string&)> on_note;                      // fallbacks
};

// The GGUF tensor list and metadata Convert will write (nothing is read or
// written); report.file_bytes is the exact output size.
using ConvertPlan = quantize::OutputPlan;
Result<ConvertPlan> PlanConversion(const Model& model, const ConvertOptions& options);

// Writes the GGUF atomically. Corruption when a weight is NaN or Inf.
Result<quantize::QuantizeReport> Convert(const Source& source, const Model& model, const std::string& output_path,
                                         const ConvertOptions& options);
Result<quantize::QuantizeReport> Convert(const safetensors::Checkpoint& checkpoint, const Model& model,
                                         const std::string& output_path, const ConvertOptions& options);

// Applies a plan: every quantizable tensor gets its unit's type in
// rules->exact (the unit's tensor list, or its "name." prefix). The plan must
// fit the model exactly (plan::MatchPlanToModel): Corruption or NotSupported
// otherwise, naming the first offending unit.
Status ApplyPlan(const plan::Plan& plan, const Model& model, quantize::TypeRules* rules);

// ---- measurement ----

// Fits a measurement made elsewhere (e.g. plan::ImportCostTable of the seed
// Flux table, whose units are "double_blocks.N" / "single_blocks.N") to this
// model: each unit's tensors are the model's quantizable tensors it names,
// option bytes are recomputed exactly from their shapes (options that are not
// encodable ggml types, or do not fit the rows, are dropped), and the fixed
// part becomes what Convert writes. Corruption when a unit names no
// quantizable tensor of the model (a measurement of another model).
Result<plan::Measurement> FitMeasurement(const plan::Measurement& measurement, const Model& model);

// The seed table (plan::FluxDevCostTableSpec) fitted to the Flux.1-dev layout
// as `mixq convert` stores a BF16 checkpoint, so bytes are those of that file.
Result<plan::Measurement> FitToFluxDev(const plan::Measurement& table);

struct MeasureOptions {
  // Candidate types; empty: the quantized types ComfyUI-GGUF dequantizes on
  // the GPU that mixq can encode (comfyui-gguf.md §3.3).
  std::vector<const formats::Format*> candidates;
  bool group_blocks = true;  // one unit per block (like the seed table); else one per tensor
  // Rows measured per tensor, evenly spaced; the error is scaled to the whole
  // tensor. 0: every row.
  int64_t max_rows = 0;
  formats::QuantMethod method = formats::QuantMethod::kBest;
  int n_threads = 0;
  std::function<void(size_t, size_t, const std::string&)> on_progress;
};

// Units are the quantizable weights (entry/exit layers and 1-D tensors are the
// fixed part, as Convert stores them). Each unit offers the unquantized
// storage (cost 0) and every candidate whose block fits all its rows; cost is
// the sum over its tensors of sum((w - dequant(quant(w)))^2), importance-free.
// Bytes are exact for the file Convert writes (its header and padding included).
Result<plan::Measurement> Measure(const Source& source, const Model& model, const MeasureOptions& options);
Result<plan::Measurement> Measure(const safetensors::Checkpoint& checkpoint, const Model& model,
                                  const MeasureOptions& options);

// ---- reporting ----

// Working memory ComfyUI needs on the GPU beside the weights at 1024x1024
// (activations, the CUDA context); with it the seed's advice holds: 3.1 bpw
// fits 6 GB, 3.8 bpw 8 GB, 6.9 bpw 12 GB, 9.2 bpw 16 GB.
inline constexpr uint64_t kWorkingBytes = 3ull << 29;  // 1.5 GiB

// The smallest common GPU memory size (GiB) that holds the file plus the
// working memory; 0 when none of them does.
int SmallestGpuGib(uint64_t file_bytes);
// One line: "4.54 GiB, 3.80 bpw: fits GPUs with 8 GB or more".
std::string FitSummary(uint64_t file_bytes, double bpw);
// The output name beside the input: "<stem>-<TYPE>.gguf" for one type,
// "<stem>_mx<N>_<N>.gguf" for a mix (the MixedQuantFlux convention, average
// bpw to one decimal). The stem drops ".safetensors" / ".safetensors.index.json".
std::string OutputName(const std::string& input_path, const std::string& type_label, bool mixed, double bpw);

}  // namespace mixq::diffusion

#endif  // MIXQ_DIFFUSION_DIFFUSION_H_
