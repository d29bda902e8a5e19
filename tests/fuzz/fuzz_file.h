// For harnesses whose parser reads a path (it maps or locks the file): each
// input is written to one scratch file per process, under $TMPDIR, removed
// when the process exits.
#ifndef MIXQ_TESTS_FUZZ_FUZZ_FILE_H_
#define MIXQ_TESTS_FUZZ_FUZZ_FILE_H_

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace mixq::fuzz {

inline const std::string& ScratchPath() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::atexit([] { std::remove(ScratchPath().c_str()); });
    return std::string(dir != nullptr ? dir : "/tmp") + "/mixq-fuzz-" + std::to_string(getpid());
  }();
  return path;
}

// Replaces the scratch file's contents with the input; aborts when it cannot
// be written (a broken setup, not a finding).
inline const std::string& WriteScratch(const uint8_t* data, size_t size) {
  const std::string& path = ScratchPath();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  return path;
}

}  // namespace mixq::fuzz

#endif  // MIXQ_TESTS_FUZZ_FUZZ_FILE_H_
