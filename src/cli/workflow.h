// Internal to cli: flag parsing and printing that several commands share;
// the workflows themselves are in src/pipeline.
#ifndef MIXQ_CLI_WORKFLOW_H_
#define MIXQ_CLI_WORKFLOW_H_

#include <span>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "cli/cli.h"
#include "formats/formats.h"
#include "pipeline/pipeline.h"
#include "plan/plan.h"

namespace mixq::cli {

// Hooks that draw a progress bar per stage on stderr and print notes with
// Info (nothing when quiet).
pipeline::Hooks CliHooks(const GlobalOptions& global);

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

// A plan as `mixq plan` prints it: JSON Lines under a "begin" of `command`
// with --json; else the header line, one line per unit and the llama-quantize
// arguments on stdout, the breakdown on stderr. `offload`: an offload plan.
void ReportPlan(const GlobalOptions& global, const std::string& command, const plan::Plan& p, bool offload);

// One line per tensor role and per layer: average bits per weight chosen.
nlohmann::json PlanBreakdown(const plan::Plan& plan);
void PrintPlanBreakdown(const plan::Plan& plan);

}  // namespace mixq::cli

#endif  // MIXQ_CLI_WORKFLOW_H_
