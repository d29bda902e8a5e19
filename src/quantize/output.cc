// The output file: its tensors' sizes, general.file_type, and the one writer
// that QuantizeModel and diffusion::Convert stream their tensors through.
#include "quantize/quantize.h"

namespace mixq::quantize {

std::optional<uint32_t> FileTypeOf(const std::vector<TensorReport>& tensors) {
  std::map<std::string, int64_t> weights_by_type;
  for (const auto& t : tensors) weights_by_type[t.type] += t.n_weights;
  std::string dominant;
  int64_t most = -1;
  for (bool quantized : {true, false}) {
    for (const auto& [type, n] : weights_by_type) {
      if (formats::FindFormatByName(type)->quantized == quantized && n > most) most = n, dominant = type;
    }
    if (!dominant.empty()) break;
  }
  const formats::Format* f = formats::FindFormatByName(dominant);
  if (f == nullptr || f->llama_ftype == formats::kNoType) return std::nullopt;
  return static_cast<uint32_t>(f->llama_ftype);
}

Result<OutputPlan> PlanOutput(std::vector<gguf::TensorSpec> specs, const OutputMetadataFn& metadata) {
  OutputPlan plan;
  QuantizeReport& report = plan.report;
  for (const auto& spec : specs) {
    auto n_bytes = gguf::TensorDataBytes(spec);
    MIXQ_TRY(n_bytes);
    const int64_t n_weights = spec.ne[0] * spec.ne[1] * spec.ne[2] * spec.ne[3];
    report.tensors.push_back({spec.name, std::string(spec.format->name), n_weights, *n_bytes});
    ++report.type_counts[std::string(spec.format->name)];
    report.tensor_bytes += *n_bytes;
    report.n_weights += n_weights;
  }
  plan.metadata = metadata(report.type_counts, FileTypeOf(report.tensors));
  plan.specs = std::move(specs);
  auto file_bytes = gguf::GgufWriter::FileSize(plan.metadata, plan.specs);
  MIXQ_TRY(file_bytes);
  report.file_bytes = *file_bytes;
  return plan;
}

Status WriteOutput(const OutputPlan& plan, const std::string& path, const TensorBytesFn& tensor_bytes,
                   const std::function<void(size_t index)>& on_written) {
  auto writer = gguf::GgufWriter::Begin(path, plan.metadata, plan.specs);
  MIXQ_TRY(writer);
  std::vector<uint8_t> buffer;
  for (size_t i = 0; i < plan.specs.size(); ++i) {
    auto bytes = tensor_bytes(i, &buffer);
    MIXQ_TRY(bytes);
    MIXQ_TRY(writer->WriteTensor(*bytes));
    if (on_written) on_written(i);
  }
  if (writer->bytes_written() != plan.report.file_bytes) {
    // A size promised to a budget must be the size written: never commit a file that breaks it.
    return Status::Internal("output '" + path + "' would have " + std::to_string(writer->bytes_written()) +
                            " bytes, planned " + std::to_string(plan.report.file_bytes));
  }
  return writer->Finish();
}

}  // namespace mixq::quantize
