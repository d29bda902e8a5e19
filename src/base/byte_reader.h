// ByteReader: the only way mixq reads untrusted bytes (GGUF, imatrix, safetensors).
//
// Every read checks the bytes that remain and fails with Corruption naming the
// offset, so a truncated or lying file can never make us read out of bounds.
// All integers are little-endian. The reader does not own the bytes: the span
// must outlive it. Not thread-safe (it has a cursor); copies are independent.
#ifndef MIXQ_BASE_BYTE_READER_H_
#define MIXQ_BASE_BYTE_READER_H_

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "base/status.h"

namespace mixq {

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes, uint64_t base_offset = 0)
      : bytes_(bytes), base_offset_(base_offset) {}

  uint64_t offset() const { return base_offset_ + pos_; }
  uint64_t position() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  template <typename T>
  Result<T> Read() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value{};
    MIXQ_TRY(ReadInto(&value, sizeof(T)));
    return value;
  }

  Status ReadInto(void* dst, uint64_t n_bytes) {
    if (n_bytes > remaining()) return Truncated(n_bytes);
    std::memcpy(dst, bytes_.data() + pos_, n_bytes);
    pos_ += n_bytes;
    return Status::Ok();
  }

  // A view of the next n_bytes, valid as long as the underlying span.
  Result<std::span<const uint8_t>> ReadSpan(uint64_t n_bytes) {
    if (n_bytes > remaining()) return Truncated(n_bytes);
    auto out = bytes_.subspan(pos_, n_bytes);
    pos_ += n_bytes;
    return out;
  }

 private:
  Status Truncated(uint64_t wanted) const {
    return Status::Corruption("truncated data: wanted " + std::to_string(wanted) + " bytes at offset " +
                              std::to_string(offset()) + ", only " + std::to_string(remaining()) + " left");
  }

  std::span<const uint8_t> bytes_;
  uint64_t base_offset_ = 0;
  uint64_t pos_ = 0;
};

}  // namespace mixq

#endif  // MIXQ_BASE_BYTE_READER_H_
