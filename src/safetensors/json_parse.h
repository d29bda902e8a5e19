// Internal to src/safetensors: event-driven parsers for the two JSON documents
// of the format (a file's header and a sharded checkpoint's index). They build
// only what they expect and stop at the first surprise, so no hostile document
// can make them allocate a tree or recurse.
#ifndef MIXQ_SAFETENSORS_JSON_PARSE_H_
#define MIXQ_SAFETENSORS_JSON_PARSE_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace mixq::safetensors::internal {

struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  std::vector<uint64_t> data_offsets;
};

struct RawHeader {
  std::vector<RawTensor> tensors;  // in document order
  std::map<std::string, std::string> metadata;
};

// The header: one object whose values are tensor entries {dtype, shape,
// data_offsets} (other fields are ignored), plus an optional "__metadata__"
// object of strings. Duplicate keys, missing fields, negative or fractional
// numbers and wrong kinds are Corruption.
Result<RawHeader> ParseHeaderJson(std::string_view text);

// The index: an object with a "weight_map" object of tensor name -> shard
// file name; other keys are ignored.
Result<std::map<std::string, std::string>> ParseIndexJson(std::string_view text);

}  // namespace mixq::safetensors::internal

#endif  // MIXQ_SAFETENSORS_JSON_PARSE_H_
