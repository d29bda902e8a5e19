// mixq entry point: the single place that catches exceptions and maps
// signals and failures to exit codes.
#include <csignal>
#include <cstdio>
#include <new>

#include "base/atomic_file.h"
#include "cli/cli.h"

namespace {

void OnInterrupt(int) {
  mixq::RemovePendingTempFiles();
  std::_Exit(mixq::cli::kExitInterrupted);
}

constexpr const char* kExitCodesHelp =
    "Exit codes: 0 success; 1 ran, but the answer is no; 2 usage error; 3 bad input data "
    "(corrupt or unsupported file, NaN weights, impossible budget); 4 I/O or internal error; 130 interrupted.";

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"mixq: the best mixed-precision GGUF quantization for a given size", "mixq"};
  app.footer(kExitCodesHelp);
  app.require_subcommand(1);
  app.set_version_flag("--version", mixq::cli::VersionText,
                       "print the version, the types and the architectures mixq handles");
  mixq::cli::GlobalOptions global;
  app.add_flag("--json", global.json,
               "print results as JSON Lines on stdout, and progress as JSON Lines events on stderr")
      ->configurable(false);
  app.add_flag("-q,--quiet", global.quiet, "no progress or info messages (errors still print)");
  app.fallthrough();

  mixq::cli::Action action;
  mixq::cli::AddInspect(app, global, &action);
  mixq::cli::AddQuantize(app, global, &action);
  mixq::cli::AddEval(app, global, &action);
  mixq::cli::AddImatrix(app, global, &action);
  mixq::cli::AddConvert(app, global, &action);
  mixq::cli::AddMeasure(app, global, &action);
  mixq::cli::AddPlan(app, global, &action);
  mixq::cli::AddAuto(app, global, &action);
  mixq::cli::AddReport(app, global, &action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "mixq: error: %s\n", e.what());
    return mixq::cli::kExitUsage;
  }
  try {
    int code = action ? action() : mixq::cli::kExitUsage;
    std::fflush(stdout);
    return code;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "mixq: error: out of memory\n");
    return mixq::cli::kExitIOError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mixq: error: internal error: %s\n", e.what());
    return mixq::cli::kExitIOError;
  }
}
