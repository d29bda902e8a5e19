// Whole-model quantization: copy metadata, decide types, stream tensors.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "base/parallel.h"
#include "quantize/quantize.h"

namespace mixq::quantize {
namespace {

// `file_type` nullopt: the dominant type has no llama_ftype, so the input's
// value, which would now be wrong, is dropped.
std::vector<gguf::KeyValue> OutputMetadata(const gguf::GgufFile& input, const QuantizeOptions& options,
                                           const std::map<std::string, int>& type_counts,
                                           std::optional<uint32_t> file_type) {
  std::vector<gguf::KeyValue> kvs = input.metadata();
  gguf::EraseKey(kvs, "general.alignment");
  if (file_type) {
    gguf::SetValue(kvs, "general.file_type", gguf::Value::Uint32(*file_type));
  } else {
    gguf::EraseKey(kvs, "general.file_type");
  }
  gguf::SetValue(kvs, "general.quantization_version", gguf::Value::Uint32(2));
  gguf::SetValue(kvs, "mixq.version", gguf::Value::String(MIXQ_VERSION));
  gguf::SetValue(kvs, "mixq.method",
                 gguf::Value::String(options.covariances != nullptr ? std::string("gptq")
                                                                    : std::string(MethodName(options.method))));
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

// The feedback matrices of one pass's covariances, each computed once for the
// weights that share it (q/k/v, gate/up).
class FeedbackFactors {
 public:
  // Computes the factors of covs not yet held: one at a time on all threads,
  // or, for several (a 3-D tensor's experts), one per thread.
  Status Prepare(std::span<const InputCovariance* const> covs, double damp, int n_threads) {
    std::vector<const InputCovariance*> missing;
    for (const InputCovariance* cov : covs) {
      if (cov != nullptr && !factors_.contains(cov) && std::ranges::find(missing, cov) == missing.end()) {
        missing.push_back(cov);
      }
    }
    std::vector<Result<formats::FeedbackMatrices>> made(missing.size(), Status::Internal("not computed"));
    const int inner_threads = missing.size() > 1 ? 1 : n_threads;
    RunTasks(static_cast<int64_t>(missing.size()), n_threads, [&](int64_t i, int) {
      made[i] = formats::FeedbackFactor(missing[i]->sums, missing[i]->n_in, damp, inner_threads,
                                        missing[i]->effective_tokens);
    });
    for (size_t i = 0; i < missing.size(); ++i) {
      MIXQ_TRY(made[i]);
      factors_.emplace(missing[i], std::move(made[i]).value());
    }
    return Status::Ok();
  }
  // REQUIRES: Prepare was given cov.
  const formats::FeedbackMatrices& Of(const InputCovariance& cov) const { return factors_.at(&cov); }
  void Clear() { factors_.clear(); }

 private:
  std::map<const InputCovariance*, formats::FeedbackMatrices> factors_;
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

// The feedback matrices of each matrix of `t` (one for a 2-D tensor, one per
// routed expert for a 3-D one), nullptr where that matrix gets plain
// rounding; empty when none gets feedback. A matrix gets feedback when the
// last pass measured its input (for an expert: some token was routed to it)
// and the type has a feedback encoder. Without an imatrix the importance
// becomes each matrix's H diagonal (uniform for an expert no token reached).
Result<std::vector<const formats::FeedbackMatrices*>> FeedbackFactorsOf(const gguf::TensorInfo& t,
                                                                        const formats::Format& target,
                                                                        const QuantizeOptions& options,
                                                                        FeedbackFactors* factors,
                                                                        std::optional<std::vector<float>>* importance) {
  if (options.covariances == nullptr || !target.can_feedback()) return std::vector<const formats::FeedbackMatrices*>();
  const int64_t n_mat = t.ne[2] * t.ne[3];
  std::vector<const InputCovariance*> covs(static_cast<size_t>(n_mat));
  bool any = false;
  for (int64_t m = 0; m < n_mat; ++m) {
    covs[m] = options.covariances->Find(t.name, n_mat > 1 ? m : -1);
    if (covs[m] == nullptr) continue;
    any = true;
    if (covs[m]->n_in != t.ne[0]) {
      return Status::Internal("tensor '" + t.name + "' has rows of " + std::to_string(t.ne[0]) +
                              " but an input covariance of " + std::to_string(covs[m]->n_in));
    }
  }
  if (!any) return std::vector<const formats::FeedbackMatrices*>();
  if (!importance->has_value()) {
    std::vector<float> from_h(static_cast<size_t>(n_mat * t.ne[0]), 1.0f);
    for (int64_t m = 0; m < n_mat; ++m) {
      if (covs[m] != nullptr) std::ranges::copy(covs[m]->MeanDiagonal(), from_h.begin() + m * t.ne[0]);
    }
    *importance = std::move(from_h);
  }
  MIXQ_TRY(factors->Prepare(covs, options.feedback_damp, options.n_threads).WithContext("tensor '" + t.name + "'"));
  std::vector<const formats::FeedbackMatrices*> out(static_cast<size_t>(n_mat), nullptr);
  for (int64_t m = 0; m < n_mat; ++m) {
    if (covs[m] != nullptr) out[m] = &factors->Of(*covs[m]);
  }
  return out;
}

// The bytes of one tensor in its chosen type: the input's own when the type
// is unchanged (checked finite), else encoded into *out.
Result<std::span<const uint8_t>> ConvertTensor(const gguf::GgufFile& input, const gguf::TensorInfo& t,
                                               const formats::Format& target, const QuantizeOptions& options,
                                               FeedbackFactors* factors, std::vector<float>* scratch,
                                               std::vector<uint8_t>* out) {
  if (&target == t.format) {
    MIXQ_TRY(CheckTensorFinite(input, t, options.n_threads));
    return input.TensorData(t);
  }
  MIXQ_TRY(TensorToF32(input, t, scratch, options.n_threads));
  MIXQ_ASSIGN_OR_RETURN(auto importance, TensorImportance(target.quantized ? options.imatrix : nullptr, t));
  MIXQ_ASSIGN_OR_RETURN(std::vector<const formats::FeedbackMatrices*> feedback,
                        FeedbackFactorsOf(t, target, options, factors, &importance));
  MIXQ_TRY(QuantizeTensor(t, target, options.method, *scratch, importance.has_value() ? &*importance : nullptr, out,
                          options.n_threads, feedback));
  return std::span<const uint8_t>(*out);
}

// Decodes rows [first_row, first_row + n_rows) of `tensor` into `out` and
// checks them; `out` must hold n_rows rows.
Status DecodeRows(const gguf::GgufFile& file, const gguf::TensorInfo& tensor, int64_t first_row, int64_t n_rows,
                  float* out, int n_threads) {
  const int64_t row_bytes = static_cast<int64_t>(tensor.n_bytes) / tensor.n_rows();
  const uint8_t* src = file.TensorData(tensor).data() + first_row * row_bytes;
  Status s = formats::DequantizeRows(*tensor.format, src, out, n_rows, tensor.ne[0], n_threads);
  MIXQ_TRY(s.WithContext("tensor '" + tensor.name + "'"));
  const int64_t bad = formats::FirstNonFinite(out, n_rows * tensor.ne[0]);
  if (bad < 0) return Status::Ok();
  const int64_t index = first_row * tensor.ne[0] + bad;
  return Status::Corruption("tensor '" + tensor.name + "' holds " + (std::isnan(out[bad]) ? "NaN" : "an infinity") +
                            " at index " + std::to_string(index) + " (row " + std::to_string(index / tensor.ne[0]) +
                            ", column " + std::to_string(index % tensor.ne[0]) + ")");
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
    auto importance = TensorImportance(options.imatrix, t);
    MIXQ_TRY(importance);
    if (!importance->has_value()) return Status::NotSupported(what + " and the imatrix has no entry for it");
  }
  return Status::Ok();
}

}  // namespace

Status TensorToF32(const gguf::GgufFile& file, const gguf::TensorInfo& tensor, std::vector<float>* out, int n_threads) {
  out->resize(static_cast<size_t>(tensor.n_elems()));
  return DecodeRows(file, tensor, 0, tensor.n_rows(), out->data(), n_threads);
}

Status CheckTensorFinite(const gguf::GgufFile& file, const gguf::TensorInfo& tensor, int n_threads) {
  if (file.KnownFinite(tensor)) return Status::Ok();
  const int64_t rows_per_piece = std::max<int64_t>(1, (int64_t{1} << 20) / tensor.ne[0]);
  std::vector<float> piece(static_cast<size_t>(std::min(rows_per_piece, tensor.n_rows()) * tensor.ne[0]));
  for (int64_t r0 = 0; r0 < tensor.n_rows(); r0 += rows_per_piece) {
    MIXQ_TRY(DecodeRows(file, tensor, r0, std::min(rows_per_piece, tensor.n_rows() - r0), piece.data(), n_threads));
  }
  file.MarkFinite(tensor);
  return Status::Ok();
}

Result<std::optional<std::vector<float>>> TensorImportance(const Imatrix* imatrix, const gguf::TensorInfo& tensor) {
  if (imatrix == nullptr) return std::optional<std::vector<float>>();
  return imatrix->Importance(tensor.name, tensor.ne[0], tensor.ne[2] * tensor.ne[3]);
}

Status QuantizeTensor(const gguf::TensorInfo& t, const formats::Format& format, formats::QuantMethod method,
                      const std::vector<float>& values, const std::vector<float>* importance, std::vector<uint8_t>* out,
                      int n_threads, std::span<const formats::FeedbackMatrices* const> feedback_factors) {
  auto row_bytes = formats::RowBytes(format, t.ne[0]);
  MIXQ_TRY(row_bytes.status().WithContext("tensor '" + t.name + "'"));
  out->resize(static_cast<size_t>(*row_bytes * t.n_rows()));
  const int64_t n_mat = t.ne[2] * t.ne[3];
  if (!feedback_factors.empty() && static_cast<int64_t>(feedback_factors.size()) != n_mat) {
    return Status::Internal("tensor '" + t.name + "': " + std::to_string(feedback_factors.size()) +
                            " feedback factors for " + std::to_string(n_mat) + " matrices");
  }
  // Without an importance or feedback, rows are independent whatever matrix they are in.
  const int64_t n_parts = importance != nullptr || !feedback_factors.empty() ? n_mat : 1;
  const int64_t rows = t.n_rows() / n_parts;
  for (int64_t m = 0; m < n_parts; ++m) {
    const float* x = values.data() + m * rows * t.ne[0];
    uint8_t* y = out->data() + m * rows * *row_bytes;
    const float* imp = importance != nullptr ? importance->data() + m * t.ne[0] : nullptr;
    const formats::FeedbackMatrices* factor = feedback_factors.empty() ? nullptr : feedback_factors[m];
    Status s = factor != nullptr ? formats::QuantizeRowsFeedback(format, x, y, rows, t.ne[0], imp, *factor, n_threads)
                                 : formats::QuantizeRows(format, method, x, y, rows, t.ne[0], imp, n_threads);
    MIXQ_TRY(s.WithContext("tensor '" + t.name + "'"));
  }
  return Status::Ok();
}

Result<uint64_t> MaxHeaderBytes(const gguf::GgufFile& input, const QuantizeOptions& options) {
  // The only part of the header that depends on the mix is mixq.type_counts:
  // bound it by listing every type with the largest possible count.
  std::map<std::string, int> all_types;
  for (const auto& f : formats::AllFormats()) {
    if (f.can_encode()) all_types[std::string(f.name)] = static_cast<int>(input.tensors().size());
  }
  const formats::Format* f32 = formats::FindFormat(0);
  std::vector<gguf::TensorSpec> specs;
  for (const auto& t : input.tensors()) specs.push_back({t.name, t.ne, t.n_dims, f32});
  return gguf::GgufWriter::HeaderBytes(
      OutputMetadata(input, options, all_types, static_cast<uint32_t>(f32->llama_ftype)), specs);
}

Result<QuantizeReport> QuantizeModel(const gguf::GgufFile& input, const std::string& output_path,
                                     const QuantizeOptions& options) {
  MIXQ_ASSIGN_OR_RETURN(std::vector<TypeChoice> choices, ChooseAllTypes(input, options.rules));
  MIXQ_TRY(CheckImportanceCovers(input, choices, options));

  std::vector<gguf::TensorSpec> specs;
  const std::vector<size_t> order = ConversionOrder(input, options.covariances);
  for (size_t i : order) {
    const auto& t = input.tensors()[i];
    if (!choices[i].note.empty() && options.on_note) options.on_note(choices[i].note);
    specs.push_back({t.name, t.ne, t.n_dims, choices[i].format});
  }
  if (options.imatrix != nullptr) {
    std::vector<const gguf::TensorInfo*> weighted;
    for (size_t i = 0; i < input.tensors().size(); ++i) {
      if (choices[i].format->quantized) weighted.push_back(&input.tensors()[i]);
    }
    MIXQ_ASSIGN_OR_RETURN(std::string note, CheckImatrixCoverage(*options.imatrix, weighted));
    if (!note.empty() && options.on_note) options.on_note(note);
  }
  MIXQ_ASSIGN_OR_RETURN(OutputPlan plan, PlanOutput(std::move(specs), [&](const std::map<std::string, int>& type_counts,
                                                                          std::optional<uint32_t> ftype) {
                          return OutputMetadata(input, options, type_counts, ftype);
                        }));
  std::vector<float> scratch;
  QuantizeReport report = plan.report;
  FeedbackFactors factors;
  int64_t passes_run = 0;
  MIXQ_TRY(WriteOutput(
      plan, output_path,
      [&](size_t k, std::vector<uint8_t>* buffer) -> Result<std::span<const uint8_t>> {
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
        auto bytes = ConvertTensor(input, t, *plan.specs[k].format, options, &factors, &scratch, buffer);
        report.tensors[k].seconds = SecondsSince(start);
        return bytes;
      },
      [&](size_t k) {
        if (options.on_progress) options.on_progress(k + 1, order.size(), input.tensors()[order[k]].name);
      }));
  return report;
}

}  // namespace mixq::quantize
