// weightspace_bench: the weight-space stage of `mixq measure`
// (measure::WeightErrors) on the matrices of one layer of an 8B-shaped llama
// (d 4096, 32/8 heads of 128, FFN 14336; optionally the 32000-row embedding),
// as MeasureModel calls it: every encodable quantized type with an imatrix,
// Q2_K and Q4_K on every row, the others on the sampled rows. Prints per
// tensor the wall and CPU seconds, then per type the thread CPU seconds and
// the nanoseconds per encoded weight.
//
// Weights: N(0, 1/n_in) scaled per row by a log-normal factor (real matrices'
// rows differ in scale); importance: log-normal per column, as mean squared
// activations are. Random, fixed seed.
//
//   build-bench/bench/weightspace_bench [--threads=2] [--error_rows=N]
//       [--tensors=attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down,token_embd]
//       [--types=Q4_K,IQ2_XS] [--calibration=Q2_K,Q4_K] [--method=best|ggml]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/cpu_time.h"
#include "base/isa.h"
#include "base/parallel.h"
#include "flags.h"
#include "formats/formats.h"
#include "measure/measure.h"
#include "measure/weight_errors.h"

namespace mixq::measure {
namespace {

std::vector<std::string> Split(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const size_t comma = s.find(',');
    out.emplace_back(s.substr(0, comma));
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
  }
  return out;
}

struct Options {
  int threads = 2;
  int64_t error_rows = MeasureOptions{}.error_rows;
  std::string tensors = "attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down";
  std::string types;  // empty: every encodable quantized type
  std::string calibration = "Q2_K,Q4_K";
  formats::QuantMethod method = formats::QuantMethod::kBest;
};

// ne[0] (row length, the input width) and rows of each tensor of an 8B llama layer.
const std::map<std::string, std::pair<int64_t, int64_t>>& Shapes() {
  static const std::map<std::string, std::pair<int64_t, int64_t>> shapes = {
      {"attn_q", {4096, 4096}},      {"attn_k", {4096, 1024}},     {"attn_v", {4096, 1024}},
      {"attn_output", {4096, 4096}}, {"ffn_gate", {4096, 14336}},  {"ffn_up", {4096, 14336}},
      {"ffn_down", {14336, 4096}},   {"token_embd", {4096, 32000}}};
  return shapes;
}

void Fill(int64_t n, int64_t rows, uint32_t seed, std::vector<float>* w, std::vector<float>* imp) {
  w->resize(static_cast<size_t>(n * rows));
  imp->resize(static_cast<size_t>(n));
  // Rows in parallel, each from its own generator: the same values for any thread count.
  ParallelFor(rows, 64, 0, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::mt19937 rng(seed * 1000003u + static_cast<uint32_t>(r));
      std::normal_distribution<float> normal(0.0f, 1.0f);
      const float scale = std::exp(0.5f * normal(rng)) / std::sqrt(static_cast<float>(n));
      float* row = w->data() + r * n;
      for (int64_t j = 0; j < n; ++j) row[j] = scale * normal(rng);
    }
  });
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : *imp) v = std::exp(normal(rng));
}

int Run(const Options& o) {
  std::vector<const formats::Format*> types;
  if (o.types.empty()) {
    for (const formats::Format& f : formats::AllFormats()) {
      if (f.quantized && f.can_encode()) types.push_back(&f);
    }
  } else {
    for (const std::string& name : Split(o.types)) types.push_back(formats::FindFormatByName(name));
  }
  std::vector<const formats::Format*> calibration;
  for (const std::string& name : Split(o.calibration)) calibration.push_back(formats::FindFormatByName(name));
  for (const formats::Format* f : types) {
    if (f == nullptr) return std::fprintf(stderr, "weightspace_bench: unknown type in --types\n"), 2;
  }
  std::printf("threads %d, error_rows %lld, method %s, lanes %s, %zu types\n", o.threads,
              static_cast<long long>(o.error_rows), o.method == formats::QuantMethod::kBest ? "best" : "ggml",
              std::string(IsaName(ActiveIsa())).c_str(), types.size());
  std::printf("%-12s %8s %8s %10s %10s\n", "tensor", "wall s", "cpu s", "M weights", "M encoded");
  std::map<std::string, double> type_cpu, type_weights;
  double total_wall = 0, total_cpu = 0;
  uint32_t seed = 1;
  for (const std::string& name : Split(o.tensors)) {
    auto shape = Shapes().find(name);
    if (shape == Shapes().end()) return std::fprintf(stderr, "weightspace_bench: unknown tensor %s\n", name.c_str()), 2;
    gguf::TensorInfo t;
    t.name = "blk.0." + name + ".weight";
    t.n_dims = 2;
    t.ne = {shape->second.first, shape->second.second, 1, 1};
    std::vector<float> w, imp;
    Fill(t.ne[0], t.ne[1], seed++, &w, &imp);
    std::vector<const formats::Format*> fitting;
    for (const formats::Format* f : types) {
      if (formats::RowFits(*f, t.ne[0])) fitting.push_back(f);
    }
    std::unique_ptr<bool[]> full(new bool[fitting.size()]);
    for (size_t i = 0; i < fitting.size(); ++i) {
      full[i] = std::find(calibration.begin(), calibration.end(), fitting[i]) != calibration.end();
    }
    WeightErrorOptions wo;
    wo.method = o.method;
    wo.error_rows = o.error_rows;
    wo.n_threads = o.threads;
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = ProcessCpuSeconds();
    auto r = WeightErrors(t, w, &imp, fitting, {full.get(), fitting.size()}, wo);
    const double cpu = ProcessCpuSeconds() - cpu_start;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!r) return std::fprintf(stderr, "weightspace_bench: %s\n", r.error().message().c_str()), 1;
    const double sampled = static_cast<double>(SampledRows(t, o.error_rows).size() * t.ne[0]);
    double encoded = 0;
    for (size_t i = 0; i < fitting.size(); ++i) {
      const double weights = full[i] ? static_cast<double>(t.n_elems()) : sampled;
      encoded += weights;
      type_cpu[std::string(fitting[i]->name)] += (*r)[i].cpu_seconds;
      type_weights[std::string(fitting[i]->name)] += weights;
    }
    std::printf("%-12s %8.2f %8.2f %10.1f %10.1f\n", name.c_str(), wall, cpu, 1e-6 * static_cast<double>(t.n_elems()),
                1e-6 * encoded);
    std::fflush(stdout);
    total_wall += wall;
    total_cpu += cpu;
  }
  std::printf("%-12s %8.2f %8.2f\n\n", "total", total_wall, total_cpu);
  std::printf("%-8s %9s %7s %10s %9s\n", "type", "cpu s", "share", "M encoded", "ns/w");
  double type_total = 0;
  for (const auto& [name, s] : type_cpu) type_total += s;
  for (const formats::Format* f : types) {
    const std::string name(f->name);
    if (type_weights[name] == 0) continue;
    std::printf("%-8s %9.2f %6.1f%% %10.1f %9.1f\n", name.c_str(), type_cpu[name], 100 * type_cpu[name] / type_total,
                1e-6 * type_weights[name], 1e9 * type_cpu[name] / type_weights[name]);
  }
  std::printf("%-8s %9.2f\n", "all", type_total);
  return 0;
}

}  // namespace
}  // namespace mixq::measure

int main(int argc, char** argv) {
  mixq::measure::Options o;
  for (int i = 1; i < argc; ++i) {
    const auto value = [&](std::string_view prefix) { return mixq::bench::FlagValue(argv[i], prefix); };
    if (const char* v = value("--threads=")) {
      o.threads = std::atoi(v);
    } else if (const char* v = value("--error_rows=")) {
      o.error_rows = std::atoll(v);
    } else if (const char* v = value("--tensors=")) {
      o.tensors = v;
    } else if (const char* v = value("--types=")) {
      o.types = v;
    } else if (const char* v = value("--calibration=")) {
      o.calibration = v;
    } else if (const char* v = value("--method=")) {
      o.method = std::string_view(v) == "ggml" ? mixq::formats::QuantMethod::kGgml : mixq::formats::QuantMethod::kBest;
    } else {
      std::fprintf(stderr, "weightspace_bench: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  return mixq::measure::Run(o);
}
