// Planner benchmarks: the exact solver on a synthetic 10,000-unit x 15-type
// model, and on the seed measurements next to the greedy baseline
// (MixedQuantFlux's method) and an ExLlamaV2-style minimax plan. llama.cpp
// has no planner to run as the anchor, so the ratio reported is exact/greedy.
//
//   cmake -S . -B build-bench -DMIXQ_BENCH=ON && cmake --build build-bench -j2 --target plan_bench
//   build-bench/bench/plan_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>

#include "formats/formats.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

const std::string kSeeds = std::string(MIXQ_SOURCE_DIR) + "/tests/data/seeds/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A large llama-like model: 10,000 tensors of four shapes, 15 ggml types with
// bytes from the formats table, and costs that fall about 4x per bit (seed
// 001) with per-tensor sensitivity and per-type noise, so that hulls differ.
Measurement Synthetic(int n_units, uint64_t seed) {
  static constexpr const char* kTypes[] = {"IQ1_S",  "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "Q2_K", "IQ3_XXS", "Q3_K",
                                           "IQ4_XS", "Q4_K",  "Q5_K",    "Q6_K",   "Q8_0",  "BF16", "F32"};
  static constexpr int64_t kShapes[][2] = {{4096, 4096}, {4096, 1024}, {4096, 14336}, {14336, 4096}};
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> sensitivity(0.0, 1.0);
  std::uniform_real_distribution<double> noise(0.8, 1.25);
  Measurement m;
  m.fixed_n_bytes = 1 << 20;
  for (int u = 0; u < n_units; ++u) {
    Unit unit;
    char name[16];
    std::snprintf(name, sizeof(name), "t%d", u);
    unit.name = name;
    const int64_t* shape = kShapes[u % 4];
    unit.n_weights = shape[0] * shape[1];
    double s = sensitivity(rng) * static_cast<double>(unit.n_weights) * 1e-6;
    for (const char* t : kTypes) {
      const formats::Format* f = formats::FindFormatByName(t);
      int64_t bytes = (unit.n_weights / f->block_elems * f->block_bytes + 31) / 32 * 32;
      unit.options.push_back({t, bytes, s * std::exp2(-2.0 * f->bpw()) * noise(rng)});
    }
    m.units.push_back(std::move(unit));
  }
  return m;
}

void BM_PlanSynthetic(benchmark::State& state) {
  const int n_units = static_cast<int>(state.range(0));
  const Measurement m = Synthetic(n_units, 1);
  PlanRequest req;
  req.budget = Budget::BitsPerWeight(static_cast<double>(state.range(1)) / 100.0);
  Plan plan;
  for (auto _ : state) {
    auto r = SolvePlan(m, req);
    if (!r.has_value()) {
      state.SkipWithError(r.error().message().c_str());
      return;
    }
    plan = std::move(r.value());
  }
  auto greedy = GreedyPlan(m, req);
  state.counters["units"] = n_units;
  state.counters["types"] = 15;
  state.counters["optimal"] = plan.optimal;
  state.counters["bpw"] = plan.bpw;
  state.counters["searched"] = static_cast<double>(plan.n_units_searched);
  state.counters["states"] = static_cast<double>(plan.n_states);
  state.counters["exact/greedy"] = greedy.has_value() ? plan.cost / greedy->cost : 0.0;
}
BENCHMARK(BM_PlanSynthetic)
    ->ArgsProduct({{10000}, {250, 300, 450, 600}})
    ->ArgNames({"units", "bpwx100"})
    ->Unit(benchmark::kMillisecond);

// ExLlamaV2's 2023 optimizer first minimises the largest err, then spends the
// rest. Its best possible second phase is the exact minimum of the summed err
// over the options with err <= that minimax value.
Result<Plan> MinimaxThenBestSum(const Measurement& m, const PlanRequest& req) {
  std::vector<double> errs;
  for (const Unit& u : m.units) {
    for (const Option& o : u.options) errs.push_back(o.cost);
  }
  std::sort(errs.begin(), errs.end());
  errs.erase(std::unique(errs.begin(), errs.end()), errs.end());
  auto restricted = [&](double t) {
    Measurement r = m;
    for (Unit& u : r.units) std::erase_if(u.options, [t](const Option& o) { return o.cost > t; });
    return r;
  };
  const long double n_weights = static_cast<long double>(TotalWeights(m));
  const int64_t budget = static_cast<int64_t>(std::floor(req.budget.bpw * n_weights / 8.0L)) - m.fixed_tensor_n_bytes;
  auto fits = [&](double t) {
    Measurement r = restricted(t);
    if (std::any_of(r.units.begin(), r.units.end(), [](const Unit& u) { return u.options.empty(); })) return false;
    auto range = AchievableSizes(r, req.constraints);
    return range.has_value() && range->min_file_n_bytes - r.fixed_n_bytes <= budget;
  };
  size_t lo = 0, hi = errs.size() - 1;  // the largest err always fits if anything does
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (fits(errs[mid])) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return SolvePlan(restricted(errs[lo]), req);
}

const Measurement& Exl2Seed() {
  static const Measurement m =
      ImportExl2Measurement(ReadFile(kSeeds + "002_68e96ba8af961ce5.txt"), Exl2Cost::kErr).value();
  return m;
}

const Measurement& Exl2SquaredSeed() {
  static const Measurement m =
      ImportExl2Measurement(ReadFile(kSeeds + "002_68e96ba8af961ce5.txt"), Exl2Cost::kErrSquared).value();
  return m;
}

const Measurement& FluxSeed() {
  static const Measurement m = [] {
    CostTableSpec spec = FluxDevCostTableSpec();
    // bpw over the quantizable weights, as MixedQuantFlux counts it.
    spec.fixed_n_bytes = spec.fixed_tensor_n_bytes = spec.fixed_n_weights = 0;
    return ImportCostTable(ReadFile(kSeeds + "000_b622eb4ec4e2b348.txt"), spec).value();
  }();
  return m;
}

enum Method { kExact, kGreedy, kMinimax };

void RunSeed(benchmark::State& state, const Measurement& m, Method method) {
  PlanRequest req;
  req.budget = Budget::BitsPerWeight(static_cast<double>(state.range(0)) / 100.0);
  Plan plan;
  for (auto _ : state) {
    auto r = method == kExact ? SolvePlan(m, req) : method == kGreedy ? GreedyPlan(m, req) : MinimaxThenBestSum(m, req);
    if (!r.has_value()) {
      state.SkipWithError(r.error().message().c_str());
      return;
    }
    plan = std::move(r.value());
  }
  double max_cost = 0.0;
  for (const UnitPlan& u : plan.units) max_cost = std::max(max_cost, u.cost);
  state.counters["cost"] = plan.cost;
  state.counters["max_cost"] = max_cost;
  state.counters["bpw"] = plan.bpw;
  state.counters["budget_left"] = static_cast<double>(plan.budget_file_n_bytes - plan.file_n_bytes);
  state.counters["optimal"] = plan.optimal;
  if (method != kExact) {
    auto exact = SolvePlan(m, req);
    state.counters["cost/exact"] = exact.has_value() ? plan.cost / exact->cost : 0.0;
  }
}

void BM_Exl2Exact(benchmark::State& s) { RunSeed(s, Exl2Seed(), kExact); }
void BM_Exl2Greedy(benchmark::State& s) { RunSeed(s, Exl2Seed(), kGreedy); }
void BM_Exl2Minimax(benchmark::State& s) { RunSeed(s, Exl2Seed(), kMinimax); }
void BM_Exl2SquaredExact(benchmark::State& s) { RunSeed(s, Exl2SquaredSeed(), kExact); }
void BM_Exl2SquaredGreedy(benchmark::State& s) { RunSeed(s, Exl2SquaredSeed(), kGreedy); }
void BM_FluxExact(benchmark::State& s) { RunSeed(s, FluxSeed(), kExact); }
void BM_FluxGreedy(benchmark::State& s) { RunSeed(s, FluxSeed(), kGreedy); }
BENCHMARK(BM_Exl2Exact)->DenseRange(250, 500, 50)->ArgName("bpwx100")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Exl2Greedy)->DenseRange(250, 500, 50)->ArgName("bpwx100")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Exl2Minimax)->DenseRange(250, 500, 50)->ArgName("bpwx100")->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_Exl2SquaredExact)->DenseRange(250, 500, 50)->ArgName("bpwx100")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Exl2SquaredGreedy)->DenseRange(250, 500, 50)->ArgName("bpwx100")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FluxExact)->Arg(310)->Arg(380)->Arg(690)->Arg(820)->ArgName("bpwx100")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FluxGreedy)->Arg(310)->Arg(380)->Arg(690)->Arg(820)->ArgName("bpwx100")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mixq::plan

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("threads", "1 (the planner is single-threaded)");
  benchmark::AddCustomContext("build_flags", MIXQ_BUILD_FLAGS);
  benchmark::AddCustomContext("anchor", "none: llama.cpp has no planner; ratios are against the greedy baseline");
  benchmark::AddCustomContext("data",
                              "synthetic 10,000 x 15; seed 002 (ExLlamaV2; cost err, Squared: err^2); seed 000 (Flux)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
