// Importance matrices in llama.cpp's two file formats (ggml-formats.md §3.2, §3.3).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/byte_reader.h"
#include "base/mapped_file.h"
#include "quantize/quantize.h"

namespace mixq::quantize {
namespace {

constexpr std::string_view kSumSuffix = ".in_sum2";
constexpr std::string_view kCountSuffix = ".counts";

// Sums of squared activations and token counts: finite and never negative (a
// negative importance weight turns the quantizers' weighted searches into NaN).
Status CheckValues(const std::string& name, const std::vector<float>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return Status::Corruption("imatrix entry '" + name + "' has a non-finite value at index " + std::to_string(i));
    }
    if (values[i] < 0) {
      return Status::Corruption("imatrix entry '" + name + "' has a negative value (" + std::to_string(values[i]) +
                                ") at index " + std::to_string(i) +
                                "; sums of squared activations and token counts are never negative");
    }
  }
  return Status::Ok();
}

// A mean squared activation of 1e20 is an activation of 1e10, far beyond any
// trained model; past it the importance-weighted sums of the block searches
// overflow float on weights of F16 range, and quantized weights come out
// non-finite. Such a file is corrupt, not extreme.
constexpr double kMaxMeanImportance = 1e20;

// Every importance the entry gives (sum / rounded count, as Importance reads
// it) within kMaxMeanImportance.
Status CheckMeans(const std::string& name, const ImatrixEntry& e) {
  const size_t per_count = e.in_sum2.size() / e.counts.size();
  for (size_t i = 0; i < e.in_sum2.size(); ++i) {
    const double count = std::round(e.counts[i / per_count]);
    if (count > 0 && e.in_sum2[i] / count > kMaxMeanImportance) {
      return Status::Corruption("imatrix entry '" + name + "' has a mean squared activation of " +
                                std::to_string(e.in_sum2[i] / count) + " at index " + std::to_string(i) +
                                ", beyond any model's (limit 1e20)");
    }
  }
  return Status::Ok();
}

Result<std::vector<float>> F32Tensor(const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  if (t.format->ggml_id != 0) return Status::Corruption("imatrix tensor '" + t.name + "' is not F32");
  auto bytes = file.TensorData(t);
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

Result<Imatrix> LoadGgufImatrix(const gguf::GgufFile& file) {
  Imatrix im;
  if (auto ds = file.Find("imatrix.datasets"); ds && ds->type == gguf::ValueType::kArray) {
    for (const auto& v : ds->array) im.datasets.push_back(v.str);
  }
  im.chunk_count = static_cast<uint32_t>(file.GetInt("imatrix.chunk_count").value_or(0));
  im.chunk_size = static_cast<uint32_t>(file.GetInt("imatrix.chunk_size").value_or(0));
  for (const auto& t : file.tensors()) {
    std::string_view name = t.name;
    if (!name.ends_with(kSumSuffix)) continue;
    std::string weight(name.substr(0, name.size() - kSumSuffix.size()));
    const gguf::TensorInfo* counts = file.FindTensor(weight + std::string(kCountSuffix));
    if (counts == nullptr) return Status::Corruption("imatrix entry '" + weight + "' has no counts tensor");
    ImatrixEntry e;
    auto sums = F32Tensor(file, t);
    MIXQ_TRY(sums);
    auto cnt = F32Tensor(file, *counts);
    MIXQ_TRY(cnt);
    e.in_sum2 = std::move(sums).value();
    e.counts = std::move(cnt).value();
    if (e.counts.empty() || e.in_sum2.size() % e.counts.size() != 0) {
      return Status::Corruption("imatrix entry '" + weight + "' has " + std::to_string(e.counts.size()) +
                                " counts for " + std::to_string(e.in_sum2.size()) + " values");
    }
    MIXQ_TRY(CheckValues(weight, e.in_sum2));
    MIXQ_TRY(CheckValues(weight, e.counts));
    MIXQ_TRY(CheckMeans(weight, e));
    im.entries.emplace(std::move(weight), std::move(e));
  }
  if (im.entries.empty()) return Status::Corruption("GGUF file holds no imatrix entries (*.in_sum2)");
  return im;
}

// Legacy values are mean·ncall; we keep sums/counts, so store them with count = ncall.
Result<Imatrix> LoadLegacyImatrix(std::span<const uint8_t> bytes) {
  ByteReader in(bytes);
  Imatrix im;
  auto n_entries = in.Read<int32_t>();
  MIXQ_TRY(n_entries);
  if (*n_entries < 1 || static_cast<uint64_t>(*n_entries) > in.remaining() / 16) {
    return Status::Corruption("not an imatrix file (entry count " + std::to_string(*n_entries) + ")");
  }
  for (int32_t i = 0; i < *n_entries; ++i) {
    auto len = in.Read<int32_t>();
    MIXQ_TRY(len);
    if (*len <= 0 || static_cast<uint64_t>(*len) > in.remaining()) {
      return Status::Corruption("imatrix entry name length " + std::to_string(*len) + " at offset " +
                                std::to_string(in.offset()));
    }
    std::string name(*len, '\0');
    MIXQ_TRY(in.ReadInto(name.data(), *len));
    auto ncall = in.Read<int32_t>();
    MIXQ_TRY(ncall);
    auto nval = in.Read<int32_t>();
    MIXQ_TRY(nval);
    if (*nval < 1 || static_cast<uint64_t>(*nval) > in.remaining() / sizeof(float)) {
      return Status::Corruption("imatrix entry '" + name + "' has an invalid value count " + std::to_string(*nval));
    }
    ImatrixEntry e;
    e.in_sum2.resize(*nval);
    MIXQ_TRY(in.ReadInto(e.in_sum2.data(), static_cast<uint64_t>(*nval) * sizeof(float)));
    e.counts = {*ncall > 0 ? static_cast<float>(*ncall) : 1.0f};
    MIXQ_TRY(CheckValues(name, e.in_sum2));
    MIXQ_TRY(CheckMeans(name, e));
    im.entries[name] = std::move(e);
  }
  if (in.remaining() >= 8) {
    auto chunks = in.Read<int32_t>();
    auto ds_len = in.Read<int32_t>();
    if (chunks && ds_len && *ds_len >= 0 && static_cast<uint64_t>(*ds_len) <= in.remaining()) {
      im.chunk_count = static_cast<uint32_t>(std::max(0, *chunks));
      std::string ds(*ds_len, '\0');
      if (in.ReadInto(ds.data(), *ds_len).ok()) im.datasets.push_back(ds);
    }
  }
  return im;
}

}  // namespace

Result<std::optional<std::vector<float>>> Imatrix::Importance(const std::string& tensor, int64_t n_per_row,
                                                              int64_t n_mat) const {
  auto it = entries.find(tensor);
  if (it == entries.end()) return std::optional<std::vector<float>>();
  const ImatrixEntry& e = it->second;
  const int64_t n_counts = static_cast<int64_t>(e.counts.size());
  // One count for all matrices is what legacy files (and llama-imatrix for
  // dense weights) hold.
  if (static_cast<int64_t>(e.in_sum2.size()) != n_per_row * n_mat || (n_counts != 1 && n_counts != n_mat)) {
    return Status::Corruption("imatrix entry '" + tensor + "' has " + std::to_string(e.in_sum2.size()) +
                              " values and " + std::to_string(n_counts) + " counts, the tensor has " +
                              std::to_string(n_mat) + " matrices with rows of " + std::to_string(n_per_row) +
                              "; was the imatrix made for another model?");
  }
  const size_t per_count = e.in_sum2.size() / static_cast<size_t>(n_counts);
  std::vector<float> mean(e.in_sum2.size(), 1.0f);
  for (size_t m = 0; m < e.counts.size(); ++m) {
    const float count = std::round(e.counts[m]);
    if (count <= 0) continue;
    for (size_t i = m * per_count; i < (m + 1) * per_count; ++i) mean[i] = e.in_sum2[i] / count;
  }
  return std::optional<std::vector<float>>(std::move(mean));
}

Result<std::string> CheckImatrixCoverage(const Imatrix& imatrix, std::span<const gguf::TensorInfo* const> tensors) {
  std::vector<std::string> missing;
  size_t n_counted = 0;
  for (const gguf::TensorInfo* t : tensors) {
    if (t->name == "token_embd.weight") continue;
    ++n_counted;
    auto importance = TensorImportance(&imatrix, *t);
    MIXQ_TRY(importance);
    if (!importance->has_value()) missing.push_back(t->name);
  }
  if (missing.empty()) return std::string();
  if (missing.size() == n_counted) {
    const std::string first = imatrix.entries.empty() ? "none" : "'" + imatrix.entries.begin()->first + "'";
    return Status::Corruption("the imatrix has no entry for any of the " + std::to_string(n_counted) +
                              " tensors to quantize (its first entry: " + first + "); was it made for another model?");
  }
  constexpr size_t kListed = 5;
  std::string note = "imatrix: no entry for " + std::to_string(missing.size()) + " of " + std::to_string(n_counted) +
                     " tensors to quantize, which get no importance weighting:";
  for (size_t i = 0; i < std::min(kListed, missing.size()); ++i) note += (i ? ", " : " ") + missing[i];
  if (missing.size() > kListed) note += " and " + std::to_string(missing.size() - kListed) + " more";
  return note;
}

Result<Imatrix> ParseImatrix(std::span<const uint8_t> bytes, const std::string& name) {
  Result<Imatrix> result = Status::Internal("unreachable");
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0) {
    auto file = gguf::GgufFile::Parse(bytes, name);
    if (!file) return file.error();
    result = LoadGgufImatrix(*file);
  } else {
    result = LoadLegacyImatrix(bytes);
  }
  if (!result) return result.error().WithContext("invalid imatrix '" + name + "'");
  return result;
}

Result<Imatrix> LoadImatrix(const std::string& path) {
  auto mapping = MappedFile::Open(path);
  MIXQ_TRY(mapping);
  return ParseImatrix(mapping->bytes(), path);
}

Status SaveImatrix(const Imatrix& imatrix, const std::string& path, const std::vector<gguf::KeyValue>& extra_metadata) {
  std::vector<gguf::KeyValue> kvs;
  gguf::SetValue(kvs, "general.type", gguf::Value::String("imatrix"));
  gguf::SetValue(kvs, "imatrix.datasets", gguf::Value::StringArray(imatrix.datasets));
  gguf::SetValue(kvs, "imatrix.chunk_count", gguf::Value::Uint32(imatrix.chunk_count));
  gguf::SetValue(kvs, "imatrix.chunk_size", gguf::Value::Uint32(imatrix.chunk_size));
  for (const auto& kv : extra_metadata) gguf::SetValue(kvs, kv.key, kv.value);
  const formats::Format* f32 = formats::FindFormat(0);
  std::vector<gguf::TensorSpec> specs;
  std::vector<const std::vector<float>*> data;
  for (const auto& [name, e] : imatrix.entries) {  // std::map: sorted by name, as llama-imatrix writes
    MIXQ_TRY(CheckValues(name, e.in_sum2));
    MIXQ_TRY(CheckValues(name, e.counts));
    int64_t n_mat = static_cast<int64_t>(e.counts.size());
    specs.push_back(
        {name + std::string(kSumSuffix), {static_cast<int64_t>(e.in_sum2.size()) / n_mat, n_mat, 1, 1}, 2, f32});
    data.push_back(&e.in_sum2);
    specs.push_back({name + std::string(kCountSuffix), {1, n_mat, 1, 1}, 2, f32});
    data.push_back(&e.counts);
  }
  auto writer = gguf::GgufWriter::Begin(path, kvs, specs);
  MIXQ_TRY(writer);
  for (const auto* d : data) {
    MIXQ_TRY(writer->WriteTensor({reinterpret_cast<const uint8_t*>(d->data()), d->size() * sizeof(float)}));
  }
  return writer->Finish();
}

}  // namespace mixq::quantize
