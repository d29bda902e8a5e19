// libFuzzer harness: the GGUF reader must accept or reject any bytes without
// crashing, and whatever it accepts must lie inside the input.
#include <cstdint>
#include <cstdlib>

#include "gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = mixq::gguf::GgufFile::Parse({data, size});
  if (!file.has_value()) return 0;
  for (const auto& t : file->tensors()) {
    if (file->data_offset() + t.offset + t.n_bytes > size) std::abort();
    auto bytes = file->TensorData(t);
    volatile uint8_t sink = bytes.empty() ? 0 : bytes[bytes.size() - 1];
    (void)sink;
  }
  for (const auto& kv : file->metadata()) (void)kv.value.ToString();
  return 0;
}
