// zlib's gzread passes plain files through unchanged, so one path serves
// both plain and compressed text.
#include "base/text_file.h"

#include <unistd.h>
#include <zlib.h>

#include "base/atomic_file.h"
#include "base/regular_file.h"

namespace mixq {

Result<std::string> ReadTextFile(const std::string& path) {
  MIXQ_ASSIGN_OR_RETURN(int fd, OpenRegularFile(path));
  gzFile file = gzdopen(fd, "rb");
  if (file == nullptr) {
    ::close(fd);
    return Status::IOError("cannot read text file: " + path);
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

Status WriteTextFileAtomic(const std::string& path, const std::string& text) {
  auto file = AtomicFile::Create(path);
  if (!file.has_value()) return file.status();
  MIXQ_TRY(file->Write(text.data(), text.size()));
  return file->Commit();
}

}  // namespace mixq
