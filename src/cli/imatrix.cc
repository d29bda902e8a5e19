// mixq imatrix MODEL.gguf --text FILE -o imatrix.gguf [--ctx 512] [--chunks N] [--no-output]
#include <algorithm>
#include <cstdio>
#include <map>

#include "base/file_identity.h"
#include "cli/cli.h"
#include "cli/workflow.h"

namespace mixq::cli {
namespace {

struct ImatrixCliOptions {
  std::string model;
  std::string text;
  std::string output;
  int64_t ctx = 512;
  int64_t chunks = -1;
  bool no_output = false;
  int threads = 0;
  DeviceCliOptions device;
};

int RunImatrix(const GlobalOptions& global, const ImatrixCliOptions& opt) {
  if (Status s = CheckOutputsAreNotInputs({opt.model, opt.text}, {opt.output}); !s.ok()) return ReportError(s);
  auto load = ResolveDeviceOptions(global, opt.device);
  if (!load) return ReportError(load.error());
  pipeline::ImatrixRequest request;
  request.model = opt.model;
  request.text = opt.text;
  request.output = opt.output;
  request.ctx = opt.ctx;
  request.chunks = opt.chunks;
  request.include_output = !opt.no_output;
  request.threads = opt.threads;
  request.load = *load;
  auto collected = pipeline::CollectImatrixToFile(request, CliHooks(global));
  if (!collected) return ReportError(collected.error());
  const quantize::Imatrix* im = &collected->imatrix;
  // Entries of expert tensors where some expert saw no token: saved with a
  // zero count, as llama-imatrix saves them; llama-quantize (and mixq) then
  // give those experts uniform importance.
  std::map<std::string, int64_t> unreached;
  for (const auto& [name, e] : im->entries) {
    const auto zeros = std::count(e.counts.begin(), e.counts.end(), 0.0f);
    if (zeros > 0) unreached[name] = zeros;
  }
  const double secs = collected->seconds;
  const int64_t n_tokens = static_cast<int64_t>(im->chunk_count) * opt.ctx;
  const double tps = secs > 0 ? static_cast<double>(n_tokens) / secs : 0.0;

  if (global.json) {
    EmitJsonBegin("imatrix");
    for (const auto& [name, e] : im->entries) {
      nlohmann::json entry = {{"name", name}, {"n_in", e.in_sum2.size() / e.counts.size()}, {"count", e.counts[0]}};
      if (e.counts.size() > 1) entry["expert_counts"] = e.counts;
      EmitJson("entry", entry);
    }
    EmitJson("summary", {{"model", opt.model},
                         {"output", opt.output},
                         {"n_entries", im->entries.size()},
                         {"n_entries_with_unreached_experts", unreached.size()},
                         {"n_chunks", im->chunk_count},
                         {"n_ctx", opt.ctx},
                         {"n_tokens", n_tokens},
                         {"seconds", secs},
                         {"tokens_per_second", tps}});
  } else if (!global.quiet) {
    std::fprintf(stderr, "mixq: wrote %s: %zu entries from %u chunks x %lld tokens, %.2f s (%.0f tokens/s)\n",
                 opt.output.c_str(), im->entries.size(), im->chunk_count, static_cast<long long>(opt.ctx), secs, tps);
    if (!unreached.empty()) {
      const auto& [name, zeros] = *unreached.begin();
      std::fprintf(stderr,
                   "mixq: warning: %zu expert tensors have experts that no token reached (%s: %lld of %zu); "
                   "quantization gives those experts uniform importance, as llama-quantize does\n",
                   unreached.size(), name.c_str(), static_cast<long long>(zeros), im->entries.at(name).counts.size());
    }
  }
  return kExitOk;
}

}  // namespace

void AddImatrix(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<ImatrixCliOptions>();
  CLI::App* sub = app.add_subcommand(
      "imatrix", "collect an importance matrix (llama.cpp's GGUF imatrix format) by running a model on a text");
  sub->add_option("model", opt->model, "GGUF model")->required();
  sub->add_option("--text", opt->text, "calibration text (gzip accepted)")->required();
  sub->add_option("-o,--output", opt->output, "imatrix GGUF to write (atomically)")->required();
  AddCtxOption(sub, &opt->ctx, "tokens per chunk");
  sub->add_option("--chunks", opt->chunks, "use at most N chunks (-1: all)")
      ->capture_default_str()
      ->check(PositiveOrAll());
  sub->add_flag("--no-output", opt->no_output,
                "skip output.weight (llama-imatrix's default; it collects it only with --process-output)");
  AddThreadsOption(sub, &opt->threads);
  AddDeviceOptions(sub, &opt->device);
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunImatrix(global, *opt); }; });
}

}  // namespace mixq::cli
