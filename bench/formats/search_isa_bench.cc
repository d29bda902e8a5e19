// search_isa_bench: single-thread CPU time per weight of every encoder (both
// methods, with and without importance) at each search-lane ISA the CPU has
// (formats/lanes.h), in one process on the same rows, and the ratio of each
// wider ISA's time to the baseline's. Thread CPU time, best of --reps, so
// that a shared machine disturbs it less than wall time; the bytes are checked
// to be equal at every ISA.
//
// Data: the first --rows rows (default 512) of ref-dev's token_embd.weight
// (256 wide), widened to f32; importance as quantize_bench's.
//
//   build/bench/search_isa_bench [--rows=N] [--reps=N] [--types=Q4_K,IQ4_XS]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/cpu_time.h"
#include "base/isa.h"
#include "flags.h"
#include "formats/formats.h"
#include "formats/lanes.h"
#include "gguf/gguf.h"

namespace mixq::formats {
namespace {

struct Options {
  int64_t rows = 512;
  int reps = 3;
  std::string types;  // comma-separated; empty: all
};

bool Wanted(const Options& o, std::string_view name) {
  if (o.types.empty()) return true;
  std::string_view rest = o.types;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    if (rest.substr(0, comma) == name) return true;
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  return false;
}

int Run(const Options& o) {
  const std::string path = std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/ref-dev-f16.gguf";
  Result<gguf::GgufFile> file = gguf::GgufFile::Open(path);
  if (!file) {
    std::fprintf(stderr, "search_isa_bench: %s\n", file.error().message().c_str());
    return 2;
  }
  const gguf::TensorInfo* t = file->FindTensor("token_embd.weight");
  const int64_t n = t->ne[0];
  const int64_t rows = std::min(o.rows, t->n_rows());
  std::vector<float> all(static_cast<size_t>(t->n_elems()));
  if (!DequantizeRows(*t->format, file->TensorData(*t).data(), all.data(), t->n_rows(), n, 1).ok()) return 2;
  std::vector<float> importance(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    importance[j] = static_cast<float>(1 + (j * 37) % 64) / 16.0f * (j % 64 == 7 ? 16.0f : 1.0f);
  }
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (IsaSupported(isa)) isas.push_back(isa);
  }
  std::printf("%-8s %-6s %-5s", "type", "imat", "meth");
  for (Isa isa : isas) std::printf(" %9s ns/w", std::string(IsaName(isa)).c_str());
  for (size_t i = 1; i < isas.size(); ++i) std::printf(" %7s/sc", std::string(IsaName(isas[i])).c_str());
  std::printf("\n");
  for (const Format& f : AllFormats()) {
    if (!f.can_encode() || !f.quantized || !RowFits(f, n) || !Wanted(o, f.name)) continue;
    const int64_t row_bytes = RowBytes(f, n).value();
    for (bool imat : {false, true}) {
      if (!imat && f.needs_imatrix) continue;
      for (QuantMethod method : {QuantMethod::kGgml, QuantMethod::kBest}) {
        const QuantizeRowFn fn = method == QuantMethod::kGgml ? f.quantize_row_ggml : f.quantize_row_best;
        // The ISAs take turns within each repetition, so that a slower spell of
        // the machine does not fall on one of them only.
        std::vector<double> ns(isas.size(), 1e30);
        std::vector<std::vector<uint8_t>> out(isas.size(), std::vector<uint8_t>(static_cast<size_t>(row_bytes * rows)));
        for (int rep = 0; rep < o.reps; ++rep) {
          for (size_t i = 0; i < isas.size(); ++i) {
            internal::SetLaneIsa(isas[i]);
            const double start = ThreadCpuSeconds();
            for (int64_t r = 0; r < rows; ++r) {
              fn(&all[static_cast<size_t>(r * n)], &out[i][static_cast<size_t>(r * row_bytes)], n,
                 imat ? importance.data() : nullptr);
            }
            ns[i] = std::min(ns[i], (ThreadCpuSeconds() - start) * 1e9 / static_cast<double>(rows * n));
          }
        }
        const bool same = std::all_of(out.begin(), out.end(), [&](const auto& bytes) { return bytes == out[0]; });
        std::printf("%-8s %-6s %-5s", std::string(f.name).c_str(), imat ? "imat" : "noimat",
                    method == QuantMethod::kGgml ? "ggml" : "best");
        for (double v : ns) std::printf(" %14.1f", v);
        for (size_t i = 1; i < ns.size(); ++i) std::printf(" %10.3f", ns[i] / ns[0]);
        std::printf("%s\n", same ? "" : "  BYTES DIFFER");
        if (!same) return 1;
      }
    }
  }
  internal::SetLaneIsa(ActiveIsa());
  return 0;
}

}  // namespace
}  // namespace mixq::formats

int main(int argc, char** argv) {
  mixq::formats::Options o;
  for (int i = 1; i < argc; ++i) {
    const auto value = [&](std::string_view prefix) { return mixq::bench::FlagValue(argv[i], prefix); };
    if (const char* v = value("--rows=")) {
      o.rows = std::atoll(v);
    } else if (const char* v = value("--reps=")) {
      o.reps = std::atoi(v);
    } else if (const char* v = value("--types=")) {
      o.types = v;
    } else {
      std::fprintf(stderr, "usage: %s [--rows=N] [--reps=N] [--types=A,B]\n", argv[0]);
      return 2;
    }
  }
  return mixq::formats::Run(o);
}
