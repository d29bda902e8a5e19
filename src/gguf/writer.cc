// GGUF v3 writer: header, metadata and tensor infos first, then tensor data
// streamed in declaration order, each padded to kWriteAlignment
// (ggml-formats.md §1.6). The alignment key is never written: ggml's own
// writer ignores it, and a file must pad with the alignment it declares.
#include <cstring>
#include <unordered_set>

#include "gguf/gguf.h"

namespace mixq::gguf {
namespace {

class Encoder {
 public:
  template <typename T>
  void Put(T v) {
    PutBytes(&v, sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    PutBytes(s.data(), s.size());
  }
  // resize + memcpy rather than insert: GCC 12 warns falsely on small inserts.
  void PutBytes(const void* p, size_t n) {
    size_t at = bytes_.size();
    bytes_.resize(at + n);
    if (n > 0) std::memcpy(bytes_.data() + at, p, n);
  }
  void PutValue(const Value& v) {
    switch (v.type) {
      case ValueType::kUint8:
        Put<uint8_t>(static_cast<uint8_t>(v.u64));
        break;
      case ValueType::kInt8:
        Put<int8_t>(static_cast<int8_t>(v.i64));
        break;
      case ValueType::kUint16:
        Put<uint16_t>(static_cast<uint16_t>(v.u64));
        break;
      case ValueType::kInt16:
        Put<int16_t>(static_cast<int16_t>(v.i64));
        break;
      case ValueType::kUint32:
        Put<uint32_t>(static_cast<uint32_t>(v.u64));
        break;
      case ValueType::kInt32:
        Put<int32_t>(static_cast<int32_t>(v.i64));
        break;
      case ValueType::kFloat32:
        Put<float>(static_cast<float>(v.f64));
        break;
      case ValueType::kBool:
        Put<uint8_t>(v.u64 != 0);
        break;
      case ValueType::kString:
        PutString(v.str);
        break;
      case ValueType::kUint64:
        Put<uint64_t>(v.u64);
        break;
      case ValueType::kInt64:
        Put<int64_t>(v.i64);
        break;
      case ValueType::kFloat64:
        Put<double>(v.f64);
        break;
      case ValueType::kArray:
        Put<uint32_t>(static_cast<uint32_t>(v.array_type));
        Put<uint64_t>(v.array.size());
        for (const auto& e : v.array) PutValue(e);
        break;
    }
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

Status CheckArrayTypes(const std::string& key, const Value& v) {
  if (v.type != ValueType::kArray) return Status::Ok();
  for (const auto& e : v.array) {
    if (e.type != v.array_type) {
      return Status::InvalidArgument("metadata key '" + key + "': array element of type " +
                                     std::string(ValueTypeName(e.type)) + " in an array of " +
                                     std::string(ValueTypeName(v.array_type)));
    }
    MIXQ_TRY(CheckArrayTypes(key, e));
  }
  return Status::Ok();
}

// Encodes everything before the data section, padded to the alignment.
Result<std::vector<uint8_t>> EncodeHeader(const std::vector<KeyValue>& metadata, const std::vector<TensorSpec>& tensors,
                                          std::vector<uint64_t>* sizes) {
  Encoder enc;
  enc.Put<uint32_t>(0x46554747);  // "GGUF"
  enc.Put<uint32_t>(3);
  enc.Put<int64_t>(static_cast<int64_t>(tensors.size()));
  int64_t n_kv = 0;
  for (const auto& kv : metadata) n_kv += kv.key != "general.alignment";
  enc.Put<int64_t>(n_kv);
  std::unordered_set<std::string> keys;
  for (const auto& kv : metadata) {
    if (kv.key.empty() || !keys.insert(kv.key).second) {
      return Status::InvalidArgument("empty or duplicate metadata key '" + kv.key + "'");
    }
    if (kv.key == "general.alignment") continue;
    MIXQ_TRY(CheckArrayTypes(kv.key, kv.value));
    enc.PutString(kv.key);
    enc.Put<uint32_t>(static_cast<uint32_t>(kv.value.type));
    enc.PutValue(kv.value);
  }
  std::unordered_set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name.size() > 63 || !names.insert(t.name).second) {
      return Status::InvalidArgument("tensor name '" + t.name + "' is empty, longer than 63 bytes or duplicate");
    }
    if (t.n_dims < 1 || t.n_dims > 4) return Status::InvalidArgument("tensor '" + t.name + "' needs 1..4 dims");
    auto n_bytes = TensorDataBytes(t);
    MIXQ_TRY(n_bytes);
    enc.PutString(t.name);
    enc.Put<uint32_t>(t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) enc.Put<int64_t>(t.ne[d]);
    enc.Put<uint32_t>(t.format->ggml_id);
    enc.Put<uint64_t>(offset);
    offset += PaddedBytes(*n_bytes);
    if (sizes != nullptr) sizes->push_back(*n_bytes);
  }
  enc.bytes().resize(PaddedBytes(enc.bytes().size()), 0);
  return std::move(enc.bytes());
}

}  // namespace

Result<uint64_t> TensorDataBytes(const TensorSpec& t) {
  if (t.format == nullptr || t.format->removed()) {
    return Status::InvalidArgument("tensor '" + t.name + "' has no valid type");
  }
  uint64_t n_rows = 1;
  for (int d = 1; d < 4; ++d) {
    if (t.ne[d] < 0) return Status::InvalidArgument("tensor '" + t.name + "' has a negative dimension");
    n_rows *= static_cast<uint64_t>(t.ne[d]);
  }
  auto row = formats::RowBytes(*t.format, t.ne[0]);
  if (!row) return row.error().WithContext("tensor '" + t.name + "'");
  return n_rows * static_cast<uint64_t>(*row);
}

Result<uint64_t> GgufWriter::HeaderBytes(const std::vector<KeyValue>& metadata,
                                         const std::vector<TensorSpec>& tensors) {
  auto header = EncodeHeader(metadata, tensors, nullptr);
  MIXQ_TRY(header);
  return header->size();
}

Result<uint64_t> GgufWriter::FileSize(const std::vector<KeyValue>& metadata, const std::vector<TensorSpec>& tensors) {
  std::vector<uint64_t> sizes;
  auto header = EncodeHeader(metadata, tensors, &sizes);
  MIXQ_TRY(header);
  uint64_t total = header->size();
  for (uint64_t s : sizes) total += PaddedBytes(s);
  return total;
}

Result<GgufWriter> GgufWriter::Begin(const std::string& path, const std::vector<KeyValue>& metadata,
                                     const std::vector<TensorSpec>& tensors) {
  std::vector<uint64_t> sizes;
  auto header = EncodeHeader(metadata, tensors, &sizes);
  MIXQ_TRY(header);
  auto file = AtomicFile::Create(path);
  MIXQ_TRY(file);
  GgufWriter writer(std::move(file).value());
  writer.sizes_ = std::move(sizes);
  MIXQ_TRY(writer.file_.Write(*header));
  return writer;
}

Status GgufWriter::WriteTensor(std::span<const uint8_t> bytes) {
  if (next_tensor_ >= sizes_.size()) return Status::Internal("more tensors written than declared");
  if (bytes.size() != sizes_[next_tensor_]) {
    return Status::Internal("tensor " + std::to_string(next_tensor_) + " has " + std::to_string(bytes.size()) +
                            " bytes, declared " + std::to_string(sizes_[next_tensor_]));
  }
  MIXQ_TRY(file_.Write(bytes));
  MIXQ_TRY(file_.WriteZeros(PaddedBytes(bytes.size()) - bytes.size()));
  ++next_tensor_;
  return Status::Ok();
}

Status GgufWriter::Finish() {
  if (next_tensor_ != sizes_.size()) {
    return Status::Internal("only " + std::to_string(next_tensor_) + " of " + std::to_string(sizes_.size()) +
                            " tensors were written");
  }
  return file_.Commit();
}

}  // namespace mixq::gguf
