// Measurements in every format `mixq plan` reads.
#include "base/text_file.h"
#include "pipeline/pipeline.h"

namespace mixq::pipeline {

Result<plan::Measurement> LoadAnyMeasurement(const std::string& path, const std::string& format_name,
                                             const Hooks& hooks) {
  MIXQ_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path));
  auto format =
      format_name.empty() ? plan::DetectMeasurementFormat(text) : plan::ParseMeasurementFormatName(format_name);
  if (!format) return format_name.empty() ? format.error().WithContext("'" + path + "'") : format.error();
  const std::string as(plan::MeasurementFormatDescription(*format));
  hooks.Note("reading '" + path + "' as " + as + (format_name.empty() ? " (detected)" : " (--format)"));
  auto m = [&]() -> Result<plan::Measurement> {
    switch (*format) {
      case plan::MeasurementFormat::kMixq:
        return plan::ParseMeasurementJson(text);
      case plan::MeasurementFormat::kExl2:
        return plan::ImportExl2Measurement(text, plan::Exl2Cost::kErrSquared);
      case plan::MeasurementFormat::kCostTable: {
        auto table = plan::ImportCostTable(text, plan::FluxDevCostTableSpec());
        MIXQ_TRY(table);
        return diffusion::FitToFluxDev(*table);
      }
    }
    return Status::Internal("unknown measurement format");
  }();
  if (!m) return m.error().WithContext("'" + path + "' read as " + as);
  return m;
}

}  // namespace mixq::pipeline
