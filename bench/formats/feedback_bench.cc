// feedback_bench: the cost of `--method gptq` by input width n (the row
// length of the weights that read an input):
//  - Covariance/n: one covariance pass (one layer of a synthetic llama with
//    n_embd = n, n_ff = 3n, random F16 weights, 2048 tokens) — the layer's
//    forward pass plus H = Σ x xᵀ of its four inputs (n, n, n, 3n wide);
//  - Factor/n: FeedbackFactor (damped H, Cholesky from the last index,
//    triangular inverse) for one n x n covariance;
//  - Quantize/n: QuantizeRowsFeedback to Q4_K of 1024 rows of n, and
//    QuantizeRows with best on the same rows for comparison.
// Memory, by construction: the pass holds the hidden states (tokens x n_embd
// floats), one layer's H (8 n_in² bytes per distinct input: 96 n_embd² for
// n_ff = 3 n_embd) and, while it adds a batch of 2048 tokens, two copies of
// that batch's inputs; the factor takes 8 n² (its double working copy) + 4 n²
// (the result); the quantizer a float copy of its rows.
// --threads=N (default 2).
//
//   build-bench/bench/feedback_bench --benchmark_filter=Factor
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "synthetic_llama.h"

namespace mixq::formats {
namespace {

int& Threads() {
  static int threads = 2;
  return threads;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "feedback_bench: %s\n", what.c_str());
  std::exit(2);
}

// A covariance of n inputs with a few strong shared directions: diagonal
// plus rank 4 (the timing does not depend on the values, only on n).
std::vector<double> RandomCovariance(int64_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<double> h(static_cast<size_t>(n * n), 0.0), loading(static_cast<size_t>(4 * n));
  for (double& v : loading) v = normal(rng);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int f = 0; f < 4; ++f) h[i * n + j] += loading[f * n + i] * loading[f * n + j];
    }
    h[i * n + i] += 1.0 + std::abs(normal(rng));
  }
  return h;
}

// Args: n, threads (0: Threads()).
void BM_Factor(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int threads = state.range(1) != 0 ? static_cast<int>(state.range(1)) : Threads();
  std::vector<double> h = RandomCovariance(n);
  for (auto _ : state) {
    auto u = FeedbackFactor(h, n, 0.01, threads);
    if (!u) Fail(u.error().message());
    benchmark::DoNotOptimize(u->u.data());
  }
}
BENCHMARK(BM_Factor)
    ->Args({256, 1})
    ->Args({1024, 1})
    ->Args({2048, 1})
    ->Args({2048, 0})
    ->Args({4096, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Quantize(benchmark::State& state) {
  const int64_t n = state.range(0), rows = 1024;
  const bool feedback = state.range(1) != 0;
  const Format& q4k = *FindFormatByName("Q4_K");
  std::vector<double> h = RandomCovariance(n);
  auto u = FeedbackFactor(h, n, 0.01);
  if (!u) Fail(u.error().message());
  std::vector<float> w(static_cast<size_t>(rows * n)), importance(n);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : w) v = normal(rng);
  for (int64_t j = 0; j < n; ++j) importance[j] = static_cast<float>(h[j * n + j] / (2.0 * n));
  std::vector<uint8_t> out(static_cast<size_t>(*RowBytes(q4k, n) * rows));
  for (auto _ : state) {
    Status s = feedback
                   ? QuantizeRowsFeedback(q4k, w.data(), out.data(), rows, n, importance.data(), *u, Threads())
                   : QuantizeRows(q4k, QuantMethod::kBest, w.data(), out.data(), rows, n, importance.data(), Threads());
    if (!s.ok()) Fail(s.message());
  }
  state.SetItemsProcessed(state.iterations() * rows * n);
  state.SetLabel(feedback ? "gptq" : "best");
}
BENCHMARK(BM_Quantize)->ArgsProduct({{256, 1024, 2048}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Covariance(benchmark::State& state) {
  const int64_t n = state.range(0);
  bench::SyntheticLlama spec;
  spec.n_embd = n;
  spec.n_ff = 3 * n;
  spec.n_layer = 1;
  spec.n_head = n / 64;
  spec.n_head_kv = n / 128;
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("mixq-feedback-bench-" + std::to_string(n) + "-" + std::to_string(::getpid()) + ".gguf"))
                               .string();
  if (Status s = bench::WriteSyntheticLlama(path, spec); !s.ok()) Fail(s.message());
  auto file = gguf::GgufFile::Open(path);
  if (!file) Fail(file.error().message());
  auto model = engine::Model::Load(*file);
  if (!model) Fail(model.error().message());
  std::vector<int32_t> tokens(2048);
  std::mt19937 rng(3);
  for (int32_t& t : tokens) t = static_cast<int32_t>(3 + rng() % 256);
  engine::CovarianceOptions options;
  options.n_threads = Threads();
  for (auto _ : state) {
    auto source = engine::LayerCovariances(*model, tokens, options);
    if (!source) Fail(source.error().message());
    if (Status s = (*source)->Run(0); !s.ok()) Fail(s.message());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(tokens.size()));
  std::filesystem::remove(path);
}
BENCHMARK(BM_Covariance)->Arg(256)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace mixq::formats

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      mixq::formats::Threads() = std::atoi(argv[i] + 10);
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      --i;
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
