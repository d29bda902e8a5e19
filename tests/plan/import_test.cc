// Importers on the real seed files (tests/data/seeds), and their error paths.
#include <gtest/gtest.h>

#include <set>

#include "formats/formats.h"
#include "plan/plan.h"
#include "test_support.h"

namespace mixq::plan {
namespace {

TEST(ImportExl2, SeedMeasurement) {
  const std::string text = testing::ReadSeed("002_68e96ba8af961ce5.txt");
  ASSERT_FALSE(text.empty());
  auto m = ImportExl2Measurement(text, Exl2Cost::kErr);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  // 80 layers x 7 linears, 24 options each, 68,451,041,280 weights
  // (docs/reference/anchors-optimizers.md).
  ASSERT_EQ(m->units.size(), 560u);
  EXPECT_EQ(TotalWeights(*m), 68'451'041'280);
  for (const Unit& u : m->units) EXPECT_EQ(u.options.size(), 24u) << u.name;
  EXPECT_EQ(m->units[0].name, "model.layers.0.self_attn.q_proj");
  // The first option of the first linear, as the file states it.
  const Option& o = m->units[0].options[0];
  EXPECT_EQ(o.type, "0.05:3b/0.95:2b 32g s4");
  EXPECT_EQ(o.n_bytes, 145764352 / 8);
  EXPECT_DOUBLE_EQ(o.cost, 0.01346547994762659);
  auto squared = ImportExl2Measurement(text, Exl2Cost::kErrSquared);
  ASSERT_TRUE(squared.has_value());
  EXPECT_DOUBLE_EQ(squared->units[0].options[0].cost, 0.01346547994762659 * 0.01346547994762659);
}

TEST(ImportExl2, RejectsMalformedInput) {
  EXPECT_EQ(ImportExl2Measurement("{", Exl2Cost::kErr).error().kind(), StatusKind::kCorruption);
  EXPECT_EQ(ImportExl2Measurement("[]", Exl2Cost::kErr).error().kind(), StatusKind::kCorruption);
  EXPECT_EQ(ImportExl2Measurement(R"({"measurement": {"model.layers.0": {}}})", Exl2Cost::kErr).error().kind(),
            StatusKind::kNotSupported);
  auto negative = ImportExl2Measurement(
      R"({"measurement": [{"key": "a", "numel": 4, "options": [{"desc": "x", "total_bits": -8, "err": 0.1}]}]})",
      Exl2Cost::kErr);
  EXPECT_EQ(negative.error().kind(), StatusKind::kCorruption);
  auto missing = ImportExl2Measurement(R"({"measurement": [{"key": "a", "numel": 4, "options": [{"desc": "x"}]}]})",
                                       Exl2Cost::kErr);
  EXPECT_EQ(missing.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(missing.error().message().find("total_bits"), std::string::npos) << missing.error().message();
}

TEST(ImportCostTable, SeedFluxTable) {
  const std::string text = testing::ReadSeed("000_b622eb4ec4e2b348.txt");
  ASSERT_FALSE(text.empty());
  auto m = ImportCostTable(text, FluxDevCostTableSpec());
  ASSERT_TRUE(m.has_value()) << m.error().message();
  ASSERT_EQ(m->units.size(), 57u);
  EXPECT_EQ(m->units[0].name, "double_blocks.0");
  EXPECT_EQ(m->units[18].name, "double_blocks.18");
  EXPECT_EQ(m->units[19].name, "single_blocks.0");
  EXPECT_EQ(m->units[56].name, "single_blocks.37");
  // Quantizable weights of the patch models, from the seed's own summary table.
  EXPECT_EQ(TotalWeights(*m) - m->fixed_n_weights, 11'834'228'736);
  // BF16 plus the 9 distinct types of the table (Q4_1 and Q4_1* are one type;
  // the bf8 column is empty).
  std::set<std::string> types;
  for (const Option& o : m->units[0].options) types.insert(o.type);
  EXPECT_EQ(types,
            (std::set<std::string>{"BF16", "Q8_0", "Q6_K", "Q5_1", "Q5_K", "Q4_1", "Q4_K", "Q4_0", "Q3_K", "Q2_K"}));
  for (const Unit& u : m->units) {
    ASSERT_EQ(u.options.size(), 10u) << u.name;
    for (const Option& o : u.options) {
      // Bytes follow the formats table exactly: bits per weight x weights / 8.
      const formats::Format* f = formats::FindFormatByName(o.type);
      ASSERT_NE(f, nullptr) << o.type;
      EXPECT_EQ(o.n_bytes * 8, static_cast<int64_t>(f->bpw() * u.n_weights)) << u.name << " " << o.type;
    }
  }
  auto cost_of = [&](size_t unit, const char* type) {
    for (const Option& o : m->units[unit].options) {
      if (o.type == type) return o.cost;
    }
    return -1.0;
  };
  // Row 0 of the seed: Q8_0 61.301, Q4_1 110.990, Q4_1* 110.960 (the starred
  // column, measured on a real GGUF, wins), Q2_K* 652.650; row 56: Q5_K_S* 1.256.
  EXPECT_DOUBLE_EQ(cost_of(0, "Q8_0"), 61.301);
  EXPECT_DOUBLE_EQ(cost_of(0, "Q4_1"), 110.960);
  EXPECT_DOUBLE_EQ(cost_of(0, "Q2_K"), 652.650);
  EXPECT_DOUBLE_EQ(cost_of(56, "Q5_K"), 1.256);
  EXPECT_DOUBLE_EQ(cost_of(56, "BF16"), 0.0);
}

TEST(ImportCostTable, RejectsMismatchedLayouts) {
  const std::string table = "|-|Q8_0|Q4_0|\n|-:|-:|-:|\n|bits|8.5|4.5|\n|0|1.0|2.0|\n|1|0.5|x|\n";
  CostTableSpec spec;
  spec.layers = {{"a", 64}, {"b", 64}};
  auto bad_cell = ImportCostTable(table, spec);
  ASSERT_FALSE(bad_cell.has_value());
  EXPECT_EQ(bad_cell.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(bad_cell.error().message().find("line 5"), std::string::npos) << bad_cell.error().message();
  spec.layers.pop_back();
  EXPECT_EQ(ImportCostTable(table, spec).error().kind(), StatusKind::kInvalidArgument);
  EXPECT_EQ(ImportCostTable("no table here", spec).error().kind(), StatusKind::kCorruption);
  const std::string no_bits = "|-|Q8_0|\n|-:|-:|\n|0|1.0|\n";
  EXPECT_EQ(ImportCostTable(no_bits, spec).error().kind(), StatusKind::kCorruption);
}

TEST(ImportCostTable, BitsBeyondAnyFormatAreRefused) {
  CostTableSpec spec;
  spec.layers = {{"a", 1'000'000}};
  // plan_inputs_fuzz found 7e114: the layer's byte count overflowed int64 (undefined behaviour).
  for (const char* bits : {"7.11111e114", "65", "0", "-4", "inf", "nan"}) {
    const std::string table = std::string("|-|fp6|\n|-:|-:|\n|bits|") + bits + "|\n|0|1.0|\n";
    auto m = ImportCostTable(table, spec);
    ASSERT_FALSE(m.has_value()) << bits;
    EXPECT_EQ(m.error().kind(), StatusKind::kCorruption) << bits;
    EXPECT_NE(m.error().message().find("line 3"), std::string::npos) << m.error().message();
  }
}

TEST(ImportCostTable, ForeignTypesUseTheTableBits) {
  const std::string table = "|-|Q8_0|fp6|\n|-:|-:|-:|\n|bits|8.5|6|\n|0|1.0|2.0|\n";
  CostTableSpec spec;
  spec.layers = {{"a", 100}};  // not a multiple of Q8_0's 32-weight blocks
  auto m = ImportCostTable(table, spec);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  ASSERT_EQ(m->units[0].options.size(), 2u);
  EXPECT_EQ(m->units[0].options[0].n_bytes, 107);  // ceil(100 x 8.5 / 8)
  EXPECT_EQ(m->units[0].options[1].type, "fp6");
  EXPECT_EQ(m->units[0].options[1].n_bytes, 75);
}

}  // namespace
}  // namespace mixq::plan
