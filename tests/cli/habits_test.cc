// Habits people bring from other tools: --version lists what mixq handles,
// `plan` reads any measurement format by its content, `auto --dry-run` and
// --tensor-type-file hand a plan to llama-quantize.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/architecture.h"
#include "formats/formats.h"
#include "plan/plan.h"
#include "test_support.h"

namespace mixq::cli {
namespace {

using testing::Q;
using testing::RunMixq;
using testing::TempDir;

nlohmann::json LastJsonLine(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return nlohmann::json::parse(last);
}

// The line of `text` that starts with `prefix`, without the prefix.
std::string LineAfter(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  }
  ADD_FAILURE() << "no line '" << prefix << "' in:\n" << text;
  return "";
}

std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> items;
  if (list == "none") return items;
  std::istringstream in(list);
  for (std::string item; std::getline(in, item, ',');) items.push_back(item.substr(item.find_first_not_of(' ')));
  return items;
}

TEST(Habits, VersionListsTypesAndArchitecturesFromTheirTables) {
  auto r = RunMixq("--version");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(std::string("mixq ") + MIXQ_VERSION + "\n", 0), 0u) << r.out;
  std::vector<std::string> encode = SplitList(LineAfter(r.out, "types (encode and decode): "));
  std::vector<std::string> decode = SplitList(LineAfter(r.out, "types (decode only): "));
  for (const formats::Format& f : formats::AllFormats()) {
    const std::string name(f.name);
    const bool in_encode = std::find(encode.begin(), encode.end(), name) != encode.end();
    const bool in_decode = std::find(decode.begin(), decode.end(), name) != decode.end();
    EXPECT_EQ(in_encode, f.can_encode()) << name;
    EXPECT_EQ(in_decode, f.can_decode() && !f.can_encode()) << name;
  }
  std::vector<std::string> archs = SplitList(LineAfter(r.out, "architectures (eval, imatrix, measure, auto): "));
  EXPECT_GE(archs.size(), 4u);
  for (const std::string& a : archs) EXPECT_NE(engine::FindArchitecture(a), nullptr) << a;
  EXPECT_EQ(LineAfter(r.out, "architectures (convert, diffusion): "), "flux");
}

TEST(Habits, PlanReadsEachFormatByItsContent) {
  TempDir dir;
  const std::string exl2 = testing::SeedPath("002_68e96ba8af961ce5.txt");
  const std::string table = testing::SeedPath("000_b622eb4ec4e2b348.txt");
  auto e = RunMixq("plan --json " + Q(exl2) + " --target 4.0bpw");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.err.find("as ExLlamaV2 measurement.json (detected)"), std::string::npos) << e.err;
  EXPECT_LE(LastJsonLine(e.out)["data"]["bpw"].get<double>(), 4.0);
  auto t = RunMixq("plan --json " + Q(table) + " --target-size 9GiB");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.err.find("as per-layer cost table (detected)"), std::string::npos) << t.err;

  auto model = RunMixq("plan " + Q(testing::RefDevModel()) + " --target 4.5bpw");
  EXPECT_EQ(model.exit_code, 3);
  EXPECT_NE(model.err.find("a GGUF file (a model or an imatrix), not a measurement"), std::string::npos) << model.err;
  auto forced = RunMixq("plan " + Q(table) + " --format exl2 --target 4.5bpw");
  EXPECT_EQ(forced.exit_code, 3);
  EXPECT_NE(forced.err.find("read as ExLlamaV2 measurement.json"), std::string::npos) << forced.err;
  auto unknown = RunMixq("plan " + Q(table) + " --format gguf --target 4.5bpw");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("mixq, exl2, flux-table"), std::string::npos) << unknown.err;
}

// Each tensor's type in `plan`, as ggml names it.
std::map<std::string, std::string> PlannedTypes(const plan::Plan& p) {
  std::map<std::string, std::string> types;
  for (const auto& u : p.units) {
    for (const auto& t : u.tensors) types[t] = plan::LlamaTypeName(u.type);
  }
  return types;
}

// auto --dry-run writes no model, and its plan is what gets written: the
// tensor bytes `quantize --plan` writes are the ones it printed, and llama.cpp
// given the --tensor-type-file gives every tensor the planned type.
TEST(Habits, AutoDryRunPlansExactlyWithoutWritingTheModel) {
  TempDir dir;
  const std::string text = testing::RefDevText();
  const std::string types_file = dir.File("types.txt");
  auto r = RunMixq("auto --json --dry-run " + Q(testing::RefDevModel()) + " --text " + Q(text) +
                   " --target-size 5000000 -o " + Q(dir.File("a.gguf")) + " --tensor-type-file " + Q(types_file) +
                   " --types Q4_K,Q6_K,Q8_0 --imatrix-chunks 4 --measure-chunks 1 --ctx 128");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("a.gguf")));
  const nlohmann::json summary = LastJsonLine(r.out)["data"];
  EXPECT_LE(summary["file_bytes"].get<int64_t>(), 5000000);

  std::vector<std::string> lines;
  std::ifstream in(types_file);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_EQ(nlohmann::json(lines), summary["llama_quantize_args"]);

  const std::string cache = dir.File("a.gguf.mixq-cache");
  auto q = RunMixq("quantize --json " + Q(testing::RefDevModel()) + " " + Q(dir.File("b.gguf")) + " --plan " +
                   Q(cache + "/plan.json") + " --imatrix " + Q(cache + "/imatrix.gguf"));
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(LastJsonLine(q.out)["data"]["tensor_bytes"], summary["tensor_bytes"]);
  // The header is counted from the input's metadata: the output's may differ by a few keys.
  const uint64_t written = std::filesystem::file_size(dir.File("b.gguf"));
  EXPECT_LE(written, summary["file_bytes"].get<uint64_t>());
  EXPECT_GT(written + 1024, summary["file_bytes"].get<uint64_t>());

  if (testing::OraclePath().empty()) GTEST_SKIP() << "no gguf-oracle configured";
  // Q8_0: its 32-element blocks fit every row, so llama-quantize never falls
  // back from the preset's type, which would make it skip the overrides.
  auto o = testing::RunCommand(Q(testing::OraclePath()) + " quantize " + Q(testing::RefDevModel()) + " " +
                               Q(dir.File("llama.gguf")) + " Q8_0 --imatrix " + Q(cache + "/imatrix.gguf") +
                               " --tensor-type-file " + Q(types_file));
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const nlohmann::json llama_types = nlohmann::json::parse(o.out)["tensor_types"];
  auto p = plan::LoadPlan(cache + "/plan.json");
  ASSERT_TRUE(p.has_value()) << p.error().message();
  const auto planned = PlannedTypes(*p);
  EXPECT_EQ(planned.size(), lines.size());
  for (const auto& [name, type] : planned) EXPECT_EQ(llama_types.value(name, ""), type) << name;
}

// --json: progress events on stderr, one JSON object a line, naming each
// tensor; stdout keeps only the results. -q: none.
TEST(Habits, QuantizeProgressEventsWithJsonAndNoneWithQuiet) {
  TempDir dir;
  auto r = RunMixq("--json quantize " + Q(testing::RefDevModel()) + " " + Q(dir.File("q.gguf")) + " --type Q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<nlohmann::json> events;
  std::istringstream err(r.err);
  for (std::string line; std::getline(err, line);) {
    if (!line.empty() && line.front() == '{') events.push_back(nlohmann::json::parse(line));
  }
  ASSERT_GE(events.size(), 3u) << r.err;
  EXPECT_EQ(events.back()["type"], "progress_end");
  const auto& last = events[events.size() - 2]["data"];
  EXPECT_EQ(last["step"], "quantize");
  EXPECT_EQ(last["done"], last["total"]);
  EXPECT_GT(last["total"].get<int>(), 10);
  EXPECT_EQ(last["eta_s"], 0.0);
  EXPECT_EQ(events.front()["data"]["item"], "output.weight") << "the first tensor of ref-dev";
  EXPECT_EQ(r.out.find("\"progress\""), std::string::npos) << "progress events on stdout";

  auto q = RunMixq("--json -q quantize " + Q(testing::RefDevModel()) + " " + Q(dir.File("r.gguf")) + " --type Q8_0");
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.err, "");
}

}  // namespace
}  // namespace mixq::cli
