// measure_bench: time of `mixq measure`'s calibration and how it grows with
// depth, for the linear scheme (default) and the exact one, in layer passes
// and seconds per layer.
//
// Workloads:
//  - ref-dev F16 as `mixq auto` measures it (every candidate type, best
//    search, imatrix-free, 4 chunks of 512 tokens of the held-out text);
//  - synthetic llama models, d=512, ffn 1536, 8 heads (4 KV heads), random
//    F16 weights, 4/8/16 layers (--layers=...), measured with the
//    calibration types only (Q2_K, Q4_K) so that the time is the calibration,
//    on --synthetic_chunks chunks (default 1) of 512 tokens;
//  - with --experts=4,8,16,32: synthetic qwen3moe models, d=256, that many
//    experts 256 wide, top 2, random F16 weights, at each depth of
//    --moe_layers (default 4,8), measured with Q2_K..Q6_K (Q2_K and Q4_K
//    calibrated) on --synthetic_chunks chunks; their names start with "moe".
// --threads=N (default 2), --error_rows=N (MeasureOptions::error_rows; default
// mixq's, 0: every row), --no_exact skips the exact scheme. The table at the
// end splits each run's wall seconds into the calibration's forward passes and
// the rest (mostly weight-space errors of every candidate type).
//
//   build-bench/bench/measure_bench
//   nice -n 10 build-bench/bench/measure_bench --layers= --experts=4,8,16,32 --no_exact
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/text_file.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "measure/measure.h"
#include "synthetic_llama.h"

namespace mixq::measure {
namespace {

int& Threads() {
  static int threads = 2;
  return threads;
}
constexpr int64_t kCtx = 512;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "measure_bench: %s\n", what.c_str());
  std::exit(2);
}

std::string WorkDir() {
  static std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mixq-measure-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) Fail("cannot make a temporary directory");
    return tmpl;
  }();
  return dir;
}

struct Workload {
  std::string name;
  std::unique_ptr<gguf::GgufFile> file;
  std::vector<int32_t> tokens;
  MeasureOptions options;
  int64_t n_layer = 0;
};

std::vector<int32_t> HeldOutTokens(const gguf::GgufFile& file, int64_t n_chunks) {
  auto tok = tokenizer::Tokenizer::FromGguf(file);
  if (!tok) Fail(tok.error().message());
  auto text = ReadTextFile(std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/val.txt.gz");
  if (!text) Fail(text.error().message());
  auto tokens = engine::TokenizeForEval(*tok, text->substr(0, static_cast<size_t>(n_chunks * kCtx * 8)));
  if (static_cast<int64_t>(tokens.size()) < n_chunks * kCtx) Fail("held-out text too short");
  tokens.resize(static_cast<size_t>(n_chunks * kCtx));
  return tokens;
}

Workload Load(std::string name, const std::string& path, MeasureOptions options) {
  Workload w;
  w.name = std::move(name);
  auto file = gguf::GgufFile::Open(path);
  if (!file) Fail(file.error().message());
  w.file = std::make_unique<gguf::GgufFile>(std::move(file).value());
  auto model = engine::Model::Load(*w.file);
  if (!model) Fail(model.error().message());
  w.n_layer = model->config().n_layer;
  w.tokens = HeldOutTokens(*w.file, options.n_chunks);
  w.options = std::move(options);
  w.options.n_threads = Threads();
  w.options.n_ctx = kCtx;
  w.options.bos_id = 1;
  return w;
}

// A deque: the benchmarks keep pointers to its elements.
std::deque<Workload>& Workloads() {
  static std::deque<Workload> w;
  return w;
}

struct Row {
  double seconds = 0;
  double forward_seconds = 0;  // of `seconds`, in the calibration's forward passes
  double cpu_seconds = 0;      // all threads: on a shared machine, steadier than wall time
  int64_t passes = 0;
  int64_t n_layer = 0;
};
// In registration order, for the summary table.
std::vector<std::pair<std::string, Row>>& Rows() {
  static std::vector<std::pair<std::string, Row>> rows;
  return rows;
}

void RunMeasure(benchmark::State& state, const Workload& w, CalibrationScheme scheme, size_t row_index) {
  MeasureOptions o = w.options;
  o.scheme = scheme;
  MeasureResult r;
  double cpu_seconds = 0;
  for (auto _ : state) {
    const std::clock_t cpu_start = std::clock();
    auto m = MeasureModel(*w.file, w.tokens, o);
    cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    if (!m) Fail(m.error().message());
    r = std::move(m).value();
    state.SetIterationTime(r.seconds);
  }
  const double n_layer = static_cast<double>(w.n_layer);
  state.counters["layers"] = n_layer;
  state.counters["layer_passes"] = static_cast<double>(r.n_forward_layers);
  state.counters["passes_per_layer"] = static_cast<double>(r.n_forward_layers) / n_layer;
  state.counters["s_per_layer"] = r.seconds / n_layer;
  state.counters["cpu_s_per_layer"] = cpu_seconds / n_layer;
  state.counters["forward_s"] = r.forward_seconds;
  Row& row = Rows()[row_index].second;
  if (row.seconds == 0 || r.seconds < row.seconds) {
    row = {r.seconds, r.forward_seconds, cpu_seconds, r.n_forward_layers, w.n_layer};
  }
}

void Register(const Workload* w, CalibrationScheme scheme) {
  const std::string label = w->name + (scheme == CalibrationScheme::kExact ? "/exact" : "/linear");
  const size_t index = Rows().size();
  Rows().push_back({label, Row{}});
  auto run = [w, scheme, index](benchmark::State& state) { RunMeasure(state, *w, scheme, index); };
  benchmark::RegisterBenchmark(("measure/" + label).c_str(), run)
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kSecond);
}

std::vector<int64_t> ParseList(const char* csv) {
  std::vector<int64_t> out;
  std::stringstream in(csv);
  for (std::string n; std::getline(in, n, ',');) out.push_back(std::atoll(n.c_str()));
  return out;
}

int64_t& ErrorRows() {
  static int64_t rows = MeasureOptions{}.error_rows;
  return rows;
}

MeasureOptions CalibrationOnly(std::vector<const char*> types, int64_t n_chunks) {
  MeasureOptions o;
  o.error_rows = ErrorRows();
  for (const char* t : types) o.types.push_back(mixq::formats::FindFormatByName(t));
  o.calibration_types = {mixq::formats::FindFormatByName("Q2_K"), mixq::formats::FindFormatByName("Q4_K")};
  o.n_chunks = n_chunks;
  return o;
}

void AddSynthetic(const std::string& name, const mixq::bench::SyntheticLlama& spec, MeasureOptions o) {
  const std::string path = WorkDir() + "/" + name + ".gguf";
  if (mixq::Status s = mixq::bench::WriteSyntheticLlama(path, spec); !s.ok()) Fail(s.message());
  Workloads().push_back(Load(name, path, std::move(o)));
}

}  // namespace
}  // namespace mixq::measure

int main(int argc, char** argv) {
  using namespace mixq::measure;
  std::vector<int64_t> layers = {4, 8, 16};
  std::vector<int64_t> experts, moe_layers = {4, 8};
  int64_t synthetic_chunks = 1;
  bool exact = true;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      Threads() = std::max(1, std::atoi(argv[i] + 10));
    } else if (std::strncmp(argv[i], "--layers=", 9) == 0) {
      layers = ParseList(argv[i] + 9);
    } else if (std::strncmp(argv[i], "--experts=", 10) == 0) {
      experts = ParseList(argv[i] + 10);
    } else if (std::strncmp(argv[i], "--moe_layers=", 13) == 0) {
      moe_layers = ParseList(argv[i] + 13);
    } else if (std::strncmp(argv[i], "--synthetic_chunks=", 19) == 0) {
      synthetic_chunks = std::max<int64_t>(1, std::atoll(argv[i] + 19));
    } else if (std::strncmp(argv[i], "--error_rows=", 13) == 0) {
      ErrorRows() = std::atoll(argv[i] + 13);
    } else if (std::strcmp(argv[i], "--no_exact") == 0) {
      exact = false;
    } else {
      args.push_back(argv[i]);
    }
  }
  int n_args = static_cast<int>(args.size());
  benchmark::Initialize(&n_args, args.data());

  MeasureOptions ref_dev;
  ref_dev.n_chunks = 4;
  ref_dev.error_rows = ErrorRows();
  Workloads().push_back(Load("ref-dev", std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/ref-dev-f16.gguf", ref_dev));
  for (int64_t n : layers) {
    AddSynthetic("synthetic-512x" + std::to_string(n), {.n_layer = n, .n_threads = Threads()},
                 CalibrationOnly({"Q2_K", "Q4_K"}, synthetic_chunks));
  }
  for (int64_t n_layer : moe_layers) {
    for (int64_t n_expert : experts) {
      const mixq::bench::SyntheticLlama spec{.n_embd = 256,
                                             .n_ff = 512,
                                             .n_layer = n_layer,
                                             .n_head = 4,
                                             .n_head_kv = 2,
                                             .n_threads = Threads(),
                                             .n_expert = n_expert};
      AddSynthetic("moe-" + std::to_string(n_expert) + "x" + std::to_string(n_layer), spec,
                   CalibrationOnly({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}, synthetic_chunks));
    }
  }
  for (Workload& w : Workloads()) {
    Register(&w, CalibrationScheme::kLinear);
    if (exact) Register(&w, CalibrationScheme::kExact);
  }
  benchmark::AddCustomContext("threads", std::to_string(Threads()));
  benchmark::AddCustomContext("build_flags", MIXQ_BUILD_FLAGS);
  benchmark::RunSpecifiedBenchmarks();
  std::printf("\n%-28s %7s %12s %16s %10s %10s %12s %14s\n", "workload", "layers", "layer passes", "passes / layer",
              "seconds", "forward s", "s / layer", "cpu s / layer");
  for (const auto& [label, row] : Rows()) {
    if (row.n_layer == 0) continue;  // filtered out
    const double n_layer = static_cast<double>(row.n_layer);
    std::printf("%-28s %7lld %12lld %16.1f %10.2f %10.2f %12.3f %14.3f\n", label.c_str(),
                static_cast<long long>(row.n_layer), static_cast<long long>(row.passes),
                static_cast<double>(row.passes) / n_layer, row.seconds, row.forward_seconds, row.seconds / n_layer,
                row.cpu_seconds / n_layer);
  }
  benchmark::Shutdown();
  std::filesystem::remove_all(WorkDir());
  return 0;
}
