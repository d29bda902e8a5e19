// A minimal GGUF tensor-table reader for the formats tests (trusted files
// only: the ref-dev model and gguf-oracle output). The formats library sits
// below the gguf library, so its tests read the container themselves.
// Header-only: the test build compiles *_test.cc files and test_support.cc.
#ifndef MIXQ_TESTS_FORMATS_GGUF_TENSORS_H_
#define MIXQ_TESTS_FORMATS_GGUF_TENSORS_H_

#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/formats.h"
#include "test_support.h"

namespace mixq::formats::testing {

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;
  const Format* format = nullptr;
  std::span<const uint8_t> data;
  int64_t row_length() const { return ne[0]; }
  int64_t n_rows() const;
};

class GgufTensors {
 public:
  // Throws std::runtime_error on anything unexpected (test helper).
  explicit GgufTensors(const std::string& path);
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* Find(const std::string& name) const;

 private:
  std::vector<uint8_t> bytes_;
  std::vector<GgufTensor> tensors_;
};

// The tensor widened to f32 with DequantizeRows.
std::vector<float> ToFloat(const GgufTensor& t);

// 2-D weights that llama.cpp would quantize (no norms).
bool IsMatrixWeight(const GgufTensor& t);

namespace gguf_detail {

class Cursor {
 public:
  explicit Cursor(const std::vector<uint8_t>& b) : b_(b) {}
  template <typename T>
  T Read() {
    if (pos_ + sizeof(T) > b_.size()) throw std::runtime_error("gguf: truncated");
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string ReadString() {
    uint64_t n = Read<uint64_t>();
    if (pos_ + n > b_.size()) throw std::runtime_error("gguf: truncated string");
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  void SkipValue(uint32_t type) {
    static const size_t kScalarBytes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
      ReadString();
    } else if (type == 9) {
      uint32_t elem = Read<uint32_t>();
      uint64_t n = Read<uint64_t>();
      for (uint64_t i = 0; i < n; ++i) SkipValue(elem);
    } else if (type < 13) {
      pos_ += kScalarBytes[type];
    } else {
      throw std::runtime_error("gguf: bad value type");
    }
  }
  size_t pos() const { return pos_; }

 private:
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
};

}  // namespace gguf_detail

inline int64_t GgufTensor::n_rows() const {
  int64_t n = 1;
  for (size_t i = 1; i < ne.size(); ++i) n *= ne[i];
  return n;
}

inline GgufTensors::GgufTensors(const std::string& path) : bytes_(mixq::testing::ReadFileBytes(path)) {
  gguf_detail::Cursor c(bytes_);
  if (c.Read<uint32_t>() != 0x46554747u) throw std::runtime_error("gguf: bad magic in " + path);
  c.Read<uint32_t>();  // version
  int64_t n_tensors = c.Read<int64_t>();
  int64_t n_kv = c.Read<int64_t>();
  uint64_t alignment = 32;
  for (int64_t i = 0; i < n_kv; ++i) {
    std::string key = c.ReadString();
    uint32_t type = c.Read<uint32_t>();
    if (key == "general.alignment" && type == 4) {
      alignment = c.Read<uint32_t>();
    } else {
      c.SkipValue(type);
    }
  }
  std::vector<uint64_t> offsets;
  for (int64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.ReadString();
    uint32_t n_dims = c.Read<uint32_t>();
    for (uint32_t d = 0; d < n_dims; ++d) t.ne.push_back(c.Read<int64_t>());
    t.format = FindFormat(c.Read<uint32_t>());
    if (t.format == nullptr || t.format->removed()) throw std::runtime_error("gguf: bad type of " + t.name);
    offsets.push_back(c.Read<uint64_t>());
    tensors_.push_back(std::move(t));
  }
  uint64_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensor& t = tensors_[i];
    int64_t n_bytes = RowBytes(*t.format, t.row_length()).value() * t.n_rows();
    if (data_start + offsets[i] + n_bytes > bytes_.size()) throw std::runtime_error("gguf: data out of file");
    t.data = std::span<const uint8_t>(bytes_.data() + data_start + offsets[i], n_bytes);
  }
}

inline const GgufTensor* GgufTensors::Find(const std::string& name) const {
  for (const GgufTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

inline std::vector<float> ToFloat(const GgufTensor& t) {
  std::vector<float> x(t.row_length() * t.n_rows());
  Status s = DequantizeRows(*t.format, t.data.data(), x.data(), t.n_rows(), t.row_length(), 2);
  if (!s.ok()) throw std::runtime_error(s.message());
  return x;
}

inline bool IsMatrixWeight(const GgufTensor& t) {
  return t.ne.size() == 2 && t.name.ends_with(".weight") && !t.name.ends_with("_norm.weight");
}

}  // namespace mixq::formats::testing

#endif  // MIXQ_TESTS_FORMATS_GGUF_TENSORS_H_
