// quantize_bench: weights per second of mixq's encoders (both methods) against
// llama.cpp's own ggml_quantize_chunk, on the same rows and thread count, in
// one run; the table at the end gives mixq / llama.cpp, best of the
// repetitions (--benchmark_repetitions=N) for each contender.
//
// Data: token_embd.weight of the ref-dev model (4096 rows of 256), widened to
// f32, with a fixed synthetic importance vector for the "imat" rows.
// llama.cpp is loaded with dlopen from --ggml_base=PATH or $MIXQ_GGML_BASE
// (libggml-base.so); without it the anchor rows are skipped. --model=PATH
// reads another F16 GGUF with a token_embd.weight.
//
//   build-bench/bench/quantize_bench --ggml_base=.oracle/bins/libggml-base.so
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "ratio_reporter.h"

namespace mixq::formats {
namespace {

constexpr int kThreads = 2;

// ggml.h's ggml_quantize_chunk; type ids are ggml ids.
using GgmlQuantizeChunkFn = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                       int64_t n_per_row, const float* imatrix);

struct Workload {
  std::vector<float> x;
  std::vector<float> importance;
  int64_t n_rows = 0;
  int64_t n_per_row = 0;
};

std::string& ModelPath() {
  static std::string path = std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/ref-dev-f16.gguf";
  return path;
}

Workload& Data() {
  static Workload* w = [] {
    auto* out = new Workload;
    const std::string& path = ModelPath();
    Result<gguf::GgufFile> file = gguf::GgufFile::Open(path);
    if (!file) {
      std::fprintf(stderr, "quantize_bench: %s\n", file.error().message().c_str());
      std::exit(2);
    }
    const gguf::TensorInfo* t = file->FindTensor("token_embd.weight");
    out->n_per_row = t->ne[0];
    out->n_rows = t->n_rows();
    out->x.resize(t->n_elems());
    Status s = DequantizeRows(*t->format, file->TensorData(*t).data(), out->x.data(), out->n_rows, out->n_per_row, 1);
    if (!s.ok()) std::exit(2);
    // A spread of column weights like a real imatrix's (0.06 .. 4, a few large).
    out->importance.resize(out->n_per_row);
    for (int64_t j = 0; j < out->n_per_row; ++j) {
      out->importance[j] = static_cast<float>(1 + (j * 37) % 64) / 16.0f * (j % 64 == 7 ? 16.0f : 1.0f);
    }
    return out;
  }();
  return *w;
}

GgmlQuantizeChunkFn LoadAnchor(const std::string& path) {
  if (path.empty()) return nullptr;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "quantize_bench: cannot load %s: %s\n", path.c_str(), dlerror());
    return nullptr;
  }
  return reinterpret_cast<GgmlQuantizeChunkFn>(dlsym(lib, "ggml_quantize_chunk"));
}

// Same chunking for every contender: whole rows, about 16K weights per task.
template <typename EncodeRows>
void RunEncoder(benchmark::State& state, const Format& f, EncodeRows&& encode) {
  const Workload& w = Data();
  int64_t row_bytes = RowBytes(f, w.n_per_row).value();
  std::vector<uint8_t> out(row_bytes * w.n_rows);
  int64_t chunk = std::max<int64_t>(1, 16384 / w.n_per_row);
  for (auto _ : state) {
    ParallelFor(w.n_rows, chunk, kThreads, [&](int64_t begin, int64_t end) { encode(begin, end, out.data()); });
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * w.n_rows * w.n_per_row);
}

void RegisterAll(GgmlQuantizeChunkFn anchor) {
  for (const Format& f : AllFormats()) {
    if (!f.can_encode() || f.ggml_id == 0) continue;
    for (bool imat : {false, true}) {
      if (!imat && f.needs_imatrix) continue;  // ggml_quantize_chunk aborts without importance
      std::string base = "quantize/" + std::string(f.name) + (imat ? "/imat/" : "/noimat/");
      const Format* fp = &f;
      for (QuantMethod method : {QuantMethod::kGgml, QuantMethod::kBest}) {
        std::string name = base + (method == QuantMethod::kGgml ? "mixq-ggml" : "mixq-best");
        benchmark::RegisterBenchmark(name.c_str(), [fp, imat, method](benchmark::State& state) {
          const Workload& w = Data();
          const float* qw = imat ? w.importance.data() : nullptr;
          int64_t row_bytes = RowBytes(*fp, w.n_per_row).value();
          QuantizeRowFn fn = method == QuantMethod::kGgml ? fp->quantize_row_ggml : fp->quantize_row_best;
          RunEncoder(state, *fp, [&](int64_t begin, int64_t end, uint8_t* out) {
            for (int64_t r = begin; r < end; ++r) fn(&w.x[r * w.n_per_row], out + r * row_bytes, w.n_per_row, qw);
          });
        })->UseRealTime();
      }
      if (anchor != nullptr) {
        benchmark::RegisterBenchmark((base + "llama.cpp").c_str(), [fp, imat, anchor](benchmark::State& state) {
          const Workload& w = Data();
          const float* qw = imat ? w.importance.data() : nullptr;
          RunEncoder(state, *fp, [&](int64_t begin, int64_t end, uint8_t* out) {
            anchor(static_cast<int>(fp->ggml_id), w.x.data(), out, begin * w.n_per_row, end - begin, w.n_per_row, qw);
          });
        })->UseRealTime();
      }
    }
  }
}

}  // namespace
}  // namespace mixq::formats

int main(int argc, char** argv) {
  std::string ggml_base;
  if (const char* env = std::getenv("MIXQ_GGML_BASE")) ggml_base = env;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--ggml_base=", 12) == 0) {
      ggml_base = argv[i] + 12;
    } else if (std::strncmp(argv[i], "--model=", 8) == 0) {
      mixq::formats::ModelPath() = argv[i] + 8;
    } else {
      args.push_back(argv[i]);
    }
  }
  int n_args = static_cast<int>(args.size());
  benchmark::Initialize(&n_args, args.data());
  auto anchor = mixq::formats::LoadAnchor(ggml_base);
  benchmark::AddCustomContext("threads", std::to_string(mixq::formats::kThreads));
  benchmark::AddCustomContext("build_flags", MIXQ_BUILD_FLAGS);
  benchmark::AddCustomContext("anchor", anchor != nullptr ? ggml_base + " ggml_quantize_chunk" : "none (skipped)");
  benchmark::AddCustomContext("data", "ref-dev token_embd.weight, 4096 x 256, f16 -> f32");
  mixq::formats::RegisterAll(anchor);
  mixq::bench::RatioReporter reporter({.counter = "items_per_second",
                                       .prefix = "quantize/",
                                       .title = "case (weights/s)",
                                       .title_width = 26,
                                       .rate_format = "%14.4g",
                                       .contenders = {"mixq-ggml", "mixq-best"},
                                       .ratio_names = {"ggml/llama", "best/llama"}});
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
