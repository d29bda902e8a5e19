// Budgets, keep rules and type bounds: parsing, and their effect on plans
// (checked against brute force over the options the constraints allow).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "formats/formats.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

constexpr const char* kRequestTypes[] = {"Q2_K", "Q3_K", "IQ4_XS", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "F16"};

std::string Cat(std::string a, std::string_view b) { return a.append(b); }

// A llama-like model: per layer attn_v and ffn_down (plus a tensor list),
// every type's bytes from the formats table, cost falling with bpw and
// varying by tensor.
Measurement LlamaLike(int n_layers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> sensitivity(0.5, 2.0);
  Measurement m;
  m.fixed_n_bytes = 4096;
  for (int l = 0; l < n_layers; ++l) {
    for (const char* role : {"attn_v", "ffn_down"}) {
      Unit u;
      u.name = Cat(Cat("blk.", std::to_string(l)), Cat(Cat(".", role), ".weight"));
      u.tensors = {u.name};
      u.n_weights = 4096 * (role[0] == 'a' ? 1024 : 4096);
      double s = sensitivity(rng);
      for (const char* t : kRequestTypes) {
        const formats::Format* f = formats::FindFormatByName(t);
        int64_t bytes = u.n_weights / f->block_elems * f->block_bytes;
        u.options.push_back({t, bytes, s * std::exp2(-2.0 * f->bpw())});
      }
      m.units.push_back(u);
    }
  }
  return m;
}

// Brute force over the options `allowed` keeps.
template <typename Allowed>
double BruteForce(const Measurement& m, int64_t unit_budget, Allowed allowed) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<size_t> idx(m.units.size(), 0);
  while (true) {
    int64_t w = 0;
    double c = 0.0;
    bool ok = true;
    for (size_t u = 0; u < idx.size() && ok; ++u) {
      ok = allowed(m.units[u], m.units[u].options[idx[u]]);
      w += m.units[u].options[idx[u]].n_bytes;
      c += m.units[u].options[idx[u]].cost;
    }
    if (ok && w <= unit_budget) best = std::min(best, c);
    size_t u = 0;
    while (u < idx.size() && ++idx[u] == m.units[u].options.size()) idx[u++] = 0;
    if (u == idx.size()) return best;
  }
}

int64_t MidBudget(const Measurement& m) {
  int64_t total = 0;
  for (const Unit& u : m.units) total += (u.options.front().n_bytes + u.options.back().n_bytes) / 2;
  return total;
}

TEST(ParseTargets, Bpw) {
  EXPECT_DOUBLE_EQ(ParseBpwTarget("4.5bpw")->bpw, 4.5);
  EXPECT_DOUBLE_EQ(ParseBpwTarget("4.5")->bpw, 4.5);
  EXPECT_DOUBLE_EQ(ParseBpwTarget("3BPW")->bpw, 3.0);
  EXPECT_EQ(ParseBpwTarget("4.5bpw")->kind, Budget::Kind::kBitsPerWeight);
  for (const char* bad : {"", "bpw", "abc", "0", "-1bpw", "65", "4.5 bpw", "4.5GiB", "nan", "inf"}) {
    auto r = ParseBpwTarget(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().kind(), StatusKind::kInvalidArgument) << bad;
  }
}

TEST(ParseTargets, Size) {
  EXPECT_EQ(ParseSizeTarget("2GiB")->file_n_bytes, 2147483648);
  EXPECT_EQ(ParseSizeTarget("2.1GiB")->file_n_bytes, 2254857830);  // 2.1 x 2^30 = 2254857830.4
  EXPECT_EQ(ParseSizeTarget("900MiB")->file_n_bytes, 943718400);
  EXPECT_EQ(ParseSizeTarget("1.5GB")->file_n_bytes, 1500000000);
  EXPECT_EQ(ParseSizeTarget("12kb")->file_n_bytes, 12000);
  EXPECT_EQ(ParseSizeTarget("123456789")->file_n_bytes, 123456789);
  EXPECT_EQ(ParseSizeTarget("100B")->file_n_bytes, 100);
  EXPECT_EQ(ParseSizeTarget("1TiB")->kind, Budget::Kind::kFileBytes);
  for (const char* bad : {"", "GiB", "2XB", "-5MB", "0", "0.4", "2 GiB", "1e30TB"}) {
    auto r = ParseSizeTarget(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().kind(), StatusKind::kInvalidArgument) << bad;
  }
}

TEST(ParseKeepRules, SplitsAtTheLastEquals) {
  auto r = ParseKeepRule("attn_v=Q6_K");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->pattern, "attn_v");
  EXPECT_EQ(r->type, "Q6_K");
  r = ParseKeepRule("blk\\.(0|1)\\.a=b=q8_0");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->pattern, "blk\\.(0|1)\\.a=b");
  EXPECT_EQ(r->type, "q8_0");
  for (const char* bad : {"", "attn_v", "=Q4_K", "attn_v=", "(=Q4_K", "a[=Q4_K"}) {
    auto bad_rule = ParseKeepRule(bad);
    ASSERT_FALSE(bad_rule.has_value()) << bad;
    EXPECT_EQ(bad_rule.error().kind(), StatusKind::kInvalidArgument) << bad;
  }
}

TEST(Constraints, KeepForcesTypeAndStaysOptimal) {
  Measurement m = LlamaLike(3, 1);
  const int64_t budget = MidBudget(m);
  PlanRequest req;
  req.budget = Budget::FileBytes(m.fixed_n_bytes + budget);
  req.constraints.keep = {{"attn_v", "q8_0"}, {"blk\\.2\\.", "Q2_K"}};
  auto plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_TRUE(plan->optimal);
  double expected = BruteForce(m, budget, [](const Unit& u, const Option& o) {
    if (u.name.find("attn_v") != std::string::npos) return o.type == "Q8_0";  // the first rule wins
    if (u.name.rfind("blk.2.", 0) == 0) return o.type == "Q2_K";
    return true;
  });
  EXPECT_NEAR(plan->cost, expected, 1e-12 * expected);
  for (const UnitPlan& u : plan->units) {
    if (u.name.find("attn_v") != std::string::npos) {
      EXPECT_EQ(u.type, "Q8_0") << u.name;
    } else if (u.name.rfind("blk.2.", 0) == 0) {
      EXPECT_EQ(u.type, "Q2_K") << u.name;
    }
  }
}

TEST(Constraints, KeepMatchesTensorNamesOfGroups) {
  Measurement m;
  m.units.push_back({"double_blocks.0",
                     {"double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_mlp.0.weight"},
                     256,
                     {{"Q8_0", 272, 1.0}, {"Q4_0", 144, 2.0}}});
  m.units.push_back(
      {"single_blocks.0", {"single_blocks.0.linear1.weight"}, 256, {{"Q8_0", 272, 1.0}, {"Q4_0", 144, 2.0}}});
  PlanRequest req;
  req.budget = Budget::FileBytes(10000);
  req.constraints.keep = {{"img_mlp", "Q4_0"}};
  auto plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->units[0].type, "Q4_0");
  EXPECT_EQ(plan->units[1].type, "Q8_0");
}

TEST(Constraints, BadKeepRulesAreUsageErrors) {
  Measurement m = LlamaLike(2, 2);
  PlanRequest req;
  req.budget = Budget::FileBytes(m.fixed_n_bytes + MidBudget(m));
  req.constraints.keep = {{"attn_v", "Q4_0"}};  // not offered
  auto r = SolvePlan(m, req);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kInvalidArgument);
  EXPECT_NE(r.error().message().find("blk.0.attn_v.weight"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("IQ4_XS"), std::string::npos) << r.error().message();
  req.constraints.keep = {{"attn_q", "Q8_0"}};  // matches nothing
  r = SolvePlan(m, req);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kInvalidArgument);
  EXPECT_NE(r.error().message().find("matches no unit"), std::string::npos) << r.error().message();
  req.constraints.keep = {{"blk", "Q8_0"}, {"attn_v", "Q6_K"}};  // the first rule took every unit
  EXPECT_EQ(SolvePlan(m, req).error().kind(), StatusKind::kInvalidArgument);
  req.constraints.keep = {{"(", "Q8_0"}};
  EXPECT_EQ(SolvePlan(m, req).error().kind(), StatusKind::kInvalidArgument);
}

TEST(Constraints, MinAndMaxTypeFollowBitsPerWeight) {
  Measurement m = LlamaLike(3, 3);
  const int64_t budget = MidBudget(m);
  PlanRequest req;
  req.budget = Budget::FileBytes(m.fixed_n_bytes + budget);
  req.constraints.min_type = "q4_K";
  req.constraints.max_type = "Q6_K";
  auto plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  auto in_bounds = [](const Unit&, const Option& o) {
    double bpw = formats::FindFormatByName(o.type)->bpw();
    return bpw >= 4.5 && bpw <= 6.5625;
  };
  EXPECT_NEAR(plan->cost, BruteForce(m, budget, in_bounds), 1e-12 * plan->cost);
  for (const UnitPlan& u : plan->units) {
    Option o{u.type, 0, 0.0};
    EXPECT_TRUE(in_bounds(m.units[0], o)) << u.name << " " << u.type;
  }
  // IQ4_XS (4.25) is below Q4_K (4.5); F16 and Q8_0 above Q6_K.
  req.constraints.min_type = "Q8_0";
  req.constraints.max_type = "";
  int64_t all_q6_k = 0;  // every unit in Q6_K: below the smallest plan with Q8_0 and up
  for (const Unit& u : m.units) all_q6_k += u.options[5].n_bytes;
  req.budget = Budget::FileBytes(m.fixed_n_bytes + all_q6_k);
  auto tight = SolvePlan(m, req);
  ASSERT_FALSE(tight.has_value());
  EXPECT_EQ(tight.error().kind(), StatusKind::kInfeasible);
  auto range = AchievableSizes(m, req.constraints);
  ASSERT_TRUE(range.has_value());
  EXPECT_NE(tight.error().message().find(std::to_string(range->min_file_n_bytes) + " bytes"), std::string::npos)
      << tight.error().message();
}

TEST(Constraints, KeepOverridesTypeBounds) {
  Measurement m = LlamaLike(2, 4);
  PlanRequest req;
  req.budget = Budget::FileBytes(1'000'000'000);
  req.constraints.max_type = "Q4_K";
  req.constraints.keep = {{"ffn_down", "F16"}};
  auto plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  for (const UnitPlan& u : plan->units)
    EXPECT_EQ(u.type, u.name.find("ffn_down") != std::string::npos ? "F16" : "Q4_K");
}

TEST(Constraints, BadTypeBoundsAreUsageErrors) {
  Measurement m = LlamaLike(1, 5);
  Constraints c;
  c.min_type = "Q4_X";
  auto r = AchievableSizes(m, c);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kInvalidArgument);
  EXPECT_NE(r.error().message().find("Q4_K"), std::string::npos) << r.error().message();  // a close name
  c.min_type = "Q8_0";
  c.max_type = "Q4_K";
  EXPECT_EQ(AchievableSizes(m, c).error().kind(), StatusKind::kInvalidArgument);
}

TEST(Constraints, ForeignTypesUseTheirOwnBitsPerWeight) {
  // ExLlamaV2-style labels are not ggml types: bounds compare 8 x n_bytes / n_weights.
  Measurement m;
  m.units.push_back({"a", {}, 1000, {{"1.0:3b 32g s4", 391, 1.0}, {"1.0:5b 32g s4", 641, 0.5}, {"1.0:8b", 1016, 0.1}}});
  PlanRequest req;
  req.budget = Budget::FileBytes(10000);
  req.constraints.max_type = "Q5_K";  // 5.5 bpw: 5.128 passes, 8.128 does not
  auto plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->units[0].type, "1.0:5b 32g s4");
}

}  // namespace
}  // namespace mixq::plan
