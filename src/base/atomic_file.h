// AtomicFile: writes an output file so that it is never seen half-written.
//
// Bytes go to "<path>.tmp.<pid>"; Commit() flushes, fsyncs and renames it over
// <path>. If the object is destroyed without a successful Commit(), or the
// process is interrupted (see RemovePendingTempFiles), the temporary file is
// removed and <path> is untouched. A process killed outright (SIGKILL) leaves
// its temporary behind: a successful Commit() removes those of <path> whose pid
// no longer runs. Move-only; not thread-safe.
#ifndef MIXQ_BASE_ATOMIC_FILE_H_
#define MIXQ_BASE_ATOMIC_FILE_H_

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

#include "base/status.h"

namespace mixq {

class AtomicFile {
 public:
  static Result<AtomicFile> Create(const std::string& path);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  Status Write(const void* data, uint64_t n_bytes);
  Status Write(std::span<const uint8_t> bytes) { return Write(bytes.data(), bytes.size()); }
  Status WriteZeros(uint64_t n_bytes);
  uint64_t bytes_written() const { return bytes_written_; }
  const std::string& path() const { return path_; }

  // REQUIRES: not yet committed.
  Status Commit();

 private:
  AtomicFile() = default;
  void Abandon();

  std::FILE* file_ = nullptr;
  std::string path_;
  std::string temp_path_;
  uint64_t bytes_written_ = 0;
};

// Unlinks every temporary file that is still pending. Async-signal-safe: the
// CLI calls it from its SIGINT/SIGTERM handler.
void RemovePendingTempFiles();

}  // namespace mixq

#endif  // MIXQ_BASE_ATOMIC_FILE_H_
