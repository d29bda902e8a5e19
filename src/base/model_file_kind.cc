#include "base/model_file_kind.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string_view>

namespace mixq {
namespace {

constexpr size_t kPrefixBytes = 16;

// The first bytes as a C-style string literal, for the error message.
std::string Quoted(std::string_view bytes) {
  std::string out = "\"";
  for (unsigned char c : bytes) {
    if (std::isprint(c) && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out + "\"";
}

bool IsSafetensorsHeader(std::string_view bytes) {
  // The header length's high half is zero: real headers are far below 4 GiB,
  // and a JSON text has printable characters there.
  return bytes.size() > 8 && bytes[8] == '{' && bytes.substr(4, 4) == std::string_view("\0\0\0\0", 4);
}

bool IsJsonObject(std::string_view bytes) {
  size_t first = bytes.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && bytes[first] == '{';
}

}  // namespace

Result<ModelFileKind> DetectModelFileKind(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open '" + path + "': " + std::strerror(errno));
  char buf[kPrefixBytes] = {};
  in.read(buf, sizeof buf);
  if (in.bad()) return Status::IOError("cannot read '" + path + "': " + std::strerror(errno));
  const std::string_view bytes(buf, static_cast<size_t>(in.gcount()));
  if (bytes.starts_with("GGUF")) return ModelFileKind::kGguf;
  if (IsSafetensorsHeader(bytes)) return ModelFileKind::kSafetensors;
  if (IsJsonObject(bytes)) return ModelFileKind::kSafetensorsIndex;
  return Status::Corruption("'" + path + "' is neither a GGUF nor a safetensors file (" +
                            (bytes.empty() ? std::string("it is empty") : "it starts with " + Quoted(bytes)) + ")");
}

}  // namespace mixq
