// plan: choose one quantization type per tensor (or tensor group) so that the
// predicted damage is smallest while the output file fits a size budget.
//
// The input is a Measurement: a list of units, each with candidate options
// {type, exact bytes, predicted cost}. Costs are additive over units. The
// exact solver (SolvePlan) minimises the summed cost subject to the byte
// budget, one option per unit: a Lagrangian relaxation over each unit's lower
// convex hull gives a bound and a near-optimal solution, and a bounded Pareto
// dynamic programme over the units that reduced-cost fixing leaves open closes
// the gap. When the work cap is reached it returns the best solution found and
// the gap to the bound. A returned plan never exceeds the budget.
// GreedyPlan is the benefit/cost baseline of MixedQuantFlux, for comparison.
//
// Schemas, the cost models of the importers and measured results are in
// docs/planner.md. All functions are pure (no globals, no I/O except the
// Load/Save functions) and thread-safe on distinct arguments.
#ifndef MIXQ_PLAN_PLAN_H_
#define MIXQ_PLAN_PLAN_H_

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "formats/formats.h"

namespace mixq::plan {

// ---------------------------------------------------------------------------
// Measurement model (JSON schema "mixq.measurement", version 1)

struct Option {
  // ggml's spelling of the type ("Q4_K", "IQ4_XS", "BF16"), or a foreign label
  // (an ExLlamaV2 preset such as "1.0:4b 32g s4") that only the planner uses.
  std::string type;
  // Exact bytes the unit takes in the file with this type, including the
  // zero padding of each tensor to the GGUF alignment (32 bytes).
  int64_t n_bytes = 0;
  // Predicted damage, in the measurement's cost unit; additive over units.
  double cost = 0.0;
};

struct Unit {
  std::string name;  // unique; e.g. "blk.3.attn_v.weight" or "double_blocks.7"
  // GGUF names of the tensors that share this unit's type. Empty when they are
  // unknown (imported tables): the unit name is then a prefix of them ("name.").
  std::vector<std::string> tensors;
  int64_t n_weights = 0;  // weights in all of the unit's tensors
  std::vector<Option> options;
};

struct Measurement {
  std::string model;       // free text: which model was measured
  std::string cost_model;  // free text: what one unit of cost means
  // Every file byte that does not depend on the choice: header, metadata,
  // tensor infos, tensors that are not units (norms, ...) and their padding.
  int64_t fixed_n_bytes = 0;
  // The part of fixed_n_bytes that is tensor data, and the weights in those
  // tensors. Bits per weight = 8 x (all tensor data bytes) / (all weights).
  int64_t fixed_tensor_n_bytes = 0;
  int64_t fixed_n_weights = 0;
  std::vector<Unit> units;
};

// Checks the invariants the solvers rely on: at least one unit, unique unit
// names, every unit has n_weights > 0 and at least one option, unique option
// types within a unit, n_bytes >= 0, costs within +-1e30, byte totals that fit in
// int64 and 0 <= fixed_tensor_n_bytes <= fixed_n_bytes. Corruption otherwise.
Status Validate(const Measurement& measurement);

// Total weights of the file: fixed_n_weights + all units' n_weights.
int64_t TotalWeights(const Measurement& measurement);

// JSON (de)serialisation. Parsing validates; unknown keys are ignored so that
// producers may add fields. The Load/Save functions add the path to errors;
// Save writes atomically.
Result<Measurement> ParseMeasurementJson(std::string_view json_text);
std::string MeasurementToJson(const Measurement& measurement);
Result<Measurement> LoadMeasurement(const std::string& path);
Status SaveMeasurement(const Measurement& measurement, const std::string& path);

// ---------------------------------------------------------------------------
// Importers

// What an ExLlamaV2 option's cost is, from its `err` (the relative Frobenius
// error of the linear's output on calibration inputs).
enum class Exl2Cost {
  kErrSquared,  // err^2: output noise powers of independent linears add (default)
  kErr,         // err as given: the quantity ExLlamaV2's 2023 optimizer ranks by
};

// An ExLlamaV2 measurement.json (the per-linear format of 2023): one unit per
// "measurement" entry, named by its "key", with n_weights = numel and one
// option per entry of "options": type = desc, n_bytes = ceil(total_bits / 8),
// cost from err. The fixed fields are 0 (the file does not describe them).
Result<Measurement> ImportExl2Measurement(std::string_view json_text, Exl2Cost cost);

// How to read a per-layer cost table: a markdown table whose header row names
// the types, whose row labelled "bits" gives each type's bits per weight, and
// whose other rows are layers (label, then one cost per type; empty cells mean
// "not measured").
struct CostTableSpec {
  struct Layer {
    std::string name;
    int64_t n_weights = 0;
  };
  // One entry per layer row, in table order (the table has no parameter counts).
  std::vector<Layer> layers;
  // Type added to every unit with cost 0 (the unquantized original), e.g. "BF16";
  // empty for none.
  std::string unquantized_type;
  int64_t fixed_n_bytes = 0;
  int64_t fixed_tensor_n_bytes = 0;
  int64_t fixed_n_weights = 0;
  std::string model;
  std::string cost_model;
};

// Column labels map to ggml types: a trailing '*' (measured on an existing
// GGUF) is dropped, and a llama.cpp preset name ending in _S/_M/_L whose stem
// is a ggml type maps to that type (Q5_K_S -> Q5_K). When two columns map to the
// same type the starred one wins. Bytes come from the formats table
// (n_weights / block_elems x block_bytes) when the type is a ggml type whose
// block divides n_weights, else ceil(n_weights x bits / 8); the table gives
// no tensor list, so per-tensor alignment padding belongs in fixed_n_bytes.
Result<Measurement> ImportCostTable(std::string_view markdown, const CostTableSpec& spec);

// Whether `markdown` holds a table ImportCostTable reads: a "bits" row below a
// header and a separator row.
bool IsCostTable(std::string_view markdown);

// The layout of Flux.1-dev as seed 000 describes it: rows 0-18 are
// double_blocks.0-18 (339,738,624 weights each), rows 19-56 are
// single_blocks.0-37 (141,557,760 each); BF16 is the unquantized option; the
// 67,210,368 weights left in BF16 (entry/exit layers, norms, block biases) are
// the fixed part (without GGUF header bytes, which the table cannot know).
CostTableSpec FluxDevCostTableSpec();

// The inputs `mixq plan` reads, told apart by their content.
enum class MeasurementFormat {
  kMixq,       // JSON with "schema": "mixq.measurement"
  kExl2,       // JSON object with a "measurement" key: ExLlamaV2's measurement.json
  kCostTable,  // markdown with a "bits" row (IsCostTable), read with the Flux.1-dev layout
};
// The --format name ("mixq", "exl2", "flux-table") and what a person calls it
// ("ExLlamaV2 measurement.json").
std::string_view MeasurementFormatName(MeasurementFormat format);
std::string_view MeasurementFormatDescription(MeasurementFormat format);
// InvalidArgument listing the names when `name` is none of them.
Result<MeasurementFormat> ParseMeasurementFormatName(std::string_view name);
// The format of `text`. Corruption saying what the text is instead (a GGUF
// file, another mixq document such as a plan, JSON with other keys, JSON that
// does not parse, text without a cost table).
Result<MeasurementFormat> DetectMeasurementFormat(std::string_view text);

// ---------------------------------------------------------------------------
// Requests

struct Budget {
  enum class Kind { kFileBytes, kBitsPerWeight };
  Kind kind = Kind::kFileBytes;
  int64_t file_n_bytes = 0;  // kFileBytes: the whole output file
  double bpw = 0.0;          // kBitsPerWeight: 8 x (tensor data bytes) / (weights)

  static Budget FileBytes(int64_t n_bytes) { return {Kind::kFileBytes, n_bytes, 0.0}; }
  static Budget BitsPerWeight(double bpw) { return {Kind::kBitsPerWeight, 0, bpw}; }
};

// "4.5bpw" or "4.5" (0 < bpw <= 64).
Result<Budget> ParseBpwTarget(std::string_view text);
// "2.1GiB", "900MiB", "1.5GB", "123456789" or "123456789B"; binary (KiB, MiB,
// GiB, TiB) and decimal (KB, MB, GB, TB) units; rounded down to whole bytes.
Result<Budget> ParseSizeTarget(std::string_view text);

// --keep REGEX=TYPE: every unit whose name, or one of whose tensor names,
// contains a match of REGEX (base/name_pattern.h: llama-quantize's syntax,
// searched, not anchored) gets TYPE. The first matching rule wins.
struct KeepRule {
  std::string pattern;
  std::string type;
};
// Splits at the last '='; InvalidArgument when either side is empty or the
// regex does not compile.
Result<KeepRule> ParseKeepRule(std::string_view text);

struct Constraints {
  std::vector<KeepRule> keep;
  // Allowed options have bits per weight >= min_type's and <= max_type's (ggml
  // names; empty: no bound). An option's bits per weight is its type's in the
  // formats table, or 8 x n_bytes / n_weights for a foreign type. Units that a
  // keep rule matches ignore these bounds.
  std::string min_type;
  std::string max_type;
};

struct SolverLimits {
  // Cap on the partial plans the exact completion may create (about 0.1 s and
  // at most 32 MB per million); past it the best plan found so far is
  // returned with optimal = false and its gap. Deterministic, unlike a clock.
  int64_t max_states = 5'000'000;
};

struct PlanRequest {
  Budget budget;
  Constraints constraints;
  SolverLimits limits;
};

// ---------------------------------------------------------------------------
// Plans (JSON schema "mixq.plan", version 1)

struct UnitPlan {
  std::string name;
  std::vector<std::string> tensors;
  std::string type;
  int64_t n_weights = 0;
  int64_t n_bytes = 0;
  double cost = 0.0;
};

struct Plan {
  std::string method;               // "exact" or "greedy"
  std::vector<UnitPlan> units;      // in measurement order
  int64_t budget_file_n_bytes = 0;  // the budget, as a whole-file size
  int64_t file_n_bytes = 0;         // fixed bytes + the chosen options' bytes
  int64_t tensor_n_bytes = 0;       // fixed tensor bytes + the chosen options' bytes
  int64_t n_weights = 0;
  double bpw = 0.0;  // 8 x tensor_n_bytes / n_weights
  double cost = 0.0;
  // A proven lower bound on the cost of any plan within the budget (the
  // Lagrangian bound; equal to cost, up to rounding, when optimal).
  double lower_bound = 0.0;
  bool optimal = false;
  // Effort, for reports: units whose type the bound alone decided, units the
  // exact completion searched, and the states it created.
  int64_t n_units_fixed = 0;
  int64_t n_units_searched = 0;
  int64_t n_states = 0;
  // Offload plans (SolveOffloadPlan) only, else 0: the bytes of the units kept
  // in system RAM and that share's budget; the rest of the file is the GPU's.
  int64_t cpu_n_bytes = 0;
  int64_t budget_cpu_n_bytes = 0;
};

// Smallest and largest achievable file sizes under the constraints.
struct SizeRange {
  int64_t min_file_n_bytes = 0;
  int64_t max_file_n_bytes = 0;
};
Result<SizeRange> AchievableSizes(const Measurement& measurement, const Constraints& constraints);

// The optimal plan. InvalidArgument for a bad request (unknown type name, a
// keep rule naming a type a unit does not offer, a rule matching no unit);
// Infeasible, with the smallest and largest achievable sizes, when no plan fits.
Result<Plan> SolvePlan(const Measurement& measurement, const PlanRequest& request);

// ---------------------------------------------------------------------------
// Two budgets for MoE offload. People run large mixture-of-experts models with
// the routed experts in system RAM and everything else on the GPU (llama.cpp
// `-ot exps=CPU`). The units whose tensor names contain kCpuTensorPattern (the
// routed experts' ffn_*_exps) count against the CPU budget, every other byte of
// the file (header, norms, attention, shared experts, router) against the GPU
// budget. The two shares are independent knapsacks, each solved exactly.
inline constexpr std::string_view kCpuTensorPattern = "exps";

struct OffloadBudgets {
  int64_t gpu_n_bytes = 0;
  int64_t cpu_n_bytes = 0;
};

bool KeptOnCpu(const Unit& unit);

// request.budget is ignored; its constraints and limits apply to both shares.
// InvalidArgument when no unit goes to the CPU; Infeasible, naming the share,
// when one of them cannot fit.
Result<Plan> SolveOffloadPlan(const Measurement& measurement, const OffloadBudgets& budgets,
                              const PlanRequest& request);

// The llama.cpp flags that place the file as an offload plan counted it.
std::string OffloadLlamaFlags();

// The MixedQuantFlux baseline (seed 003): start every unit at its largest
// option, prune each unit's chain of options by comparing neighbours, merge
// steps until their bytes-saved/cost-added ratios fall, then take steps of all
// units in ratio order until the plan fits. optimal is false and lower_bound
// is the Lagrangian bound. Infeasible when its chains cannot reach the budget.
Result<Plan> GreedyPlan(const Measurement& measurement, const PlanRequest& request);

std::string PlanToJson(const Plan& plan);
Result<Plan> ParsePlanJson(std::string_view json_text);
Result<Plan> LoadPlan(const std::string& path);
Status SavePlan(const Plan& plan, const std::string& path);

// llama-quantize --tensor-type arguments ("PATTERN=TYPE", without the flag),
// one per tensor, or one per unit with an unknown tensor list, anchored and
// escaped ("^blk\.3\.attn_v\.weight$=q5_K", "^double_blocks\.7\.=q8_0"). The
// patterns survive llama-quantize's lower-casing. NotSupported when a chosen
// type is not a ggml type.
Result<std::vector<std::string>> TensorTypeArgs(const Plan& plan);

// Writes TensorTypeArgs as a file for llama-quantize --tensor-type-file: one
// PATTERN=TYPE a line. llama.cpp reads the file as whitespace-separated
// PATTERN=TYPE items (parse_tensor_type_file: `file >> arg`, each item through
// parse_tensor_type, as --tensor-type's value), so the file holds nothing else:
// a comment line would be refused as a malformed item.
Status SaveTensorTypeFile(const Plan& plan, const std::string& path);

// The type name as ggml prints it (ggml_type_name): lower case except the K
// of k-quants ("Q4_K" -> "q4_K", "IQ4_XS" -> "iq4_xs").
std::string LlamaTypeName(std::string_view ggml_name);

// One tensor of the model a plan is applied to.
struct PlanTensor {
  std::string name;
  int64_t row_length = 0;  // elements per row (ne[0])
  int64_t n_rows = 0;
  bool quantizable = false;  // false: kept in float; no plan may give it a type
};

// The type of every quantizable tensor, by name, when `plan` was made for
// exactly this model: each unit names tensors of the model (a unit without a
// tensor list covers the quantizable tensors under "name."), none kept in
// float, none named twice; every quantizable tensor is in a unit; each type
// is one mixq can encode and fits its tensors' rows; n_weights and n_bytes
// (each tensor padded as gguf::PaddedBytes) are what the type and shapes give; cost
// is finite and not negative. Otherwise Corruption (NotSupported for a type
// mixq cannot encode) naming the first offending unit, or the first tensor no
// unit covers.
Result<std::map<std::string, const formats::Format*>> MatchPlanToModel(const Plan& plan,
                                                                       std::span<const PlanTensor> tensors);

// The unit of `plan` that holds tensor `tensor_name` (by its tensor list, or by
// the "name." prefix when the list is empty); nullptr when none.
const UnitPlan* FindUnitForTensor(const Plan& plan, std::string_view tensor_name);

}  // namespace mixq::plan

#endif  // MIXQ_PLAN_PLAN_H_
