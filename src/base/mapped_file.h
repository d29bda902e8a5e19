// MappedFile: a read-only memory mapping of a whole file.
//
// Move-only; the mapping lives as long as the object, and every span handed out
// by bytes() is valid only while it is alive. Const methods are thread-safe.
#ifndef MIXQ_BASE_MAPPED_FILE_H_
#define MIXQ_BASE_MAPPED_FILE_H_

#include <cstdint>
#include <span>
#include <string>

#include "base/status.h"

namespace mixq {

class MappedFile {
 public:
  static Result<MappedFile> Open(const std::string& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  void Release();

  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::string path_;
};

// Drops the resident pages that lie wholly inside `bytes`, a range of a
// private read-only file mapping, so that reading a large file once keeps only
// what is in use resident. The data stay readable (they refault from the page
// cache); pages shared with neighbouring bytes are kept. Failure is harmless.
void DropResidentPages(std::span<const uint8_t> bytes);

}  // namespace mixq

#endif  // MIXQ_BASE_MAPPED_FILE_H_
