// mixq report: inputs, the page's data, and the page in a real browser.
#include "report/report.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "report/tables.h"
#include "test_support.h"

namespace mixq::report {
namespace {

using mixq::testing::RunCommand;
using mixq::testing::RunMixq;
using mixq::testing::TempDir;
using nlohmann::json;

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A measurement shaped like a small qwen3moe model: per layer attention,
// shared experts and routed experts, each in Q4_K or Q8_0, deeper layers and
// routed experts costing less per weight.
plan::Measurement MoeMeasurement(int n_layer) {
  plan::Measurement m;
  m.model = "synthetic qwen3moe";
  m.cost_model = "predicted ΔKLD";
  m.fixed_n_bytes = 200'000;
  m.fixed_tensor_n_bytes = 150'000;
  m.fixed_n_weights = 37'500;
  const std::pair<const char*, int64_t> roles[] = {
      {"attn_q", 65'536},         {"attn_k", 16'384},        {"attn_v", 16'384},         {"attn_output", 65'536},
      {"ffn_gate_shexp", 65'536}, {"ffn_up_shexp", 65'536},  {"ffn_down_shexp", 65'536}, {"ffn_gate_exps", 524'288},
      {"ffn_up_exps", 524'288},   {"ffn_down_exps", 524'288}};
  for (int l = 0; l < n_layer; ++l) {
    for (const auto& [role, n] : roles) {
      const std::string name = "blk." + std::to_string(l) + "." + role + ".weight";
      const double scale = 1e-3 / (1 + l) * (std::string(role).ends_with("exps") ? 0.2 : 1.0) * n / 65'536;
      m.units.push_back({name, {name}, n, {{"Q4_K", n * 144 / 256, scale}, {"Q8_0", n * 34 / 32, scale / 30}}});
    }
  }
  return m;
}

TEST(LoadEval, ReadsTheSummaryAndTheFileItNames) {
  TempDir dir;
  const std::string eval = dir.File("eval.jsonl");
  WriteText(eval,
            R"({"type":"begin","data":{"command":"eval"}})"
            "\n" +
                json{{"type", "summary"},
                     {"data", {{"model", mixq::testing::RefDevModel()}, {"kld_mean", 0.02}, {"kld_stderr", 0.001}}}}
                    .dump() +
                "\n");
  auto e = LoadEval(eval);
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->label, "ref-dev-f16");
  EXPECT_FALSE(e->made_by_mixq);
  EXPECT_EQ(e->file_n_bytes, static_cast<int64_t>(std::filesystem::file_size(mixq::testing::RefDevModel())));
  EXPECT_DOUBLE_EQ(e->kld, 0.02);
  EXPECT_FALSE(e->tensors.empty());
}

TEST(LoadEval, AnEvalWithoutBaseHasNoKldAndSaysHowToGetOne) {
  TempDir dir;
  const std::string eval = dir.File("eval.jsonl");
  WriteText(eval, json{{"type", "summary"}, {"data", {{"model", mixq::testing::RefDevModel()}, {"ppl", 7.0}}}}.dump());
  auto e = LoadEval(eval);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(e.error().message().find("--base"), std::string::npos) << e.error().message();
}

TEST(LoadValidation, RequiresTheValidationOfMeasure) {
  TempDir dir;
  WriteText(dir.File("m.jsonl"), json{{"type", "summary"}, {"data", {{"output", "m.json"}}}}.dump());
  auto v = LoadValidation(dir.File("m.jsonl"));
  ASSERT_FALSE(v.has_value());
  EXPECT_NE(v.error().message().find("--validate"), std::string::npos);
  WriteText(dir.File("v.jsonl"),
            json{{"type", "summary"},
                 {"data", {{"validation", {{"mixes", {{{"bpw", 4.1}, {"predicted_kld", 0.03}, {"kld", 0.028}}}}}}}}}
                .dump());
  auto ok = LoadValidation(dir.File("v.jsonl"));
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  ASSERT_EQ(ok->size(), 1u);
  EXPECT_DOUBLE_EQ((*ok)[0].kld, 0.028);
}

TEST(Tables, BitsComparePlanWithThePresetNearestInSize) {
  ReportInputs in;
  in.measurement = MoeMeasurement(2);
  plan::PlanRequest req;
  req.budget = plan::Budget::BitsPerWeight(6);
  auto p = plan::SolvePlan(in.measurement, req);
  ASSERT_TRUE(p.has_value()) << p.error().message();
  in.plans.push_back({"plan-6bpw", *p});
  auto preset = [&](const std::string& label, const std::string& type, int64_t bytes) {
    EvalPoint e{label, false, bytes, 0.01, 0.001, std::nullopt, {}};
    for (const auto& u : in.measurement.units) e.tensors.push_back({u.name, type, u.n_weights, u.n_weights});
    e.tensors.push_back({"blk.0.ffn_gate_inp.weight", "F32", 1000, 4000});
    return e;
  };
  in.evals = {preset("far", "Q4_K", p->file_n_bytes * 3), preset("near", "Q8_0", p->file_n_bytes + 10)};
  auto t = internal::BuildTables(in);
  ASSERT_TRUE(t.has_value()) << t.error().message();
  EXPECT_EQ((*t)["preset"]["label"], "near");
  std::set<std::string> sources;
  for (const auto& row : (*t)["bits"]) sources.insert(row["source"].get<std::string>());
  EXPECT_EQ(sources, (std::set<std::string>{"mixq plan-6bpw", "llama.cpp near"}));
  ASSERT_TRUE((*t)["moe"].get<bool>());
  std::set<std::string> parts;
  for (const auto& row : (*t)["split"]) parts.insert(row["part"].get<std::string>());
  for (const char* part : {"attention", "shared experts", "routed experts", "router"})
    EXPECT_TRUE(parts.count(part)) << part;
  EXPECT_GT((*t)["curve"].size(), 3u);
}

TEST(RenderHtml, DataCannotCloseItsScriptElement) {
  ReportInputs in;
  in.title = "</script><script>alert(1)</script>";
  in.measurement = MoeMeasurement(1);
  ChartLibrary lib{"var vega = '</script>';", "", "", "{}"};
  auto html = RenderHtml(in, lib);
  ASSERT_TRUE(html.has_value()) << html.error().message();
  // Only the page's own five elements close: three libraries, the data, the page script.
  size_t closes = 0;
  for (size_t at = html->find("</script"); at != std::string::npos; at = html->find("</script", at + 1)) ++closes;
  EXPECT_EQ(closes, 5u);
}

TEST(LoadChartLibrary, AMissingLibraryNamesTheSetupScript) {
  TempDir dir;
  auto lib = LoadChartLibrary(dir.path());
  ASSERT_FALSE(lib.has_value());
  EXPECT_NE(lib.error().message().find("scripts/setup-report.sh"), std::string::npos);
}

// ---- in a real browser ----

// Debian's chromium, when installed. In CI (CI set) its absence fails the test.
std::string Chromium() {
  for (const char* name : {"chromium", "chromium-browser"}) {
    auto r = RunCommand(std::string("command -v ") + name);
    if (r.exit_code == 0 && !r.out.empty()) return r.out.substr(0, r.out.find('\n'));
  }
  return "";
}

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && *ci != '\0';
}

#define SKIP_UNLESS_CI(what)                           \
  do {                                                 \
    if (InCi()) FAIL() << what << " (required in CI)"; \
    GTEST_SKIP() << what;                              \
  } while (0)

// Opens the page headless, lets its scripts run, and returns the DOM after
// them. Every request outside the file goes to a proxy that does not exist, so
// a page that needed the network would fail here.
std::string RenderedDom(const std::string& chromium, const std::string& html, const std::string& screenshot) {
  const std::string flags =
      " --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=30000"
      " --proxy-server=127.0.0.1:9 --proxy-bypass-list='<-loopback>' ";
  auto dom = RunCommand(chromium + flags + "--dump-dom 'file://" + html + "' 2>/dev/null");
  EXPECT_EQ(dom.exit_code, 0);
  if (!screenshot.empty()) {
    auto shot = RunCommand(chromium + flags + "--window-size=1240,3200 --screenshot='" + screenshot + "' 'file://" +
                           html + "' 2>&1");
    EXPECT_EQ(shot.exit_code, 0) << shot.out;
    EXPECT_TRUE(std::filesystem::exists(screenshot) && std::filesystem::file_size(screenshot) > 10'000);
  }
  return dom.out;
}

// Every chart container holds an SVG with marks, and the page's own check
// (#report-status) found no script error.
void ExpectAllChartsRendered(const std::string& dom, const std::vector<std::string>& charts) {
  std::smatch status;
  ASSERT_TRUE(std::regex_search(dom, status, std::regex(R"(<p id="report-status"[^>]*>[^<]*)"))) << dom.substr(0, 2000);
  EXPECT_NE(status.str().find(R"(data-status="ok")"), std::string::npos) << status.str();
  EXPECT_NE(status.str().find("data-charts=\"" + std::to_string(charts.size()) + "\""), std::string::npos)
      << status.str();
  for (const std::string& id : charts) {
    const size_t at = dom.find("id=\"" + id + "\"");
    ASSERT_NE(at, std::string::npos) << id;
    const size_t svg = dom.find("<svg", at);
    ASSERT_NE(svg, std::string::npos) << id;
    const std::string head = dom.substr(svg, dom.find('>', svg) - svg);
    EXPECT_EQ(head.find("width=\"0\""), std::string::npos) << id << ": " << head;
    EXPECT_NE(dom.find("role-mark", svg), std::string::npos) << id;
  }
}

class ReportInBrowser : public ::testing::Test {
 protected:
  void SetUp() override {
    chromium_ = Chromium();
    if (chromium_.empty()) SKIP_UNLESS_CI("chromium not installed (scripts/install-deps.sh)");
    if (!LoadChartLibrary(DefaultAssetDir()).has_value())
      SKIP_UNLESS_CI("chart library missing (scripts/setup-report.sh)");
  }
  // The screenshots are kept beside the test binary (build/tests/) as artifacts.
  static std::string Artifact(const std::string& name) {
    return std::filesystem::absolute(std::filesystem::path(MIXQ_BINARY).parent_path() / "tests" / name).string();
  }
  std::string chromium_;
};

// ref-dev through `mixq auto --report`, then `mixq report` with a llama.cpp
// preset beside it when the oracle is there: every chart of a dense model.
TEST_F(ReportInBrowser, DenseModelFromAutoAndReport) {
  TempDir dir;
  const std::string model = mixq::testing::RefDevModel();
  const std::string text = testing::RefDevText();
  auto a = RunMixq("--json -q auto " + model + " --text " + text +
                   " --target 5bpw --types Q4_K,Q5_K,Q6_K,Q8_0 --ctx 128 --imatrix-chunks 2 --measure-chunks 1"
                   " --eval-chunks 2 -o " +
                   dir.File("mixq-5bpw.gguf") + " --report " + dir.File("auto.html"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  WriteText(dir.File("auto.jsonl"), a.out);
  ExpectAllChartsRendered(RenderedDom(chromium_, dir.File("auto.html"), ""),
                          {"chart-kld-size", "chart-sensitivity", "chart-bits", "chart-validation"});

  std::string preset_eval;
  if (!mixq::testing::OraclePath().empty()) {
    const std::string preset = dir.File("ref-dev-Q4_K_M.gguf");
    auto q = RunCommand(mixq::testing::OraclePath() + " quantize " + model + " " + preset + " Q4_K_M");
    ASSERT_EQ(q.exit_code, 0) << q.err;
    auto e = RunMixq("--json -q eval " + preset + " --base " + model + " --text " + text + " --ctx 128 --chunks 2");
    ASSERT_EQ(e.exit_code, 0) << e.err;
    WriteText(dir.File("preset.jsonl"), e.out);
    preset_eval = " --eval " + dir.File("preset.jsonl");
  }
  const std::string cache = dir.File("mixq-5bpw.gguf.mixq-cache");
  auto r = RunMixq("report --measurement " + cache + "/measurement.json --plan " + cache + "/plan.json --eval " +
                   dir.File("auto.jsonl") + preset_eval + " --title 'ref-dev, 5 bpw' -o " + dir.File("report.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dom = RenderedDom(chromium_, dir.File("report.html"), Artifact("report-ref-dev.png"));
  ExpectAllChartsRendered(dom, {"chart-kld-size", "chart-sensitivity", "chart-bits", "chart-validation"});
  if (!preset_eval.empty()) {
    EXPECT_NE(dom.find("llama.cpp ref-dev-Q4_K_M"), std::string::npos);
  }
}

TEST_F(ReportInBrowser, MixtureOfExpertsSplit) {
  TempDir dir;
  const plan::Measurement m = MoeMeasurement(4);
  plan::PlanRequest req;
  req.budget = plan::Budget::BitsPerWeight(5.5);
  auto p = plan::SolvePlan(m, req);
  ASSERT_TRUE(p.has_value()) << p.error().message();
  ASSERT_TRUE(plan::SaveMeasurement(m, dir.File("m.json")).ok());
  ASSERT_TRUE(plan::SavePlan(*p, dir.File("plan.json")).ok());
  auto r = RunMixq("report --measurement " + dir.File("m.json") + " --plan " + dir.File("plan.json") + " -o " +
                   dir.File("moe.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dom = RenderedDom(chromium_, dir.File("moe.html"), Artifact("report-moe.png"));
  ExpectAllChartsRendered(dom,
                          {"chart-kld-size", "chart-sensitivity", "chart-bits", "chart-moe-bytes", "chart-moe-bpw"});
}

TEST(ReportCli, AMissingMeasurementFailsWithOneLineAndWritesNothing) {
  TempDir dir;
  auto r = RunMixq("report --measurement " + dir.File("absent.json") + " -o " + dir.File("r.html") + " --assets " +
                   DefaultAssetDir());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(dir.File("r.html")));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// auto checks for the chart library before its long steps, and leaves nothing behind.
TEST(ReportCli, AutoWithoutChartLibraryStopsBeforeAnyWork) {
  TempDir dir;
  auto r = RunCommand("MIXQ_REPORT_ASSETS=" + dir.File("none") + " " + MIXQ_BINARY + " auto " +
                      mixq::testing::RefDevModel() + " --text " + mixq::testing::RefDevText() + " --target 4.5bpw -o " +
                      dir.File("out.gguf") + " --report " + dir.File("out.html"));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("scripts/setup-report.sh"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "auto wrote files before failing";
}

}  // namespace
}  // namespace mixq::report
