// gguf: reading and writing GGUF files (ggml-formats.md §1).
//
// GgufFile::Open maps a GGUF v2/v3 file read-only and validates everything
// before handing it out: header, every metadata value (nested arrays
// included), tensor infos (names, dims, known types, byte sizes without
// overflow), alignment, and that each tensor's data lies inside the file at the
// dense, aligned offset ggml expects. Tensor data are views into the mapping,
// valid only while the GgufFile lives. Const methods are thread-safe.
//
// GgufWriter writes GGUF v3 streaming: the caller declares metadata and tensor
// infos, then hands over each tensor's bytes in declaration order; nothing but
// the header is kept in memory. Output goes through AtomicFile, so the target
// path appears only after Finish() succeeds. Not thread-safe.
#ifndef MIXQ_GGUF_GGUF_H_
#define MIXQ_GGUF_GGUF_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/atomic_file.h"
#include "base/mapped_file.h"
#include "base/status.h"
#include "formats/formats.h"

namespace mixq::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
std::string_view ValueTypeName(ValueType type);

// One metadata value. Scalars of every integer width live in the int/uint
// fields (which one depends on the type), floats in `f64`, strings in `str`,
// array elements in `array` (each element carries its own type, so arrays of
// arrays are representable even though ggml rejects them).
struct Value {
  ValueType type = ValueType::kUint32;
  uint64_t u64 = 0;                          // kUint8..kUint64, kBool
  int64_t i64 = 0;                           // kInt8..kInt64
  double f64 = 0.0;                          // kFloat32, kFloat64
  std::string str;                           // kString
  ValueType array_type = ValueType::kUint8;  // element type when kArray
  std::vector<Value> array;

  static Value Uint32(uint32_t v);
  static Value Uint64(uint64_t v);
  static Value Int32(int32_t v);
  static Value Float32(float v);
  static Value String(std::string v);
  static Value StringArray(const std::vector<std::string>& v);

  bool operator==(const Value& other) const;
  // Human-readable rendering, arrays shortened to `max_elems` elements.
  std::string ToString(size_t max_elems = 8) const;
};

struct KeyValue {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  std::array<int64_t, 4> ne = {1, 1, 1, 1};  // ne[0] is the row length
  uint32_t type_id = 0;
  const formats::Format* format = nullptr;  // never null after validation
  uint64_t offset = 0;                      // relative to the data section
  uint64_t n_bytes = 0;

  int64_t n_elems() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  static Result<GgufFile> Open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). `bytes` must outlive the result.
  static Result<GgufFile> Parse(std::span<const uint8_t> bytes, std::string name = "<memory>");

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return bytes_.size(); }
  const std::string& path() const { return path_; }

  const std::vector<KeyValue>& metadata() const { return metadata_; }
  const Value* Find(std::string_view key) const;
  // Typed lookups; nullopt when absent or of another kind.
  std::optional<std::string> GetString(std::string_view key) const;
  std::optional<int64_t> GetInt(std::string_view key) const;   // any integer type
  std::optional<double> GetFloat(std::string_view key) const;  // f32 or f64

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;
  std::span<const uint8_t> TensorData(const TensorInfo& info) const;
  // Lets the kernel drop the resident pages that lie wholly inside `bytes`
  // (a part of this file's data) once the caller is done reading them, so
  // that a model read once (checked, copied to a device) does not stay in the
  // process's memory. The bytes stay readable: a later read faults them back
  // in from the file. Nothing happens for a Parse()d image (its memory is the
  // caller's). REQUIRES: `bytes` lies inside this file's data.
  void ReleasePages(std::span<const uint8_t> bytes) const;

  // XXH3-128 of the whole file (header, metadata, tensor data) in hex: the
  // identity of results computed from it. Computed on the first call (about
  // 0.1 s per GB once the file is in memory) and kept.
  const std::string& ContentHash() const;

  // Whether `tensor` (one of this file's) was already checked to hold only
  // finite values, so that the models, measurements and quantizations that
  // share this file decode it for that check once (quantize::CheckTensorFinite).
  bool KnownFinite(const TensorInfo& tensor) const;
  void MarkFinite(const TensorInfo& tensor) const;

 private:
  GgufFile() = default;
  Status ParseAll();

  struct LazyHash {
    std::once_flag once;
    std::string hex;
  };

  std::optional<MappedFile> mapping_;
  std::span<const uint8_t> bytes_;
  std::string path_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> metadata_;
  std::vector<TensorInfo> tensors_;
  std::unique_ptr<LazyHash> content_hash_ = std::make_unique<LazyHash>();
  std::unique_ptr<std::atomic<bool>[]> finite_;  // one flag per tensor, set by ParseAll
};

// Adds or replaces `key` in `kvs`, keeping the position of an existing key.
void SetValue(std::vector<KeyValue>& kvs, const std::string& key, Value value);
void EraseKey(std::vector<KeyValue>& kvs, std::string_view key);

struct TensorSpec {
  std::string name;
  std::array<int64_t, 4> ne = {1, 1, 1, 1};
  uint32_t n_dims = 1;
  const formats::Format* format = nullptr;
};

class GgufWriter {
 public:
  // Validates the layout (names, shapes, formats, alignment) and writes the
  // header, metadata and tensor infos to a temporary file.
  static Result<GgufWriter> Begin(const std::string& path, const std::vector<KeyValue>& metadata,
                                  const std::vector<TensorSpec>& tensors);

  // REQUIRES: called once per tensor, in declaration order, with exactly that
  // tensor's byte size.
  Status WriteTensor(std::span<const uint8_t> bytes);
  // Fails unless every tensor was written; on success the file is in place.
  Status Finish();

  uint64_t bytes_written() const { return file_.bytes_written(); }

  // Bytes the whole file will take (header, metadata, infos, padding, data).
  static Result<uint64_t> FileSize(const std::vector<KeyValue>& metadata, const std::vector<TensorSpec>& tensors);
  // Bytes before the tensor data (header, metadata, infos, padding): FileSize
  // less the padded tensor data.
  static Result<uint64_t> HeaderBytes(const std::vector<KeyValue>& metadata, const std::vector<TensorSpec>& tensors);

 private:
  explicit GgufWriter(AtomicFile file) : file_(std::move(file)) {}
  AtomicFile file_;
  std::vector<uint64_t> sizes_;
  size_t next_tensor_ = 0;
};

inline constexpr uint32_t kWriteAlignment = 32;

// The bytes a tensor of `n_bytes` takes in a written file: its data zero-padded
// to kWriteAlignment. The one padding rule of every size mixq predicts.
inline constexpr uint64_t PaddedBytes(uint64_t n_bytes) {
  return (n_bytes + kWriteAlignment - 1) / kWriteAlignment * kWriteAlignment;
}

// The bytes of a tensor's data (unpadded); InvalidArgument when its type is
// missing or its rows do not fit the type's blocks.
Result<uint64_t> TensorDataBytes(const TensorSpec& tensor);

}  // namespace mixq::gguf

#endif  // MIXQ_GGUF_GGUF_H_
