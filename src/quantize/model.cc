// Whole-model quantization: copy metadata, decide types, stream tensors.
#include <algorithm>
#include <chrono>

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
                 gguf::Value::String(options.covariances != nullptr                  ? "gptq"
                                     : options.method == formats::QuantMethod::kGgml ? "ggml"
                                                                                     : "best"));
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

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The feedback factors of one pass's covariances, each computed once for the
// weights that share it (q/k/v, gate/up).
class FeedbackFactors {
 public:
  Result<const std::vector<float>*> For(const InputCovariance& cov, double damp) {
    auto it = factors_.find(&cov);
    if (it == factors_.end()) {
      auto u = formats::FeedbackFactor(cov.sums, cov.n_in, damp);
      MIXQ_TRY(u);
      it = factors_.emplace(&cov, std::move(u).value()).first;
    }
    return &it->second;
  }
  void Clear() { factors_.clear(); }

 private:
  std::map<const InputCovariance*, std::vector<float>> factors_;
};

// The order tensors are converted and written in: the input's, except that
// with covariances each tensor waits for the pass that measures its input.
std::vector<size_t> ConversionOrder(const gguf::GgufFile& input, const CovarianceSource* covariances) {
  std::vector<size_t> order(input.tensors().size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (covariances == nullptr) return order;
  std::vector<int64_t> pass(order.size());
  for (size_t i = 0; i < order.size(); ++i) pass[i] = covariances->PassOf(input.tensors()[i].name);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return pass[a] < pass[b]; });
  return order;
}

// Converts one tensor to its chosen type into *out.
Status ConvertTensor(const gguf::GgufFile& input, const gguf::TensorInfo& t, const formats::Format& target,
                     const QuantizeOptions& options, FeedbackFactors* factors, std::vector<float>* scratch,
                     std::vector<uint8_t>* out) {
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
  const InputCovariance* cov = options.covariances != nullptr ? options.covariances->Find(t.name) : nullptr;
  if (cov != nullptr && target.can_feedback()) {
    if (cov->n_in != t.ne[0]) {
      return Status::Internal("tensor '" + t.name + "' has rows of " + std::to_string(t.ne[0]) +
                              " but an input covariance of " + std::to_string(cov->n_in));
    }
    if (!importance) importance = cov->MeanDiagonal();
    auto u = factors->For(*cov, options.feedback_damp);
    MIXQ_TRY(u.status().WithContext("tensor '" + t.name + "'"));
    return formats::QuantizeRowsFeedback(target, scratch->data(), out->data(), t.n_rows(), t.ne[0], importance->data(),
                                         (*u)->data(), options.n_threads)
        .WithContext("tensor '" + t.name + "'");
  }
  Status s = formats::QuantizeRows(target, options.method, scratch->data(), out->data(), t.n_rows(), t.ne[0],
                                   importance ? importance->data() : nullptr, options.n_threads);
  return s.WithContext("tensor '" + t.name + "'");
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

  QuantizeReport report;
  std::vector<gguf::TensorSpec> specs;
  std::map<std::string, int64_t> weights_by_type;
  const std::vector<size_t> order = ConversionOrder(input, options.covariances);
  for (size_t i : order) {
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
  FeedbackFactors factors;
  int64_t passes_run = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const auto& t = input.tensors()[order[k]];
    if (options.covariances != nullptr) {
      const auto start = std::chrono::steady_clock::now();
      for (const int64_t need = options.covariances->PassOf(t.name); passes_run <= need; ++passes_run) {
        factors.Clear();
        MIXQ_TRY(options.covariances->Run(passes_run));
      }
      report.covariance_seconds += SecondsSince(start);
    }
    const auto start = std::chrono::steady_clock::now();
    MIXQ_TRY(ConvertTensor(input, t, *specs[k].format, options, &factors, &scratch, &encoded));
    report.tensors[k].seconds = SecondsSince(start);
    MIXQ_TRY(writer->WriteTensor(encoded));
    if (options.on_progress) options.on_progress(k + 1, order.size(), t.name);
  }
  report.file_bytes = writer->bytes_written();
  MIXQ_TRY(writer->Finish());
  return report;
}

}  // namespace mixq::quantize
