// mixq convert MODEL.safetensors [-o OUT.gguf] [--type T] [--target-size S | --target B | --plan P]:
// a diffusion transformer checkpoint to the GGUF ComfyUI-GGUF loads, uniform or mixed per block.
#include "base/file_identity.h"
#include "cli/diffusion.h"
#include "cli/workflow.h"

namespace mixq::cli {
namespace {

struct ConvertCliOptions {
  std::string input;
  std::string output;
  pipeline::DiffusionTypes types;
  std::string target_size;
  std::string target_bpw;
  std::string plan;
  std::string measurement;
  std::string save_measurement;
  std::string save_plan;
  DiffusionMeasureFlags measure;
  bool dry_run = false;
};

int RunConvert(const GlobalOptions& global, const ConvertCliOptions& opt) {
  if (Status s = CheckOutputsAreNotInputs({opt.input, opt.plan, opt.measurement, opt.measure.cost_table},
                                          {opt.output, opt.save_measurement, opt.save_plan});
      !s.ok()) {
    return ReportError(s);
  }
  const bool has_target = !opt.target_size.empty() || !opt.target_bpw.empty();
  if (!opt.target_size.empty() && !opt.target_bpw.empty()) {
    return ReportError(Status::InvalidArgument("give --target-size or --target, not both"));
  }
  if (!opt.plan.empty() && has_target) {
    return ReportError(Status::InvalidArgument("--plan already fixes the types; drop --target-size/--target"));
  }
  auto options = pipeline::BuildConvertOptions(opt.types);
  if (!options) return ReportError(options.error());
  pipeline::DiffusionPlanRequest request;
  if (has_target) {
    auto budget =
        opt.target_size.empty() ? plan::ParseBpwTarget(opt.target_bpw) : plan::ParseSizeTarget(opt.target_size);
    if (!budget) return ReportError(budget.error());
    request.budget = *budget;
  }
  request.plan = opt.plan;
  request.measurement = opt.measurement;
  request.measure.per_tensor = opt.measure.per_tensor;
  request.measure.measure_rows = opt.measure.measure_rows;
  request.measure.cost_table = opt.measure.cost_table;
  request.save_measurement = opt.save_measurement;
  request.save_plan = opt.save_plan;
  const pipeline::Hooks hooks = CliHooks(global);
  auto input = pipeline::OpenDiffusionInput(opt.input, {opt.output, opt.save_measurement, opt.save_plan}, hooks);
  if (!input) return ReportError(input.error());
  auto plan = pipeline::PlanDiffusion(*input, request, &*options, hooks);
  if (!plan) return ReportError(plan.error());
  pipeline::DiffusionWrite write;
  write.options = std::move(options).value();
  write.plan = *plan ? &**plan : nullptr;
  write.output = opt.output;
  write.dry_run = opt.dry_run;
  return WriteDiffusion(global, *input, std::move(write), "convert");
}

}  // namespace

void AddConvert(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<ConvertCliOptions>();
  CLI::App* sub = app.add_subcommand(
      "convert", "convert a diffusion transformer (Flux) .safetensors checkpoint to a ComfyUI-GGUF file");
  sub->add_option("input", opt->input,
                  "checkpoint: .safetensors, a sharded *.safetensors.index.json, or an F32/F16/BF16 diffusion GGUF")
      ->required();
  sub->add_option("-o,--output", opt->output,
                  "output GGUF (default beside the input: <name>-<TYPE>.gguf, or <name>_mxN_N.gguf for a mix)");
  sub->add_option("--type", opt->types.type,
                  "F32, F16 or BF16 for everything, or a quantized type for the block weights (default: BF16 stays "
                  "BF16, other dtypes F16, as ComfyUI-GGUF's convert.py); valid: " +
                      formats::EncodableFormatNames());
  sub->add_option("--float-type", opt->types.float_type, "storage of unquantized 2-D tensors: F32, F16 or BF16");
  sub->add_option("--tensor-type", opt->types.tensor_types, "REGEX=TYPE override, first match wins (repeatable)");
  sub->add_option("--target-size", opt->target_size, "plan a mix that fits this file size (e.g. 7.5GiB)");
  sub->add_option("--target", opt->target_bpw, "plan a mix of this average bits per weight (e.g. 3.8bpw)");
  sub->add_option("--plan", opt->plan, "apply a saved plan (mixq.plan JSON)");
  sub->add_option("--measurement", opt->measurement, "plan from this mixq.measurement JSON instead of measuring");
  sub->add_option("--save-measurement", opt->save_measurement, "write the measurement JSON here");
  sub->add_option("--save-plan", opt->save_plan, "write the plan JSON here");
  AddDiffusionMeasureFlags(sub, &opt->measure);
  AddMethodOption(sub, &opt->types.method);
  sub->add_flag("--dry-run", opt->dry_run, "plan and report, write no GGUF");
  AddThreadsOption(sub, &opt->types.threads);
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunConvert(global, *opt); }; });
}

}  // namespace mixq::cli
