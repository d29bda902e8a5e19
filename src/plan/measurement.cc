// The measurement model: validation and the "mixq.measurement" JSON schema.
#include <cmath>
#include <limits>
#include <unordered_set>

#include "base/json.h"
#include "base/text_file.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

using json::Json;

constexpr const char* kMeasurementSchema = "mixq.measurement";
constexpr int64_t kMeasurementVersion = 1;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
// Keeps every sum the solvers form (costs, cost + lambda x bytes) finite.
constexpr double kMaxAbsCost = 1e30;

bool AddWithoutOverflow(int64_t* total, int64_t v) {
  if (v > kInt64Max - *total) return false;
  *total += v;
  return true;
}

Status ValidateUnit(const Unit& unit, int64_t* max_bytes_total) {
  std::string where = "unit '" + unit.name + "'";
  if (unit.name.empty()) return Status::Corruption("a unit has an empty name");
  if (unit.n_weights <= 0) return Status::Corruption(where + " has n_weights <= 0");
  if (unit.options.empty()) return Status::Corruption(where + " has no options");
  std::unordered_set<std::string> types;
  int64_t max_bytes = 0;
  for (const Option& o : unit.options) {
    if (o.type.empty()) return Status::Corruption(where + " has an option with an empty type");
    if (!types.insert(o.type).second) return Status::Corruption(where + " lists type '" + o.type + "' twice");
    if (o.n_bytes < 0) return Status::Corruption(where + " type '" + o.type + "' has n_bytes < 0");
    if (!(std::fabs(o.cost) <= kMaxAbsCost)) {
      return Status::Corruption(where + " type '" + o.type + "' has a cost that is not finite or beyond 1e30");
    }
    max_bytes = std::max(max_bytes, o.n_bytes);
  }
  for (const std::string& t : unit.tensors) {
    if (t.empty()) return Status::Corruption(where + " lists an empty tensor name");
  }
  if (!AddWithoutOverflow(max_bytes_total, max_bytes)) return Status::Corruption("total n_bytes overflows int64");
  return Status::Ok();
}

Status ParseOption(const Json& j, const std::string& where, Option* out) {
  if (!j.is_object()) return Status::Corruption(where + " has an option that is not an object");
  auto type = json::GetString(j, "type", where + " option");
  if (!type.has_value()) return type.status();
  std::string owhere = where + " type '" + *type + "'";
  auto n_bytes = json::GetInt64(j, "n_bytes", owhere);
  if (!n_bytes.has_value()) return n_bytes.status();
  auto cost = json::GetDouble(j, "cost", owhere);
  if (!cost.has_value()) return cost.status();
  *out = Option{std::move(*type), *n_bytes, *cost};
  return Status::Ok();
}

Status ParseUnit(const Json& j, size_t index, Unit* out) {
  std::string where = "unit #" + std::to_string(index);
  if (!j.is_object()) return Status::Corruption(where + " is not an object");
  auto name = json::GetString(j, "name", where);
  if (!name.has_value()) return name.status();
  where = "unit '" + *name + "'";
  auto n_weights = json::GetInt64(j, "n_weights", where);
  if (!n_weights.has_value()) return n_weights.status();
  out->name = std::move(*name);
  out->n_weights = *n_weights;
  if (j.find("tensors") != j.end()) {
    auto tensors = json::GetArray(j, "tensors", where);
    if (!tensors.has_value()) return tensors.status();
    for (const Json& t : **tensors) {
      if (!t.is_string()) return Status::Corruption(where + " has a tensor name that is not a string");
      out->tensors.push_back(t.get<std::string>());
    }
  }
  auto options = json::GetArray(j, "options", where);
  if (!options.has_value()) return options.status();
  out->options.resize((*options)->size());
  for (size_t i = 0; i < out->options.size(); ++i) {
    MIXQ_TRY(ParseOption((**options)[i], where, &out->options[i]));
  }
  return Status::Ok();
}

}  // namespace

Status Validate(const Measurement& m) {
  if (m.units.empty()) return Status::Corruption("the measurement has no units");
  if (m.fixed_n_bytes < 0 || m.fixed_tensor_n_bytes < 0 || m.fixed_n_weights < 0) {
    return Status::Corruption("the measurement has a negative fixed_n_bytes, fixed_tensor_n_bytes or fixed_n_weights");
  }
  if (m.fixed_tensor_n_bytes > m.fixed_n_bytes) {
    return Status::Corruption("fixed_tensor_n_bytes exceeds fixed_n_bytes");
  }
  std::unordered_set<std::string> names;
  int64_t bytes_total = m.fixed_n_bytes;
  int64_t weights_total = m.fixed_n_weights;
  for (const Unit& u : m.units) {
    MIXQ_TRY(ValidateUnit(u, &bytes_total));
    if (!names.insert(u.name).second) return Status::Corruption("unit name '" + u.name + "' appears twice");
    if (!AddWithoutOverflow(&weights_total, u.n_weights)) return Status::Corruption("total n_weights overflows int64");
  }
  return Status::Ok();
}

int64_t TotalWeights(const Measurement& m) {
  int64_t total = m.fixed_n_weights;
  for (const Unit& u : m.units) total += u.n_weights;
  return total;
}

Result<Measurement> ParseMeasurementJson(std::string_view json_text) {
  auto doc = json::ParseJson(json_text);
  if (!doc.has_value()) return doc.status();
  MIXQ_TRY(json::CheckSchema(*doc, kMeasurementSchema, kMeasurementVersion));
  Measurement m;
  const std::string where = "measurement";
  auto model = json::GetOptionalString(*doc, "model", where, "");
  if (!model.has_value()) return model.status();
  auto cost_model = json::GetOptionalString(*doc, "cost_model", where, "");
  if (!cost_model.has_value()) return cost_model.status();
  m.model = std::move(*model);
  m.cost_model = std::move(*cost_model);
  auto fixed = doc->find("fixed");
  if (fixed != doc->end()) {
    if (!fixed->is_object()) return Status::Corruption("measurement key 'fixed' is not an object");
    auto n_bytes = json::GetOptionalInt64(*fixed, "n_bytes", "fixed", 0);
    if (!n_bytes.has_value()) return n_bytes.status();
    auto tensor_n_bytes = json::GetOptionalInt64(*fixed, "tensor_n_bytes", "fixed", 0);
    if (!tensor_n_bytes.has_value()) return tensor_n_bytes.status();
    auto n_weights = json::GetOptionalInt64(*fixed, "n_weights", "fixed", 0);
    if (!n_weights.has_value()) return n_weights.status();
    m.fixed_n_bytes = *n_bytes;
    m.fixed_tensor_n_bytes = *tensor_n_bytes;
    m.fixed_n_weights = *n_weights;
  }
  auto units = json::GetArray(*doc, "units", where);
  if (!units.has_value()) return units.status();
  m.units.resize((*units)->size());
  for (size_t i = 0; i < m.units.size(); ++i) MIXQ_TRY(ParseUnit((**units)[i], i, &m.units[i]));
  MIXQ_TRY(Validate(m));
  return m;
}

std::string MeasurementToJson(const Measurement& m) {
  Json doc = Json::object();
  doc["schema"] = kMeasurementSchema;
  doc["version"] = kMeasurementVersion;
  doc["model"] = m.model;
  doc["cost_model"] = m.cost_model;
  doc["fixed"] = {
      {"n_bytes", m.fixed_n_bytes}, {"tensor_n_bytes", m.fixed_tensor_n_bytes}, {"n_weights", m.fixed_n_weights}};
  Json units = Json::array();
  for (const Unit& u : m.units) {
    Json options = Json::array();
    for (const Option& o : u.options) options.push_back({{"type", o.type}, {"n_bytes", o.n_bytes}, {"cost", o.cost}});
    units.push_back({{"name", u.name}, {"tensors", u.tensors}, {"n_weights", u.n_weights}, {"options", options}});
  }
  doc["units"] = std::move(units);
  return json::DumpJson(doc);
}

Result<Measurement> LoadMeasurement(const std::string& path) {
  auto text = ReadTextFile(path);
  if (!text.has_value()) return text.status();
  auto m = ParseMeasurementJson(*text);
  if (!m.has_value()) return m.status().WithContext(path);
  return m;
}

Status SaveMeasurement(const Measurement& m, const std::string& path) {
  MIXQ_TRY(Validate(m));
  return WriteTextFileAtomic(path, MeasurementToJson(m));
}

}  // namespace mixq::plan
