// Two budgets for MoE offload: routed experts against the CPU budget,
// everything else against the GPU budget, each never exceeded, and the plan
// optimal under both (checked by brute force).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "formats/formats.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

constexpr const char* kOffloadTypes[] = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"};

// Per layer an attention unit and a routed-expert unit (all experts of one
// tensor), costs falling with bpw and varying by tensor.
Measurement MoeLike(int n_layers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> sensitivity(0.2, 5.0);
  Measurement m;
  m.fixed_n_bytes = 10000;
  m.fixed_tensor_n_bytes = 8000;
  m.fixed_n_weights = 2000;
  for (int l = 0; l < n_layers; ++l) {
    for (const char* role : {"attn_v", "ffn_down_exps"}) {
      Unit u;
      u.name = "blk." + std::to_string(l) + "." + role + ".weight";
      u.tensors = {u.name};
      u.n_weights = role[0] == 'a' ? 256 * 256 : 8 * 256 * 512;
      const double s = sensitivity(rng);
      for (const char* t : kOffloadTypes) {
        const formats::Format* f = formats::FindFormatByName(t);
        u.options.push_back({t, u.n_weights / f->block_elems * f->block_bytes, s * std::exp2(-2.0 * f->bpw())});
      }
      m.units.push_back(u);
    }
  }
  return m;
}

// The least cost with the expert units' bytes <= cpu and the rest <= gpu.
double BruteForce(const Measurement& m, int64_t gpu, int64_t cpu) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<size_t> idx(m.units.size(), 0);
  for (;;) {
    int64_t g = m.fixed_n_bytes, c = 0;
    double cost = 0;
    for (size_t u = 0; u < idx.size(); ++u) {
      const Option& o = m.units[u].options[idx[u]];
      (KeptOnCpu(m.units[u]) ? c : g) += o.n_bytes;
      cost += o.cost;
    }
    if (g <= gpu && c <= cpu) best = std::min(best, cost);
    size_t u = 0;
    while (u < idx.size() && ++idx[u] == m.units[u].options.size()) idx[u++] = 0;
    if (u == idx.size()) return best;
  }
}

TEST(OffloadPlan, EachShareWithinItsBudgetAndOptimal) {
  const Measurement m = MoeLike(2, 7);
  int64_t expert_max = 0, other_max = 0;
  for (const Unit& u : m.units) (KeptOnCpu(u) ? expert_max : other_max) += u.options.back().n_bytes;
  for (double f : {0.45, 0.6, 0.85}) {
    const OffloadBudgets b{m.fixed_n_bytes + static_cast<int64_t>(other_max * f),
                           static_cast<int64_t>(expert_max * (1.3 - f))};
    auto p = SolveOffloadPlan(m, b, PlanRequest{});
    ASSERT_TRUE(p.has_value()) << p.error().message();
    EXPECT_LE(p->file_n_bytes - p->cpu_n_bytes, b.gpu_n_bytes);
    EXPECT_LE(p->cpu_n_bytes, b.cpu_n_bytes);
    EXPECT_TRUE(p->optimal) << f << " cost " << p->cost << " bound " << p->lower_bound;
    EXPECT_NEAR(p->cost, BruteForce(m, b.gpu_n_bytes, b.cpu_n_bytes), 1e-12);
    ASSERT_EQ(p->units.size(), m.units.size());
    int64_t cpu = 0, total = m.fixed_n_bytes;
    for (size_t u = 0; u < m.units.size(); ++u) {
      EXPECT_EQ(p->units[u].name, m.units[u].name) << "measurement order";
      total += p->units[u].n_bytes;
      if (KeptOnCpu(m.units[u])) cpu += p->units[u].n_bytes;
    }
    EXPECT_EQ(p->cpu_n_bytes, cpu);
    EXPECT_EQ(p->file_n_bytes, total);
    EXPECT_EQ(p->budget_cpu_n_bytes, b.cpu_n_bytes);

    auto back = ParsePlanJson(PlanToJson(*p));
    ASSERT_TRUE(back.has_value()) << back.error().message();
    EXPECT_EQ(back->cpu_n_bytes, p->cpu_n_bytes);
    EXPECT_EQ(back->budget_cpu_n_bytes, b.cpu_n_bytes);
  }
}

TEST(OffloadPlan, RefusesDenseModelsAndNamesTheShareThatCannotFit) {
  Measurement dense = MoeLike(1, 1);
  dense.units.pop_back();
  auto p = SolveOffloadPlan(dense, {1 << 30, 1 << 30}, PlanRequest{});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().kind(), StatusKind::kInvalidArgument);

  const Measurement m = MoeLike(2, 3);
  auto tight_cpu = SolveOffloadPlan(m, {1 << 30, 1000}, PlanRequest{});
  ASSERT_FALSE(tight_cpu.has_value());
  EXPECT_EQ(tight_cpu.error().kind(), StatusKind::kInfeasible);
  EXPECT_NE(tight_cpu.error().message().find("CPU share"), std::string::npos) << tight_cpu.error().message();
  auto tight_gpu = SolveOffloadPlan(m, {m.fixed_n_bytes + 10, 1 << 30}, PlanRequest{});
  ASSERT_FALSE(tight_gpu.has_value());
  EXPECT_NE(tight_gpu.error().message().find("GPU share"), std::string::npos) << tight_gpu.error().message();
}

TEST(OffloadPlan, KeepRulesApplyInEitherShare) {
  const Measurement m = MoeLike(2, 5);
  PlanRequest req;
  req.constraints.keep = {{"attn_v", "Q8_0"}, {"blk\\.0\\.ffn_down_exps", "Q2_K"}};
  auto p = SolveOffloadPlan(m, {1 << 30, 1 << 30}, req);
  ASSERT_TRUE(p.has_value()) << p.error().message();
  for (const UnitPlan& u : p->units) {
    if (u.name.find("attn_v") != std::string::npos) {
      EXPECT_EQ(u.type, "Q8_0");
    } else if (u.name == "blk.0.ffn_down_exps.weight") {
      EXPECT_EQ(u.type, "Q2_K");
    }
  }
  req.constraints.keep = {{"nothing_like_this", "Q8_0"}};
  EXPECT_FALSE(SolveOffloadPlan(m, {1 << 30, 1 << 30}, req).has_value());
}

// A shared expert (qwen2moe's ffn_*_shexp) runs for every token: it stays in
// the GPU share, as llama.cpp's -ot exps=CPU leaves it.
TEST(OffloadPlan, SharedExpertsCountAgainstTheGpuBudget) {
  auto unit = [](const std::string& name) {
    Unit u;
    u.name = name;
    u.tensors = {name};
    return u;
  };
  for (const char* name : {"blk.0.ffn_down_shexp.weight", "blk.0.ffn_gate_shexp.weight", "blk.0.ffn_up_shexp.weight"}) {
    EXPECT_FALSE(KeptOnCpu(unit(name))) << name;
  }
  EXPECT_TRUE(KeptOnCpu(unit("blk.0.ffn_up_exps.weight")));
}

}  // namespace
}  // namespace mixq::plan
