// Solving a request into a Plan, and the plan's outputs: JSON and
// llama-quantize --tensor-type arguments.
#include <cctype>
#include <cstdio>

#include "base/json.h"
#include "base/text_file.h"
#include "formats/formats.h"
#include "plan/problem.h"

namespace mixq::plan {
namespace {

using json::Json;

constexpr const char* kPlanSchema = "mixq.plan";
constexpr int64_t kPlanVersion = 1;

double Bpw(const Measurement& m, int64_t unit_bytes) {
  int64_t weights = TotalWeights(m);
  return weights > 0 ? 8.0 * static_cast<double>(m.fixed_tensor_n_bytes + unit_bytes) / static_cast<double>(weights)
                     : 0.0;
}

std::string SizeText(const Measurement& m, int64_t file_bytes) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%lld bytes (%.4f bpw)", static_cast<long long>(file_bytes),
                Bpw(m, file_bytes - m.fixed_n_bytes));
  return buf;
}

// The problem for a request, with its budget; Infeasible when even the
// smallest choices do not fit.
Result<internal::Problem> Prepare(const Measurement& m, const PlanRequest& request) {
  auto problem = internal::BuildProblem(m, request.constraints);
  if (!problem.has_value()) return problem.status();
  auto budget = internal::UnitBudget(m, request.budget);
  if (!budget.has_value()) return budget.status();
  problem->budget_n_bytes = *budget;
  const SizeRange range = internal::ProblemSizes(m, *problem);
  if (range.min_file_n_bytes - m.fixed_n_bytes > *budget) {
    return Status::Infeasible("the budget of " + SizeText(m, m.fixed_n_bytes + *budget) +
                              " is below the smallest achievable file of " + SizeText(m, range.min_file_n_bytes) +
                              "; the largest is " + SizeText(m, range.max_file_n_bytes) +
                              "; raise the target or relax --keep, --min-type and --max-type");
  }
  return problem;
}

Plan MakePlan(const Measurement& m, const internal::Problem& p, const internal::Solution& s, const char* method) {
  Plan plan;
  plan.method = method;
  plan.units.reserve(m.units.size());
  for (size_t u = 0; u < m.units.size(); ++u) {
    const Unit& unit = m.units[u];
    const Option& o = unit.options[p.choices[s.pick[u]].option];
    plan.units.push_back({unit.name, unit.tensors, o.type, unit.n_weights, o.n_bytes, o.cost});
  }
  plan.budget_file_n_bytes = m.fixed_n_bytes + p.budget_n_bytes;
  plan.file_n_bytes = m.fixed_n_bytes + s.n_bytes;
  plan.tensor_n_bytes = m.fixed_tensor_n_bytes + s.n_bytes;
  plan.n_weights = TotalWeights(m);
  plan.bpw = Bpw(m, s.n_bytes);
  plan.cost = s.cost;
  plan.lower_bound = s.lower_bound;
  plan.optimal = s.optimal;
  plan.n_units_fixed = s.n_units_fixed;
  plan.n_units_searched = s.n_units_searched;
  plan.n_states = s.n_states;
  return plan;
}

// An ECMAScript regex literal for `name` that llama-quantize's lower-casing of
// the pattern cannot change: capitals and anything unusual become \xHH.
std::string EscapeForLlamaRegex(std::string_view name) {
  static constexpr std::string_view kSpecial = "\\^$.|?*+()[]{}";
  std::string out;
  for (char ch : name) {
    unsigned char b = static_cast<unsigned char>(ch);
    if (kSpecial.find(ch) != std::string_view::npos) {
      out += '\\';
      out += ch;
    } else if (std::islower(b) || std::isdigit(b) || ch == '_' || ch == '-') {
      out += ch;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", b);
      out += hex;
    }
  }
  return out;
}

Status ParseUnitPlan(const Json& j, size_t index, UnitPlan* out) {
  std::string where = "plan unit #" + std::to_string(index);
  if (!j.is_object()) return Status::Corruption(where + " is not an object");
  auto name = json::GetString(j, "name", where);
  if (!name.has_value()) return name.status();
  where = "plan unit '" + *name + "'";
  auto type = json::GetString(j, "type", where);
  if (!type.has_value()) return type.status();
  auto n_weights = json::GetInt64(j, "n_weights", where);
  if (!n_weights.has_value()) return n_weights.status();
  auto n_bytes = json::GetInt64(j, "n_bytes", where);
  if (!n_bytes.has_value()) return n_bytes.status();
  auto cost = json::GetDouble(j, "cost", where);
  if (!cost.has_value()) return cost.status();
  auto tensors = json::GetArray(j, "tensors", where);
  if (!tensors.has_value()) return tensors.status();
  if (name->empty() || type->empty()) return Status::Corruption(where + " has an empty name or type");
  *out = UnitPlan{std::move(*name), {}, std::move(*type), *n_weights, *n_bytes, *cost};
  for (const Json& t : **tensors) {
    if (!t.is_string() || t.get<std::string>().empty()) {
      return Status::Corruption(where + " has a tensor name that is not a non-empty string");
    }
    out->tensors.push_back(t.get<std::string>());
  }
  return Status::Ok();
}

}  // namespace

Result<Plan> SolvePlan(const Measurement& m, const PlanRequest& request) {
  auto problem = Prepare(m, request);
  if (!problem.has_value()) return problem.status();
  internal::Solution s = internal::SolveExact(*problem, request.limits);
  if (s.n_bytes > problem->budget_n_bytes) return Status::Internal("the exact solver returned a plan over budget");
  return MakePlan(m, *problem, s, "exact");
}

Result<Plan> GreedyPlan(const Measurement& m, const PlanRequest& request) {
  auto problem = Prepare(m, request);
  if (!problem.has_value()) return problem.status();
  auto s = internal::SolveGreedy(*problem);
  if (!s.has_value()) return s.status();
  if (s->n_bytes > problem->budget_n_bytes) return Status::Internal("the greedy returned a plan over budget");
  return MakePlan(m, *problem, *s, "greedy");
}

std::string PlanToJson(const Plan& plan) {
  Json doc = Json::object();
  doc["schema"] = kPlanSchema;
  doc["version"] = kPlanVersion;
  doc["method"] = plan.method;
  doc["budget_file_n_bytes"] = plan.budget_file_n_bytes;
  doc["file_n_bytes"] = plan.file_n_bytes;
  doc["tensor_n_bytes"] = plan.tensor_n_bytes;
  doc["n_weights"] = plan.n_weights;
  doc["bpw"] = plan.bpw;
  doc["cost"] = plan.cost;
  doc["lower_bound"] = plan.lower_bound;
  doc["gap"] = plan.cost - plan.lower_bound;
  doc["optimal"] = plan.optimal;
  doc["n_units_fixed"] = plan.n_units_fixed;
  doc["n_units_searched"] = plan.n_units_searched;
  doc["n_states"] = plan.n_states;
  if (plan.budget_cpu_n_bytes > 0) {
    doc["cpu_n_bytes"] = plan.cpu_n_bytes;
    doc["budget_cpu_n_bytes"] = plan.budget_cpu_n_bytes;
  }
  Json units = Json::array();
  for (const UnitPlan& u : plan.units) {
    units.push_back({{"name", u.name},
                     {"tensors", u.tensors},
                     {"type", u.type},
                     {"n_weights", u.n_weights},
                     {"n_bytes", u.n_bytes},
                     {"cost", u.cost}});
  }
  doc["units"] = std::move(units);
  return json::DumpJson(doc);
}

Result<Plan> ParsePlanJson(std::string_view json_text) {
  auto doc = json::ParseJson(json_text);
  if (!doc.has_value()) return doc.status();
  MIXQ_TRY(json::CheckSchema(*doc, kPlanSchema, kPlanVersion));
  const std::string where = "plan";
  Plan plan;
  auto method = json::GetString(*doc, "method", where);
  if (!method.has_value()) return method.status();
  plan.method = std::move(*method);
  struct IntField {
    const char* key;
    int64_t* dst;
  };
  for (auto [key, dst] :
       {IntField{"budget_file_n_bytes", &plan.budget_file_n_bytes}, IntField{"file_n_bytes", &plan.file_n_bytes},
        IntField{"tensor_n_bytes", &plan.tensor_n_bytes}, IntField{"n_weights", &plan.n_weights},
        IntField{"n_units_fixed", &plan.n_units_fixed}, IntField{"n_units_searched", &plan.n_units_searched},
        IntField{"n_states", &plan.n_states}}) {
    auto v = json::GetInt64(*doc, key, where);
    if (!v.has_value()) return v.status();
    *dst = *v;
  }
  struct DoubleField {
    const char* key;
    double* dst;
  };
  for (auto [key, dst] : {DoubleField{"bpw", &plan.bpw}, DoubleField{"cost", &plan.cost},
                          DoubleField{"lower_bound", &plan.lower_bound}}) {
    auto v = json::GetDouble(*doc, key, where);
    if (!v.has_value()) return v.status();
    *dst = *v;
  }
  auto optimal = doc->find("optimal");
  if (optimal == doc->end() || !optimal->is_boolean()) {
    return Status::Corruption("plan key 'optimal' is missing or not a boolean");
  }
  plan.optimal = optimal->get<bool>();
  for (auto [key, dst] :
       {IntField{"cpu_n_bytes", &plan.cpu_n_bytes}, IntField{"budget_cpu_n_bytes", &plan.budget_cpu_n_bytes}}) {
    auto v = json::GetOptionalInt64(*doc, key, where, 0);
    if (!v.has_value()) return v.status();
    *dst = *v;
  }
  auto units = json::GetArray(*doc, "units", where);
  if (!units.has_value()) return units.status();
  if ((*units)->empty()) return Status::Corruption("the plan has no units");
  plan.units.resize((*units)->size());
  for (size_t i = 0; i < plan.units.size(); ++i) MIXQ_TRY(ParseUnitPlan((**units)[i], i, &plan.units[i]));
  return plan;
}

Result<Plan> LoadPlan(const std::string& path) {
  auto text = ReadTextFile(path);
  if (!text.has_value()) return text.status();
  auto plan = ParsePlanJson(*text);
  if (!plan.has_value()) return plan.status().WithContext(path);
  return plan;
}

Status SavePlan(const Plan& plan, const std::string& path) { return WriteTextFileAtomic(path, PlanToJson(plan)); }

std::string LlamaTypeName(std::string_view ggml_name) {
  std::string out;
  for (char ch : ggml_name) out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (out.size() >= 2 && out.compare(out.size() - 2, 2, "_k") == 0) out.back() = 'K';
  return out;
}

Result<std::vector<std::string>> TensorTypeArgs(const Plan& plan) {
  std::vector<std::string> args;
  for (const UnitPlan& u : plan.units) {
    const formats::Format* f = formats::FindFormatByName(u.type);
    if (f == nullptr || f->removed()) {
      return Status::NotSupported("unit '" + u.name + "' has type '" + u.type +
                                  "', which is not a ggml type; llama-quantize cannot apply this plan");
    }
    const std::string type = LlamaTypeName(f->name);
    // Appending, not operator+ chains: GCC 12 warns falsely (-Wrestrict) on those.
    auto arg = [&type](std::string_view name, std::string_view tail) {
      std::string a = "^";
      a.append(EscapeForLlamaRegex(name)).append(tail).append("=").append(type);
      return a;
    };
    if (u.tensors.empty()) {
      args.push_back(arg(u.name, "\\."));
    } else {
      for (const std::string& t : u.tensors) args.push_back(arg(t, "$"));
    }
  }
  return args;
}

Status SaveTensorTypeFile(const Plan& plan, const std::string& path) {
  auto args = TensorTypeArgs(plan);
  MIXQ_TRY(args);
  std::string text;
  for (const std::string& a : *args) text.append(a).append("\n");
  return WriteTextFileAtomic(path, text);
}

const UnitPlan* FindUnitForTensor(const Plan& plan, std::string_view tensor_name) {
  for (const UnitPlan& u : plan.units) {
    if (u.tensors.empty()) {
      if (tensor_name.size() > u.name.size() && tensor_name.substr(0, u.name.size()) == u.name &&
          tensor_name[u.name.size()] == '.') {
        return &u;
      }
    } else {
      for (const std::string& t : u.tensors) {
        if (t == tensor_name) return &u;
      }
    }
  }
  return nullptr;
}

}  // namespace mixq::plan
