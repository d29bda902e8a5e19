#include "cli/workflow.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace mixq::cli {

Result<TextTokens> TokenizeText(const gguf::GgufFile& model, const std::string& text) {
  auto tok = tokenizer::Tokenizer::FromGguf(model);
  MIXQ_TRY(tok);
  TextTokens out;
  out.tokens = engine::TokenizeForEval(*tok, text);
  out.bos_id = tok->add_bos() ? tok->bos_id() : -1;
  return out;
}

Result<TextTokens> TokenizeTextFile(const gguf::GgufFile& model, const std::string& path) {
  auto text = tokenizer::ReadTextFile(path);
  MIXQ_TRY(text);
  return TokenizeText(model, *text);
}

Result<measure::MeasureResult> MeasureWithProgress(const GlobalOptions& global, const gguf::GgufFile& file,
                                                   std::span<const int32_t> tokens, measure::MeasureOptions options) {
  Progress progress(global, "measure", 1);
  options.on_progress = [&](size_t done, size_t total, const std::string& what) {
    progress.SetTotal(total);
    progress.Update(done, what);
  };
  options.on_note = [&](const std::string& note) { Info(global, note); };
  auto result = measure::MeasureModel(file, tokens, options);
  progress.Finish();
  return result;
}

Result<std::vector<const formats::Format*>> ParseTypeList(const std::string& text, const char* flag) {
  std::vector<const formats::Format*> out;
  std::stringstream in(text);
  for (std::string name; std::getline(in, name, ',');) {
    if (name.empty()) continue;
    const formats::Format* f = formats::FindFormatByName(name);
    if (f == nullptr || !f->can_encode()) {
      return Status::InvalidArgument(std::string(flag) + ": unknown or unsupported type '" + name +
                                     "'; valid types: " + formats::EncodableFormatNames());
    }
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

Result<quantize::TypeRules> RulesFromPlan(const plan::Plan& plan, const gguf::GgufFile& model) {
  const quantize::ArchProfile& profile = quantize::ProfileOf(model);
  std::vector<plan::PlanTensor> tensors;
  for (const auto& t : model.tensors()) {
    tensors.push_back({t.name, t.ne[0], t.n_rows(), quantize::IsQuantizable(t, profile)});
  }
  auto types = plan::MatchPlanToModel(plan, tensors, gguf::kWriteAlignment);
  MIXQ_TRY(types);
  quantize::TypeRules rules;
  rules.exact = std::move(types).value();
  return rules;
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
