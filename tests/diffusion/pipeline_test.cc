// The standard pipeline on diffusion checkpoints, through the mixq binary:
// measure -> plan -> quantize --plan writes exactly the planned bytes, within
// budget, one type per block, entry/exit and 1-D tensors unquantized, the
// same file as convert --plan and from the stage-1 GGUF; the seed table plans
// for Flux.1-dev; inputs of the wrong kind are refused with one line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "flux_checklist.h"
#include "gguf/gguf.h"
#include "plan/plan.h"
#include "test_support.h"

namespace mixq::diffusion {
namespace {

using mixq::testing::ReadFileBytes;
using mixq::testing::RunMixq;
using testing::ExpectComfyChecklist;
using testing::Generate;
using testing::TempDir;

int64_t FileSize(const std::string& path) { return static_cast<int64_t>(std::filesystem::file_size(path)); }

class Pipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    Generate(dir_->File("tiny.safetensors"), "--depth 3 --depth-single 2");
    auto r = RunMixq("measure " + Tiny() + " -o " + Measurement() + " --measure-rows 16");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Tiny() { return dir_->File("tiny.safetensors"); }
  static std::string Measurement() { return dir_->File("m.json"); }

  // Plans `measurement` for `target` ("--target 4.5bpw"), returns the plan.
  plan::Plan MakePlan(const std::string& measurement, const std::string& target, const std::string& name) {
    auto r = RunMixq("plan " + measurement + " " + target + " -o " + out_.File(name));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    last_plan_stdout_ = r.out;
    auto p = plan::LoadPlan(out_.File(name));
    EXPECT_TRUE(p.has_value()) << p.error().message();
    return p.has_value() ? *p : plan::Plan{};
  }

  static TempDir* dir_;
  TempDir out_;
  std::string last_plan_stdout_;
};
TempDir* Pipeline::dir_ = nullptr;

TEST_F(Pipeline, MeasureNeedsNoTextAndGroupsBlocks) {
  auto m = plan::LoadMeasurement(Measurement());
  ASSERT_TRUE(m.has_value()) << m.error().message();
  ASSERT_EQ(m->units.size(), 5u);  // 3 double + 2 single blocks
  EXPECT_EQ(m->units[0].name, "double_blocks.0");
  EXPECT_EQ(m->units[3].name, "single_blocks.0");
  for (const auto& u : m->units) EXPECT_EQ(u.tensors.size(), u.name.starts_with("double") ? 10u : 3u) << u.name;
  EXPECT_NE(m->cost_model.find("weight-space"), std::string::npos);
}

TEST_F(Pipeline, QuantizePlanWritesThePlannedBytesWithinBudget) {
  for (const std::string target : {"--target 4.5bpw", "--target 3.8bpw", "--target-size 6MiB"}) {
    SCOPED_TRACE(target);
    const plan::Plan p = MakePlan(Measurement(), target, "plan.json");
    EXPECT_NE(last_plan_stdout_.find("# ComfyUI-GGUF: "), std::string::npos) << last_plan_stdout_;
    EXPECT_NE(last_plan_stdout_.find("fits GPUs with 4 GB or more"), std::string::npos) << last_plan_stdout_;
    auto r = RunMixq("quantize " + Tiny() + " " + out_.File("q.gguf") + " --plan " + out_.File("plan.json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("fits GPUs with 4 GB or more"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("note: the plan predicted"), std::string::npos) << r.err;
    EXPECT_EQ(FileSize(out_.File("q.gguf")), p.file_n_bytes);
    EXPECT_LE(p.file_n_bytes, p.budget_file_n_bytes);
    if (target == "--target-size 6MiB") {
      EXPECT_LE(FileSize(out_.File("q.gguf")), 6 << 20);
    }
    std::map<std::string, std::string> chosen;
    for (const auto& u : p.units) chosen[u.name] = u.type;
    // One type per block; entry/exit weights, biases and norm scales unquantized.
    ExpectComfyChecklist(out_.File("q.gguf"), {Tiny(), [&](const std::string& block) { return chosen.at(block); }});

    // convert --plan writes the very same file.
    r = RunMixq("convert " + Tiny() + " -o " + out_.File("c.gguf") + " --plan " + out_.File("plan.json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ReadFileBytes(out_.File("c.gguf")), ReadFileBytes(out_.File("q.gguf")));
  }
}

TEST_F(Pipeline, TheStageOneGgufMeasuresAndQuantizesLikeTheCheckpoint) {
  ASSERT_EQ(RunMixq("convert " + Tiny() + " -o " + out_.File("bf16.gguf")).exit_code, 0);
  auto r = RunMixq("measure " + out_.File("bf16.gguf") + " -o " + out_.File("m2.json") + " --measure-rows 16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto a = plan::LoadMeasurement(Measurement());
  auto b = plan::LoadMeasurement(out_.File("m2.json"));
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->fixed_n_bytes, b->fixed_n_bytes);
  ASSERT_EQ(a->units.size(), b->units.size());
  for (size_t i = 0; i < a->units.size(); ++i) {
    EXPECT_EQ(a->units[i].tensors, b->units[i].tensors);
    ASSERT_EQ(a->units[i].options.size(), b->units[i].options.size());
    for (size_t k = 0; k < a->units[i].options.size(); ++k) {
      EXPECT_EQ(a->units[i].options[k].n_bytes, b->units[i].options[k].n_bytes);
      EXPECT_EQ(a->units[i].options[k].cost, b->units[i].options[k].cost);  // the same BF16 values
    }
  }
  const plan::Plan p = MakePlan(Measurement(), "--target 4bpw", "plan.json");
  ASSERT_EQ(
      RunMixq("quantize " + Tiny() + " " + out_.File("from_ckpt.gguf") + " --plan " + out_.File("plan.json")).exit_code,
      0);
  r = RunMixq("quantize " + out_.File("bf16.gguf") + " " + out_.File("from_gguf.gguf") + " --plan " +
              out_.File("plan.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFileBytes(out_.File("from_gguf.gguf")), ReadFileBytes(out_.File("from_ckpt.gguf")));
  EXPECT_EQ(FileSize(out_.File("from_gguf.gguf")), p.file_n_bytes);

  // A quantized GGUF is not a starting point for plans.
  ASSERT_EQ(RunMixq("convert " + Tiny() + " --type Q8_0 -o " + out_.File("q8.gguf")).exit_code, 0);
  r = RunMixq("measure " + out_.File("q8.gguf") + " -o " + out_.File("m3.json"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("unquantized"), std::string::npos) << r.err;
}

TEST_F(Pipeline, PerTensorUnitsExpandToTheirTensors) {
  auto r = RunMixq("--json measure " + Tiny() + " -o " + out_.File("pt.json") +
                   " --per-tensor --measure-rows 8 --types Q8_0,Q4_K,Q2_K --method ggml");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"min_file_bytes\""), std::string::npos) << r.out;
  auto m = plan::LoadMeasurement(out_.File("pt.json"));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->units.size(), 3u * 10 + 2u * 3);
  for (const auto& u : m->units) {
    EXPECT_EQ(u.options.size(), 4u) << u.name;  // BF16 + the three types
  }
  const plan::Plan p = MakePlan(out_.File("pt.json"), "--target 5bpw", "plan.json");
  r = RunMixq("--json quantize " + Tiny() + " " + out_.File("q.gguf") + " --plan " + out_.File("plan.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FileSize(out_.File("q.gguf")), p.file_n_bytes);
  auto file = gguf::GgufFile::Open(out_.File("q.gguf"));
  ASSERT_TRUE(file.has_value());
  for (const auto& u : p.units) {
    ASSERT_EQ(u.tensors.size(), 1u);
    EXPECT_EQ(file->FindTensor(u.tensors[0])->format->name, u.type) << u.name;
  }
}

TEST_F(Pipeline, GgmlReadsThePlannedFile) {
  const std::string oracle = mixq::testing::OraclePath();
  if (oracle.empty()) GTEST_SKIP() << "no gguf-oracle configured";
  MakePlan(Measurement(), "--target 3.8bpw", "plan.json");
  ASSERT_EQ(RunMixq("quantize " + Tiny() + " " + out_.File("q.gguf") + " --plan " + out_.File("plan.json")).exit_code,
            0);
  ASSERT_EQ(RunMixq("convert " + Tiny() + " --type F32 -o " + out_.File("f32.gguf")).exit_code, 0);
  auto r = mixq::testing::RunCommand(oracle + " tensors " + out_.File("q.gguf") + " --ref " + out_.File("f32.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["all_valid"].get<bool>());
  auto file = gguf::GgufFile::Open(out_.File("q.gguf"));
  ASSERT_TRUE(file.has_value());
  ASSERT_EQ(j["tensors"].size(), file->tensors().size());
  for (const auto& t : j["tensors"]) {
    EXPECT_TRUE(t["valid"].get<bool>()) << t["name"];
    const std::string type = t["type"];
    // Unquantized tensors decode to the checkpoint's values exactly.
    if (type == "bf16" || type == "f32") {
      EXPECT_EQ(t["max_abs_err"].get<double>(), 0.0) << t["name"];
    }
  }
}

TEST_F(Pipeline, SeedTablePlansFluxDevForAGpu) {
  const std::string table = mixq::testing::SeedPath("000_b622eb4ec4e2b348.txt");
  auto r = RunMixq("plan " + table + " --format flux-table --target 3.8bpw -o " + out_.File("p.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("fits GPUs with 8 GB or more"), std::string::npos) << r.out;
  auto p = plan::LoadPlan(out_.File("p.json"));
  ASSERT_TRUE(p.has_value());
  // The whole Flux.1-dev file as mixq convert writes it (docs/diffusion.md §3).
  EXPECT_EQ(p->file_n_bytes, 5'651'825'952);
  EXPECT_EQ(p->n_weights, 11'901'408'320);
  for (const auto& u : p->units) EXPECT_EQ(u.tensors.size(), u.name.starts_with("double") ? 10u : 3u) << u.name;

  r = RunMixq("--json plan " + table + " --format flux-table --target-size 7.5GiB");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  auto summary = nlohmann::json::parse(last)["data"];
  EXPECT_LE(summary["file_bytes"].get<int64_t>(), int64_t{15} << 29);
  EXPECT_GT(summary["file_gib"].get<double>(), 7.4);
  EXPECT_EQ(summary["gpu_gib"].get<int>(), 10);

  // The table's 19 + 38 blocks are not the tiny model's.
  r = RunMixq("quantize " + Tiny() + " " + out_.File("q.gguf") + " --plan " + out_.File("p.json"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  r = RunMixq("measure " + Tiny() + " --cost-table " + table + " -o " + out_.File("m.json"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("another model"), std::string::npos) << r.err;
}

TEST_F(Pipeline, InputsOfTheWrongKindAreRefused) {
  // A language model's plan on a diffusion checkpoint: one line, exit 3, no file.
  const std::string llm_measurement = out_.File("llm.json");
  std::ofstream(llm_measurement) << R"({"schema": "mixq.measurement", "version": 1, "model": "llm",
    "cost_model": "kld", "fixed": {"n_bytes": 1000, "tensor_n_bytes": 0, "n_weights": 0},
    "units": [{"name": "blk.0.attn_q.weight", "tensors": ["blk.0.attn_q.weight"], "n_weights": 65536,
               "options": [{"type": "Q4_K", "n_bytes": 36864, "cost": 0.1},
                           {"type": "Q8_0", "n_bytes": 69632, "cost": 0.01}]}]})";
  MakePlan(llm_measurement, "--target 8.5bpw", "llm_plan.json");
  for (const std::string& command : {"quantize " + Tiny() + " " + out_.File("x.gguf") + " --plan ",
                                     "convert " + Tiny() + " -o " + out_.File("x.gguf") + " --plan "}) {
    auto r = RunMixq(command + out_.File("llm_plan.json"));
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find("mixq: error: plan '"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("blk.0.attn_q.weight"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;  // the model line, the error
    EXPECT_FALSE(std::filesystem::exists(out_.File("x.gguf")));
  }
  auto r = RunMixq("convert " + Tiny() + " --measurement " + llm_measurement + " --target 4bpw --dry-run");
  EXPECT_EQ(r.exit_code, 3) << r.err;

  // The reverse: a diffusion plan on a language model.
  MakePlan(Measurement(), "--target 4bpw", "plan.json");
  r = RunMixq("quantize " + mixq::testing::RefDevModel() + " " + out_.File("x.gguf") + " --plan " +
              out_.File("plan.json"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("another model"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out_.File("x.gguf")));

  // --text is for language models only, and they need it.
  r = RunMixq("measure " + Tiny() + " --text x.txt -o " + out_.File("m.json"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("diffusion model"), std::string::npos) << r.err;
  r = RunMixq("measure " + mixq::testing::RefDevModel() + " -o " + out_.File("m.json"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("language model: give calibration text with --text"), std::string::npos) << r.err;
  r = RunMixq("measure " + mixq::testing::RefDevModel() + " --text x.txt --per-tensor -o " + out_.File("m.json"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out_.File("m.json")));
  // Error-feedback quantization needs a language model's forward pass over its text.
  r = RunMixq("quantize " + Tiny() + " " + out_.File("x.gguf") + " --method gptq --text x.txt");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--text, --output-tensor-type and --token-embedding-type are for language models"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(out_.File("x.gguf")));
}

}  // namespace
}  // namespace mixq::diffusion
