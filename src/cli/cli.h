// cli: the only library that parses argv or prints.
//
// Each subcommand lives in src/cli/<name>.cc and exposes one Add<Name>
// function that registers its flag table on the CLI11 app and a callback that
// returns the process exit code. Shared pieces (exit codes, error printing,
// --json envelopes, progress bars, byte formatting) are declared here.
#ifndef MIXQ_CLI_CLI_H_
#define MIXQ_CLI_CLI_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "base/progress.h"
#include "base/status.h"
#include "engine/engine.h"
#include "formats/formats.h"

namespace mixq::cli {

// Exit codes (README, style-anchors rule 15).
inline constexpr int kExitOk = 0;
inline constexpr int kExitAnswerNo = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitBadInput = 3;
inline constexpr int kExitIOError = 4;
inline constexpr int kExitInterrupted = 130;

struct GlobalOptions {
  bool json = false;
  bool quiet = false;
};

using Action = std::function<int()>;

// Subcommand registration: each adds itself to `app` and, when selected,
// sets *action.
void AddInspect(CLI::App& app, const GlobalOptions& global, Action* action);
void AddQuantize(CLI::App& app, const GlobalOptions& global, Action* action);
void AddEval(CLI::App& app, const GlobalOptions& global, Action* action);
void AddImatrix(CLI::App& app, const GlobalOptions& global, Action* action);
void AddConvert(CLI::App& app, const GlobalOptions& global, Action* action);
void AddMeasure(CLI::App& app, const GlobalOptions& global, Action* action);
void AddPlan(CLI::App& app, const GlobalOptions& global, Action* action);
void AddAuto(CLI::App& app, const GlobalOptions& global, Action* action);
void AddReport(CLI::App& app, const GlobalOptions& global, Action* action);

// Prints "mixq: error: <message>" on stderr and returns the exit code for the
// status kind.
int ReportError(const Status& status);
int ExitCodeFor(const Status& status);
// Prints "mixq: <message>" on stderr unless quiet.
void Info(const GlobalOptions& global, const std::string& message);

// JSON Lines output for --json: one {"type": ..., "data": {...}} per line.
void EmitJson(const std::string& type, const nlohmann::json& data);
void EmitJsonBegin(const std::string& command);

// -t/--threads N: worker threads, 0 for all cores; a negative count is a usage error.
void AddThreadsOption(CLI::App* sub, int* threads);
// --method best|ggml, checked by CLI11 (a usage error otherwise).
void AddMethodOption(CLI::App* sub, formats::QuantMethod* method);
// --ctx N: tokens per chunk, the same bounds for every command (8 to 2^20).
void AddCtxOption(CLI::App* sub, int64_t* ctx, const std::string& help);

// --error-rows N (measure::MeasureOptions::error_rows), for measure and auto.
void AddErrorRowsOption(CLI::App* sub, int64_t* rows);

// Checks a chunk count flag: a positive count, or -1 for all the text has.
// Zero would compute nothing (a NaN perplexity, an empty imatrix).
const CLI::Validator& PositiveOrAll();

// --device cpu|cuda|auto and --gpu-mem SIZE, for the commands that run
// forward passes.
struct DeviceCliOptions {
  std::string device = "auto";
  std::string gpu_mem;  // empty: what the GPU has free
};
void AddDeviceOptions(CLI::App* sub, DeviceCliOptions* options);
// The device the flags name (auto: cuda when a GPU is usable, else cpu),
// said in one line on stderr, and the memory cap.
Result<engine::LoadOptions> ResolveDeviceOptions(const GlobalOptions& global, const DeviceCliOptions& options);

std::string FormatBytes(uint64_t n_bytes);

// What --version prints: the version, then the types and architectures mixq
// handles, each list read from its one table (formats, engine, diffusion).
std::string VersionText();

// The progress facility (base/progress.h) in the style the global flags ask
// for: a bar on a terminal, JSON Lines events with --json, nothing with -q.
class Progress : public mixq::Progress {
 public:
  Progress(const GlobalOptions& global, std::string step, uint64_t total)
      : mixq::Progress(ChooseProgressStyle(global.quiet, global.json), std::move(step), total) {}
};

}  // namespace mixq::cli

#endif  // MIXQ_CLI_CLI_H_
