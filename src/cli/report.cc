// mixq report --measurement m.json [--plan p.json ...] [--eval e.jsonl ...] [--validate v.jsonl] -o report.html
#include "report/report.h"

#include <filesystem>

#include "base/file_identity.h"
#include "cli/cli.h"

namespace mixq::cli {
namespace {

struct ReportCliOptions {
  std::string measurement;
  std::vector<std::string> plans;
  std::vector<std::string> evals;
  std::string validate;
  std::string title;
  std::string assets;
  std::string output;
};

Result<report::ReportInputs> LoadInputs(const ReportCliOptions& opt) {
  report::ReportInputs in;
  in.title = opt.title;
  auto m = plan::LoadMeasurement(opt.measurement);
  MIXQ_TRY(m);
  in.measurement = std::move(m).value();
  for (const auto& path : opt.plans) {
    auto p = plan::LoadPlan(path);
    MIXQ_TRY(p);
    in.plans.push_back({std::filesystem::path(path).stem().string(), std::move(p).value()});
  }
  for (const auto& path : opt.evals) {
    auto e = report::LoadEval(path);
    MIXQ_TRY(e);
    in.evals.push_back(std::move(e).value());
  }
  if (!opt.validate.empty()) {
    auto v = report::LoadValidation(opt.validate);
    MIXQ_TRY(v);
    in.validation = std::move(v).value();
  }
  return in;
}

int RunReport(const GlobalOptions& global, const ReportCliOptions& opt) {
  std::vector<std::string> inputs = {opt.measurement, opt.validate};
  inputs.insert(inputs.end(), opt.plans.begin(), opt.plans.end());
  inputs.insert(inputs.end(), opt.evals.begin(), opt.evals.end());
  if (Status s = CheckOutputsAreNotInputs(inputs, {opt.output}); !s.ok()) return ReportError(s);
  auto library = report::LoadChartLibrary(opt.assets.empty() ? report::DefaultAssetDir() : opt.assets);
  if (!library) return ReportError(library.error());
  auto in = LoadInputs(opt);
  if (!in) return ReportError(in.error());
  if (Status s = report::WriteReport(*in, *library, opt.output); !s.ok()) return ReportError(s);
  Info(global, "wrote " + opt.output);
  return kExitOk;
}

}  // namespace

void AddReport(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<ReportCliOptions>();
  CLI::App* sub = app.add_subcommand("report",
                                     "one self-contained HTML page of charts from a measurement, plans "
                                     "and evaluations (docs/report.md)");
  sub->add_option("--measurement", opt->measurement, "measurement JSON (mixq measure, or auto's cache)")->required();
  sub->add_option("--plan", opt->plans, "plan JSON (repeatable; the first is the chosen one)");
  sub->add_option("--eval", opt->evals,
                  "--json output of mixq eval (with --base) or mixq auto, for a mixq file or a llama.cpp preset "
                  "(repeatable)");
  sub->add_option("--validate", opt->validate, "--json output of mixq measure --validate N");
  sub->add_option("--title", opt->title, "the page's heading");
  sub->add_option("--assets", opt->assets, "folder of the chart library (default: scripts/setup-report.sh's)");
  sub->add_option("-o,--output", opt->output, "HTML file to write")->required();
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunReport(global, *opt); }; });
}

}  // namespace mixq::cli
