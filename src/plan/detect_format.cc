// Telling the measurement formats `mixq plan` reads apart by their content.
#include <array>

#include "base/json.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

using json::Json;

struct FormatInfo {
  MeasurementFormat format;
  std::string_view name;
  std::string_view description;
};

constexpr std::array<FormatInfo, 3> kFormats = {{
    {MeasurementFormat::kMixq, "mixq", "mixq measurement"},
    {MeasurementFormat::kExl2, "exl2", "ExLlamaV2 measurement.json"},
    {MeasurementFormat::kCostTable, "flux-table", "per-layer cost table"},
}};

constexpr std::string_view kKnown =
    "a mixq measurement, an ExLlamaV2 measurement.json or a per-layer cost table (markdown with a 'bits' row)";

const FormatInfo& Info(MeasurementFormat format) {
  for (const FormatInfo& f : kFormats) {
    if (f.format == format) return f;
  }
  return kFormats[0];
}

// The first few keys of a JSON object, for saying what it holds instead.
std::string SomeKeys(const Json& object) {
  constexpr size_t kShown = 5;
  std::string keys;
  size_t n = 0;
  for (auto it = object.begin(); it != object.end() && n < kShown; ++it, ++n) {
    keys += (keys.empty() ? "'" : ", '") + it.key() + "'";
  }
  if (object.size() > kShown) keys += ", ...";
  return keys.empty() ? "no keys" : "keys " + keys;
}

Result<MeasurementFormat> DetectJson(std::string_view text) {
  auto doc = json::ParseJson(text);
  if (!doc.has_value()) {
    return Status::Corruption("JSON that does not parse (" + doc.status().message() + "); expected " +
                              std::string(kKnown));
  }
  if (!doc->is_object()) return Status::Corruption("JSON that is not an object; expected " + std::string(kKnown));
  if (auto schema = doc->find("schema"); schema != doc->end() && schema->is_string()) {
    if (*schema == "mixq.measurement") return MeasurementFormat::kMixq;
    return Status::Corruption("a mixq document of schema '" + schema->get<std::string>() +
                              "', not a measurement (schema 'mixq.measurement')");
  }
  if (doc->contains("measurement")) return MeasurementFormat::kExl2;
  return Status::Corruption("a JSON object with " + SomeKeys(*doc) +
                            ": neither a mixq measurement (key 'schema') nor an ExLlamaV2 measurement.json (key "
                            "'measurement')");
}

}  // namespace

std::string_view MeasurementFormatName(MeasurementFormat format) { return Info(format).name; }
std::string_view MeasurementFormatDescription(MeasurementFormat format) { return Info(format).description; }

Result<MeasurementFormat> ParseMeasurementFormatName(std::string_view name) {
  std::string names;
  for (const FormatInfo& f : kFormats) {
    if (f.name == name) return f.format;
    names += (names.empty() ? "" : ", ") + std::string(f.name);
  }
  return Status::InvalidArgument("--format must be one of " + names + ", not '" + std::string(name) + "'");
}

Result<MeasurementFormat> DetectMeasurementFormat(std::string_view text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return Status::Corruption("an empty file; expected " + std::string(kKnown));
  if (text.substr(0, 4) == "GGUF") {
    return Status::Corruption(
        "a GGUF file (a model or an imatrix), not a measurement; measure the model first (mixq measure MODEL.gguf "
        "...)");
  }
  if (text.find('\0') != std::string_view::npos) {
    return Status::Corruption("binary data, not a measurement; expected " + std::string(kKnown));
  }
  if (text[first] == '{' || text[first] == '[') return DetectJson(text);
  if (IsCostTable(text)) return MeasurementFormat::kCostTable;
  return Status::Corruption("text without a markdown table with a 'bits' row; expected " + std::string(kKnown));
}

}  // namespace mixq::plan
