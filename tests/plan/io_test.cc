// Measurement and plan JSON, and the llama-quantize --tensor-type output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>

// GCC 12 warns falsely inside <regex> at -O2 with sanitizers (-Wmaybe-uninitialized).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "formats/formats.h"
#include "plan/plan.h"
#include "test_support.h"

namespace mixq::plan {
namespace {

Measurement Sample() {
  Measurement m;
  m.model = "tiny";
  m.cost_model = "weighted squared error";
  m.fixed_n_bytes = 123456;
  m.fixed_tensor_n_bytes = 100000;
  m.fixed_n_weights = 50000;
  m.units.push_back({"blk.0.attn_v.weight",
                     {"blk.0.attn_v.weight"},
                     65536,
                     {{"Q8_0", 69632, 1.0 / 3.0}, {"Q4_K", 36864, 2.5e-7}, {"Q2_K", 21504, 0.1}}});
  m.units.push_back({"double_blocks.7", {}, 1024, {{"BF16", 2048, 0.0}, {"Q4_0", 576, 12.5}}});
  return m;
}

void ExpectSame(const Measurement& a, const Measurement& b) {
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.cost_model, b.cost_model);
  EXPECT_EQ(a.fixed_n_bytes, b.fixed_n_bytes);
  EXPECT_EQ(a.fixed_tensor_n_bytes, b.fixed_tensor_n_bytes);
  EXPECT_EQ(a.fixed_n_weights, b.fixed_n_weights);
  ASSERT_EQ(a.units.size(), b.units.size());
  for (size_t u = 0; u < a.units.size(); ++u) {
    EXPECT_EQ(a.units[u].name, b.units[u].name);
    EXPECT_EQ(a.units[u].tensors, b.units[u].tensors);
    EXPECT_EQ(a.units[u].n_weights, b.units[u].n_weights);
    ASSERT_EQ(a.units[u].options.size(), b.units[u].options.size());
    for (size_t k = 0; k < a.units[u].options.size(); ++k) {
      EXPECT_EQ(a.units[u].options[k].type, b.units[u].options[k].type);
      EXPECT_EQ(a.units[u].options[k].n_bytes, b.units[u].options[k].n_bytes);
      EXPECT_EQ(a.units[u].options[k].cost, b.units[u].options[k].cost);  // bit-exact round trip
    }
  }
}

TEST(MeasurementJson, RoundTripsThroughAFile) {
  testing::TempDir dir;
  const Measurement m = Sample();
  ASSERT_TRUE(SaveMeasurement(m, dir.File("m.json")).ok());
  auto back = LoadMeasurement(dir.File("m.json"));
  ASSERT_TRUE(back.has_value()) << back.error().message();
  ExpectSame(m, *back);
}

TEST(MeasurementJson, EveryTruncationFailsCleanly) {
  const std::string text = MeasurementToJson(Sample());
  for (size_t n = 0; n + 1 < text.size(); ++n) {
    auto r = ParseMeasurementJson(std::string_view(text).substr(0, n));
    if (r.has_value()) {
      // Only whitespace may be cut off a valid document.
      EXPECT_EQ(text.find_first_not_of(" \n", n), std::string::npos) << n;
      continue;
    }
    EXPECT_EQ(r.error().kind(), StatusKind::kCorruption) << n;
    EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
  }
}

TEST(MeasurementJson, RejectsWrongSchemaAndBadValues) {
  EXPECT_EQ(ParseMeasurementJson("[]").error().kind(), StatusKind::kCorruption);
  EXPECT_EQ(ParseMeasurementJson(R"({"schema": "mixq.plan", "version": 1})").error().kind(), StatusKind::kCorruption);
  EXPECT_EQ(ParseMeasurementJson(R"({"schema": "mixq.measurement", "version": 2, "units": []})").error().kind(),
            StatusKind::kNotSupported);
  auto with_unit = [](const std::string& unit) {
    return R"({"schema": "mixq.measurement", "version": 1, "units": [)" + unit + "]}";
  };
  const char* bad_units[] = {
      R"({"name": "a", "n_weights": 32, "options": []})",                                           // no options
      R"({"name": "a", "n_weights": 0, "options": [{"type": "Q8_0", "n_bytes": 34, "cost": 1}]})",  // no weights
      R"({"name": "a", "n_weights": 32, "options": [{"type": "Q8_0", "n_bytes": -1, "cost": 1}]})",
      R"({"name": "a", "n_weights": 32, "options": [{"type": "Q8_0", "n_bytes": 3.5, "cost": 1}]})",
      R"({"name": "a", "n_weights": 32, "options": [{"type": "Q8_0", "n_bytes": 34, "cost": "1"}]})",
      R"({"name": "a", "n_weights": 32, "options": [{"type": "Q8_0", "n_bytes": 34, "cost": 1},
                                                    {"type": "Q8_0", "n_bytes": 34, "cost": 2}]})",
      R"({"name": "a", "n_weights": 32, "options": [{"type": "Q8_0", "n_bytes": 9223372036854775808, "cost": 1}]})",
      R"({"name": "a", "tensors": [1], "n_weights": 32, "options": [{"type": "Q8_0", "n_bytes": 34, "cost": 1}]})",
  };
  for (const char* unit : bad_units) {
    auto r = ParseMeasurementJson(with_unit(unit));
    ASSERT_FALSE(r.has_value()) << unit;
    EXPECT_EQ(r.error().kind(), StatusKind::kCorruption) << unit;
  }
  const std::string unit = R"({"name": "a", "n_weights": 32, "options": [{"type": "Q8_0", "n_bytes": 34, "cost": 1}]})";
  EXPECT_TRUE(ParseMeasurementJson(with_unit(unit)).has_value());
  EXPECT_EQ(ParseMeasurementJson(with_unit(unit + "," + unit)).error().kind(), StatusKind::kCorruption);  // names
}

TEST(MeasurementJson, ValidateRejectsNonFiniteCosts) {
  Measurement m = Sample();
  m.units[0].options[1].cost = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(Validate(m).kind(), StatusKind::kCorruption);
  m = Sample();
  m.fixed_tensor_n_bytes = m.fixed_n_bytes + 1;
  EXPECT_EQ(Validate(m).kind(), StatusKind::kCorruption);
}

TEST(PlanJson, RoundTripsThroughAFile) {
  const Measurement m = Sample();
  PlanRequest req;
  req.budget = Budget::FileBytes(m.fixed_n_bytes + 36864 + 2048);
  auto plan = SolvePlan(m, req);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->units[0].type, "Q4_K");
  EXPECT_EQ(plan->units[1].type, "BF16");
  testing::TempDir dir;
  ASSERT_TRUE(SavePlan(*plan, dir.File("p.json")).ok());
  auto back = LoadPlan(dir.File("p.json"));
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(back->method, "exact");
  EXPECT_EQ(back->budget_file_n_bytes, plan->budget_file_n_bytes);
  EXPECT_EQ(back->file_n_bytes, plan->file_n_bytes);
  EXPECT_EQ(back->tensor_n_bytes, plan->tensor_n_bytes);
  EXPECT_EQ(back->n_weights, plan->n_weights);
  EXPECT_EQ(back->bpw, plan->bpw);
  EXPECT_EQ(back->cost, plan->cost);
  EXPECT_EQ(back->lower_bound, plan->lower_bound);
  EXPECT_EQ(back->optimal, plan->optimal);
  ASSERT_EQ(back->units.size(), plan->units.size());
  for (size_t u = 0; u < plan->units.size(); ++u) {
    EXPECT_EQ(back->units[u].name, plan->units[u].name);
    EXPECT_EQ(back->units[u].tensors, plan->units[u].tensors);
    EXPECT_EQ(back->units[u].type, plan->units[u].type);
    EXPECT_EQ(back->units[u].n_bytes, plan->units[u].n_bytes);
    EXPECT_EQ(back->units[u].cost, plan->units[u].cost);
  }
  const std::string text = PlanToJson(*plan);
  for (size_t n = 0; n + 2 < text.size(); n += 7) EXPECT_FALSE(ParsePlanJson(text.substr(0, n)).has_value()) << n;
}

TEST(TensorTypeArgs, AnchoredEscapedPatternsMatchOnlyTheirTensor) {
  Plan plan;
  plan.units = {{"a", {"blk.3.attn_v.weight", "Blk.X(1)+=y"}, "Q5_K", 1, 1, 0.0},
                {"double_blocks.7", {}, "Q8_0", 1, 1, 0.0},
                {"b", {"output.weight"}, "iq4_xs", 1, 1, 0.0}};
  auto args = TensorTypeArgs(plan);
  ASSERT_TRUE(args.has_value()) << args.error().message();
  ASSERT_EQ(args->size(), 4u);
  EXPECT_EQ((*args)[0], "^blk\\.3\\.attn_v\\.weight$=q5_K");
  EXPECT_EQ((*args)[2], "^double_blocks\\.7\\.=q8_0");
  EXPECT_EQ((*args)[3], "^output\\.weight$=iq4_xs");
  // As llama-quantize reads them: split at the first '=', lower-case the
  // pattern, std::regex (ECMAScript) searched in the tensor name.
  const std::vector<std::string> names = {"blk.3.attn_v.weight",
                                          "blk.3.attn_v.weight2",
                                          "xblk.3.attn_v.weight",
                                          "blk.3Xattn_v.weight",
                                          "Blk.X(1)+=y",
                                          "blk.x(1)+=y",
                                          "double_blocks.7.img_mlp.0.weight",
                                          "double_blocks.70.x",
                                          "output.weight"};
  const std::vector<std::set<std::string>> expected = {
      {"blk.3.attn_v.weight"}, {"Blk.X(1)+=y"}, {"double_blocks.7.img_mlp.0.weight"}, {"output.weight"}};
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& arg = (*args)[i];
    std::string pattern = arg.substr(0, arg.find('='));
    std::transform(pattern.begin(), pattern.end(), pattern.begin(), [](unsigned char c) { return std::tolower(c); });
    std::regex re(pattern);
    std::set<std::string> hits;
    for (const std::string& n : names) {
      if (std::regex_search(n, re)) hits.insert(n);
    }
    EXPECT_EQ(hits, expected[i]) << arg;
  }
}

TEST(TensorTypeArgs, ForeignTypesAreNotSupported) {
  Plan plan;
  plan.units = {{"model.layers.0.self_attn.q_proj", {}, "1.0:4b 32g s4", 1, 1, 0.0}};
  EXPECT_EQ(TensorTypeArgs(plan).error().kind(), StatusKind::kNotSupported);
}

TEST(LlamaTypeName, SpellsEveryFormatAsGgmlDoes) {
  // ggml_type_name spellings, as listed in docs/reference/ggml-formats.md 2.1.
  const std::set<std::string> ggml = {
      "f32",  "f16",  "q4_0",    "q4_1",   "q5_0",    "q5_1",  "q8_0",   "q8_1",  "q2_K",  "q3_K",   "q4_K", "q5_K",
      "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8",   "i16",
      "i32",  "i64",  "f64",     "iq1_m",  "bf16",    "tq1_0", "tq2_0",  "mxfp4", "nvfp4", "q1_0",   "q2_0"};
  std::set<std::string> ours;
  for (const formats::Format& f : formats::AllFormats()) {
    if (!f.removed()) ours.insert(LlamaTypeName(f.name));
  }
  EXPECT_EQ(ours, ggml);
}

TEST(FindUnitForTensor, ByListOrPrefix) {
  Plan plan;
  plan.units = {{"a", {"blk.0.attn_v.weight"}, "Q6_K", 1, 1, 0.0}, {"double_blocks.1", {}, "Q8_0", 1, 1, 0.0}};
  ASSERT_NE(FindUnitForTensor(plan, "blk.0.attn_v.weight"), nullptr);
  EXPECT_EQ(FindUnitForTensor(plan, "blk.0.attn_v.weight")->type, "Q6_K");
  ASSERT_NE(FindUnitForTensor(plan, "double_blocks.1.img_attn.qkv.weight"), nullptr);
  EXPECT_EQ(FindUnitForTensor(plan, "double_blocks.1.img_attn.qkv.weight")->type, "Q8_0");
  EXPECT_EQ(FindUnitForTensor(plan, "double_blocks.10.img_attn.qkv.weight"), nullptr);
  EXPECT_EQ(FindUnitForTensor(plan, "blk.0.attn_k.weight"), nullptr);
}

}  // namespace
}  // namespace mixq::plan
