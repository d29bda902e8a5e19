// Opening an input file for reading: the one check and the one message for a
// path that is missing, unreadable or not a regular file (a directory would
// read as empty), shared by MappedFile and ReadTextFile.
#ifndef MIXQ_BASE_REGULAR_FILE_H_
#define MIXQ_BASE_REGULAR_FILE_H_

#include <string>

#include "base/status.h"

namespace mixq {

// A read-only descriptor of the regular file at `path` (close-on-exec; the
// caller closes it). IOError "cannot open 'P': <reason>" or "not a regular
// file: 'P'".
Result<int> OpenRegularFile(const std::string& path);

}  // namespace mixq

#endif  // MIXQ_BASE_REGULAR_FILE_H_
