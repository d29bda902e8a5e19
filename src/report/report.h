// report: one self-contained HTML page (docs/report.md) that shows what a
// measurement, its plans and evaluations say: KLD against file size, the
// measured sensitivity of every layer and role, where the chosen plan puts its
// bits next to llama.cpp's preset of the nearest size, predicted against real
// KLD, and for mixture-of-experts models the split between attention, shared
// and routed experts and router.
//
// The charts are Vega-Lite specifications rendered by vega-embed; the three
// libraries (scripts/setup-report.sh fetches them from npm at pinned versions)
// are inlined into the page, so it needs no network to be viewed.
#ifndef MIXQ_REPORT_REPORT_H_
#define MIXQ_REPORT_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "plan/plan.h"

namespace mixq::report {

// One tensor of an evaluated GGUF file.
struct TensorBits {
  std::string name;
  std::string type;
  int64_t n_weights = 0;
  int64_t n_bytes = 0;
};

// A model file whose KLD against its base was measured.
struct EvalPoint {
  std::string label;  // the file name without ".gguf"
  bool made_by_mixq = false;
  int64_t file_n_bytes = 0;
  double kld = 0;
  double kld_stderr = 0;
  std::optional<double> predicted_kld;  // known for `mixq auto` results
  std::vector<TensorBits> tensors;      // empty when the GGUF could not be read
};

// One random mix of `mixq measure --validate`.
struct ValidationMix {
  double bpw = 0;
  double predicted_kld = 0;
  double kld = 0;
};

struct LabeledPlan {
  std::string label;
  plan::Plan plan;
};

struct ReportInputs {
  std::string title;
  plan::Measurement measurement;
  std::vector<LabeledPlan> plans;  // the first is the chosen one
  std::vector<EvalPoint> evals;
  std::vector<ValidationMix> validation;
};

// The KLD of a model from `mixq eval --json` (with --base or --base-logits) or
// `mixq auto --json` output: the "summary" line of the JSON Lines, or a single
// JSON object. The GGUF it names is opened (as given, else beside the JSON
// file) for its size and tensor types. Corruption when there is no KLD in it,
// IOError when the GGUF cannot be read.
Result<EvalPoint> LoadEval(const std::string& path);
// The same from an evaluated GGUF file and its KLD, as `mixq auto` has them.
Result<EvalPoint> EvalOfFile(const std::string& gguf_path, double kld, double kld_stderr,
                             std::optional<double> predicted_kld);
// The random mixes of `mixq measure --validate N --json` output. Corruption
// when it holds no validation.
Result<std::vector<ValidationMix>> LoadValidation(const std::string& path);

// The browser builds of Vega, Vega-Lite and vega-embed.
struct ChartLibrary {
  std::string vega, vega_lite, vega_embed;
  std::string versions;  // JSON: package -> version
};
// Where the libraries are looked for: $MIXQ_REPORT_ASSETS, else the
// .report-assets folder of the source tree this binary was built from.
std::string DefaultAssetDir();
// IOError, naming scripts/setup-report.sh, when a file is missing.
Result<ChartLibrary> LoadChartLibrary(const std::string& dir);

// The page. Corruption when the measurement has no units.
Result<std::string> RenderHtml(const ReportInputs& inputs, const ChartLibrary& library);
// Renders and writes the page atomically.
Status WriteReport(const ReportInputs& inputs, const ChartLibrary& library, const std::string& path);

}  // namespace mixq::report

#endif  // MIXQ_REPORT_REPORT_H_
