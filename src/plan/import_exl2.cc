// Importer for ExLlamaV2 measurement.json files (the per-linear format of
// 2023, e.g. seed 002).
#include <cmath>

#include "base/json.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

using json::Json;

Status ImportOption(const Json& j, const std::string& where, Exl2Cost cost_kind, Option* out) {
  if (!j.is_object()) return Status::Corruption(where + " has an option that is not an object");
  auto desc = json::GetString(j, "desc", where + " option");
  if (!desc.has_value()) return desc.status();
  std::string owhere = where + " option '" + *desc + "'";
  auto total_bits = json::GetDouble(j, "total_bits", owhere);
  if (!total_bits.has_value()) return total_bits.status();
  auto err = json::GetDouble(j, "err", owhere);
  if (!err.has_value()) return err.status();
  if (*total_bits < 0.0 || *total_bits > 7.0e19) return Status::Corruption(owhere + " has total_bits out of range");
  if (*err < 0.0) return Status::Corruption(owhere + " has a negative err");
  out->type = std::move(*desc);
  // Some entries carry fractional bit counts; rounding up never under-counts.
  out->n_bytes = static_cast<int64_t>(std::ceil(*total_bits / 8.0));
  out->cost = cost_kind == Exl2Cost::kErr ? *err : *err * *err;
  return Status::Ok();
}

}  // namespace

Result<Measurement> ImportExl2Measurement(std::string_view json_text, Exl2Cost cost_kind) {
  auto doc = json::ParseJson(json_text);
  if (!doc.has_value()) return doc.status();
  if (!doc->is_object()) return Status::Corruption("not an ExLlamaV2 measurement: not a JSON object");
  auto layers = doc->find("measurement");
  if (layers == doc->end()) return Status::Corruption("not an ExLlamaV2 measurement: no key 'measurement'");
  if (!layers->is_array()) {
    return Status::NotSupported(
        "this ExLlamaV2 measurement is not in the per-linear format of 2023 ('measurement' is not a list); "
        "only that format can be imported");
  }
  Measurement m;
  m.model = "ExLlamaV2 measurement";
  m.cost_model = cost_kind == Exl2Cost::kErr
                     ? "err: relative Frobenius error of the linear's output on calibration inputs (ExLlamaV2)"
                     : "err^2: squared relative Frobenius error of the linear's output on calibration inputs "
                       "(ExLlamaV2)";
  m.units.resize(layers->size());
  for (size_t i = 0; i < m.units.size(); ++i) {
    const Json& j = (*layers)[i];
    std::string where = "measurement entry #" + std::to_string(i);
    if (!j.is_object()) return Status::Corruption(where + " is not an object");
    auto key = json::GetString(j, "key", where);
    if (!key.has_value()) return key.status();
    where = "measurement entry '" + *key + "'";
    auto numel = json::GetInt64(j, "numel", where);
    if (!numel.has_value()) return numel.status();
    auto options = json::GetArray(j, "options", where);
    if (!options.has_value()) return options.status();
    Unit& u = m.units[i];
    u.name = std::move(*key);
    u.n_weights = *numel;
    u.options.resize((*options)->size());
    for (size_t k = 0; k < u.options.size(); ++k) {
      MIXQ_TRY(ImportOption((**options)[k], where, cost_kind, &u.options[k]));
    }
  }
  MIXQ_TRY(Validate(m));
  return m;
}

}  // namespace mixq::plan
