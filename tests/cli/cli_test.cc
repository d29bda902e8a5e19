// The mixq binary as users meet it: exit codes, --json envelopes, messages,
// and that failures leave no output behind.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/workflow.h"
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

// A file that is neither GGUF nor safetensors is called that, by its first
// bytes, whichever command gets it (not "a diffusion model", not "invalid
// safetensors"): exit 3, one line, nothing written.
TEST(Cli, UnknownModelFileKindIsNamedByItsFirstBytes) {
  TempDir dir;
  testing::WriteFileBytes(dir.File("empty.gguf"), {});
  const std::string junk = "not a model";
  testing::WriteFileBytes(dir.File("junk.gguf"), std::vector<uint8_t>(junk.begin(), junk.end()));
  const std::string text = Q(std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/val.txt.gz");
  for (const char* file : {"empty.gguf", "junk.gguf"}) {
    const std::string f = Q(dir.File(file)), o = Q(dir.File("o"));
    for (const std::string& command : {"measure " + f + " --text " + text + " -o " + o, "measure " + f + " -o " + o,
                                       "quantize " + f + " " + o, "convert " + f + " -o " + o}) {
      auto r = RunMixq(command);
      EXPECT_EQ(r.exit_code, 3) << command << "\n" << r.err;
      EXPECT_NE(r.err.find("is neither a GGUF nor a safetensors file"), std::string::npos) << command << "\n" << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
  }
  auto r = RunMixq("quantize " + Q(dir.File("junk.gguf")) + " " + Q(dir.File("o")));
  EXPECT_NE(r.err.find("(it starts with \"not a model\")"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("o")));
}

// A plan whose types are not ones mixq writes is a bad plan file (exit 3).
TEST(Cli, PlanWithAnUnknownTypeIsBadData) {
  plan::Plan p;
  p.units.push_back({});
  p.units[0].name = "blk.0.attn_q.weight";
  p.units[0].tensors = {"blk.0.attn_q.weight"};
  for (const char* type : {"Q9_Z", "IQ2_XXS", "Q4_K"}) {
    p.units[0].type = type;
    auto rules = RulesFromPlan(p);
    if (std::string(type) == "Q4_K") {
      EXPECT_TRUE(rules.has_value()) << rules.error().message();
    } else {
      ASSERT_FALSE(rules.has_value()) << type;
      EXPECT_EQ(ExitCodeFor(rules.error()), 3) << rules.error().message();
      EXPECT_NE(rules.error().message().find(type), std::string::npos) << rules.error().message();
    }
  }
}

// Saved base logits and a --text that tokenizes otherwise: the files
// disagree, so it is bad input (exit 3), not a usage error.
TEST(Cli, EvalTextThatIsNotTheBaseLogitsTextIsBadData) {
  TempDir dir;
  std::string a, b;
  for (int i = 0; i < 30; ++i) a += "The quick brown fox jumps over the lazy dog, again and again. ";
  for (int i = 0; i < 30; ++i) b += "Colourless green ideas sleep furiously, said the linguist. ";
  testing::WriteFileBytes(dir.File("a.txt"), std::vector<uint8_t>(a.begin(), a.end()));
  testing::WriteFileBytes(dir.File("b.txt"), std::vector<uint8_t>(b.begin(), b.end()));
  const std::string m = Q(testing::RefDevModel());
  auto save = RunMixq("eval " + m + " --text " + Q(dir.File("a.txt")) + " --ctx 64 --chunks 1 --save-logits " +
                      Q(dir.File("a.mqbl")));
  ASSERT_EQ(save.exit_code, 0) << save.err;
  auto r = RunMixq("eval " + m + " --text " + Q(dir.File("b.txt")) + " --base-logits " + Q(dir.File("a.mqbl")));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("does not tokenize to the tokens stored"), std::string::npos) << r.err;
}

// A count of zero would compute nothing (a NaN perplexity, an empty imatrix, a
// cached state every later run fails on): every such flag is a usage error
// (exit 2) that writes nothing, while -1 keeps meaning "all chunks".
TEST(Cli, NonPositiveCountsAreUsageErrors) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 30; ++i) text += "The quick brown fox jumps over the lazy dog, again and again. ";
  testing::WriteFileBytes(dir.File("t.txt"), std::vector<uint8_t>(text.begin(), text.end()));
  const std::string m = Q(testing::RefDevModel()), t = Q(dir.File("t.txt"));
  const std::string o = Q(dir.File("o")), auto_args = " --text " + t + " --target 4.5bpw -o " + o;
  const std::string commands[] = {
      "eval " + m + " --text " + t + " --chunks 0",
      "eval " + m + " --text " + t + " --chunks -2",
      "eval " + m + " --text " + t + " --ctx 64 -t -1",
      "imatrix " + m + " --text " + t + " --ctx 64 --chunks 0 -o " + o,
      "auto " + m + auto_args + " --imatrix-chunks 0",
      "auto " + m + auto_args + " --measure-chunks 0",
      "auto " + m + auto_args + " --eval-chunks 0",
      "auto " + m + auto_args + " --threads -4",
      "measure " + m + " --text " + t + " --chunks 0 -o " + o,
      "measure " + m + " --text " + t + " --validate -1 -o " + o,
      "quantize " + m + " " + o + " --type Q8_0 -t -2",
      "convert " + m + " -o " + o + " -t -1",
  };
  for (const std::string& command : commands) {
    auto r = RunMixq(command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1) << "only the text is there";

  auto all = RunMixq("imatrix --json " + m + " --text " + t + " --ctx 64 --chunks -1 -o " + o);
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_GE(JsonLines(all.out).back()["data"]["n_chunks"].get<int>(), 2);
}

// No command may write over one of its inputs, by the same name, another
// spelling, a symlink or a hard link: exit 2 before any work, inputs intact,
// nothing written.
TEST(Cli, OutputThatIsAnInputIsRefused) {
  TempDir dir;
  const std::string model = dir.File("m.gguf"), text = dir.File("t.txt.gz");
  std::filesystem::copy_file(testing::RefDevModel(), model);
  std::filesystem::copy_file(std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/val.txt.gz", text);
  std::filesystem::create_symlink(model, dir.File("link.gguf"));
  std::filesystem::create_hard_link(model, dir.File("hard.gguf"));
  const auto model_bytes = testing::ReadFileBytes(model);
  const auto text_bytes = testing::ReadFileBytes(text);
  const std::string m = Q(model), t = Q(text);
  const std::string commands[] = {
      "quantize " + m + " " + m + " --type Q4_K",
      "quantize " + m + " " + Q(dir.File("link.gguf")),
      "quantize " + m + " " + Q(dir.File("hard.gguf")),
      "quantize " + m + " " +
          Q(dir.path() + "/../" + std::filesystem::path(dir.path()).filename().string() + "/m.gguf"),
      "quantize " + m + " " + Q(dir.File("o.gguf")) + " --imatrix " + Q(dir.File("o.gguf")),
      "auto " + m + " --text " + t + " --target 4.5bpw -o " + m,
      "auto " + m + " --text " + t + " --target 4.5bpw -o " + Q(dir.File("o.gguf")) + " --cache-dir " + m,
      "auto " + m + " --text " + t + " --target 4.5bpw -o " + Q(dir.File("o.gguf")) + " --eval-text " +
          Q(dir.File("o.gguf.mixq-cache/plan.json")),
      "measure " + m + " --text " + t + " -o " + m,
      "measure " + m + " --text " + t + " -o " + t,
      "measure " + m + " --text " + t + " -o " + Q(dir.File("a.json")) + " --cache " + m,
      "imatrix " + m + " --text " + t + " -o " + t,
      "eval " + m + " --text " + t + " --save-logits " + Q(dir.File("link.gguf")),
      "plan " + t + " --target 4bpw -o " + t,
      "convert " + m + " -o " + m,
  };
  for (const std::string& command : commands) {
    auto r = RunMixq("-q " + command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.err;
    EXPECT_NE(r.err.find("is the same file as the input"), std::string::npos) << command << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(testing::ReadFileBytes(model), model_bytes);
  EXPECT_EQ(testing::ReadFileBytes(text), text_bytes);
  EXPECT_TRUE(std::filesystem::is_symlink(dir.File("link.gguf")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("o.gguf")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("o.gguf.mixq-cache")));

  // Two outputs on one file: the measurement and its resume cache.
  auto r =
      RunMixq("measure " + m + " --text " + t + " -o " + Q(dir.File("a.json")) + " --cache " + Q(dir.File("a.json")));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("are the same file"), std::string::npos) << r.err;
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
