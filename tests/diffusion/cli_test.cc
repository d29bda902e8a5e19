// mixq convert from the command line: flags, output names, --json, exit codes.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "flux_checklist.h"
#include "gguf/gguf.h"
#include "test_support.h"

namespace mixq::diffusion {
namespace {

using mixq::testing::RunMixq;
using testing::Generate;
using testing::TempDir;

using mixq::testing::JsonLines;

class ConvertCli : public ::testing::Test {
 protected:
  void SetUp() override { Generate(dir_.File("tiny.safetensors")); }
  std::string Tiny() const { return dir_.File("tiny.safetensors"); }
  TempDir dir_;
};

TEST_F(ConvertCli, DefaultOutputNameAndSummary) {
  auto r = RunMixq("convert " + Tiny());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir_.File("tiny-BF16.gguf")));
  EXPECT_NE(r.err.find("flux model: 84 tensors, hidden 256, 2 double + 2 single blocks"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fits GPUs with 4 GB or more"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  r = RunMixq("convert " + Tiny() + " --type q4_k");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir_.File("tiny-Q4_K.gguf")));
}

TEST_F(ConvertCli, JsonLinesAndTargets) {
  auto r = RunMixq("--json convert " + Tiny() + " -o " + dir_.File("mix.gguf") +
                   " --target 4.5bpw --measure-rows 16 --save-plan " + dir_.File("plan.json") + " --save-measurement " +
                   dir_.File("m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines.front()["type"], "begin");
  EXPECT_EQ(lines[1]["type"], "tensor");
  EXPECT_EQ(lines.size(), 86u);  // begin, 84 tensors, summary
  const auto& s = lines.back()["data"];
  EXPECT_EQ(lines.back()["type"], "summary");
  for (const char* key :
       {"input", "output", "written", "architecture", "file_bytes", "file_gib", "tensor_bytes", "n_weights", "bpw",
        "gpu_gib", "type_counts", "seconds", "plan_cost", "plan_file_bytes", "plan_budget_bytes"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_LE(s["bpw"].get<double>(), 4.5);
  EXPECT_EQ(s["file_bytes"].get<int64_t>(), s["plan_file_bytes"].get<int64_t>());
  EXPECT_EQ(s["file_bytes"].get<uint64_t>(), std::filesystem::file_size(dir_.File("mix.gguf")));
  EXPECT_LE(s["file_bytes"].get<int64_t>(), s["plan_budget_bytes"].get<int64_t>());

  // The saved plan reproduces the same file; the saved measurement plans the same.
  r = RunMixq("convert " + Tiny() + " -o " + dir_.File("again.gguf") + " --plan " + dir_.File("plan.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mixq::testing::ReadFileBytes(dir_.File("again.gguf")), mixq::testing::ReadFileBytes(dir_.File("mix.gguf")));
  r = RunMixq("convert " + Tiny() + " --measurement " + dir_.File("m.json") + " --target 4.5bpw --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("would write " + dir_.File("tiny_mx4_5.gguf")), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.File("tiny_mx4_5.gguf")));

  // A size target in bytes.
  const auto bf16_size = std::filesystem::file_size(dir_.File("mix.gguf"));
  r = RunMixq("--json convert " + Tiny() + " -o " + dir_.File("sized.gguf") + " --measurement " + dir_.File("m.json") +
              " --target-size " + std::to_string(bf16_size));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(std::filesystem::file_size(dir_.File("sized.gguf")), bf16_size);
}

TEST_F(ConvertCli, QuantizeOnTheBf16GgufFollowsTheFluxProfile) {
  // Stage 1 with convert, stage 2 with mixq quantize, as city96's two-step toolchain.
  ASSERT_EQ(RunMixq("convert " + Tiny() + " -o " + dir_.File("bf16.gguf")).exit_code, 0);
  auto r = RunMixq("quantize " + dir_.File("bf16.gguf") + " " + dir_.File("q.gguf") + " --type Q5_K");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  testing::ExpectComfyChecklist(dir_.File("q.gguf"), {Tiny(), [](const std::string&) { return "Q5_K"; }});
  r = RunMixq("convert " + Tiny() + " -o " + dir_.File("direct.gguf") + " --type Q5_K");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Both routes store the same tensors with the same bytes.
  auto two_step = gguf::GgufFile::Open(dir_.File("q.gguf"));
  auto direct = gguf::GgufFile::Open(dir_.File("direct.gguf"));
  ASSERT_TRUE(two_step.has_value() && direct.has_value());
  ASSERT_EQ(two_step->tensors().size(), direct->tensors().size());
  for (size_t i = 0; i < direct->tensors().size(); ++i) {
    const auto& a = two_step->tensors()[i];
    const auto& b = direct->tensors()[i];
    ASSERT_EQ(a.name, b.name);
    EXPECT_EQ(a.format, b.format) << a.name;
    auto da = two_step->TensorData(a), db = direct->TensorData(b);
    EXPECT_TRUE(std::equal(da.begin(), da.end(), db.begin(), db.end())) << a.name;
  }
}

TEST_F(ConvertCli, ExitCodes) {
  EXPECT_EQ(RunMixq("convert " + Tiny() + " --type Q9_X").exit_code, 2);
  EXPECT_EQ(RunMixq("convert " + Tiny() + " --target 4 --target-size 1GiB").exit_code, 2);
  EXPECT_EQ(RunMixq("convert " + Tiny() + " --float-type Q4_K").exit_code, 2);
  EXPECT_EQ(RunMixq("convert " + dir_.File("missing.safetensors")).exit_code, 4);
  // An impossible budget is bad input (Infeasible), and says what is achievable.
  auto r = RunMixq("convert " + Tiny() + " --target 1.0bpw --measure-rows 8");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  // A truncated checkpoint: one clean line, exit 3, no output file.
  auto bytes = mixq::testing::ReadFileBytes(Tiny());
  bytes.resize(bytes.size() - 100);
  mixq::testing::WriteFileBytes(dir_.File("cut.safetensors"), bytes);
  r = RunMixq("convert " + dir_.File("cut.safetensors"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("mixq: error: invalid safetensors file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.File("cut-BF16.gguf")));
}

// A shard is an input too, though only the index is named on the command line.
TEST_F(ConvertCli, OutputThatIsAShardIsRefused) {
  Generate(dir_.File("sharded.safetensors"), "--shards 2");
  const std::string index = dir_.File("sharded.safetensors.index.json");
  const std::string shard = dir_.File("sharded-00002-of-00002.safetensors");
  const auto shard_bytes = mixq::testing::ReadFileBytes(shard);
  for (const std::string& command : {"convert " + index + " -o " + shard, "quantize " + index + " " + shard,
                                     "measure " + index + " --measure-rows 8 -o " + shard}) {
    auto r = RunMixq("-q " + command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.err;
    EXPECT_NE(r.err.find("is the same file as the input"), std::string::npos) << r.err;
  }
  EXPECT_EQ(mixq::testing::ReadFileBytes(shard), shard_bytes);
}

}  // namespace
}  // namespace mixq::diffusion
