// The mixq binary as users meet it: exit codes, --json envelopes, messages,
// and that failures leave no output behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_support.h"

namespace mixq::cli {
namespace {

using testing::RunMixq;
using testing::TempDir;

std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

std::string Q(const std::string& s) { return "'" + s + "'"; }

TEST(Cli, InspectJsonHasEnvelopesAndTotals) {
  auto r = RunMixq("inspect --json " + Q(testing::RefDevModel()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines.front()["type"], "begin");
  EXPECT_EQ(lines.back()["type"], "summary");
  const auto& s = lines.back()["data"];
  for (const char* key : {"n_tensors", "n_weights", "tensor_bytes", "file_bytes", "bpw", "type_counts"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_EQ(s["n_weights"], 6819072);
  int n_tensor_lines = 0;
  for (const auto& l : lines) n_tensor_lines += l["type"] == "tensor";
  EXPECT_EQ(n_tensor_lines, s["n_tensors"]);
}

TEST(Cli, ExitCodes) {
  TempDir dir;
  EXPECT_EQ(RunMixq("").exit_code, 2);
  EXPECT_EQ(RunMixq("frobnicate").exit_code, 2);
  EXPECT_EQ(RunMixq("inspect --no-such-flag x").exit_code, 2);
  EXPECT_EQ(RunMixq("inspect /nonexistent.gguf").exit_code, 4);

  auto bytes = testing::ReadFileBytes(testing::RefDevModel());
  bytes.resize(bytes.size() / 2);
  testing::WriteFileBytes(dir.File("cut.gguf"), bytes);
  auto r = RunMixq("inspect " + Q(dir.File("cut.gguf")));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err.rfind("mixq: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;

  auto q = RunMixq("quantize " + Q(testing::RefDevModel()) + " " + Q(dir.File("o.gguf")) + " --type Q4_Z");
  EXPECT_EQ(q.exit_code, 2);
  EXPECT_NE(q.err.find("IQ4_XS"), std::string::npos) << "lists valid types: " << q.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("o.gguf")));
}

// A type ggml cannot encode without an importance matrix, asked for without
// one: bad input (exit 3), one line naming the tensor and the type, no file.
TEST(Cli, QuantizeToATypeThatNeedsAnImatrixWithoutOneIsRefused) {
  TempDir dir;
  auto r = RunMixq("quantize -q " + Q(testing::RefDevModel()) + " " + Q(dir.File("o.gguf")) + " --type IQ2_XS");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.err.rfind("mixq: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("type IQ2_XS needs an importance matrix"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tensor '"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Cli, QuantizeTruncatedInputWritesNothing) {
  TempDir dir;
  auto bytes = testing::ReadFileBytes(testing::RefDevModel());
  bytes.resize(bytes.size() - 1000);
  testing::WriteFileBytes(dir.File("cut.gguf"), bytes);
  auto r = RunMixq("quantize -q " + Q(dir.File("cut.gguf")) + " " + Q(dir.File("o.gguf")) + " --type Q8_0");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  std::filesystem::remove(dir.File("cut.gguf"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Cli, QuantizeToUnwritableDirectoryIsIOError) {
  auto r = RunMixq("quantize -q " + Q(testing::RefDevModel()) + " /nonexistent-dir/o.gguf --type Q8_0");
  EXPECT_EQ(r.exit_code, 4) << r.err;
}

TEST(Cli, QuantizeJsonSummary) {
  TempDir dir;
  auto r = RunMixq("quantize --json " + Q(testing::RefDevModel()) + " " + Q(dir.File("o.gguf")) + " --type Q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = JsonLines(r.out);
  const auto& s = lines.back()["data"];
  EXPECT_EQ(s["file_bytes"], std::filesystem::file_size(dir.File("o.gguf")));
  EXPECT_NEAR(s["bpw"].get<double>(), 8.0 * s["tensor_bytes"].get<double>() / 6819072.0, 1e-9);
  EXPECT_EQ(s["type_counts"]["F32"], 13);  // 6 layers x 2 norms + output_norm
}

}  // namespace
}  // namespace mixq::cli

namespace mixq::cli {
namespace {

// The whole pipeline on ref-dev with a few candidate types: the file must fit
// the budget, the plan must be applied, and an impossible budget is exit 3.
TEST(Cli, AutoFitsTheBudgetAndPlanIsReusable) {
  TempDir dir;
  const std::string text = std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/val.txt.gz";
  const uint64_t budget = 5000000;
  auto r = RunMixq("auto --json " + Q(testing::RefDevModel()) + " --text " + Q(text) + " --target-size " +
                   std::to_string(budget) + " -o " + Q(dir.File("a.gguf")) +
                   " --types Q4_K,Q6_K,Q8_0 --imatrix-chunks 4 --measure-chunks 1 --eval-chunks 2 --ctx 128");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto s = JsonLines(r.out).back()["data"];
  EXPECT_LE(std::filesystem::file_size(dir.File("a.gguf")), budget);
  EXPECT_EQ(s["file_bytes"], std::filesystem::file_size(dir.File("a.gguf")));
  EXPECT_GT(std::filesystem::file_size(dir.File("a.gguf")), budget * 97 / 100) << "budget left unused";
  EXPECT_GT(s["kld"].get<double>(), 0.0);

  const std::string cache = dir.File("a.gguf.mixq-cache");
  auto p = RunMixq("plan --json " + Q(cache + "/measurement.json") + " --target 5.0bpw -o " + Q(dir.File("p.json")));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto ps = JsonLines(p.out).back()["data"];
  EXPECT_LE(ps["bpw"].get<double>(), 5.0);
  auto q = RunMixq("quantize --json " + Q(testing::RefDevModel()) + " " + Q(dir.File("b.gguf")) + " --plan " +
                   Q(dir.File("p.json")) + " --imatrix " + Q(cache + "/imatrix.gguf"));
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_LE(JsonLines(q.out).back()["data"]["bpw"].get<double>(), 5.0);

  auto tiny = RunMixq("plan " + Q(cache + "/measurement.json") + " --target-size 1MB");
  EXPECT_EQ(tiny.exit_code, 3) << tiny.err;
  EXPECT_NE(tiny.err.find("smallest"), std::string::npos) << tiny.err;
}

}  // namespace
}  // namespace mixq::cli
