#include "imatrix.h"

#include <cmath>
#include <cstdint>
#include <fstream>

#include "ggml.h"
#include "gguf.h"

namespace oracle {
namespace {

template <typename T>
bool ReadPod(std::ifstream& in, T* v) {
  return static_cast<bool>(in.read(reinterpret_cast<char*>(v), sizeof(T)));
}

// n entries of {i32 name length, name, i32 ncall, i32 nval, f32 values[nval]},
// then optionally i32 chunk count, i32 dataset length, dataset.
std::string LoadLegacy(const std::string& path, Imatrix* im) {
  std::ifstream in(path, std::ios::binary);
  int32_t n_entries = 0;
  if (!ReadPod(in, &n_entries) || n_entries < 1) return "not a GGUF or legacy imatrix file (no entries)";
  for (int32_t e = 0; e < n_entries; ++e) {
    int32_t len = 0, ncall = 0, nval = 0;
    if (!ReadPod(in, &len) || len < 0) return "legacy imatrix: truncated at entry " + std::to_string(e);
    std::string name(static_cast<size_t>(len), '\0');
    if (!in.read(name.data(), len) || !ReadPod(in, &ncall) || !ReadPod(in, &nval) || nval < 1) {
      return "legacy imatrix: truncated at entry " + std::to_string(e);
    }
    std::vector<float> values(static_cast<size_t>(nval));
    if (!in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(nval * sizeof(float)))) {
      return "legacy imatrix: truncated in " + name;
    }
    if (ncall > 0) {
      for (float& v : values) v /= static_cast<float>(ncall);
    }
    im->entries[name.c_str()] = std::move(values);  // the name ends at its first NUL, as llama.cpp reads it
  }
  int32_t chunks = 0, len = 0;
  if (in.peek() != EOF && ReadPod(in, &chunks)) {
    im->chunk_count = chunks;
    if (ReadPod(in, &len) && len > 0) {
      std::string dataset(static_cast<size_t>(len), '\0');
      if (in.read(dataset.data(), len)) im->datasets.push_back(dataset.c_str());
    }
  }
  im->format = "legacy";
  return "";
}

struct GgufFree {
  gguf_context* gguf;
  ggml_context* ctx;
  ~GgufFree() {
    if (gguf) gguf_free(gguf);
    if (ctx) ggml_free(ctx);
  }
};

// One F32 tensor's values, or empty when absent or of another type.
std::vector<float> F32Values(ggml_context* ctx, const std::string& name) {
  const ggml_tensor* t = ggml_get_tensor(ctx, name.c_str());
  if (t == nullptr || t->type != GGML_TYPE_F32) return {};
  const float* data = static_cast<const float*>(t->data);
  return std::vector<float>(data, data + ggml_nelements(t));
}

std::string LoadGguf(gguf_context* gguf, ggml_context* ctx, Imatrix* im) {
  const int64_t datasets = gguf_find_key(gguf, "imatrix.datasets");
  const int64_t chunk_count = gguf_find_key(gguf, "imatrix.chunk_count");
  if (datasets < 0 || chunk_count < 0 || gguf_find_key(gguf, "imatrix.chunk_size") < 0) {
    return "GGUF imatrix without imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size";
  }
  if (gguf_get_kv_type(gguf, chunk_count) != GGUF_TYPE_UINT32) return "GGUF imatrix: chunk_count is not a u32";
  im->chunk_count = static_cast<int>(gguf_get_val_u32(gguf, chunk_count));
  if (gguf_get_kv_type(gguf, datasets) == GGUF_TYPE_ARRAY && gguf_get_arr_type(gguf, datasets) == GGUF_TYPE_STRING) {
    for (size_t i = 0; i < gguf_get_arr_n(gguf, datasets); ++i)
      im->datasets.push_back(gguf_get_arr_str(gguf, datasets, i));
  }
  const std::string suffix = ".in_sum2";
  for (int64_t i = 0; i < gguf_get_n_tensors(gguf); ++i) {
    const std::string tensor = gguf_get_tensor_name(gguf, i);
    if (!tensor.ends_with(suffix)) continue;
    const std::string name = tensor.substr(0, tensor.size() - suffix.size());
    std::vector<float> sums = F32Values(ctx, tensor);
    const std::vector<float> counts = F32Values(ctx, name + ".counts");
    if (sums.empty() || counts.empty() || sums.size() % counts.size() != 0) {
      return "GGUF imatrix: " + name + " lacks F32 in_sum2 and counts of matching sizes";
    }
    const size_t per_expert = sums.size() / counts.size();
    for (size_t e = 0; e < counts.size(); ++e) {
      const float count = static_cast<float>(std::lround(counts[e]));
      for (size_t k = e * per_expert; k < (e + 1) * per_expert; ++k) sums[k] = count > 0 ? sums[k] / count : 1.0f;
    }
    im->entries[name] = std::move(sums);
  }
  if (im->entries.empty()) return "GGUF imatrix without entries";
  im->format = "gguf";
  return "";
}

}  // namespace

std::string LoadImatrix(const std::string& path, Imatrix* im) {
  GgufFree files{nullptr, nullptr};
  gguf_init_params params{/*no_alloc=*/false, &files.ctx};
  files.gguf = gguf_init_from_file(path.c_str(), params);
  if (files.gguf == nullptr) {
    if (!std::ifstream(path)) return "cannot open " + path;
    return LoadLegacy(path, im);
  }
  return LoadGguf(files.gguf, files.ctx, im);
}

}  // namespace oracle
