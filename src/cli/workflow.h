// Internal to cli: the steps `mixq auto` chains and the single commands
// (measure, plan, quantize --plan) share.
#ifndef MIXQ_CLI_WORKFLOW_H_
#define MIXQ_CLI_WORKFLOW_H_

#include <span>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "cli/cli.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "measure/measure.h"
#include "plan/plan.h"
#include "quantize/quantize.h"

namespace mixq::cli {

struct TextTokens {
  std::vector<int32_t> tokens;
  int32_t bos_id = -1;  // replaces each chunk's first token; -1: none
};
// Tokens of a text file (gzip accepted) with the model's tokenizer, as eval sees them.
Result<TextTokens> TokenizeTextFile(const gguf::GgufFile& model, const std::string& path);
// The same for a text already in memory.
Result<TextTokens> TokenizeText(const gguf::GgufFile& model, const std::string& text);

// Runs measure::MeasureModel with a "measure" progress bar on stderr.
Result<measure::MeasureResult> MeasureWithProgress(const GlobalOptions& global, const gguf::GgufFile& file,
                                                   std::span<const int32_t> tokens, measure::MeasureOptions options);

// "Q2_K,Q4_K,IQ4_XS" -> formats; InvalidArgument lists the valid names.
Result<std::vector<const formats::Format*>> ParseTypeList(const std::string& text, const char* flag);

// Exactly one of --target (bpw) and --target-size must be given.
Result<plan::Budget> ParseBudget(const std::string& target_bpw, const std::string& target_size);

// --gpu-budget and --cpu-budget, both given, and neither --target nor --target-size.
Result<plan::OffloadBudgets> ParseOffloadBudgets(const std::string& gpu, const std::string& cpu,
                                                 const std::string& target_bpw, const std::string& target_size);
// Where an offload plan's bytes go, and the llama.cpp flags that put them there.
nlohmann::json OffloadSummary(const plan::Plan& plan);
void PrintOffloadSummary(const plan::Plan& plan);

// Plan -> exact per-tensor types for quantizing `model`; the plan must fit
// the model exactly (plan::MatchPlanToModel).
Result<quantize::TypeRules> RulesFromPlan(const plan::Plan& plan, const gguf::GgufFile& model);

// A plan as `mixq plan` prints it: JSON Lines under a "begin" of `command`
// with --json; else the header line, one line per unit and the llama-quantize
// arguments on stdout, the breakdown on stderr. `offload`: an offload plan.
void ReportPlan(const GlobalOptions& global, const std::string& command, const plan::Plan& p, bool offload);

// One line per tensor role and per layer: average bits per weight chosen.
nlohmann::json PlanBreakdown(const plan::Plan& plan);
void PrintPlanBreakdown(const plan::Plan& plan);

}  // namespace mixq::cli

#endif  // MIXQ_CLI_WORKFLOW_H_
