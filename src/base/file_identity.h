// Which paths name the same file: the guard that keeps every command from
// writing over one of its own inputs (or writing two outputs to one file).
#ifndef MIXQ_BASE_FILE_IDENTITY_H_
#define MIXQ_BASE_FILE_IDENTITY_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace mixq {

// Whether `a` and `b` are one file: the same device and inode when both exist
// (through symlinks and hard links), else the same path once made absolute
// with symlinks resolved.
bool SameFile(const std::string& a, const std::string& b);

// InvalidArgument, before any work starts, when an output is the same file as
// an input or as another output. Empty paths (options not given) are skipped.
Status CheckOutputsAreNotInputs(const std::vector<std::string>& inputs, const std::vector<std::string>& outputs);

}  // namespace mixq

#endif  // MIXQ_BASE_FILE_IDENTITY_H_
