#include "base/file_identity.h"

#include <sys/stat.h>

#include <filesystem>
#include <vector>

namespace mixq {
namespace {

std::string ResolvedPath(const std::string& path) {
  std::error_code ec;
  auto resolved = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  return ec ? path : resolved.string();
}

}  // namespace

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa {};
  struct stat sb {};
  if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0) {
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  }
  return ResolvedPath(a) == ResolvedPath(b);
}

Status CheckOutputsAreNotInputs(const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  std::vector<const std::string*> checked_outputs;
  for (const std::string& out : outputs) {
    if (out.empty()) continue;
    for (const std::string& in : inputs) {
      if (!in.empty() && SameFile(out, in)) {
        return Status::InvalidArgument("output '" + out + "' is the same file as the input '" + in +
                                       "'; writing it would destroy the input: choose another output path");
      }
    }
    for (const std::string* other : checked_outputs) {
      if (SameFile(out, *other)) {
        return Status::InvalidArgument("outputs '" + *other + "' and '" + out +
                                       "' are the same file; give each output its own path");
      }
    }
    checked_outputs.push_back(&out);
  }
  return Status::Ok();
}

}  // namespace mixq
