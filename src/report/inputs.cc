// Reading what the report shows: evaluations, validations and the chart library.
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "base/json.h"
#include "base/text_file.h"
#include "gguf/gguf.h"
#include "report/report.h"

namespace mixq::report {
namespace {

using json::Json;

// The "summary" object of a mixq --json output (JSON Lines), or the document
// itself when the file is one JSON object.
Result<Json> SummaryOf(const std::string& path) {
  auto text = ReadTextFile(path);
  MIXQ_TRY(text);
  auto whole = Json::parse(*text, nullptr, false);
  if (whole.is_object() && !whole.contains("type")) return whole;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    auto event = Json::parse(line, nullptr, false);
    if (event.is_object() && event.value("type", "") == "summary" && event.contains("data") &&
        event["data"].is_object()) {
      return event["data"];
    }
  }
  return Status::Corruption(path + ": no summary found (expected the output of a mixq command run with --json)");
}

std::optional<double> NumberAt(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// A path written by another command: as given, else relative to the folder of
// the file that names it.
std::string ResolveBeside(const std::string& named, const std::string& naming_file) {
  namespace fs = std::filesystem;
  if (fs::path(named).is_absolute() || fs::exists(named)) return named;
  fs::path beside = fs::path(naming_file).parent_path() / named;
  return fs::exists(beside) ? beside.string() : named;
}

Result<std::string> ReadAsset(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  if (!std::filesystem::exists(path)) {
    return Status::IOError("chart library file '" + path +
                           "' not found; run scripts/setup-report.sh (or set MIXQ_REPORT_ASSETS)");
  }
  return ReadTextFile(path);
}

}  // namespace

Result<EvalPoint> EvalOfFile(const std::string& gguf_path, double kld, double kld_stderr,
                             std::optional<double> predicted_kld) {
  auto file = gguf::GgufFile::Open(gguf_path);
  MIXQ_TRY(file);
  EvalPoint point;
  point.label = std::filesystem::path(gguf_path).stem().string();
  point.made_by_mixq = file->GetString("mixq.version").has_value();
  point.file_n_bytes = static_cast<int64_t>(file->file_size());
  point.kld = kld;
  point.kld_stderr = kld_stderr;
  point.predicted_kld = predicted_kld;
  for (const gguf::TensorInfo& t : file->tensors()) {
    point.tensors.push_back({t.name, std::string(t.format->name), t.n_elems(), static_cast<int64_t>(t.n_bytes)});
  }
  return point;
}

Result<EvalPoint> LoadEval(const std::string& path) {
  auto summary = SummaryOf(path);
  MIXQ_TRY(summary);
  // `mixq eval` names its input "model" and its KLD "kld_mean"; `mixq auto`
  // names its output "output" and the KLD "kld".
  const std::string model = summary->value("model", summary->value("output", ""));
  const auto kld = NumberAt(*summary, "kld_mean") ? NumberAt(*summary, "kld_mean") : NumberAt(*summary, "kld");
  const auto stderr_ = NumberAt(*summary, "kld_stderr");
  if (model.empty() || !kld || !stderr_) {
    return Status::Corruption(path +
                              ": no KLD in its summary (run mixq eval with --base or --base-logits, and --json)");
  }
  auto point = EvalOfFile(ResolveBeside(model, path), *kld, *stderr_, NumberAt(*summary, "predicted_kld"));
  if (!point) return point.error().WithContext(path);
  return point;
}

Result<std::vector<ValidationMix>> LoadValidation(const std::string& path) {
  auto summary = SummaryOf(path);
  MIXQ_TRY(summary);
  const Json* mixes = nullptr;
  if (auto v = summary->find("validation"); v != summary->end() && v->is_object()) {
    if (auto m = v->find("mixes"); m != v->end() && m->is_array()) mixes = &*m;
  }
  if (mixes == nullptr) {
    return Status::Corruption(path + ": no validation in its summary (run mixq measure with --validate N --json)");
  }
  std::vector<ValidationMix> out;
  for (const Json& m : *mixes) {
    auto bpw = NumberAt(m, "bpw"), predicted = NumberAt(m, "predicted_kld"), kld = NumberAt(m, "kld");
    if (!bpw || !predicted || !kld)
      return Status::Corruption(path + ": a validation mix lacks bpw, predicted_kld or kld");
    out.push_back({*bpw, *predicted, *kld});
  }
  return out;
}

std::string DefaultAssetDir() {
  if (const char* env = std::getenv("MIXQ_REPORT_ASSETS"); env != nullptr && *env != '\0') return env;
  return MIXQ_REPORT_ASSETS;
}

Result<ChartLibrary> LoadChartLibrary(const std::string& dir) {
  ChartLibrary lib;
  for (auto [name, out] :
       {std::pair{"vega.min.js", &lib.vega}, std::pair{"vega-lite.min.js", &lib.vega_lite},
        std::pair{"vega-embed.min.js", &lib.vega_embed}, std::pair{"versions.json", &lib.versions}}) {
    auto text = ReadAsset(dir, name);
    MIXQ_TRY(text);
    *out = std::move(text).value();
  }
  return lib;
}

}  // namespace mixq::report
