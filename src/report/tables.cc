// The report's data tables: what each chart of docs/report.md draws.
#include "report/tables.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>

#include "engine/engine.h"

namespace mixq::report::internal {
namespace {

using Json = nlohmann::json;

constexpr double kMiB = 1024.0 * 1024.0;
double Mib(int64_t n_bytes) { return static_cast<double>(n_bytes) / kMiB; }

// Where a weight sits: its block (-1 before the blocks, n_layer after them)
// and role; names no architecture has are "other".
struct Place {
  int64_t layer = -1;
  std::string role;
  std::string part;  // the MoE split's category
};

std::string PartOf(const engine::WeightInfo& w) {
  switch (w.part) {
    case engine::WeightPart::kAttention:
      return "attention";
    case engine::WeightPart::kExperts:
      return "routed experts";
    case engine::WeightPart::kRouter:
      return "router";
    case engine::WeightPart::kSharedExpert:
      return "shared experts";
    case engine::WeightPart::kFfn:
      return "dense FFN";
    case engine::WeightPart::kEmbedding:
    case engine::WeightPart::kOutput:
      return "embeddings and output";
    default:
      return "norms and other";
  }
}

// For names the engine's architectures lack (deepseek's shared experts, ...): "blk.N.ROLE.weight" read as such, the
// part by llama.cpp's naming conventions.
Place PlaceByName(const std::string& tensor, int64_t n_layer) {
  static const std::regex kBlock(R"(^blk\.(\d+)\.(.+?)(\.weight)?$)");
  std::smatch m;
  if (!std::regex_match(tensor, m, kBlock)) return {n_layer, tensor, "norms and other"};
  const std::string role = m[2];
  auto has = [&](const char* part) { return role.find(part) != std::string::npos; };
  const char* part = has("shexp")          ? "shared experts"
                     : has("exps")         ? "routed experts"
                     : has("ffn_gate_inp") ? "router"
                     : has("norm")         ? "norms and other"
                     : has("attn")         ? "attention"
                     : has("ffn")          ? "dense FFN"
                                           : "norms and other";
  return {std::stoll(m[1]), role, part};
}

Place PlaceOf(const std::string& tensor, int64_t n_layer) {
  auto w = engine::DescribeWeight(tensor);
  if (!w) return PlaceByName(tensor, n_layer);
  const bool after_blocks = w->layer < 0 && w->part == engine::WeightPart::kOutput;
  return {after_blocks ? n_layer : w->layer, w->role, PartOf(*w)};
}

const std::string& FirstTensor(const std::string& unit_name, const std::vector<std::string>& tensors) {
  return tensors.empty() ? unit_name : tensors.front();
}

int64_t LayerCount(const plan::Measurement& m) {
  int64_t n = 0;
  for (const auto& u : m.units) {
    if (auto w = engine::DescribeWeight(FirstTensor(u.name, u.tensors))) n = std::max(n, w->layer + 1);
  }
  return n;
}

// Predicted KLD of the best plan at a grid of bits per weight: the curve the
// measurement promises, against which the evaluated files are drawn.
Json PredictedCurve(const plan::Measurement& m) {
  Json rows = Json::array();
  plan::PlanRequest req;
  req.limits.max_states = 200'000;  // a point of a curve, not a plan to write: near-optimal is enough
  for (double bpw = 1.5; bpw <= 8.51; bpw += 0.25) {
    req.budget = plan::Budget::BitsPerWeight(bpw);
    auto p = plan::SolvePlan(m, req);
    if (!p || !(p->cost > 0)) continue;
    rows.push_back({{"series", "mixq, predicted (best plan at each size)"},
                    {"file_mib", Mib(p->file_n_bytes)},
                    {"bpw", p->bpw},
                    {"predicted_kld", p->cost}});
  }
  return rows;
}

Json PlanRows(const std::vector<LabeledPlan>& plans) {
  Json rows = Json::array();
  for (size_t i = 0; i < plans.size(); ++i) {
    const plan::Plan& p = plans[i].plan;
    rows.push_back({{"label", plans[i].label},
                    {"series", "mixq plan, predicted"},
                    {"file_mib", Mib(p.file_n_bytes)},
                    {"bpw", p.bpw},
                    {"predicted_kld", p.cost},
                    {"chosen", i == 0}});
  }
  return rows;
}

Json EvalRows(const std::vector<EvalPoint>& evals) {
  Json rows = Json::array();
  for (const EvalPoint& e : evals) {
    Json row = {{"label", e.label},
                {"series", e.made_by_mixq ? "mixq, measured" : "llama.cpp preset, measured"},
                {"file_mib", Mib(e.file_n_bytes)},
                {"kld", e.kld},
                {"kld_stderr", e.kld_stderr},
                // A log axis cannot show 0: the bar stops at 1/20 of the mean.
                {"kld_lo", std::max(e.kld - e.kld_stderr, e.kld / 20)},
                {"kld_hi", e.kld + e.kld_stderr}};
    if (e.predicted_kld) row["predicted_kld"] = *e.predicted_kld;
    rows.push_back(row);
  }
  return rows;
}

// The type most units offer, Q4_K when it is among the most offered: the
// sensitivity map compares tensors at one type.
std::string ReferenceType(const plan::Measurement& m) {
  std::map<std::string, int> offered;
  for (const auto& u : m.units) {
    for (const auto& o : u.options) ++offered[o.type];
  }
  std::string best;
  int most = 0;
  for (const auto& [type, n] : offered) {
    if (n > most || (n == most && type == "Q4_K")) best = type, most = n;
  }
  if (offered.count("Q4_K") && offered["Q4_K"] == most) return "Q4_K";
  return best;
}

Json Sensitivity(const plan::Measurement& m, int64_t n_layer) {
  const std::string type = ReferenceType(m);
  Json cells = Json::array();
  for (const auto& u : m.units) {
    auto o = std::find_if(u.options.begin(), u.options.end(), [&](const plan::Option& x) { return x.type == type; });
    if (o == u.options.end() || !(o->cost > 0)) continue;
    const Place place = PlaceOf(FirstTensor(u.name, u.tensors), n_layer);
    cells.push_back({{"layer", place.layer},
                     {"role", place.role},
                     {"unit", u.name},
                     {"cost", o->cost},
                     {"cost_per_mweight", o->cost / static_cast<double>(u.n_weights) * 1e6}});
  }
  return {{"type", type}, {"cells", cells}};
}

// Bits per weight of each (layer, role) of one file or plan.
struct BitsCell {
  int64_t n_bytes = 0, n_weights = 0;
  std::set<std::string> types;
};
using BitsMap = std::map<std::pair<int64_t, std::string>, BitsCell>;

void AddBitsRows(const std::string& source, const BitsMap& cells, Json* rows) {
  for (const auto& [key, c] : cells) {
    std::string type = c.types.size() == 1 ? *c.types.begin() : "mixed";
    rows->push_back({{"source", source},
                     {"layer", key.first},
                     {"role", key.second},
                     {"bpw", 8.0 * static_cast<double>(c.n_bytes) / static_cast<double>(c.n_weights)},
                     {"type", type}});
  }
}

// The evaluated llama.cpp preset whose file size is nearest the plan's; null
// when none was given with its tensors.
const EvalPoint* NearestPreset(const std::vector<EvalPoint>& evals, int64_t file_n_bytes) {
  const EvalPoint* best = nullptr;
  for (const EvalPoint& e : evals) {
    if (e.made_by_mixq || e.tensors.empty()) continue;
    if (best == nullptr || std::llabs(e.file_n_bytes - file_n_bytes) < std::llabs(best->file_n_bytes - file_n_bytes)) {
      best = &e;
    }
  }
  return best;
}

std::set<std::string> PlannedTensors(const plan::Plan& p) {
  std::set<std::string> names;
  for (const auto& u : p.units) names.insert(u.tensors.begin(), u.tensors.end());
  return names;
}

Json Bits(const plan::Plan& chosen, const std::string& label, const EvalPoint* preset, int64_t n_layer) {
  Json rows = Json::array();
  BitsMap mine;
  for (const auto& u : chosen.units) {
    const Place place = PlaceOf(FirstTensor(u.name, u.tensors), n_layer);
    BitsCell& c = mine[{place.layer, place.role}];
    c.n_bytes += u.n_bytes, c.n_weights += u.n_weights, c.types.insert(u.type);
  }
  AddBitsRows("mixq " + label, mine, &rows);
  if (preset != nullptr) {
    const std::set<std::string> planned = PlannedTensors(chosen);
    BitsMap theirs;
    for (const TensorBits& t : preset->tensors) {
      if (!planned.count(t.name)) continue;
      const Place place = PlaceOf(t.name, n_layer);
      BitsCell& c = theirs[{place.layer, place.role}];
      c.n_bytes += t.n_bytes, c.n_weights += t.n_weights, c.types.insert(t.type);
    }
    AddBitsRows("llama.cpp " + preset->label, theirs, &rows);
  }
  return rows;
}

bool HasRoutedExperts(const plan::Measurement& m) {
  for (const auto& u : m.units) {
    auto w = engine::DescribeWeight(FirstTensor(u.name, u.tensors));
    if (w && w->part == engine::WeightPart::kExperts) return true;
  }
  return false;
}

struct PartTotals {
  int64_t n_bytes = 0, n_weights = 0;
  double predicted_kld = 0;
};

void AddSplitRows(const std::string& source, const std::map<std::string, PartTotals>& parts, Json* rows) {
  int64_t total = 0;
  for (const auto& [part, t] : parts) total += t.n_bytes;
  for (const auto& [part, t] : parts) {
    Json row = {{"source", source},
                {"part", part},
                {"mib", Mib(t.n_bytes)},
                {"share", static_cast<double>(t.n_bytes) / static_cast<double>(std::max<int64_t>(total, 1))},
                {"bpw", t.n_weights ? 8.0 * static_cast<double>(t.n_bytes) / static_cast<double>(t.n_weights) : 0}};
    if (t.predicted_kld > 0) row["predicted_kld"] = t.predicted_kld;
    rows->push_back(row);
  }
}

// Tensor bytes by part of the model. The plan knows only its units; the
// tensors it leaves as they are (router, norms) come from an evaluated file
// of the same model when there is one, else one "not quantized" part.
Json Split(const plan::Measurement& m, const plan::Plan& chosen, const std::string& label, const EvalPoint* preset,
           const std::vector<EvalPoint>& evals) {
  Json rows = Json::array();
  std::map<std::string, PartTotals> mine;
  for (const auto& u : chosen.units) {
    PartTotals& t = mine[PlaceOf(FirstTensor(u.name, u.tensors), 0).part];
    t.n_bytes += u.n_bytes, t.n_weights += u.n_weights, t.predicted_kld += u.cost;
  }
  const std::set<std::string> planned = PlannedTensors(chosen);
  const EvalPoint* any_file = preset != nullptr ? preset : (evals.empty() ? nullptr : &evals.front());
  if (any_file != nullptr && !any_file->tensors.empty()) {
    for (const TensorBits& t : any_file->tensors) {
      if (planned.count(t.name)) continue;
      PartTotals& p = mine[PlaceOf(t.name, 0).part];
      p.n_bytes += t.n_bytes, p.n_weights += t.n_weights;
    }
  } else {
    mine["not quantized (router, norms)"] = {m.fixed_tensor_n_bytes, m.fixed_n_weights, 0};
  }
  AddSplitRows("mixq " + label, mine, &rows);
  if (preset != nullptr) {
    std::map<std::string, PartTotals> theirs;
    for (const TensorBits& t : preset->tensors) {
      PartTotals& p = theirs[PlaceOf(t.name, 0).part];
      p.n_bytes += t.n_bytes, p.n_weights += t.n_weights;
    }
    AddSplitRows("llama.cpp " + preset->label, theirs, &rows);
  }
  return rows;
}

Json ValidationRows(const ReportInputs& in) {
  Json rows = Json::array();
  for (const ValidationMix& v : in.validation) {
    rows.push_back({{"kind", "random mix (measure --validate)"},
                    {"label", std::to_string(v.bpw).substr(0, 4) + " bpw"},
                    {"predicted_kld", v.predicted_kld},
                    {"kld", v.kld}});
  }
  for (const EvalPoint& e : in.evals) {
    if (!e.predicted_kld) continue;
    rows.push_back(
        {{"kind", "mixq auto plan"}, {"label", e.label}, {"predicted_kld", *e.predicted_kld}, {"kld", e.kld}});
  }
  return rows;
}

}  // namespace

Result<Json> BuildTables(const ReportInputs& in) {
  MIXQ_TRY(plan::Validate(in.measurement));
  const int64_t n_layer = LayerCount(in.measurement);
  Json t = {{"title", in.title},
            {"model", in.measurement.model},
            {"cost_model", in.measurement.cost_model},
            {"n_layer", n_layer},
            {"curve", PredictedCurve(in.measurement)},
            {"plans", PlanRows(in.plans)},
            {"evals", EvalRows(in.evals)},
            {"sensitivity", Sensitivity(in.measurement, n_layer)},
            {"validation", ValidationRows(in)},
            {"moe", HasRoutedExperts(in.measurement)}};
  if (!in.plans.empty()) {
    const LabeledPlan& chosen = in.plans.front();
    const EvalPoint* preset = NearestPreset(in.evals, chosen.plan.file_n_bytes);
    t["chosen"] = {{"label", chosen.label},
                   {"file_mib", Mib(chosen.plan.file_n_bytes)},
                   {"bpw", chosen.plan.bpw},
                   {"predicted_kld", chosen.plan.cost}};
    if (preset != nullptr) t["preset"] = {{"label", preset->label}, {"file_mib", Mib(preset->file_n_bytes)}};
    t["bits"] = Bits(chosen.plan, chosen.label, preset, n_layer);
    if (t["moe"]) t["split"] = Split(in.measurement, chosen.plan, chosen.label, preset, in.evals);
  }
  return t;
}

}  // namespace mixq::report::internal
