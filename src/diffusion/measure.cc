// Measure: weight-space cost of each block (or tensor) at each candidate type,
// in the planner's measurement model (src/plan/plan.h).
#include <algorithm>
#include <cctype>
#include <map>
#include <numeric>
#include <tuple>

#include "diffusion/convert_internal.h"
#include "diffusion/diffusion.h"

namespace mixq::diffusion {
namespace {

// REQUIRES: the spec's rows fit its type (RowFits).
uint64_t TensorBytes(const gguf::TensorSpec& spec) { return gguf::TensorDataBytes(spec).value(); }
uint64_t Aligned(uint64_t n_bytes) { return gguf::PaddedBytes(n_bytes); }

// Units in the seed table's order: double blocks, then single blocks, by
// index; anything else by name.
std::tuple<int, int64_t, std::string> UnitOrder(const std::string& unit) {
  for (int kind = 0; kind < 2; ++kind) {
    const std::string prefix = kind == 0 ? "double_blocks." : "single_blocks.";
    if (unit.starts_with(prefix)) {
      std::string rest = unit.substr(prefix.size());
      size_t digits = 0;
      while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits]))) ++digits;
      if (digits > 0 && digits <= 18) return {kind, std::stoll(rest.substr(0, digits)), rest};
    }
  }
  return {2, 0, unit};
}

// Sum of squared errors of one tensor at each format, from `max_rows` evenly
// spaced rows (all when 0), scaled to the whole tensor.
Result<std::vector<double>> TensorErrors(const Source& source, const ModelTensor& t, int64_t n_per_row,
                                         const std::vector<const formats::Format*>& formats_,
                                         const MeasureOptions& options) {
  const auto& dtype = *t.source->dtype;
  const int64_t n_rows = t.source->n_elems / n_per_row;
  const int64_t n_sampled = options.max_rows > 0 ? std::min(options.max_rows, n_rows) : n_rows;
  auto src = source.Data(*t.source);
  const uint64_t src_row_bytes = static_cast<uint64_t>(n_per_row) * dtype.n_bytes;
  std::vector<double> errors(formats_.size(), 0.0);
  std::vector<float> original, decoded;
  std::vector<uint8_t> encoded;
  const int64_t rows_per_chunk = std::max<int64_t>(1, internal::kChunkElems / n_per_row);
  for (int64_t s0 = 0; s0 < n_sampled; s0 += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, n_sampled - s0);
    original.resize(static_cast<size_t>(rows * n_per_row));
    for (int64_t k = 0; k < rows; ++k) {
      const int64_t row = (s0 + k) * n_rows / n_sampled;
      MIXQ_TRY(safetensors::DecodeToF32(dtype, src.subspan(row * src_row_bytes, src_row_bytes),
                                        original.data() + k * n_per_row));
    }
    for (size_t f = 0; f < formats_.size(); ++f) {
      const formats::Format& format = *formats_[f];
      if (format.name == dtype.name) continue;             // stored as is: no error
      if (!formats::RowFits(format, n_per_row)) continue;  // not offered
      auto row_bytes = formats::RowBytes(format, n_per_row);
      MIXQ_TRY(row_bytes);
      encoded.resize(static_cast<size_t>(*row_bytes * rows));
      decoded.resize(original.size());
      Status s = formats::QuantizeRows(format, options.method, original.data(), encoded.data(), rows, n_per_row,
                                       nullptr, options.n_threads);
      MIXQ_TRY(s.WithContext("tensor '" + t.source->name + "'"));
      MIXQ_TRY(formats::DequantizeRows(format, encoded.data(), decoded.data(), rows, n_per_row, options.n_threads));
      double sum = 0;
      for (size_t i = 0; i < original.size(); ++i) {
        const double d = static_cast<double>(decoded[i]) - static_cast<double>(original[i]);
        sum += d * d;
      }
      errors[f] += sum;
    }
  }
  const double scale = n_sampled > 0 ? static_cast<double>(n_rows) / static_cast<double>(n_sampled) : 0.0;
  for (double& e : errors) e *= scale;
  return errors;
}

// Everything of the file before the tensor data: header, KVs, tensor infos
// and the padding to the data section (the same for any tensor types).
Result<int64_t> HeaderBytes(const Model& model, const std::vector<gguf::TensorSpec>& specs) {
  MIXQ_ASSIGN_OR_RETURN(const uint64_t n_bytes,
                        gguf::GgufWriter::HeaderBytes(internal::Metadata(model.architecture, 0), specs));
  return static_cast<int64_t>(n_bytes);
}

}  // namespace

Result<plan::Measurement> FitMeasurement(const plan::Measurement& measurement, const Model& model) {
  const quantize::ArchProfile& profile = quantize::ProfileFor(model.architecture);
  std::vector<gguf::TensorSpec> specs;
  std::vector<bool> quantizable;
  for (const auto& t : model.tensors) {
    specs.push_back(internal::SpecOf(t, internal::StorageFormat(t, nullptr)));
    quantizable.push_back(quantize::IsQuantizable(internal::InfoOf(specs.back()), profile));
  }
  plan::Measurement m;
  m.model = measurement.model;
  m.cost_model = measurement.cost_model;
  std::vector<bool> claimed(model.tensors.size(), false);
  for (const auto& in : measurement.units) {
    plan::Unit unit;
    unit.name = in.name;
    std::vector<size_t> members;
    for (size_t i = 0; i < model.tensors.size(); ++i) {
      const std::string& name = model.tensors[i].name;
      const bool named = in.tensors.empty() ? name.starts_with(in.name + ".")
                                            : std::find(in.tensors.begin(), in.tensors.end(), name) != in.tensors.end();
      if (!named || !quantizable[i]) continue;
      if (claimed[i]) return Status::InvalidArgument("tensor '" + name + "' belongs to two measured units");
      claimed[i] = true;
      members.push_back(i);
      unit.tensors.push_back(name);
      unit.n_weights += model.tensors[i].source->n_elems;
    }
    if (members.empty()) {
      return Status::Corruption("measured unit '" + in.name +
                                "' names no quantizable tensor of the model; was it measured on another model?");
    }
    for (const auto& option : in.options) {
      const formats::Format* f = formats::FindFormatByName(option.type);
      if (f == nullptr || !f->can_encode()) continue;
      int64_t n_bytes = 0;
      bool fits = true;
      for (size_t i : members) {
        gguf::TensorSpec as = specs[i];
        as.format = f;
        fits = fits && formats::RowFits(*f, as.ne[0]);
        if (fits) n_bytes += static_cast<int64_t>(Aligned(TensorBytes(as)));
      }
      if (fits) unit.options.push_back({std::string(f->name), n_bytes, option.cost});
    }
    if (unit.options.empty()) {
      return Status::InvalidArgument("measured unit '" + in.name + "' has no option mixq can write for its tensors");
    }
    m.units.push_back(std::move(unit));
  }
  auto header = HeaderBytes(model, specs);
  MIXQ_TRY(header);
  m.fixed_n_bytes = *header;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    if (claimed[i]) continue;
    const uint64_t n_bytes = TensorBytes(specs[i]);
    m.fixed_n_bytes += static_cast<int64_t>(Aligned(n_bytes));
    m.fixed_tensor_n_bytes += static_cast<int64_t>(n_bytes);
    m.fixed_n_weights += model.tensors[i].source->n_elems;
  }
  MIXQ_TRY(plan::Validate(m));
  return m;
}

Result<plan::Measurement> FitToFluxDev(const plan::Measurement& table) {
  const auto entries = FluxLayoutEntries(FluxDims{}, *safetensors::FindDType("BF16"));
  auto model = InspectTensors(entries, "the Flux.1-dev layout");
  MIXQ_TRY(model);
  return FitMeasurement(table, *model);
}

Result<plan::Measurement> Measure(const safetensors::Checkpoint& checkpoint, const Model& model,
                                  const MeasureOptions& options) {
  return Measure(*CheckpointSource(checkpoint), model, options);
}

Result<plan::Measurement> Measure(const Source& source, const Model& model, const MeasureOptions& options) {
  std::vector<const formats::Format*> candidates = options.candidates;
  if (candidates.empty()) {
    // The quantized types ComfyUI-GGUF dequantizes on the GPU (comfyui-gguf.md §3.3).
    for (const formats::Format& f : formats::AllFormats()) {
      if (f.comfyui_gpu && f.can_encode()) candidates.push_back(&f);
    }
  }
  const quantize::ArchProfile& profile = quantize::ProfileFor(model.architecture);

  // Storage as Convert writes it without a plan; the unit tensors' types vary.
  std::vector<gguf::TensorSpec> specs;
  std::map<std::string, std::vector<size_t>> units;
  plan::Measurement m;
  m.model = source.path();
  m.cost_model =
      "weight-space squared error: sum over the unit's weights of (w - dequant(quant(w)))^2, importance-free";
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const ModelTensor& t = model.tensors[i];
    specs.push_back(internal::SpecOf(t, internal::StorageFormat(t, nullptr)));
    const uint64_t n_bytes = TensorBytes(specs.back());
    if (quantize::IsQuantizable(internal::InfoOf(specs.back()), profile)) {
      const std::string block = BlockOf(t.name);
      units[options.group_blocks && !block.empty() ? block : t.name].push_back(i);
    } else {
      m.fixed_n_bytes += static_cast<int64_t>(Aligned(n_bytes));
      m.fixed_tensor_n_bytes += static_cast<int64_t>(n_bytes);
      m.fixed_n_weights += t.source->n_elems;
    }
  }
  if (units.empty()) return Status::InvalidArgument("the model has no quantizable tensors to measure");
  auto header = HeaderBytes(model, specs);
  MIXQ_TRY(header);
  m.fixed_n_bytes += *header;

  std::vector<std::string> order;
  for (const auto& [name, members] : units) order.push_back(name);
  std::sort(order.begin(), order.end(),
            [](const std::string& a, const std::string& b) { return UnitOrder(a) < UnitOrder(b); });

  const size_t n_tensors = std::accumulate(units.begin(), units.end(), size_t{0},
                                           [](size_t n, const auto& u) { return n + u.second.size(); });
  size_t done = 0;
  for (const std::string& name : order) {
    plan::Unit unit;
    unit.name = name;
    // Option 0 is the unquantized storage; candidates follow.
    std::vector<const formats::Format*> formats_ = {specs[units[name].front()].format};
    for (const formats::Format* c : candidates) {
      if (c != formats_.front()) formats_.push_back(c);
    }
    std::vector<double> cost(formats_.size(), 0.0);
    std::vector<int64_t> n_bytes(formats_.size(), 0);
    std::vector<bool> fits(formats_.size(), true);
    for (size_t i : units[name]) {
      const ModelTensor& t = model.tensors[i];
      const gguf::TensorSpec& spec = specs[i];
      unit.tensors.push_back(t.name);
      unit.n_weights += t.source->n_elems;
      for (size_t f = 0; f < formats_.size(); ++f) {
        fits[f] = fits[f] && formats::RowFits(*formats_[f], spec.ne[0]);
        if (fits[f]) {
          gguf::TensorSpec as = spec;
          as.format = formats_[f];
          n_bytes[f] += static_cast<int64_t>(Aligned(TensorBytes(as)));
        }
      }
      auto errors = TensorErrors(source, t, spec.ne[0], formats_, options);
      MIXQ_TRY(errors);
      for (size_t f = 0; f < formats_.size(); ++f) cost[f] += (*errors)[f];
      source.ReleaseData(*t.source);
      if (options.on_progress) options.on_progress(++done, n_tensors, t.name);
    }
    for (size_t f = 0; f < formats_.size(); ++f) {
      if (fits[f]) unit.options.push_back({std::string(formats_[f]->name), n_bytes[f], cost[f]});
    }
    m.units.push_back(std::move(unit));
  }
  MIXQ_TRY(plan::Validate(m));
  return m;
}

}  // namespace mixq::diffusion
