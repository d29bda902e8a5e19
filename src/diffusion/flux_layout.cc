// The Flux.1 transformer's tensors (comfyui-gguf.md §4, BFL's model.py and
// layers.py): names and shapes as functions of the hyperparameters.
#include <algorithm>
#include <functional>
#include <numeric>

#include "diffusion/diffusion.h"

namespace mixq::diffusion {
namespace {

// Fixed by the model code: head_dim 128 (norm scales are [128]), the
// sinusoidal time/guidance embedding 256, out_channels 16 x 2 x 2.
constexpr int64_t kHeadDim = 128;
constexpr int64_t kTimeDim = 256;
constexpr int64_t kOutChannels = 64;

void Linear(std::vector<LayoutTensor>& out, const std::string& name, int64_t n_out, int64_t n_in) {
  out.push_back({name + ".weight", {n_out, n_in}});
  out.push_back({name + ".bias", {n_out}});
}

}  // namespace

std::vector<LayoutTensor> FluxLayout(const FluxDims& d) {
  const int64_t h = d.hidden;
  std::vector<LayoutTensor> s;
  Linear(s, "img_in", h, d.in_channels);
  Linear(s, "time_in.in_layer", h, kTimeDim);
  Linear(s, "time_in.out_layer", h, h);
  if (d.vec > 0) {
    Linear(s, "vector_in.in_layer", h, d.vec);
    Linear(s, "vector_in.out_layer", h, h);
  }
  if (d.guidance) {
    Linear(s, "guidance_in.in_layer", h, kTimeDim);
    Linear(s, "guidance_in.out_layer", h, h);
  }
  Linear(s, "txt_in", h, d.ctx);
  for (int64_t i = 0; i < d.depth; ++i) {
    for (const char* stream : {"img", "txt"}) {
      const std::string p = "double_blocks." + std::to_string(i) + "." + stream;
      Linear(s, p + "_mod.lin", 6 * h, h);
      Linear(s, p + "_attn.qkv", 3 * h, h);
      s.push_back({p + "_attn.norm.query_norm.scale", {kHeadDim}});
      s.push_back({p + "_attn.norm.key_norm.scale", {kHeadDim}});
      Linear(s, p + "_attn.proj", h, h);
      Linear(s, p + "_mlp.0", 4 * h, h);
      Linear(s, p + "_mlp.2", h, 4 * h);
    }
  }
  for (int64_t i = 0; i < d.depth_single; ++i) {
    const std::string p = "single_blocks." + std::to_string(i) + ".";
    Linear(s, p + "linear1", 7 * h, h);  // qkv and mlp-in
    Linear(s, p + "linear2", h, 5 * h);  // attention-out and mlp-out
    s.push_back({p + "norm.query_norm.scale", {kHeadDim}});
    s.push_back({p + "norm.key_norm.scale", {kHeadDim}});
    Linear(s, p + "modulation.lin", 3 * h, h);
  }
  Linear(s, "final_layer.linear", kOutChannels, h);
  Linear(s, "final_layer.adaLN_modulation.1", 2 * h, h);
  return s;
}

std::vector<safetensors::TensorEntry> FluxLayoutEntries(const FluxDims& dims, const safetensors::DType& dtype) {
  std::vector<safetensors::TensorEntry> entries;
  for (auto& t : FluxLayout(dims)) {
    safetensors::TensorEntry e;
    e.name = std::move(t.name);
    e.dtype = &dtype;
    e.shape = std::move(t.shape);
    e.n_elems = std::accumulate(e.shape.begin(), e.shape.end(), int64_t{1}, std::multiplies<>());
    e.n_bytes = static_cast<uint64_t>(e.n_elems) * dtype.n_bytes;
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return entries;
}

}  // namespace mixq::diffusion
