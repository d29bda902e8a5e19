// Internal to src/diffusion: the pieces of Convert that Measure shares, so
// both agree on every tensor's storage, shape and the file's header.
#ifndef MIXQ_DIFFUSION_CONVERT_INTERNAL_H_
#define MIXQ_DIFFUSION_CONVERT_INTERNAL_H_

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "diffusion/diffusion.h"

namespace mixq::diffusion::internal {

// Floats decoded per step (EncodeRows, Measure); bounds the buffer to 16 MiB.
inline constexpr int64_t kChunkElems = int64_t{1} << 22;

// Stage-1 storage: F32 for 1-D and tiny tensors, else float_format, else
// convert.py's choice (BF16 stays BF16, other dtypes F16).
const formats::Format& StorageFormat(const ModelTensor& t, const formats::Format* float_format);
// GGUF shape: ne = the torch shape reversed, the true rank (at least 1).
gguf::TensorSpec SpecOf(const ModelTensor& t, const formats::Format& format);
gguf::TensorInfo InfoOf(const gguf::TensorSpec& spec);
// The three KVs ComfyUI-GGUF's converter writes, in its order.
std::vector<gguf::KeyValue> Metadata(const std::string& architecture, uint32_t file_type);

// Encodes n_rows rows of source elements into `target`, a bounded chunk of
// rows at a time through *scratch, calling done_with(begin, end) for the
// source bytes each chunk no longer needs. Corruption names the first NaN/Inf.
Status EncodeRows(const safetensors::DType& dtype, std::span<const uint8_t> src, int64_t n_rows, int64_t n_per_row,
                  const formats::Format& target, formats::QuantMethod method, int n_threads,
                  std::vector<float>* scratch, uint8_t* dst, const std::function<void(uint64_t, uint64_t)>& done_with);

}  // namespace mixq::diffusion::internal

#endif  // MIXQ_DIFFUSION_CONVERT_INTERNAL_H_
