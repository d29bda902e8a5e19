// Whole-model quantization: copy metadata, decide types, stream tensors.
#include "quantize/quantize.h"

namespace mixq::quantize {

std::optional<uint32_t> FileTypeId(std::string_view type) {
  const formats::Format* f = formats::FindFormatByName(type);
  if (f == nullptr || f->llama_ftype == formats::kNoType) return std::nullopt;
  return static_cast<uint32_t>(f->llama_ftype);
}

namespace {

std::vector<gguf::KeyValue> OutputMetadata(const gguf::GgufFile& input, const QuantizeOptions& options,
                                           const std::map<std::string, int>& type_counts, const std::string& dominant) {
  std::vector<gguf::KeyValue> kvs = input.metadata();
  gguf::EraseKey(kvs, "general.alignment");
  if (auto ftype = FileTypeId(dominant)) gguf::SetValue(kvs, "general.file_type", gguf::Value::Uint32(*ftype));
  gguf::SetValue(kvs, "general.quantization_version", gguf::Value::Uint32(2));
  gguf::SetValue(kvs, "mixq.version", gguf::Value::String(MIXQ_VERSION));
  gguf::SetValue(kvs, "mixq.method",
                 gguf::Value::String(options.method == formats::QuantMethod::kGgml ? "ggml" : "best"));
  std::vector<std::string> counts;
  for (const auto& [type, n] : type_counts) counts.push_back(type + "=" + std::to_string(n));
  gguf::SetValue(kvs, "mixq.type_counts", gguf::Value::StringArray(counts));
  if (options.imatrix != nullptr) {
    gguf::SetValue(kvs, "quantize.imatrix.file", gguf::Value::String(options.imatrix_path));
    if (!options.imatrix->datasets.empty()) {
      gguf::SetValue(kvs, "quantize.imatrix.dataset", gguf::Value::String(options.imatrix->datasets[0]));
    }
    gguf::SetValue(kvs, "quantize.imatrix.entries_count",
                   gguf::Value::Uint32(static_cast<uint32_t>(options.imatrix->entries.size())));
    if (options.imatrix->chunk_count > 0) {
      gguf::SetValue(kvs, "quantize.imatrix.chunks_count", gguf::Value::Uint32(options.imatrix->chunk_count));
    }
  }
  return kvs;
}

// Converts one tensor to its chosen type into *out.
Status ConvertTensor(const gguf::GgufFile& input, const gguf::TensorInfo& t, const formats::Format& target,
                     const QuantizeOptions& options, std::vector<float>* scratch, std::vector<uint8_t>* out) {
  if (&target == t.format) {
    auto bytes = input.TensorData(t);
    out->assign(bytes.begin(), bytes.end());
    return Status::Ok();
  }
  MIXQ_TRY(TensorToF32(input, t, scratch, options.n_threads));
  std::optional<std::vector<float>> importance;
  if (options.imatrix != nullptr && target.quantized) {
    auto imp = options.imatrix->Importance(t.name, t.ne[0]);
    MIXQ_TRY(imp);
    importance = std::move(imp).value();
  }
  auto row_bytes = formats::RowBytes(target, t.ne[0]);
  MIXQ_TRY(row_bytes);
  out->resize(static_cast<size_t>(*row_bytes * t.n_rows()));
  Status s = formats::QuantizeRows(target, options.method, scratch->data(), out->data(), t.n_rows(), t.ne[0],
                                   importance ? importance->data() : nullptr, options.n_threads);
  return s.WithContext("tensor '" + t.name + "'");
}

// Types ggml cannot encode without importance need the imatrix to cover every
// tensor converted to them; checked before anything is written.
Status CheckImportanceCovers(const gguf::GgufFile& input, const std::vector<TypeChoice>& choices,
                             const QuantizeOptions& options) {
  for (size_t i = 0; i < input.tensors().size(); ++i) {
    const gguf::TensorInfo& t = input.tensors()[i];
    const formats::Format& f = *choices[i].format;
    if (!f.needs_imatrix || &f == t.format) continue;
    const std::string what = "tensor '" + t.name + "': type " + std::string(f.name) + " needs an importance matrix";
    if (options.imatrix == nullptr) return Status::NotSupported(what + "; give --imatrix or choose another type");
    auto importance = options.imatrix->Importance(t.name, t.ne[0]);
    MIXQ_TRY(importance);
    if (!importance->has_value()) return Status::NotSupported(what + " and the imatrix has no entry for it");
  }
  return Status::Ok();
}

}  // namespace

Status TensorToF32(const gguf::GgufFile& file, const gguf::TensorInfo& tensor, std::vector<float>* out, int n_threads) {
  out->resize(static_cast<size_t>(tensor.n_elems()));
  Status s = formats::DequantizeRows(*tensor.format, file.TensorData(tensor).data(), out->data(), tensor.n_rows(),
                                     tensor.ne[0], n_threads);
  return s.WithContext("tensor '" + tensor.name + "'");
}

Result<uint64_t> MaxHeaderBytes(const gguf::GgufFile& input, const QuantizeOptions& options) {
  // The only part of the header that depends on the mix is mixq.type_counts:
  // bound it by listing every type with the largest possible count.
  std::map<std::string, int> all_types;
  for (const auto& f : formats::AllFormats()) {
    if (f.can_encode()) all_types[std::string(f.name)] = static_cast<int>(input.tensors().size());
  }
  auto metadata = OutputMetadata(input, options, all_types, "F32");
  const formats::Format* f32 = formats::FindFormat(0);
  std::vector<gguf::TensorSpec> specs;
  uint64_t data = 0;
  for (const auto& t : input.tensors()) {
    specs.push_back({t.name, t.ne, t.n_dims, f32});
    data += (static_cast<uint64_t>(t.n_elems()) * 4 + gguf::kWriteAlignment - 1) / gguf::kWriteAlignment *
            gguf::kWriteAlignment;
  }
  auto total = gguf::GgufWriter::FileSize(metadata, specs);
  MIXQ_TRY(total);
  return *total - data;
}

Result<QuantizeReport> QuantizeModel(const gguf::GgufFile& input, const std::string& output_path,
                                     const QuantizeOptions& options) {
  auto choices = ChooseAllTypes(input, options.rules);
  MIXQ_TRY(choices);
  MIXQ_TRY(CheckImportanceCovers(input, *choices, options));

  QuantizeReport report;
  std::vector<gguf::TensorSpec> specs;
  std::map<std::string, int64_t> weights_by_type;
  for (size_t i = 0; i < input.tensors().size(); ++i) {
    const auto& t = input.tensors()[i];
    const formats::Format* f = (*choices)[i].format;
    if (!(*choices)[i].note.empty() && options.on_note) options.on_note((*choices)[i].note);
    specs.push_back({t.name, t.ne, t.n_dims, f});
    auto row = formats::RowBytes(*f, t.ne[0]);
    MIXQ_TRY(row);
    uint64_t n_bytes = static_cast<uint64_t>(*row * t.n_rows());
    report.tensors.push_back({t.name, std::string(f->name), t.n_elems(), n_bytes});
    ++report.type_counts[std::string(f->name)];
    weights_by_type[std::string(f->name)] += t.n_elems();
    report.tensor_bytes += n_bytes;
    report.n_weights += t.n_elems();
  }
  std::string dominant;
  int64_t most = -1;
  for (const auto& [type, n] : weights_by_type) {
    const formats::Format* f = formats::FindFormatByName(type);
    if (f->quantized && n > most) most = n, dominant = type;
  }
  if (dominant.empty() && !weights_by_type.empty()) dominant = weights_by_type.rbegin()->first;

  auto metadata = OutputMetadata(input, options, report.type_counts, dominant);
  auto writer = gguf::GgufWriter::Begin(output_path, metadata, specs);
  MIXQ_TRY(writer);
  std::vector<float> scratch;
  std::vector<uint8_t> encoded;
  for (size_t i = 0; i < input.tensors().size(); ++i) {
    const auto& t = input.tensors()[i];
    MIXQ_TRY(ConvertTensor(input, t, *specs[i].format, options, &scratch, &encoded));
    MIXQ_TRY(writer->WriteTensor(encoded));
    if (options.on_progress) options.on_progress(i + 1, input.tensors().size(), t.name);
  }
  report.file_bytes = writer->bytes_written();
  MIXQ_TRY(writer->Finish());
  return report;
}

}  // namespace mixq::quantize
