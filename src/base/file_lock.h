// FileLock: an exclusive flock(2) on a file or directory, held until the
// object is destroyed, so that two mixq processes never work on one cache at
// once. The lock goes away with the process, however it ends. Move-only.
#ifndef MIXQ_BASE_FILE_LOCK_H_
#define MIXQ_BASE_FILE_LOCK_H_

#include <functional>
#include <string>

#include "base/status.h"

namespace mixq {

class FileLock {
 public:
  // Locks `path`, a directory or a file (created empty when absent). When
  // another process holds the lock, calls on_wait (if set) once, then waits.
  static Result<FileLock> Acquire(const std::string& path, const std::function<void()>& on_wait);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace mixq

#endif  // MIXQ_BASE_FILE_LOCK_H_
