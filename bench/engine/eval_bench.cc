// eval_bench: tokens per second of `mixq eval` (engine::Evaluate: forward
// passes and statistics) against llama.cpp's perplexity run (gguf-oracle
// eval: decode_s + stats_s) on the same tokens, context, chunks and thread
// count, in one run. The table at the end gives mixq / llama.cpp, best of the
// repetitions (--benchmark_repetitions=N) for each contender.
//
// Workloads:
//  - ref-dev F16 and ref-dev Q4_K_M (quantized by llama.cpp), held-out text;
//  - a synthetic llama model, d=2048, 8 layers, 16 heads (4 KV heads),
//    ffn 5632, random weights in Q4_K (mixq's ggml-exact encoder) or F16,
//    byte vocab.
// llama.cpp runs as gguf-oracle from --oracle=PATH or $MIXQ_ORACLE; without
// it only the mixq rows run. Tokenization is excluded on both sides.
// --threads=N (default 2), --chunks=N (default 8; the synthetic model runs 2),
// --no_synthetic skips the large model.
//
//   build-bench/bench/eval_bench --oracle=.oracle/gguf-oracle --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/text_file.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "ratio_reporter.h"
#include "synthetic_llama.h"

namespace mixq::engine {
namespace {

int& Threads() {
  static int threads = 2;
  return threads;
}
constexpr int64_t kCtx = 512;

std::string& OraclePath() {
  static std::string path;
  return path;
}

std::string WorkDir() {
  static std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mixq-eval-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::exit(2);
    return tmpl;
  }();
  return dir;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "eval_bench: %s\n", what.c_str());
  std::exit(2);
}

std::string Capture(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) Fail("cannot run " + command);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  ::pclose(p);
  return out;
}

struct Workload {
  Workload(std::string n, std::string path, int64_t chunks)
      : name(std::move(n)), model_path(std::move(path)), n_chunks(chunks) {}
  std::string name;
  std::string model_path;
  int64_t n_chunks = 0;
  std::unique_ptr<gguf::GgufFile> file;
  std::unique_ptr<Model> model;
  std::vector<int32_t> tokens;
  std::string token_file;
};

void Prepare(Workload& w) {
  auto file = gguf::GgufFile::Open(w.model_path);
  if (!file) Fail(file.error().message());
  w.file = std::make_unique<gguf::GgufFile>(std::move(file).value());
  auto model = Model::Load(*w.file);
  if (!model) Fail(model.error().message());
  w.model = std::make_unique<Model>(std::move(model).value());
  auto tok = tokenizer::Tokenizer::FromGguf(*w.file);
  if (!tok) Fail(tok.error().message());
  auto text = ReadTextFile(std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/val.txt.gz");
  if (!text) Fail(text.error().message());
  w.tokens = TokenizeForEval(*tok, text->substr(0, 400000));
  w.tokens.resize(static_cast<size_t>(w.n_chunks * kCtx));
  w.token_file = WorkDir() + "/" + w.name + ".tok";
  FILE* f = std::fopen(w.token_file.c_str(), "wb");
  if (f == nullptr) Fail("cannot write " + w.token_file);
  std::fwrite(w.tokens.data(), 4, w.tokens.size(), f);
  std::fclose(f);
}

// A deque: the benchmarks keep pointers to its elements.
std::deque<Workload>& Workloads() {
  static std::deque<Workload> w;
  return w;
}

void RegisterAll() {
  for (Workload& w : Workloads()) {
    Workload* wp = &w;
    benchmark::RegisterBenchmark(("eval/" + w.name + "/mixq").c_str(),
                                 [wp](benchmark::State& state) {
                                   EvalOptions o;
                                   o.n_ctx = kCtx;
                                   o.n_chunks = wp->n_chunks;
                                   o.n_threads = Threads();
                                   o.bos_id = 1;
                                   for (auto _ : state) {
                                     auto r = Evaluate(*wp->model, wp->tokens, o);
                                     if (!r) Fail(r.error().message());
                                     state.SetIterationTime(r->seconds);
                                   }
                                   state.counters["tokens_per_second"] =
                                       benchmark::Counter(static_cast<double>(wp->n_chunks * kCtx * state.iterations()),
                                                          benchmark::Counter::kIsRate);
                                 })
        ->UseManualTime()
        ->Iterations(1);
    if (OraclePath().empty()) continue;
    benchmark::RegisterBenchmark(
        ("eval/" + w.name + "/llama.cpp").c_str(),
        [wp](benchmark::State& state) {
          const std::string cmd = OraclePath() + " eval " + wp->model_path + " --token-file " + wp->token_file +
                                  " --ctx " + std::to_string(kCtx) + " --chunks " + std::to_string(wp->n_chunks) +
                                  " --threads " + std::to_string(Threads()) + " 2>/dev/null";
          for (auto _ : state) {
            auto j = nlohmann::json::parse(Capture(cmd), nullptr, false);
            if (j.is_discarded() || !j.value("decode_ok", false)) Fail("llama.cpp eval failed: " + cmd);
            state.SetIterationTime(j["decode_s"].get<double>() + j["stats_s"].get<double>());
          }
          state.counters["tokens_per_second"] = benchmark::Counter(
              static_cast<double>(wp->n_chunks * kCtx * state.iterations()), benchmark::Counter::kIsRate);
        })
        ->UseManualTime()
        ->Iterations(1);
  }
}

}  // namespace
}  // namespace mixq::engine

int main(int argc, char** argv) {
  using namespace mixq::engine;
  if (const char* env = std::getenv("MIXQ_ORACLE")) OraclePath() = env;
  int64_t chunks = 8;
  bool synthetic = true;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--oracle=", 9) == 0) {
      OraclePath() = argv[i] + 9;
    } else if (std::strncmp(argv[i], "--chunks=", 9) == 0) {
      chunks = std::atoll(argv[i] + 9);
    } else if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      Threads() = std::max(1, std::atoi(argv[i] + 10));
    } else if (std::strcmp(argv[i], "--no_synthetic") == 0) {
      synthetic = false;
    } else {
      args.push_back(argv[i]);
    }
  }
  int n_args = static_cast<int>(args.size());
  benchmark::Initialize(&n_args, args.data());

  const std::string ref_dev = std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/ref-dev-f16.gguf";
  Workloads().emplace_back("ref-dev-F16", ref_dev, chunks);
  if (!OraclePath().empty()) {
    const std::string q4 = WorkDir() + "/ref-dev-q4_k_m.gguf";
    Capture(OraclePath() + " quantize " + ref_dev + " " + q4 + " Q4_K_M 2>/dev/null");
    Workloads().emplace_back("ref-dev-Q4_K_M", q4, chunks);
  }
  if (synthetic) {
    for (const char* type : {"Q4_K", "F16"}) {
      const std::string name = std::string("synthetic-2048x8-") + type;
      const std::string path = WorkDir() + "/" + name + ".gguf";
      mixq::bench::SyntheticLlama spec{.n_embd = 2048,
                                       .n_ff = 5632,
                                       .n_layer = 8,
                                       .n_head = 16,
                                       .n_head_kv = 4,
                                       .head_dim = 128,
                                       .matrix_type = type,
                                       .embedding_type = "Q8_0",
                                       .n_threads = Threads()};
      if (mixq::Status s = mixq::bench::WriteSyntheticLlama(path, spec); !s.ok()) Fail(s.message());
      Workloads().emplace_back(name, path, 2);
    }
  }
  for (Workload& w : Workloads()) Prepare(w);

  benchmark::AddCustomContext("threads", std::to_string(Threads()));
  benchmark::AddCustomContext("ctx", std::to_string(kCtx));
  benchmark::AddCustomContext("build_flags", MIXQ_BUILD_FLAGS);
  benchmark::AddCustomContext("anchor", OraclePath().empty() ? "none (skipped)" : OraclePath() + " eval");
  RegisterAll();
  mixq::bench::RatioReporter reporter({.counter = "tokens_per_second",
                                       .prefix = "eval/",
                                       .title = "workload (tokens/s)",
                                       .title_width = 28,
                                       .rate_format = "%14.0f",
                                       .contenders = {"mixq"},
                                       .ratio_names = {"mixq/llama"}});
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  std::filesystem::remove_all(WorkDir());
  return 0;
}
