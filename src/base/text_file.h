// Whole text files: the one reader (plain or gzip-compressed) and the one
// writer (a temp name renamed into place when complete).
#ifndef MIXQ_BASE_TEXT_FILE_H_
#define MIXQ_BASE_TEXT_FILE_H_

#include <string>

#include "base/status.h"

namespace mixq {

// Reads a whole file; gzip-compressed files (.gz or not) are inflated.
// IOError when the file cannot be opened or read or is not a regular file,
// Corruption for a broken gzip stream.
Result<std::string> ReadTextFile(const std::string& path);

// Writes `text` to `path` through base/atomic_file.h.
Status WriteTextFileAtomic(const std::string& path, const std::string& text);

}  // namespace mixq

#endif  // MIXQ_BASE_TEXT_FILE_H_
