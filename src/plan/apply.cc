// MatchPlanToModel: the one check every command runs before it applies a plan
// (quantize --plan, auto, and the diffusion convert and quantize), so that an
// edited or foreign plan fails as a whole instead of taking effect in part.
#include <cmath>
#include <set>
#include <unordered_map>

#include "gguf/gguf.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

using TypeMap = std::map<std::string, const formats::Format*>;

Result<const formats::Format*> UnitFormat(const UnitPlan& unit) {
  const formats::Format* f = formats::FindFormatByName(unit.type);
  if (f == nullptr) return Status::Corruption("plan unit '" + unit.name + "' has unknown type '" + unit.type + "'");
  if (!f->can_encode()) {
    return Status::NotSupported("plan unit '" + unit.name + "' has type '" + unit.type +
                                "', which mixq cannot write; valid types: " + formats::EncodableFormatNames());
  }
  return f;
}

// The tensors of `unit`, by index into `tensors`.
Result<std::vector<size_t>> UnitMembers(const UnitPlan& unit, std::span<const PlanTensor> tensors,
                                        const std::unordered_map<std::string, size_t>& by_name) {
  const std::string where = "plan unit '" + unit.name + "'";
  std::vector<size_t> members;
  if (unit.tensors.empty()) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].quantizable && tensors[i].name.starts_with(unit.name + ".")) members.push_back(i);
    }
  }
  for (const std::string& name : unit.tensors) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      return Status::Corruption(where + " names tensor '" + name +
                                "', which the model does not have; was the plan made for another model?");
    }
    if (!tensors[it->second].quantizable) {
      return Status::Corruption(where + " gives type " + unit.type + " to tensor '" + name +
                                "', which is kept in float");
    }
    members.push_back(it->second);
  }
  if (members.empty()) {
    return Status::Corruption(where +
                              " matches no quantizable tensor of the model; was the plan made for another model?");
  }
  return members;
}

// n_weights and n_bytes as the type and the members' shapes give them.
Status CheckSizes(const UnitPlan& unit, const formats::Format& format, std::span<const PlanTensor> tensors,
                  const std::vector<size_t>& members) {
  const std::string where = "plan unit '" + unit.name + "'";
  int64_t n_weights = 0, n_bytes = 0;
  for (size_t i : members) {
    const PlanTensor& t = tensors[i];
    auto row = formats::RowBytes(format, t.row_length);
    if (!row.has_value()) {
      return Status::Corruption(where + " gives type " + unit.type + " to tensor '" + t.name + "', whose rows of " +
                                std::to_string(t.row_length) + " it cannot hold");
    }
    n_weights += t.row_length * t.n_rows;
    n_bytes += static_cast<int64_t>(gguf::PaddedBytes(static_cast<uint64_t>(*row * t.n_rows)));
  }
  if (unit.n_weights != n_weights || unit.n_bytes != n_bytes) {
    return Status::Corruption(where + " says " + std::to_string(unit.n_weights) + " weights in " +
                              std::to_string(unit.n_bytes) + " bytes; its tensors have " + std::to_string(n_weights) +
                              " weights, " + std::to_string(n_bytes) + " bytes in " + unit.type);
  }
  return Status::Ok();
}

}  // namespace

Result<TypeMap> MatchPlanToModel(const Plan& plan, std::span<const PlanTensor> tensors) {
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < tensors.size(); ++i) by_name.emplace(tensors[i].name, i);
  std::vector<const UnitPlan*> owner(tensors.size(), nullptr);
  std::set<std::string> unit_names;
  TypeMap types;
  for (const UnitPlan& unit : plan.units) {
    const std::string where = "plan unit '" + unit.name + "'";
    if (!unit_names.insert(unit.name).second) return Status::Corruption(where + " appears twice");
    auto format = UnitFormat(unit);
    MIXQ_TRY(format);
    if (!std::isfinite(unit.cost) || unit.cost < 0) {
      return Status::Corruption(where + " has cost " + std::to_string(unit.cost) +
                                "; costs are finite and not negative");
    }
    auto members = UnitMembers(unit, tensors, by_name);
    MIXQ_TRY(members);
    for (size_t i : *members) {
      if (owner[i] != nullptr) {
        return Status::Corruption(where + " names tensor '" + tensors[i].name + "', already in plan unit '" +
                                  owner[i]->name + "'");
      }
      owner[i] = &unit;
      types[tensors[i].name] = *format;
    }
    MIXQ_TRY(CheckSizes(unit, **format, tensors, *members));
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].quantizable && owner[i] == nullptr) {
      return Status::Corruption("the plan has no unit for tensor '" + tensors[i].name +
                                "'; was it made for another model?");
    }
  }
  return types;
}

}  // namespace mixq::plan
