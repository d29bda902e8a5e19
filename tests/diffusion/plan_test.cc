// Diffusion plans: the weight-space measurement agrees byte for byte with the
// files Convert writes, planned files never exceed their budget, and on the
// seed Flux.1-dev cost table the exact plans cost no more than the seed's
// greedy method at the same budget.
#include "plan/plan.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "diffusion/diffusion.h"
#include "flux_checklist.h"

namespace mixq::diffusion {
namespace {

using testing::ExpectComfyChecklist;
using testing::Generate;
using testing::TempDir;

class TinyPlans : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    Generate(dir_->File("tiny.safetensors"), "--depth 3 --depth-single 4");
    checkpoint_ = new safetensors::Checkpoint(safetensors::Checkpoint::Open(dir_->File("tiny.safetensors")).value());
    model_ = new Model(Inspect(*checkpoint_).value());
    MeasureOptions mo;
    mo.max_rows = 64;  // keeps the suite fast; sampling is checked below
    measurement_ = new plan::Measurement(Measure(*checkpoint_, *model_, mo).value());
  }
  static void TearDownTestSuite() {
    delete measurement_;
    delete model_;
    delete checkpoint_;
    delete dir_;
  }
  static TempDir* dir_;
  static safetensors::Checkpoint* checkpoint_;
  static Model* model_;
  static plan::Measurement* measurement_;
  TempDir out_;
};
TempDir* TinyPlans::dir_ = nullptr;
safetensors::Checkpoint* TinyPlans::checkpoint_ = nullptr;
Model* TinyPlans::model_ = nullptr;
plan::Measurement* TinyPlans::measurement_ = nullptr;

const plan::Option* FindOption(const plan::Unit& unit, const std::string& type) {
  for (const auto& o : unit.options) {
    if (o.type == type) return &o;
  }
  return nullptr;
}

TEST_F(TinyPlans, MeasurementHasOneUnitPerBlockInSeedOrder) {
  const auto& m = *measurement_;
  ASSERT_EQ(m.units.size(), 7u);
  EXPECT_EQ(m.units[0].name, "double_blocks.0");
  EXPECT_EQ(m.units[2].name, "double_blocks.2");
  EXPECT_EQ(m.units[3].name, "single_blocks.0");
  for (const auto& u : m.units) {
    SCOPED_TRACE(u.name);
    const bool is_double = u.name.starts_with("double");
    EXPECT_EQ(u.tensors.size(), is_double ? 10u : 3u);
    EXPECT_EQ(u.n_weights, is_double ? 36 * 256 * 256 : 15 * 256 * 256);  // 36H^2 and 15H^2 (§4)
    ASSERT_NE(FindOption(u, "BF16"), nullptr);
    EXPECT_EQ(FindOption(u, "BF16")->cost, 0.0);
    // Fewer bits, more squared error.
    double previous = 0;
    for (const char* type : {"Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K"}) {
      const plan::Option* o = FindOption(u, type);
      ASSERT_NE(o, nullptr) << type;
      EXPECT_GT(o->cost, previous) << type;
      previous = o->cost;
    }
  }
  // §6: 690,752 entry/exit weights, 2,367,488 per double and 986,112 per single block with biases and scales.
  EXPECT_EQ(plan::TotalWeights(m), 690'752 + 3 * 2'367'488 + 4 * 986'112);
}

TEST_F(TinyPlans, OptionBytesAreTheBytesConvertWrites) {
  for (const char* type : {"BF16", "Q4_K", "Q2_K", "IQ4_XS"}) {
    SCOPED_TRACE(type);
    ConvertOptions o;
    if (std::string(type) != "BF16") o.rules.default_format = formats::FindFormatByName(type);
    auto report = Convert(*checkpoint_, *model_, out_.File("u.gguf"), o);
    ASSERT_TRUE(report.has_value()) << report.error().message();
    int64_t predicted = measurement_->fixed_n_bytes;
    for (const auto& u : measurement_->units) predicted += FindOption(u, type)->n_bytes;
    EXPECT_EQ(predicted, static_cast<int64_t>(std::filesystem::file_size(out_.File("u.gguf"))));
  }
}

// Every type mixq can encode without an imatrix: measure's bytes for an
// all-T file are the bytes Convert plans (and WriteOutput refuses to write a
// file of any other size), header and padding included.
TEST_F(TinyPlans, OptionBytesAreTheBytesConvertWritesForEveryType) {
  MeasureOptions mo;
  mo.max_rows = 1;  // only the bytes matter here
  for (const formats::Format& f : formats::AllFormats()) {
    if (f.quantized && f.can_encode() && !f.needs_imatrix) mo.candidates.push_back(&f);
  }
  auto m = Measure(*checkpoint_, *model_, mo);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  ASSERT_GT(mo.candidates.size(), 15u);
  for (const formats::Format* f : mo.candidates) {
    SCOPED_TRACE(std::string(f->name));
    int64_t predicted = m->fixed_n_bytes;
    for (const auto& u : m->units) {
      const plan::Option* o = FindOption(u, std::string(f->name));
      ASSERT_NE(o, nullptr) << u.name;
      predicted += o->n_bytes;
    }
    ConvertOptions o;
    o.rules.default_format = f;
    auto conversion = PlanConversion(*model_, o);
    ASSERT_TRUE(conversion.has_value()) << conversion.error().message();
    EXPECT_EQ(static_cast<int64_t>(conversion->report.file_bytes), predicted);
  }
}

TEST_F(TinyPlans, SampledRowsEstimateTheFullCost) {
  MeasureOptions full;
  full.candidates = {formats::FindFormatByName("Q4_K")};
  auto all_rows = Measure(*checkpoint_, *model_, full);
  ASSERT_TRUE(all_rows.has_value());
  for (size_t u = 0; u < all_rows->units.size(); ++u) {
    const double exact = FindOption(all_rows->units[u], "Q4_K")->cost;
    const double sampled = FindOption(measurement_->units[u], "Q4_K")->cost;
    EXPECT_NEAR(sampled / exact, 1.0, 0.15) << all_rows->units[u].name;
  }
}

TEST_F(TinyPlans, PlannedFilesHitTheirBudgetAndFollowTheChecklist) {
  for (double bpw : {3.6, 4.5, 6.0, 9.0}) {
    SCOPED_TRACE(bpw);
    plan::PlanRequest request;
    request.budget = plan::Budget::BitsPerWeight(bpw);
    auto exact = plan::SolvePlan(*measurement_, request);
    ASSERT_TRUE(exact.has_value()) << exact.error().message();
    auto greedy = plan::GreedyPlan(*measurement_, request);
    ASSERT_TRUE(greedy.has_value()) << greedy.error().message();
    EXPECT_LE(exact->cost, greedy->cost + 1e-9 * greedy->cost);
    EXPECT_LE(exact->file_n_bytes, exact->budget_file_n_bytes);

    ConvertOptions o;
    ASSERT_TRUE(ApplyPlan(*exact, *model_, &o.rules).ok());
    auto report = Convert(*checkpoint_, *model_, out_.File("p.gguf"), o);
    ASSERT_TRUE(report.has_value()) << report.error().message();
    EXPECT_EQ(static_cast<int64_t>(report->file_bytes), exact->file_n_bytes);
    EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(out_.File("p.gguf"))), exact->file_n_bytes);
    EXPECT_LE(report->bpw(), bpw);
    EXPECT_NEAR(report->bpw(), exact->bpw, 1e-12);
    std::map<std::string, std::string> chosen;
    for (const auto& u : exact->units) chosen[u.name] = u.type;
    ExpectComfyChecklist(out_.File("p.gguf"),
                         {dir_->File("tiny.safetensors"), [&](const std::string& block) { return chosen.at(block); }});
  }
}

TEST_F(TinyPlans, PlansFromOtherModelsAreRefused) {
  plan::Plan p;
  p.units.push_back({"double_blocks.12", {}, "Q4_K", 0, 0, 0.0});
  quantize::TypeRules rules;
  Status s = ApplyPlan(p, *model_, &rules);
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);  // bad input data: exit code 3
  EXPECT_NE(s.message().find("double_blocks.12"), std::string::npos);
  p.units[0] = {"double_blocks.1", {}, "Q8_K", 0, 0, 0.0};                     // an activation type: no file holds it
  EXPECT_EQ(ApplyPlan(p, *model_, &rules).kind(), StatusKind::kNotSupported);  // exit 3 too
}

// A plan solved for this model, edited: sizes that its types do not give, or
// a block left out, fail as a whole, naming the unit or the tensor.
TEST_F(TinyPlans, EditedPlansAreRefused) {
  plan::PlanRequest request;
  request.budget = plan::Budget::BitsPerWeight(6.0);
  auto exact = plan::SolvePlan(*measurement_, request);
  ASSERT_TRUE(exact.has_value()) << exact.error().message();
  quantize::TypeRules rules;
  ASSERT_TRUE(ApplyPlan(*exact, *model_, &rules).ok());

  plan::Plan edited = *exact;
  edited.units[1].n_bytes += 32;
  Status s = ApplyPlan(edited, *model_, &rules);
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_EQ(s.message().rfind("plan unit '" + edited.units[1].name + "' says ", 0), 0u) << s.message();

  edited = *exact;
  const std::string dropped = edited.units.back().tensors.front();
  edited.units.pop_back();
  s = ApplyPlan(edited, *model_, &rules);
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_EQ(s.message(), "the plan has no unit for tensor '" + dropped + "'; was it made for another model?");
}

// IQ2_XXS cannot be encoded without an importance matrix, and diffusion
// models have none: --type (or a plan) asking for it is bad input, naming the
// tensor and the type, before anything is written.
TEST_F(TinyPlans, TypesThatNeedAnImatrixAreRefused) {
  ConvertOptions options;
  options.rules.overrides.push_back(*quantize::ParseTensorTypeOverride("double_blocks\\.1\\.=IQ2_XXS"));
  auto planned = PlanConversion(*model_, options);
  ASSERT_FALSE(planned.has_value());
  EXPECT_EQ(planned.error().kind(), StatusKind::kNotSupported);
  EXPECT_NE(planned.error().message().find("double_blocks.1."), std::string::npos) << planned.error().message();
  EXPECT_NE(planned.error().message().find("type IQ2_XXS needs an importance matrix"), std::string::npos);
}

// The seed Flux.1-dev cost table, fitted to Flux.1-dev's real tensors as
// Convert stores them (BF16 entry/exit, F32 biases and scales, GGUF header).
class SeedFluxTable : public ::testing::Test {
 protected:
  void SetUp() override {
    entries_ = FluxLayoutEntries(FluxDims{}, *safetensors::FindDType("BF16"));
    model_ = InspectTensors(entries_, "flux1-dev layout").value();
    std::ifstream in(mixq::testing::SeedPath("000_b622eb4ec4e2b348.txt"), std::ios::binary);
    std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    auto imported = plan::ImportCostTable(text, plan::FluxDevCostTableSpec());
    ASSERT_TRUE(imported.has_value()) << imported.error().message();
    auto fitted = FitMeasurement(*imported, model_);
    ASSERT_TRUE(fitted.has_value()) << fitted.error().message();
    measurement_ = std::move(fitted).value();
  }
  std::vector<safetensors::TensorEntry> entries_;
  Model model_;
  plan::Measurement measurement_;
};

TEST_F(SeedFluxTable, ExactPlansBeatTheGreedyMethodWithinBudget) {
  ASSERT_EQ(measurement_.units.size(), 57u);
  EXPECT_EQ(plan::TotalWeights(measurement_), 11'901'408'320);
  std::printf("| target bpw | budget bytes | exact cost | exact bytes | exact bpw | greedy cost | greedy bytes |\n");
  for (double bpw : {3.1, 3.8, 6.9, 8.2}) {
    SCOPED_TRACE(bpw);
    plan::PlanRequest request;
    request.budget = plan::Budget::BitsPerWeight(bpw);
    auto exact = plan::SolvePlan(measurement_, request);
    ASSERT_TRUE(exact.has_value()) << exact.error().message();
    auto greedy = plan::GreedyPlan(measurement_, request);
    ASSERT_TRUE(greedy.has_value()) << greedy.error().message();
    EXPECT_LE(exact->cost, greedy->cost);
    EXPECT_LE(exact->file_n_bytes, exact->budget_file_n_bytes);
    EXPECT_LE(greedy->file_n_bytes, greedy->budget_file_n_bytes);
    std::printf("| %.1f | %lld | %.2f | %lld | %.4f | %.2f | %lld |\n", bpw,
                static_cast<long long>(exact->budget_file_n_bytes), exact->cost,
                static_cast<long long>(exact->file_n_bytes), exact->bpw, greedy->cost,
                static_cast<long long>(greedy->file_n_bytes));

    // Applied to the real layout, the predicted file is exactly the planned size.
    ConvertOptions o;
    ASSERT_TRUE(ApplyPlan(*exact, model_, &o.rules).ok());
    auto conversion = PlanConversion(model_, o);
    ASSERT_TRUE(conversion.has_value()) << conversion.error().message();
    EXPECT_EQ(static_cast<int64_t>(conversion->report.file_bytes), exact->file_n_bytes);
    EXPECT_EQ(conversion->report.n_weights, 11'901'408'320);
    std::map<std::string, std::set<std::string>> block_types;
    for (size_t i = 0; i < conversion->specs.size(); ++i) {
      const auto& spec = conversion->specs[i];
      const std::string block = BlockOf(spec.name);
      if (spec.n_dims == 2 && !block.empty()) block_types[block].insert(std::string(spec.format->name));
      if (spec.n_dims == 1) {
        EXPECT_EQ(spec.format->name, "F32") << spec.name;
      }
    }
    EXPECT_EQ(block_types.size(), 57u);
    for (const auto& [block, types] : block_types) EXPECT_EQ(types.size(), 1u) << block;
  }
}

}  // namespace
}  // namespace mixq::diffusion
