// Convert: safetensors to a ComfyUI-GGUF file, one tensor at a time
// (comfyui-gguf.md §2.3 stage-1 types, §2.6 layout, §2.7 stage-2 rules).
#include <algorithm>
#include <cmath>

#include "base/parallel.h"
#include "diffusion/convert_internal.h"
#include "diffusion/diffusion.h"

namespace mixq::diffusion {
namespace {

// convert.py keeps tensors this small in F32 (QUANTIZATION_THRESHOLD).
constexpr int64_t kSmallTensorElems = 1024;

const formats::Format& F32() { return *formats::FindFormatByName("F32"); }

}  // namespace

namespace internal {

const formats::Format& StorageFormat(const ModelTensor& t, const formats::Format* float_format) {
  const auto& src = *t.source;
  if (src.shape.size() <= 1 || src.n_elems <= kSmallTensorElems) return F32();
  if (float_format != nullptr) return *float_format;
  return *formats::FindFormatByName(src.dtype->name == "BF16" ? "BF16" : "F16");
}

gguf::TensorSpec SpecOf(const ModelTensor& t, const formats::Format& format) {
  gguf::TensorSpec spec;
  spec.name = t.name;
  spec.format = &format;
  const auto& shape = t.source->shape;
  spec.n_dims = std::max<uint32_t>(1, static_cast<uint32_t>(shape.size()));
  for (size_t d = 0; d < shape.size(); ++d) spec.ne[d] = shape[shape.size() - 1 - d];
  return spec;
}

gguf::TensorInfo InfoOf(const gguf::TensorSpec& spec) {
  gguf::TensorInfo info;
  info.name = spec.name;
  info.n_dims = spec.n_dims;
  info.ne = spec.ne;
  info.format = spec.format;
  info.type_id = spec.format->ggml_id;
  return info;
}

std::vector<gguf::KeyValue> Metadata(const std::string& architecture, uint32_t file_type) {
  return {{"general.architecture", gguf::Value::String(architecture)},
          {"general.quantization_version", gguf::Value::Uint32(2)},
          {"general.file_type", gguf::Value::Uint32(file_type)}};
}

Status EncodeRows(const safetensors::DType& dtype, std::span<const uint8_t> src, int64_t n_rows, int64_t n_per_row,
                  const formats::Format& target, formats::QuantMethod method, int n_threads,
                  std::vector<float>* scratch, uint8_t* dst, const std::function<void(uint64_t, uint64_t)>& done_with) {
  auto row_bytes = formats::RowBytes(target, n_per_row);
  MIXQ_TRY(row_bytes);
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElems / n_per_row);
  const uint64_t src_row_bytes = static_cast<uint64_t>(n_per_row) * dtype.n_bytes;
  for (int64_t r0 = 0; r0 < n_rows; r0 += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, n_rows - r0);
    scratch->resize(static_cast<size_t>(rows * n_per_row));
    ParallelFor(rows, std::max<int64_t>(1, (int64_t{1} << 16) / n_per_row), n_threads, [&](int64_t b, int64_t e) {
      // Cannot fail: the dtype is a float one and the spans hold whole rows.
      (void)safetensors::DecodeToF32(dtype, src.subspan((r0 + b) * src_row_bytes, (e - b) * src_row_bytes),
                                     scratch->data() + b * n_per_row);
    });
    Status s = formats::QuantizeRows(target, method, scratch->data(), dst + r0 * *row_bytes, rows, n_per_row, nullptr,
                                     n_threads);
    if (s.kind() == StatusKind::kCorruption) {
      // QuantizeRows counts rows from the chunk; report them from the tensor.
      auto bad = std::find_if(scratch->begin(), scratch->end(), [](float v) { return !std::isfinite(v); });
      const int64_t at = bad - scratch->begin();
      return Status::Corruption("weight is NaN or infinite: row " + std::to_string(r0 + at / n_per_row) + ", element " +
                                std::to_string(at % n_per_row));
    }
    MIXQ_TRY(s);
    done_with(r0 * src_row_bytes, (r0 + rows) * src_row_bytes);
  }
  return Status::Ok();
}

}  // namespace internal

Result<ConvertPlan> PlanConversion(const Model& model, const ConvertOptions& options) {
  if (options.float_format != nullptr && options.float_format->quantized) {
    return Status::InvalidArgument("float storage type must be F32, F16 or BF16, not " +
                                   std::string(options.float_format->name));
  }
  quantize::TypeRules rules = options.rules;
  rules.profile = &quantize::ProfileFor(model.architecture);
  std::vector<gguf::TensorSpec> specs;
  std::vector<std::string> notes;
  for (const auto& t : model.tensors) {
    gguf::TensorSpec spec = internal::SpecOf(t, internal::StorageFormat(t, options.float_format));
    MIXQ_ASSIGN_OR_RETURN(quantize::TypeChoice choice,
                          quantize::ChooseType(internal::InfoOf(spec), rules, /*tied_embeddings=*/false));
    if (choice.format->needs_imatrix) {
      return Status::NotSupported("tensor '" + t.name + "': type " + std::string(choice.format->name) +
                                  " needs an importance matrix, and diffusion models are converted without one");
    }
    if (!choice.note.empty()) notes.push_back(choice.note);
    spec.format = choice.format;
    specs.push_back(std::move(spec));
  }
  MIXQ_ASSIGN_OR_RETURN(ConvertPlan plan,
                        quantize::PlanOutput(std::move(specs), [&](const auto&, std::optional<uint32_t> file_type) {
                          // convert.py always writes a file type; 1 (F16) for one that has no llama_ftype.
                          return internal::Metadata(model.architecture, file_type.value_or(1));
                        }));
  plan.notes = std::move(notes);
  return plan;
}

Result<quantize::QuantizeReport> Convert(const safetensors::Checkpoint& checkpoint, const Model& model,
                                         const std::string& output_path, const ConvertOptions& options) {
  return Convert(*CheckpointSource(checkpoint), model, output_path, options);
}

Result<quantize::QuantizeReport> Convert(const Source& source, const Model& model, const std::string& output_path,
                                         const ConvertOptions& options) {
  auto plan = PlanConversion(model, options);
  MIXQ_TRY(plan);
  if (options.on_note) {
    for (const auto& note : plan->notes) options.on_note(note);
  }
  std::vector<float> scratch;
  auto tensor_bytes = [&](size_t i, std::vector<uint8_t>* encoded) -> Result<std::span<const uint8_t>> {
    const ModelTensor& t = model.tensors[i];
    const gguf::TensorSpec& spec = plan->specs[i];
    const auto& dtype = *t.source->dtype;
    auto src = source.Data(*t.source);
    auto context = [&](const Status& s) { return s.WithContext("tensor '" + t.source->name + "'"); };
    if (spec.format->name == dtype.name) {
      // Same storage: the bytes go straight from the mapping to the file.
      if (auto bad = safetensors::FindNonFinite(dtype, src)) {
        return context(Status::Corruption("weight " + std::to_string(*bad) + " is NaN or infinite"));
      }
      return src;
    }
    const size_t n_bytes = plan->report.tensors[i].n_bytes;
    // Growing in place would hold the old and the new buffer at once.
    if (n_bytes > encoded->capacity()) std::vector<uint8_t>().swap(*encoded);
    encoded->resize(n_bytes);
    MIXQ_TRY(context(internal::EncodeRows(dtype, src, t.source->n_elems / spec.ne[0], spec.ne[0], *spec.format,
                                          options.method, options.n_threads, &scratch, encoded->data(),
                                          [&](uint64_t b, uint64_t e) { source.ReleaseData(*t.source, b, e); })));
    return std::span<const uint8_t>(*encoded);
  };
  MIXQ_TRY(quantize::WriteOutput(*plan, output_path, tensor_bytes, [&](size_t i) {
    source.ReleaseData(*model.tensors[i].source);
    if (options.on_progress) options.on_progress(i + 1, model.tensors.size(), model.tensors[i].name);
  }));
  return plan->report;
}

Status ApplyPlan(const plan::Plan& plan, const Model& model, quantize::TypeRules* rules) {
  std::vector<gguf::TensorInfo> tensors;
  for (const auto& t : model.tensors) {
    tensors.push_back(internal::InfoOf(internal::SpecOf(t, internal::StorageFormat(t, nullptr))));
  }
  MIXQ_ASSIGN_OR_RETURN(auto types, quantize::PlanTypes(plan, tensors, quantize::ProfileFor(model.architecture)));
  rules->exact.insert(types.begin(), types.end());
  return Status::Ok();
}

}  // namespace mixq::diffusion
