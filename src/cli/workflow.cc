#include "cli/workflow.h"

#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "engine/engine.h"

namespace mixq::cli {

pipeline::Hooks CliHooks(const GlobalOptions& global) {
  struct Bar {
    std::string stage;
    std::unique_ptr<Progress> progress;
  };
  auto bar = std::make_shared<Bar>();
  pipeline::Hooks hooks;
  hooks.note = [&global](const std::string& line) { Info(global, line); };
  hooks.progress = [&global, bar](const std::string& stage, uint64_t done, uint64_t total, const std::string& what) {
    if (bar->progress == nullptr || bar->stage != stage) {
      bar->stage = stage;
      bar->progress = std::make_unique<Progress>(global, stage, total);
    }
    bar->progress->SetTotal(total);
    bar->progress->Update(done, what);
  };
  hooks.stage_done = [bar](const std::string& stage) {
    if (bar->progress != nullptr && bar->stage == stage) bar->progress->Finish();
    bar->progress.reset();
  };
  return hooks;
}

Result<std::vector<const formats::Format*>> ParseTypeList(const std::string& text, const char* flag) {
  std::vector<const formats::Format*> out;
  std::stringstream in(text);
  for (std::string name; std::getline(in, name, ',');) {
    if (name.empty()) continue;
    MIXQ_ASSIGN_OR_RETURN(const formats::Format* f, quantize::ParseTypeName(name, flag));
    out.push_back(f);
  }
  return out;
}

Result<plan::Budget> ParseBudget(const std::string& target_bpw, const std::string& target_size) {
  if (target_bpw.empty() == target_size.empty()) {
    return Status::InvalidArgument("give exactly one of --target (e.g. 4.5bpw) and --target-size (e.g. 2.1GiB)");
  }
  return target_bpw.empty() ? plan::ParseSizeTarget(target_size) : plan::ParseBpwTarget(target_bpw);
}

Result<plan::OffloadBudgets> ParseOffloadBudgets(const std::string& gpu, const std::string& cpu,
                                                 const std::string& target_bpw, const std::string& target_size) {
  if (gpu.empty() || cpu.empty() || !target_bpw.empty() || !target_size.empty()) {
    return Status::InvalidArgument("give --gpu-budget and --cpu-budget together, without --target or --target-size");
  }
  auto g = plan::ParseSizeTarget(gpu);
  MIXQ_TRY(g);
  auto c = plan::ParseSizeTarget(cpu);
  MIXQ_TRY(c);
  return plan::OffloadBudgets{g->file_n_bytes, c->file_n_bytes};
}

nlohmann::json OffloadSummary(const plan::Plan& plan) {
  return {{"gpu_bytes", plan.file_n_bytes - plan.cpu_n_bytes},
          {"gpu_budget_bytes", plan.budget_file_n_bytes - plan.budget_cpu_n_bytes},
          {"cpu_bytes", plan.cpu_n_bytes},
          {"cpu_budget_bytes", plan.budget_cpu_n_bytes},
          {"llama_flags", plan::OffloadLlamaFlags()}};
}

void PrintOffloadSummary(const plan::Plan& plan) {
  const auto gpu = static_cast<uint64_t>(plan.file_n_bytes - plan.cpu_n_bytes);
  const auto cpu = static_cast<uint64_t>(plan.cpu_n_bytes);
  std::printf("# GPU: %s of %s; system RAM (routed experts): %s of %s\n", FormatBytes(gpu).c_str(),
              FormatBytes(static_cast<uint64_t>(plan.budget_file_n_bytes - plan.budget_cpu_n_bytes)).c_str(),
              FormatBytes(cpu).c_str(), FormatBytes(static_cast<uint64_t>(plan.budget_cpu_n_bytes)).c_str());
  std::printf("# run with: llama-server -m MODEL.gguf %s\n", plan::OffloadLlamaFlags().c_str());
}

namespace {
// "blk.3.attn_v.weight" -> role "attn_v", layer "3"; names outside the
// blocks -> layer "-"; names no architecture has -> the name without ".weight".
std::pair<std::string, std::string> RoleAndLayer(const std::string& tensor) {
  if (auto info = engine::DescribeWeight(tensor)) {
    return {info->role, info->layer >= 0 ? std::to_string(info->layer) : "-"};
  }
  std::string role = tensor;
  if (role.ends_with(".weight")) role.resize(role.size() - 7);
  return {role, "-"};
}
}  // namespace

nlohmann::json PlanBreakdown(const plan::Plan& plan) {
  std::map<std::string, std::pair<int64_t, int64_t>> by_role, by_layer;  // bytes, weights
  for (const auto& u : plan.units) {
    auto [role, layer] = RoleAndLayer(u.name);
    by_role[role].first += u.n_bytes;
    by_role[role].second += u.n_weights;
    by_layer[layer].first += u.n_bytes;
    by_layer[layer].second += u.n_weights;
  }
  auto to_json = [](const auto& m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : m)
      j[k] = v.second ? 8.0 * static_cast<double>(v.first) / static_cast<double>(v.second) : 0.0;
    return j;
  };
  return {{"bpw_by_role", to_json(by_role)}, {"bpw_by_layer", to_json(by_layer)}};
}

void PrintPlanBreakdown(const plan::Plan& plan) {
  auto b = PlanBreakdown(plan);
  std::fprintf(stderr, "  bpw by role: ");
  for (const auto& [k, v] : b["bpw_by_role"].items()) std::fprintf(stderr, " %s %.2f", k.c_str(), v.get<double>());
  std::fprintf(stderr, "\n  bpw by layer:");
  for (const auto& [k, v] : b["bpw_by_layer"].items()) std::fprintf(stderr, " %s:%.2f", k.c_str(), v.get<double>());
  std::fprintf(stderr, "\n");
}

}  // namespace mixq::cli
