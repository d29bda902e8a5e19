// What kind of model file a path holds, told by its first bytes, not its name:
// the one place every command decides between the GGUF reader and the
// safetensors reader (language model or diffusion checkpoint).
#ifndef MIXQ_BASE_MODEL_FILE_KIND_H_
#define MIXQ_BASE_MODEL_FILE_KIND_H_

#include <string>

#include "base/status.h"

namespace mixq {

enum class ModelFileKind {
  kGguf,              // starts with "GGUF"
  kSafetensors,       // an 8-byte little-endian header length below 2^32, then '{'
  kSafetensorsIndex,  // a JSON object: the index of a sharded checkpoint
};

// IOError when the file cannot be read; Corruption, quoting its first bytes,
// when it is none of the kinds.
Result<ModelFileKind> DetectModelFileKind(const std::string& path);

}  // namespace mixq

#endif  // MIXQ_BASE_MODEL_FILE_KIND_H_
