// libFuzzer harness: the safetensors reader must accept or reject any bytes
// without crashing; what it accepts must tile the input exactly, and every
// float tensor must decode. The first input byte picks the mode: even bytes
// parse the rest as a file, odd ones as an index JSON (whose shards do not
// exist, so only its parser and checks run).
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "safetensors/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool index_mode = data[0] & 1;
  ++data;
  --size;
  if (index_mode) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    (void)mixq::safetensors::Checkpoint::OpenIndex(text, "/nonexistent-mixq-fuzz-dir", "<fuzz>");
    return 0;
  }
  auto file = mixq::safetensors::SafetensorsFile::Parse({data, size});
  if (!file.has_value()) {
    if (file.error().message().empty()) std::abort();
    return 0;
  }
  uint64_t total = 8 + file->header_n_bytes();
  std::vector<float> decoded;
  for (const auto& t : file->tensors()) {
    if (t.file_offset + t.n_bytes > size || t.file_offset < 8 + file->header_n_bytes()) std::abort();
    total += t.n_bytes;
    auto bytes = file->Data(t);
    if (t.dtype->is_float && t.n_bytes <= (1u << 20)) {
      decoded.resize(static_cast<size_t>(t.n_elems));
      if (!mixq::safetensors::DecodeToF32(*t.dtype, bytes, decoded.data()).ok()) std::abort();
      (void)mixq::safetensors::FindNonFinite(*t.dtype, bytes);
    }
  }
  if (total != size) std::abort();
  return 0;
}
