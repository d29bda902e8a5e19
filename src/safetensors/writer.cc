// SafetensorsWriter: the reference layout (comfyui-gguf.md §1, "Alignment").
#include <nlohmann/json.hpp>
#include <set>

#include "safetensors/safetensors.h"

namespace mixq::safetensors {
namespace {

// JSON strings must be UTF-8; rejecting here beats a header no reader accepts.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (extra < 0 || s.size() - i <= static_cast<size_t>(extra)) return false;
    uint32_t cp = extra == 0 ? c : c & (0x3F >> extra);
    for (int k = 1; k <= extra; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLength[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += 1 + extra;
  }
  return true;
}

Result<uint64_t> ByteSize(const TensorDecl& t) {
  if (t.dtype == nullptr) return Status::InvalidArgument("tensor '" + t.name + "' has no dtype");
  uint64_t n = t.dtype->n_bytes;
  for (int64_t dim : t.shape) {
    if (dim < 0) return Status::InvalidArgument("tensor '" + t.name + "' has a negative dimension");
    if (dim != 0 && n > static_cast<uint64_t>(INT64_MAX) / static_cast<uint64_t>(dim)) {
      return Status::InvalidArgument("tensor '" + t.name + "' is too large");
    }
    n *= static_cast<uint64_t>(dim);
  }
  return n;
}

}  // namespace

Result<std::string> HeaderJson(const std::vector<TensorDecl>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) {
      if (!IsValidUtf8(k) || !IsValidUtf8(v)) return Status::InvalidArgument("metadata '" + k + "' is not UTF-8");
      meta[k] = v;
    }
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || !IsValidUtf8(t.name)) {
      return Status::InvalidArgument("tensor name '" + t.name + "' cannot be written");
    }
    if (!names.insert(t.name).second) return Status::InvalidArgument("duplicate tensor name '" + t.name + "'");
    auto n_bytes = ByteSize(t);
    MIXQ_TRY(n_bytes);
    header[t.name] = {{"dtype", t.dtype->name}, {"shape", t.shape}, {"data_offsets", {offset, offset + *n_bytes}}};
    offset += *n_bytes;
  }
  return header.dump();
}

Result<SafetensorsWriter> SafetensorsWriter::Begin(const std::string& path, const std::vector<TensorDecl>& tensors,
                                                   const std::map<std::string, std::string>& metadata) {
  auto json = HeaderJson(tensors, metadata);
  MIXQ_TRY(json);
  json->append((8 - json->size() % 8) % 8, ' ');
  auto file = AtomicFile::Create(path);
  MIXQ_TRY(file);
  SafetensorsWriter writer(std::move(file).value());
  for (const auto& t : tensors) writer.sizes_.push_back(ByteSize(t).value());
  const uint64_t header_len = json->size();
  MIXQ_TRY(writer.file_.Write(&header_len, sizeof header_len));
  MIXQ_TRY(writer.file_.Write(json->data(), json->size()));
  return writer;
}

Status SafetensorsWriter::WriteTensor(std::span<const uint8_t> bytes) {
  if (next_tensor_ >= sizes_.size()) return Status::Internal("more tensors written than declared");
  if (bytes.size() != sizes_[next_tensor_]) {
    return Status::Internal("tensor " + std::to_string(next_tensor_) + " has " + std::to_string(bytes.size()) +
                            " bytes, declared " + std::to_string(sizes_[next_tensor_]));
  }
  ++next_tensor_;
  return file_.Write(bytes);
}

Status SafetensorsWriter::Finish() {
  if (next_tensor_ != sizes_.size()) {
    return Status::Internal(std::to_string(sizes_.size() - next_tensor_) + " declared tensors were not written");
  }
  return file_.Commit();
}

}  // namespace mixq::safetensors
