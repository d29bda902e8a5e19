// safetensors: reading (and, for tests and tools, writing) .safetensors
// checkpoints, single files or sharded through *.safetensors.index.json
// (comfyui-gguf.md §1).
//
// SafetensorsFile::Open maps a file read-only and validates it completely
// before handing it out, with the checks of the reference implementation: the
// 8-byte header length fits the file and the 100,000,000-byte limit, the header
// is one JSON object of UTF-8 without duplicate keys, every dtype is known
// (unknown ones are NotSupported), each tensor's byte size equals
// product(shape) x dtype size (64-bit, overflow-checked), and the tensors tile
// the data buffer exactly: no gap, no overlap, nothing past the end or after
// the last tensor. Every failure is one line naming the file and the tensor.
// Tensors are listed sorted by name (the order safetensors' Python keys()
// gives); their data are views into the mapping, valid while the object lives.
//
// Checkpoint opens either a single file or an index: every shard it names is a
// plain file beside the index, every tensor of the weight map is in the shard
// the map names, and every tensor of a shard is in the map.
//
// Const methods are thread-safe; ReleaseData only drops resident pages (the
// data stay readable), so it may race with readers of other tensors.
#ifndef MIXQ_SAFETENSORS_SAFETENSORS_H_
#define MIXQ_SAFETENSORS_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/atomic_file.h"
#include "base/mapped_file.h"
#include "base/status.h"

namespace mixq::safetensors {

// The dtypes of the safetensors 0.4 format. Only the float ones can be decoded.
struct DType {
  std::string_view name;  // as spelled in the header: "BF16", "F8_E4M3", ...
  uint32_t n_bytes;       // bytes per element
  bool is_float;          // DecodeToF32 handles it
};

// All dtypes, in the format's order of increasing alignment.
std::span<const DType> AllDTypes();
// Exact, case-sensitive name; nullptr when unknown.
const DType* FindDType(std::string_view name);

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorEntry {
  std::string name;
  const DType* dtype = nullptr;  // never null after validation
  std::vector<int64_t> shape;    // torch order: outermost first; empty for a scalar
  int64_t n_elems = 0;
  uint64_t n_bytes = 0;
  uint64_t file_offset = 0;  // absolute offset of the data in its file
  uint32_t shard = 0;        // index into Checkpoint::files(); 0 for a single file
};

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> Open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). `bytes` must outlive the result.
  static Result<SafetensorsFile> Parse(std::span<const uint8_t> bytes, std::string name = "<memory>");

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return bytes_.size(); }
  uint64_t header_n_bytes() const { return header_n_bytes_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorEntry* Find(std::string_view name) const;
  std::span<const uint8_t> Data(const TensorEntry& tensor) const;
  // Tells the kernel the tensor's pages (or those of bytes [begin, end) of its
  // data) are no longer needed, so that reading a checkpoint once keeps only
  // what is in use resident. The data stay readable. No-op for Parse().
  void ReleaseData(const TensorEntry& tensor, uint64_t begin = 0, uint64_t end = UINT64_MAX) const;

 private:
  SafetensorsFile() = default;
  Status ParseAll();

  std::optional<MappedFile> mapping_;
  std::span<const uint8_t> bytes_;
  std::string path_;
  uint64_t header_n_bytes_ = 0;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

class Checkpoint {
 public:
  // `path` is a .safetensors file, or an index JSON whose weight_map names
  // the shards (told apart by DetectModelFileKind).
  static Result<Checkpoint> Open(const std::string& path);
  // The shards of an index given as text (tests, fuzzing); shard names are
  // resolved against `dir`.
  static Result<Checkpoint> OpenIndex(std::string_view index_json, const std::string& dir, std::string name);

  const std::string& path() const { return path_; }
  bool sharded() const { return sharded_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  // All tensors of all shards, sorted by name.
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  // The __metadata__ of the first shard.
  const std::map<std::string, std::string>& metadata() const;
  const TensorEntry* Find(std::string_view name) const;
  std::span<const uint8_t> Data(const TensorEntry& tensor) const { return files_[tensor.shard].Data(tensor); }
  void ReleaseData(const TensorEntry& tensor, uint64_t begin = 0, uint64_t end = UINT64_MAX) const {
    files_[tensor.shard].ReleaseData(tensor, begin, end);
  }
  uint64_t total_file_bytes() const;

 private:
  Checkpoint() = default;
  std::string path_;
  bool sharded_ = false;
  std::vector<SafetensorsFile> files_;
  std::vector<TensorEntry> tensors_;
};

// Decodes src (a whole number of elements of `dtype`) into dst, which holds
// src.size() / dtype.n_bytes floats. NotSupported for a non-float dtype.
// Values are converted exactly (every F16/BF16/F8 value is an F32 value);
// NaN and Inf pass through (see FindNonFinite).
Status DecodeToF32(const DType& dtype, std::span<const uint8_t> src, float* dst);
// Index of the first NaN or Inf element of a float dtype's data, or nullopt.
std::optional<int64_t> FindNonFinite(const DType& dtype, std::span<const uint8_t> src);

// Writes a .safetensors file the way the reference writer lays it out: the
// header padded with spaces to a multiple of 8, tensors in declaration order,
// packed. Streaming: only the header is kept in memory. Atomic (AtomicFile).
// Not thread-safe.
struct TensorDecl {
  std::string name;
  const DType* dtype = nullptr;
  std::vector<int64_t> shape;
};

class SafetensorsWriter {
 public:
  // InvalidArgument for duplicate or empty names, a null dtype, negative dims
  // or a "__metadata__" tensor name.
  static Result<SafetensorsWriter> Begin(const std::string& path, const std::vector<TensorDecl>& tensors,
                                         const std::map<std::string, std::string>& metadata = {});
  // REQUIRES: once per tensor, in declaration order, with exactly its bytes.
  Status WriteTensor(std::span<const uint8_t> bytes);
  Status Finish();

 private:
  explicit SafetensorsWriter(AtomicFile file) : file_(std::move(file)) {}
  AtomicFile file_;
  std::vector<uint64_t> sizes_;
  size_t next_tensor_ = 0;
};

// The header JSON (without the length prefix or padding) for these tensors,
// laid out back to back from offset 0; exposed for tests that craft files.
Result<std::string> HeaderJson(const std::vector<TensorDecl>& tensors,
                               const std::map<std::string, std::string>& metadata);

}  // namespace mixq::safetensors

#endif  // MIXQ_SAFETENSORS_SAFETENSORS_H_
