// GGUF reader: parses and validates the whole container before anything is
// trusted (ggml-formats.md §1). Limits follow ggml's so that we accept exactly
// what llama.cpp accepts.
#include <bit>
#include <limits>
#include <unordered_set>

#include "base/byte_reader.h"
#include "gguf/gguf.h"

namespace mixq::gguf {
namespace {

constexpr uint64_t kMaxStringBytes = 1ull << 30;
constexpr uint64_t kMaxArrayElems = 1ull << 30;
constexpr uint32_t kMaxNameBytes = 63;
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayNesting = 8;

Result<std::string> ReadString(ByteReader& in) {
  uint64_t offset = in.offset();
  auto len = in.Read<uint64_t>();
  MIXQ_TRY(len);
  if (*len > kMaxStringBytes || *len > in.remaining()) {
    return Status::Corruption("string length " + std::to_string(*len) + " exceeds the file (offset " +
                              std::to_string(offset) + ")");
  }
  std::string out(*len, '\0');
  MIXQ_TRY(in.ReadInto(out.data(), *len));
  return out;
}

// Minimal encoded size of one element, so an element count can be checked
// against the bytes left before anything is allocated.
uint64_t MinEncodedBytes(ValueType type) {
  switch (type) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool:
      return 1;
    case ValueType::kUint16:
    case ValueType::kInt16:
      return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32:
      return 4;
    case ValueType::kString:
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64:
      return 8;
    case ValueType::kArray:
      return 12;
  }
  return 1;
}

Result<Value> ReadValue(ByteReader& in, ValueType type, int depth);

template <typename T>
Status ReadScalar(ByteReader& in, Value& v) {
  auto x = in.Read<T>();
  MIXQ_TRY(x);
  if constexpr (std::is_floating_point_v<T>) {
    v.f64 = *x;
  } else if constexpr (std::is_signed_v<T>) {
    v.i64 = *x;
  } else {
    v.u64 = *x;
  }
  return Status::Ok();
}

Status ReadArray(ByteReader& in, Value& v, int depth) {
  uint64_t offset = in.offset();
  auto elem_type = in.Read<uint32_t>();
  MIXQ_TRY(elem_type);
  if (*elem_type > static_cast<uint32_t>(ValueType::kFloat64)) {
    return Status::Corruption("unknown array element type " + std::to_string(*elem_type) + " (offset " +
                              std::to_string(offset) + ")");
  }
  if (depth >= kMaxArrayNesting) {
    return Status::Corruption("arrays nested too deeply (offset " + std::to_string(offset) + ")");
  }
  auto count = in.Read<uint64_t>();
  MIXQ_TRY(count);
  v.array_type = static_cast<ValueType>(*elem_type);
  if (*count > kMaxArrayElems || *count > in.remaining() / MinEncodedBytes(v.array_type)) {
    return Status::Corruption("array of " + std::to_string(*count) + " elements exceeds the file (offset " +
                              std::to_string(offset) + ")");
  }
  v.array.reserve(*count);
  for (uint64_t i = 0; i < *count; ++i) {
    auto elem = ReadValue(in, v.array_type, depth + 1);
    MIXQ_TRY(elem);
    v.array.push_back(std::move(elem).value());
  }
  return Status::Ok();
}

Result<Value> ReadValue(ByteReader& in, ValueType type, int depth) {
  Value v;
  v.type = type;
  Status s;
  switch (type) {
    case ValueType::kUint8:
      s = ReadScalar<uint8_t>(in, v);
      break;
    case ValueType::kInt8:
      s = ReadScalar<int8_t>(in, v);
      break;
    case ValueType::kUint16:
      s = ReadScalar<uint16_t>(in, v);
      break;
    case ValueType::kInt16:
      s = ReadScalar<int16_t>(in, v);
      break;
    case ValueType::kUint32:
      s = ReadScalar<uint32_t>(in, v);
      break;
    case ValueType::kInt32:
      s = ReadScalar<int32_t>(in, v);
      break;
    case ValueType::kFloat32:
      s = ReadScalar<float>(in, v);
      break;
    case ValueType::kBool:
      s = ReadScalar<uint8_t>(in, v);
      v.u64 = v.u64 != 0;
      break;
    case ValueType::kUint64:
      s = ReadScalar<uint64_t>(in, v);
      break;
    case ValueType::kInt64:
      s = ReadScalar<int64_t>(in, v);
      break;
    case ValueType::kFloat64:
      s = ReadScalar<double>(in, v);
      break;
    case ValueType::kString: {
      auto str = ReadString(in);
      MIXQ_TRY(str);
      v.str = std::move(str).value();
      break;
    }
    case ValueType::kArray:
      s = ReadArray(in, v, depth);
      break;
  }
  MIXQ_TRY(s);
  return v;
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

Result<TensorInfo> ReadTensorInfo(ByteReader& in) {
  uint64_t offset = in.offset();
  TensorInfo t;
  auto name = ReadString(in);
  MIXQ_TRY(name);
  t.name = std::move(name).value();
  auto where = [&] { return " (tensor '" + t.name + "', offset " + std::to_string(offset) + ")"; };
  if (t.name.empty() || t.name.size() > kMaxNameBytes) {
    return Status::Corruption("tensor name must have 1.." + std::to_string(kMaxNameBytes) + " bytes" + where());
  }
  auto n_dims = in.Read<uint32_t>();
  MIXQ_TRY(n_dims);
  if (*n_dims < 1 || *n_dims > kMaxDims) {
    return Status::Corruption("tensor has " + std::to_string(*n_dims) + " dimensions, expected 1..4" + where());
  }
  t.n_dims = *n_dims;
  uint64_t n_elems = 1;
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    auto ne = in.Read<int64_t>();
    MIXQ_TRY(ne);
    if (*ne < 0 || MulOverflows(n_elems, static_cast<uint64_t>(*ne), &n_elems) ||
        n_elems > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Status::Corruption("tensor shape is negative or too large" + where());
    }
    t.ne[d] = *ne;
  }
  auto type = in.Read<uint32_t>();
  MIXQ_TRY(type);
  t.type_id = *type;
  t.format = formats::FindFormat(t.type_id);
  if (t.format == nullptr || t.format->removed()) {
    return Status::Corruption("unknown ggml type id " + std::to_string(t.type_id) + where());
  }
  if (t.ne[0] % t.format->block_elems != 0) {
    return Status::Corruption("row length " + std::to_string(t.ne[0]) + " is not a multiple of " +
                              std::string(t.format->name) + "'s block of " + std::to_string(t.format->block_elems) +
                              where());
  }
  // Readers size a row and then multiply by the rows; both must fit 64 bits
  // even when another dimension is 0.
  if (!formats::RowFits(*t.format, t.ne[0])) return Status::Corruption("tensor row byte size overflows" + where());
  uint64_t n_blocks = n_elems / static_cast<uint64_t>(t.format->block_elems);
  if (MulOverflows(n_blocks, static_cast<uint64_t>(t.format->block_bytes), &t.n_bytes)) {
    return Status::Corruption("tensor byte size overflows" + where());
  }
  auto data_offset = in.Read<uint64_t>();
  MIXQ_TRY(data_offset);
  t.offset = *data_offset;
  return t;
}

uint64_t RoundUp(uint64_t x, uint64_t align) { return (x + align - 1) / align * align; }

}  // namespace

Result<GgufFile> GgufFile::Open(const std::string& path) {
  auto mapping = MappedFile::Open(path);
  MIXQ_TRY(mapping);
  GgufFile file;
  file.mapping_.emplace(std::move(mapping).value());
  file.bytes_ = file.mapping_->bytes();
  file.path_ = path;
  Status s = file.ParseAll();
  if (!s.ok()) return s.WithContext("invalid GGUF '" + path + "'");
  return file;
}

Result<GgufFile> GgufFile::Parse(std::span<const uint8_t> bytes, std::string name) {
  GgufFile file;
  file.bytes_ = bytes;
  file.path_ = std::move(name);
  Status s = file.ParseAll();
  if (!s.ok()) return s.WithContext("invalid GGUF '" + file.path_ + "'");
  return file;
}

Status GgufFile::ParseAll() {
  ByteReader in(bytes_);
  char magic[4] = {};
  if (!in.ReadInto(magic, 4).ok() || std::string_view(magic, 4) != "GGUF") {
    return Status::Corruption("not a GGUF file (bad magic)");
  }
  auto version = in.Read<uint32_t>();
  MIXQ_TRY(version);
  if (*version != 2 && *version != 3) {
    return Status::NotSupported("GGUF version " + std::to_string(*version) + " is not supported (only 2 and 3)");
  }
  version_ = *version;
  auto n_tensors = in.Read<int64_t>();
  MIXQ_TRY(n_tensors);
  auto n_kv = in.Read<int64_t>();
  MIXQ_TRY(n_kv);
  // Each KV takes at least 13 bytes and each tensor info at least 24: bound the counts by the file size.
  if (*n_tensors < 0 || *n_kv < 0 || static_cast<uint64_t>(*n_kv) > in.remaining() / 13 ||
      static_cast<uint64_t>(*n_tensors) > in.remaining() / 24) {
    return Status::Corruption("tensor count " + std::to_string(*n_tensors) + " or key count " + std::to_string(*n_kv) +
                              " does not fit in the file");
  }

  std::unordered_set<std::string> keys;
  metadata_.reserve(*n_kv);
  for (int64_t i = 0; i < *n_kv; ++i) {
    uint64_t offset = in.offset();
    auto key = ReadString(in);
    MIXQ_TRY(key);
    auto type = in.Read<uint32_t>();
    MIXQ_TRY(type);
    if (key->empty() || !keys.insert(*key).second) {
      return Status::Corruption("empty or duplicate metadata key '" + *key + "' (offset " + std::to_string(offset) +
                                ")");
    }
    if (*type > static_cast<uint32_t>(ValueType::kFloat64)) {
      return Status::Corruption("unknown metadata value type " + std::to_string(*type) + " (key '" + *key + "')");
    }
    auto value = ReadValue(in, static_cast<ValueType>(*type), 0);
    if (!value) return value.error().WithContext("metadata key '" + *key + "'");
    metadata_.push_back({std::move(key).value(), std::move(value).value()});
  }

  if (const Value* align = Find("general.alignment")) {
    if (align->type != ValueType::kUint32 || align->u64 == 0 || !std::has_single_bit(align->u64)) {
      return Status::Corruption("general.alignment must be a u32 power of two");
    }
    alignment_ = static_cast<uint32_t>(align->u64);
  }

  std::unordered_set<std::string> names;
  tensors_.reserve(*n_tensors);
  for (int64_t i = 0; i < *n_tensors; ++i) {
    auto info = ReadTensorInfo(in);
    MIXQ_TRY(info);
    if (!names.insert(info->name).second) return Status::Corruption("duplicate tensor name '" + info->name + "'");
    tensors_.push_back(std::move(info).value());
  }

  data_offset_ = RoundUp(in.offset(), alignment_);
  const uint64_t size = bytes_.size();
  uint64_t expected = 0;
  for (const auto& t : tensors_) {
    if (t.offset != expected) {
      return Status::Corruption("tensor '" + t.name + "' has data offset " + std::to_string(t.offset) + ", expected " +
                                std::to_string(expected) + " (offsets must be dense and aligned)");
    }
    // Compared by subtraction: a lying size must not wrap the end around 2^64.
    if (data_offset_ > size || t.offset > size - data_offset_ || t.n_bytes > size - data_offset_ - t.offset) {
      return Status::Corruption("tensor '" + t.name + "' has " + std::to_string(t.n_bytes) + " bytes of data at " +
                                std::to_string(data_offset_) + " + " + std::to_string(t.offset) +
                                ", past the end of the file (" + std::to_string(size) +
                                " bytes); the file is truncated or corrupt");
    }
    expected = RoundUp(t.offset + t.n_bytes, alignment_);
  }
  finite_ = std::make_unique<std::atomic<bool>[]>(tensors_.size());
  return Status::Ok();
}

bool GgufFile::KnownFinite(const TensorInfo& tensor) const {
  return finite_[static_cast<size_t>(&tensor - tensors_.data())].load(std::memory_order_acquire);
}

void GgufFile::MarkFinite(const TensorInfo& tensor) const {
  finite_[static_cast<size_t>(&tensor - tensors_.data())].store(true, std::memory_order_release);
}

const Value* GgufFile::Find(std::string_view key) const {
  for (const auto& kv : metadata_) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

std::optional<std::string> GgufFile::GetString(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || v->type != ValueType::kString) return std::nullopt;
  return v->str;
}

std::optional<int64_t> GgufFile::GetInt(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return std::nullopt;
  switch (v->type) {
    case ValueType::kUint8:
    case ValueType::kUint16:
    case ValueType::kUint32:
    case ValueType::kUint64:
    case ValueType::kBool:
      return static_cast<int64_t>(v->u64);
    case ValueType::kInt8:
    case ValueType::kInt16:
    case ValueType::kInt32:
    case ValueType::kInt64:
      return v->i64;
    default:
      return std::nullopt;
  }
}

std::optional<double> GgufFile::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || (v->type != ValueType::kFloat32 && v->type != ValueType::kFloat64)) return std::nullopt;
  return v->f64;
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::span<const uint8_t> GgufFile::TensorData(const TensorInfo& info) const {
  return bytes_.subspan(data_offset_ + info.offset, info.n_bytes);
}

void GgufFile::ReleasePages(std::span<const uint8_t> bytes) const {
  if (mapping_) DropResidentPages(bytes);
}

}  // namespace mixq::gguf
