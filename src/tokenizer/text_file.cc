// Whole-file text input; zlib's gzread passes plain files through unchanged,
// so one path serves both.
#include <zlib.h>

#include <cerrno>
#include <cstring>

#include "tokenizer/tokenizer.h"

namespace mixq::tokenizer {

Result<std::string> ReadTextFile(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    return Status::IOError("cannot open text file: " + path + " (" + std::strerror(errno) + ")");
  }
  gzbuffer(file, 1 << 17);
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    int n = gzread(file, buffer, sizeof(buffer));
    if (n < 0) {
      int code = 0;
      std::string message = gzerror(file, &code);
      gzclose(file);
      if (code == Z_ERRNO) return Status::IOError("cannot read text file: " + path);
      return Status::Corruption("broken gzip stream: " + path + " (" + message + ")");
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  // A stream cut short ends like a complete one, except for this error.
  int code = Z_OK;
  std::string message = gzerror(file, &code);
  gzclose(file);
  if (code != Z_OK) return Status::Corruption("broken gzip stream: " + path + " (" + message + ")");
  return text;
}

}  // namespace mixq::tokenizer
