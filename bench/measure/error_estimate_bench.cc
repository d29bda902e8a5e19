// error_estimate_bench: how far the weight-space errors that `mixq measure`
// estimates from sampled rows (measure::WeightErrors) are from the errors of
// every row, on a real model. For every quantizable tensor and every
// candidate type not calibrated, the relative error of the estimate against
// --error_rows=0, at each sample size of --rows, for two estimators:
//   scaled: Σ_sample e_T · rows / rows kept (no type encoded in full);
//   control: rows drawn by the error of the calibration type (Q2_K, Q4_K:
//           encoded in full) nearest in bpw, and weighted by the ratio to
//           it, as MeasureModel does (measure/weight_errors.h).
// A cost g · E^α moves by about α times the relative error of E (α in
// [0.5, 2], near 1 on ref-dev), so this is the change of every option's cost.
//
//   build/bench/error_estimate_bench --model=M.gguf [--imatrix=I.gguf]
//       [--rows=1024,256,128,64] [--threads=2]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flags.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "measure/weight_errors.h"
#include "quantize/quantize.h"

namespace mixq::measure {
namespace {

struct Options {
  std::string model;
  std::string imatrix;
  std::string rows = "1024,256,128,64";
  int threads = 2;
};

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

int Run(const Options& o) {
  auto file = gguf::GgufFile::Open(o.model);
  if (!file) return std::fprintf(stderr, "error_estimate_bench: %s\n", file.error().message().c_str()), 2;
  std::optional<quantize::Imatrix> imatrix;
  if (!o.imatrix.empty()) {
    auto im = quantize::LoadImatrix(o.imatrix);
    if (!im) return std::fprintf(stderr, "error_estimate_bench: %s\n", im.error().message().c_str()), 2;
    imatrix.emplace(std::move(im).value());
  }
  std::vector<int64_t> sizes;
  for (std::string_view rest = o.rows; !rest.empty();) {
    const size_t comma = rest.find(',');
    sizes.push_back(std::atoll(std::string(rest.substr(0, comma)).c_str()));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  const formats::Format* calibration[] = {formats::FindFormatByName("Q2_K"), formats::FindFormatByName("Q4_K")};
  // Relative errors by (rows, estimator), and the largest with what it was.
  std::map<std::pair<int64_t, std::string>, std::vector<double>> rel;
  std::map<std::pair<int64_t, std::string>, std::string> worst;
  int sampled_tensors = 0;
  for (const gguf::TensorInfo& t : file->tensors()) {
    if (!quantize::IsQuantizable(t)) continue;
    std::vector<float> w;
    if (!quantize::TensorToF32(*file, t, &w, o.threads).ok()) return 1;
    auto imp = quantize::TensorImportance(imatrix ? &*imatrix : nullptr, t);
    if (!imp) return std::fprintf(stderr, "error_estimate_bench: %s\n", imp.error().message().c_str()), 2;
    const std::vector<float>* importance = imp->has_value() ? &**imp : nullptr;
    std::vector<const formats::Format*> types;
    for (const formats::Format& f : formats::AllFormats()) {
      if (f.quantized && f.can_encode() && formats::RowFits(f, t.ne[0]) &&
          (importance != nullptr || !f.needs_imatrix)) {
        types.push_back(&f);
      }
    }
    std::unique_ptr<bool[]> none(new bool[types.size()]());
    std::unique_ptr<bool[]> calibrated(new bool[types.size()]());
    for (size_t i = 0; i < types.size(); ++i) {
      calibrated[i] = std::find(std::begin(calibration), std::end(calibration), types[i]) != std::end(calibration);
    }
    WeightErrorOptions wo;
    wo.n_threads = o.threads;
    wo.error_rows = 0;
    auto exact = WeightErrors(t, w, importance, types, {none.get(), types.size()}, wo);
    if (!exact) return std::fprintf(stderr, "error_estimate_bench: %s\n", exact.error().message().c_str()), 1;
    bool sampled = false;
    for (int64_t rows : sizes) {
      if (static_cast<int64_t>(SampledRows(t, rows).size()) >= t.n_rows()) continue;
      sampled = true;
      wo.error_rows = rows;
      for (const char* estimator : {"scaled", "control"}) {
        const bool controlled = std::string_view(estimator) == "control";
        auto r = WeightErrors(t, w, importance, types, {(controlled ? calibrated : none).get(), types.size()}, wo);
        if (!r) return std::fprintf(stderr, "error_estimate_bench: %s\n", r.error().message().c_str()), 1;
        for (size_t i = 0; i < types.size(); ++i) {
          if (calibrated[i] || !((*exact)[i].error > 0)) continue;
          const double e = std::abs((*r)[i].error / (*exact)[i].error - 1);
          std::vector<double>& v = rel[{rows, estimator}];
          if (v.empty() || e > *std::max_element(v.begin(), v.end())) {
            worst[{rows, estimator}] = t.name + " " + std::string(types[i]->name);
          }
          v.push_back(e);
        }
      }
    }
    sampled_tensors += sampled;
    std::fprintf(stderr, "%s: %lld rows%s\n", t.name.c_str(), static_cast<long long>(t.n_rows()),
                 sampled ? "" : " (never sampled)");
  }
  std::printf("%s: %d tensors sampled at some size\n", o.model.c_str(), sampled_tensors);
  std::printf("%-6s %-7s %8s %9s %9s %9s  %s\n", "rows", "est", "options", "median", "p90", "max", "largest at");
  for (int64_t rows : sizes) {
    for (const char* estimator : {"scaled", "control"}) {
      const std::vector<double>& v = rel[{rows, estimator}];
      std::printf("%-6lld %-7s %8zu %8.3f%% %8.3f%% %8.3f%%  %s\n", static_cast<long long>(rows), estimator, v.size(),
                  100 * Quantile(v, 0.5), 100 * Quantile(v, 0.9), 100 * Quantile(v, 1.0),
                  worst[{rows, estimator}].c_str());
    }
  }
  return 0;
}

}  // namespace
}  // namespace mixq::measure

int main(int argc, char** argv) {
  mixq::measure::Options o;
  for (int i = 1; i < argc; ++i) {
    const auto value = [&](std::string_view prefix) { return mixq::bench::FlagValue(argv[i], prefix); };
    if (const char* v = value("--model=")) {
      o.model = v;
    } else if (const char* v = value("--imatrix=")) {
      o.imatrix = v;
    } else if (const char* v = value("--rows=")) {
      o.rows = v;
    } else if (const char* v = value("--threads=")) {
      o.threads = std::atoi(v);
    } else {
      std::fprintf(stderr, "error_estimate_bench: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (o.model.empty()) return std::fprintf(stderr, "error_estimate_bench: --model=PATH is required\n"), 2;
  return mixq::measure::Run(o);
}
