// The mixq binary as users meet it: exit codes, --json envelopes, messages,
// and that failures leave no output behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli/workflow.h"
#include "engine/engine.h"
#include "engine/engine_test_util.h"
#include "gguf/gguf.h"
#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::cli {
namespace {

using testing::Q;
using testing::RunMixq;
using testing::TempDir;

using testing::JsonLines;

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

// --device and --gpu-mem: bad values are usage errors; cuda where it cannot
// run is bad input naming the reason; the device in use is said on stderr.
TEST(Cli, DeviceFlags) {
  TempDir dir;
  const std::string eval =
      "eval " + Q(testing::RefDevModel()) + " --text " + Q(testing::RefDevText()) + " --chunks 1 --ctx 64 ";
  auto bogus = RunMixq(eval + "--device tpu");
  EXPECT_EQ(bogus.exit_code, 2);
  EXPECT_NE(bogus.err.find("--device must be 'cpu', 'cuda' or 'auto', not 'tpu'"), std::string::npos) << bogus.err;
  auto mem = RunMixq(eval + "--device cpu --gpu-mem lots");
  EXPECT_EQ(mem.exit_code, 2);
  EXPECT_NE(mem.err.find("bad --gpu-mem 'lots'"), std::string::npos) << mem.err;
  auto tiny = RunMixq(eval + "--device cpu --gpu-mem 512MiB");
  EXPECT_EQ(tiny.exit_code, 2);
  EXPECT_NE(tiny.err.find("--gpu-mem '512MiB' is too small: give at least 1GiB"), std::string::npos) << tiny.err;
  auto cpu = RunMixq(eval + "--device cpu");
  EXPECT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_NE(cpu.err.find("mixq: device: cpu\n"), std::string::npos) << cpu.err;
  if (!engine::CudaUsable()) {
    auto cuda = RunMixq("imatrix " + Q(testing::RefDevModel()) + " --text " + Q(testing::RefDevText()) + " -o " +
                        Q(dir.File("im.gguf")) + " --device cuda");
    EXPECT_EQ(cuda.exit_code, 3);
    EXPECT_EQ(cuda.err.rfind("mixq: error: --device cuda: ", 0), 0u) << cuda.err;
    EXPECT_FALSE(std::filesystem::exists(dir.File("im.gguf")));
    auto fallback = RunMixq(eval);
    EXPECT_EQ(fallback.exit_code, 0) << fallback.err;
    EXPECT_NE(fallback.err.find("mixq: device: cpu ("), std::string::npos) << fallback.err;
  }
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

// A qwen2moe whose shared-expert gate is missing (renamed) or whose shared
// expert is not as wide as the metadata says: bad input (exit 3), one line
// naming the tensor, nothing written.
TEST(Cli, Qwen2MoeWithABrokenSharedExpertIsRefused) {
  TempDir dir;
  engine::test::WriteRandomModel(
      dir.File("good.gguf"),
      {.arch = "qwen2moe", .seed = 12, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32, .n_ff_shexp = 96});
  const std::vector<uint8_t> good = testing::ReadFileBytes(dir.File("good.gguf"));
  // The good file with the byte `offset` past the end of `text` replaced.
  auto patch = [&](const std::string& file, const std::string& text, size_t offset, uint8_t byte) {
    std::vector<uint8_t> bytes = good;
    auto at = std::search(bytes.begin(), bytes.end(), text.begin(), text.end());
    ASSERT_NE(at, bytes.end()) << text;
    *(at + static_cast<std::ptrdiff_t>(text.size() + offset)) = byte;
    testing::WriteFileBytes(dir.File(file), bytes);
  };
  // Renamed to ...shexz; the width's uint32 value follows its 4-byte type.
  patch("no-gate.gguf", "blk.1.ffn_gate_inp_she", 0, 'z');
  patch("width.gguf", "qwen2moe.expert_shared_feed_forward_length", 4, 80);
  const std::string text = Q(std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/val.txt.gz");
  const std::pair<const char*, const char*> cases[] = {
      {"no-gate.gguf", "missing tensor 'blk.1.ffn_gate_inp_shexp.weight' for qwen2moe"},
      {"width.gguf", "tensor 'blk.0.ffn_gate_shexp.weight' has shape 64 x 96, expected 64 x 80"}};
  for (const auto& [file, message] : cases) {
    for (const std::string& command :
         {"eval " + Q(dir.File(file)) + " --text " + text + " --ctx 64 --chunks 1",
          "measure " + Q(dir.File(file)) + " --text " + text + " -o " + Q(dir.File("m.json"))}) {
      auto r = RunMixq(command);
      EXPECT_EQ(r.exit_code, 3) << command << "\n" << r.err;
      // After the device note, the error: one last line.
      const std::string error = r.err.substr(std::min(r.err.size(), r.err.find("mixq: error: ")));
      EXPECT_EQ(std::count(error.begin(), error.end(), '\n'), 1) << r.err;
      EXPECT_NE(error.find(message), std::string::npos) << r.err;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("m.json")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("m.json.partial")));
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
  const std::string text = Q(testing::RefDevText());
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
  const plan::PlanTensor tensor{"blk.0.attn_q.weight", 256, 256, true};
  plan::Plan p;
  p.units.push_back({});
  p.units[0].name = tensor.name;
  p.units[0].tensors = {tensor.name};
  p.units[0].n_weights = 256 * 256;
  for (const char* type : {"Q9_Z", "Q8_K", "Q4_K"}) {
    p.units[0].type = type;
    p.units[0].n_bytes = 256 * 144;  // Q4_K's, padded
    auto types = plan::MatchPlanToModel(p, std::span<const plan::PlanTensor>(&tensor, 1));
    if (std::string(type) == "Q4_K") {
      EXPECT_TRUE(types.has_value()) << types.error().message();
    } else {
      ASSERT_FALSE(types.has_value()) << type;
      EXPECT_EQ(ExitCodeFor(types.error()), 3) << types.error().message();
      EXPECT_NE(types.error().message().find(type), std::string::npos) << types.error().message();
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
  std::filesystem::copy_file(testing::RefDevText(), text);
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
  const std::string text = testing::RefDevText();
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

// A rerun of auto in the same cache directory reuses nothing that another
// text or other options would change, and says why in one line per step.
TEST(Cli, AutoCachesAreKeyedByTextAndOptions) {
  TempDir dir;
  const std::string text = testing::RefDevText();
  ASSERT_EQ(testing::RunCommand("gzip -dc " + Q(text) + " | tail -n +40 >" + Q(dir.File("other.txt"))).exit_code, 0);
  auto run = [&](const std::string& text_file, int imatrix_chunks) {
    return RunMixq("auto " + Q(testing::RefDevModel()) + " --text " + Q(text_file) + " --target 5.0bpw -o " +
                   Q(dir.File("a.gguf")) + " --cache-dir " + Q(dir.File("cache")) +
                   " --types Q4_K,Q8_0 --method best --measure-chunks 1 --no-eval --ctx 128 --imatrix-chunks " +
                   std::to_string(imatrix_chunks));
  };
  auto first = run(text, 4);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto same = run(text, 4);
  ASSERT_EQ(same.exit_code, 0) << same.err;
  EXPECT_NE(same.err.find("imatrix: reusing"), std::string::npos) << same.err;
  EXPECT_EQ(same.err.find("stale"), std::string::npos) << same.err;

  auto other_text = run(dir.File("other.txt"), 3);
  ASSERT_EQ(other_text.exit_code, 0) << other_text.err;
  EXPECT_NE(other_text.err.find("imatrix: cache '" + dir.File("cache/imatrix.gguf") +
                                "' is stale (calibration tokens changed)"),
            std::string::npos)
      << other_text.err;
  EXPECT_NE(other_text.err.find("measure: cache '" + dir.File("cache/measure.cache") +
                                "' is stale (calibration tokens changed); measuring afresh"),
            std::string::npos)
      << other_text.err;
}

// Two autos sharing a cache directory with different candidate types: one
// waits for the other, and neither output (nor a later rerun's) holds a type
// its run excluded.
TEST(Cli, ConcurrentAutosSharingACacheKeepTheirOwnTypes) {
  TempDir dir;
  const std::string text = testing::RefDevText();
  auto command = [&](const std::string& name, const std::string& types) {
    return std::string(MIXQ_BINARY) + " auto --json " + Q(testing::RefDevModel()) + " --text " + Q(text) +
           " --target 7.0bpw -o " + Q(dir.File(name + ".gguf")) + " --cache-dir " + Q(dir.File("cache")) + " --types " +
           types + " --method best --imatrix-chunks 2 --measure-chunks 1 --no-eval --ctx 128 >" +
           Q(dir.File(name + ".out")) + " 2>" + Q(dir.File(name + ".err"));
  };
  auto both = testing::RunCommand(command("a", "Q4_K,Q5_K") + " & " + command("b", "Q6_K,Q8_0") +
                                  "; b=$?; wait $!; a=$?; exit $((a | b))");
  ASSERT_EQ(both.exit_code, 0) << testing::RunCommand("cat " + Q(dir.File("a.err")) + " " + Q(dir.File("b.err"))).out;
  auto rerun = testing::RunCommand(command("c", "Q4_K,Q5_K"));
  ASSERT_EQ(rerun.exit_code, 0) << testing::RunCommand("cat " + Q(dir.File("c.err"))).out;

  auto types_of = [&](const std::string& name) {
    std::set<std::string> types;
    const auto lines = JsonLines(testing::RunCommand("cat " + Q(dir.File(name + ".out"))).out);
    for (const auto& [type, n] : lines.back()["data"]["type_counts"].items()) types.insert(type);
    return types;
  };
  // Besides its candidates, a run may keep a tensor as stored (F16) or as the F32 of the norms.
  auto only = [&](const std::string& name, std::set<std::string> allowed) {
    allowed.insert({"F16", "F32"});
    const auto types = types_of(name);
    EXPECT_TRUE(std::includes(allowed.begin(), allowed.end(), types.begin(), types.end()))
        << name << ": " << nlohmann::json(types).dump();
    EXPECT_GE(types.size(), 2u) << name;
  };
  only("a", {"Q4_K", "Q5_K"});
  only("b", {"Q6_K", "Q8_0"});
  only("c", {"Q4_K", "Q5_K"});
  // The measure cache holds one run's records: each record's types are its key's.
  const auto cache = JsonLines(testing::RunCommand("cat " + Q(dir.File("cache/measure.cache"))).out);
  ASSERT_GT(cache.size(), 1u);
  const std::string key_types = cache[0]["key"]["types"].get<std::string>();
  for (size_t i = 1; i < cache.size(); ++i) {
    for (const auto& t : cache[i]["types"]) {
      EXPECT_NE(key_types.find(t["type"].get<std::string>()), std::string::npos) << cache[i].dump();
    }
  }
  const std::string errs = testing::RunCommand("cat " + Q(dir.File("a.err")) + " " + Q(dir.File("b.err"))).out;
  EXPECT_NE(errs.find("auto: waiting for cache directory '" + dir.File("cache") + "', locked by another mixq run"),
            std::string::npos)
      << errs;
}

// A copy of `model` named `name` in `dir` with `patch` written over tensor
// `tensor`'s data from byte `at` (little-endian values, as GGUF stores them).
std::string PatchedModel(const TempDir& dir, const std::string& model, const std::string& name,
                         const std::string& tensor, uint64_t at, const std::vector<uint8_t>& patch) {
  auto file = gguf::GgufFile::Open(model);
  EXPECT_TRUE(file.has_value());
  const gguf::TensorInfo* t = file->FindTensor(tensor);
  EXPECT_NE(t, nullptr) << tensor;
  auto bytes = testing::ReadFileBytes(model);
  std::copy(patch.begin(), patch.end(), bytes.begin() + static_cast<int64_t>(file->data_offset() + t->offset + at));
  testing::WriteFileBytes(dir.File(name), bytes);
  return dir.File(name);
}

const std::vector<uint8_t> kF32NaN = {0x00, 0x00, 0xc0, 0x7f};
const std::vector<uint8_t> kF16Inf = {0x00, 0x7c};
const std::vector<uint8_t> kF16NaN = {0x00, 0x7e};

// Every command that reads weights refuses a NaN or infinity in any tensor
// it uses or copies, naming the tensor and the index, and writes nothing.
TEST(Cli, NonFiniteWeightsAreRefusedByEveryCommand) {
  TempDir dir;
  const std::string text = Q(testing::RefDevText());
  const std::string nan_norm =
      Q(PatchedModel(dir, testing::RefDevModel(), "nan-norm.gguf", "blk.0.attn_norm.weight", 4 * 7, kF32NaN));
  const std::string norm_msg = "tensor 'blk.0.attn_norm.weight' holds NaN at index 7 (row 0, column 7)";
  const std::vector<std::string> commands = {
      "measure " + nan_norm + " --text " + text + " --ctx 64 --chunks 1 --types Q8_0 -o " + Q(dir.File("m.json")),
      "imatrix " + nan_norm + " --text " + text + " --ctx 64 --chunks 1 -o " + Q(dir.File("i.gguf")),
      "quantize " + nan_norm + " " + Q(dir.File("q.gguf")) + " --type F16",
      "quantize " + nan_norm + " " + Q(dir.File("q.gguf")) + " --type Q4_K",
      "eval " + nan_norm + " --text " + text + " --ctx 64 --chunks 2",
  };
  for (const std::string& command : commands) {
    auto r = RunMixq(command);
    EXPECT_EQ(r.exit_code, 3) << command << "\n" << r.err;
    EXPECT_NE(r.err.find(norm_msg), std::string::npos) << command << "\n" << r.err;
  }

  const std::string inf_weight =
      Q(PatchedModel(dir, testing::RefDevModel(), "inf-weight.gguf", "blk.2.ffn_up.weight", 2 * 300, kF16Inf));
  auto copy = RunMixq("quantize " + inf_weight + " " + Q(dir.File("q.gguf")) + " --type F16");
  EXPECT_EQ(copy.exit_code, 3) << copy.err;
  EXPECT_NE(copy.err.find("tensor 'blk.2.ffn_up.weight' holds an infinity at index 300 (row 1, column 44)"),
            std::string::npos)
      << copy.err;

  // A quantized input: the F16 scale d of block 3 of a Q8_0 tensor (34-byte blocks).
  ASSERT_EQ(
      RunMixq("quantize -q " + Q(testing::RefDevModel()) + " " + Q(dir.File("q8.gguf")) + " --type Q8_0").exit_code, 0);
  const std::string nan_scale =
      Q(PatchedModel(dir, dir.File("q8.gguf"), "nan-scale.gguf", "blk.1.attn_k.weight", 34 * 3, kF16NaN));
  for (const std::string& command : {"eval " + nan_scale + " --text " + text + " --ctx 64 --chunks 2",
                                     "quantize " + nan_scale + " " + Q(dir.File("q.gguf")) + " --type Q4_K"}) {
    auto r = RunMixq(command);
    EXPECT_EQ(r.exit_code, 3) << command << "\n" << r.err;
    EXPECT_NE(r.err.find("tensor 'blk.1.attn_k.weight' holds NaN at index 96 (row 0, column 96)"), std::string::npos)
        << command << "\n"
        << r.err;
  }
  for (const char* output : {"m.json", "i.gguf", "q.gguf"}) EXPECT_FALSE(std::filesystem::exists(dir.File(output)));
}

// Finite weights whose activations overflow float: eval names the layer
// instead of reporting a perplexity.
TEST(Cli, OverflowingActivationsAreRefused) {
  TempDir dir;
  std::vector<uint8_t> huge;  // every weight of the first norm 1e30 (0x7149f2ca)
  for (int i = 0; i < 256; ++i) huge.insert(huge.end(), {0xca, 0xf2, 0x49, 0x71});
  const std::string model = PatchedModel(dir, testing::RefDevModel(), "huge.gguf", "blk.0.attn_norm.weight", 0, huge);
  auto r = RunMixq("eval " + Q(model) + " --text " + Q(testing::RefDevText()) + " --ctx 64 --chunks 2");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("non-finite activation leaving layer 0"), std::string::npos) << r.err;
}

// An imatrix with `n_values` per entry for each of `names`, saved as `file` in `dir`.
std::string SavedImatrix(const TempDir& dir, const std::string& file, const std::vector<std::string>& names,
                         size_t n_values) {
  quantize::Imatrix im;
  for (const auto& name : names) im.entries[name] = {std::vector<float>(n_values, 2.0f), {4.0f}};
  EXPECT_TRUE(quantize::SaveImatrix(im, dir.File(file)).ok());
  return Q(dir.File(file));
}

// An imatrix is applied only to the model it was made for: no matching name
// or a wrong row length is exit 3 before anything is written; partial
// coverage is said in one line.
TEST(Cli, ForeignImatricesAreRefused) {
  TempDir dir;
  const std::string model = Q(testing::RefDevModel());
  const std::string out = Q(dir.File("q.gguf"));
  const std::string text = Q(testing::RefDevText());
  const std::string foreign =
      SavedImatrix(dir, "foreign.gguf", {"model.layers.0.self_attn.q_proj.weight", "lm_head.weight"}, 256);
  for (const std::string& command : {"quantize " + model + " " + out + " --type Q4_K --imatrix " + foreign,
                                     "measure " + model + " --text " + text + " --ctx 64 --chunks 1 --types Q8_0 -o " +
                                         out + " --imatrix " + foreign}) {
    auto r = RunMixq(command);
    EXPECT_EQ(r.exit_code, 3) << command << "\n" << r.err;
    EXPECT_NE(r.err.find("the imatrix has no entry for any of the 43 tensors to quantize (its first entry: "
                         "'lm_head.weight'); was it made for another model?"),
              std::string::npos)
        << r.err;
  }

  auto wrong_length = RunMixq("quantize " + model + " " + out + " --type Q4_K --imatrix " +
                              SavedImatrix(dir, "short.gguf", {"blk.0.attn_q.weight", "blk.0.attn_k.weight"}, 128));
  EXPECT_EQ(wrong_length.exit_code, 3) << wrong_length.err;
  EXPECT_NE(wrong_length.err.find("imatrix entry 'blk.0.attn_k.weight' has 128 values and 1 counts, the tensor has 1 "
                                  "matrices with rows of 256"),
            std::string::npos)
      << wrong_length.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("q.gguf")));

  std::vector<std::string> layer0;
  for (const char* w : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"}) {
    layer0.push_back("blk.0." + std::string(w) + ".weight");
  }
  layer0.push_back("output.weight");
  auto partial = RunMixq("quantize " + model + " " + out + " --type Q4_K --imatrix " +
                         SavedImatrix(dir, "partial.gguf", layer0, 256));
  EXPECT_EQ(partial.exit_code, 0) << partial.err;
  EXPECT_NE(partial.err.find("mixq: imatrix: no entry for 36 of 43 tensors to quantize, which get no importance "
                             "weighting: blk.0.ffn_down.weight, blk.1.ffn_down.weight, blk.1.ffn_gate.weight, "
                             "blk.1.ffn_up.weight, blk.1.attn_k.weight and 31 more\n"),
            std::string::npos)
      << partial.err;
}

// A plan must fit the model exactly: any edit that leaves a tensor out, names
// one twice or one kept in float, or breaks a size or cost is exit 3, one
// line naming the first offending unit, and no output.
TEST(Cli, EditedPlansAreRefused) {
  TempDir dir;
  const std::string model = Q(testing::RefDevModel());
  const std::string text = Q(testing::RefDevText());
  ASSERT_EQ(RunMixq("measure -q " + model + " --text " + text + " --ctx 64 --chunks 1 --types Q4_K,Q8_0 -o " +
                    Q(dir.File("m.json")))
                .exit_code,
            0);
  ASSERT_EQ(RunMixq("plan -q " + Q(dir.File("m.json")) + " --target 6bpw -o " + Q(dir.File("p.json"))).exit_code, 0);
  const auto plan = nlohmann::json::parse(testing::RunCommand("cat " + Q(dir.File("p.json"))).out);
  auto quantize_with = [&](const nlohmann::json& edited) {
    std::ofstream(dir.File("edited.json")) << edited.dump();
    return RunMixq("quantize " + model + " " + Q(dir.File("q.gguf")) + " --plan " + Q(dir.File("edited.json")));
  };
  auto ok = quantize_with(plan);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  std::filesystem::remove(dir.File("q.gguf"));

  auto unit = [&](const std::string& name) {
    for (const auto& u : plan["units"]) {
      if (u["name"] == name) return u;
    }
    ADD_FAILURE() << name;
    return nlohmann::json();
  };
  auto five_layers = plan;  // what a plan for the 5-layer sibling of ref-dev would hold
  auto& units = five_layers["units"];
  units.erase(
      std::remove_if(units.begin(), units.end(),
                     [](const nlohmann::json& u) { return u["name"].get<std::string>().starts_with("blk.5."); }),
      units.end());
  auto duplicate = plan;
  duplicate["units"].push_back(unit("blk.0.attn_q.weight"));
  auto norm = plan;
  norm["units"].push_back({{"name", "blk.0.attn_norm.weight"},
                           {"tensors", {"blk.0.attn_norm.weight"}},
                           {"type", "Q8_0"},
                           {"n_weights", 256},
                           {"n_bytes", 288},
                           {"cost", 0.0}});
  auto negative = plan;
  negative["units"][3]["cost"] = -0.5;
  auto no_bytes = plan;
  no_bytes["units"][3]["n_bytes"] = 0;
  auto unknown = plan;
  unknown["units"][3]["tensors"][0] = "blk.6.attn_q.weight";
  const std::string third = plan["units"][3]["name"].get<std::string>();

  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {five_layers, "the plan has no unit for tensor 'blk.5.ffn_down.weight'; was it made for another model?"},
      {duplicate, "plan unit 'blk.0.attn_q.weight' appears twice"},
      {norm,
       "plan unit 'blk.0.attn_norm.weight' gives type Q8_0 to tensor 'blk.0.attn_norm.weight', which is kept "
       "in float"},
      {negative, "plan unit '" + third + "' has cost -0.500000; costs are finite and not negative"},
      {no_bytes, "plan unit '" + third + "' says "},
      {unknown, "plan unit '" + third + "' names tensor 'blk.6.attn_q.weight', which the model does not have"},
  };
  for (const auto& [edited, message] : cases) {
    auto r = quantize_with(edited);
    EXPECT_EQ(r.exit_code, 3) << message << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("mixq: error: plan '" + dir.File("edited.json") + "': " + message, 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.File("q.gguf"))) << message;
  }
}

}  // namespace
}  // namespace mixq::cli
