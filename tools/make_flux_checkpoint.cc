// make_flux_checkpoint: writes a small Flux.1-shaped transformer checkpoint
// (comfyui-gguf.md §6): BFL's tensor names and shape patterns, dimensions of
// your choice, deterministic pseudo-random values.
//
//   make_flux_checkpoint --out tiny.safetensors [--hidden 256] [--depth 2] [--depth-single 2]
//       [--dtype BF16|F16|F32|F8_E4M3|F8_E5M2] [--prefix] [--extra] [--no-guidance]
//       [--vec 256] [--ctx 512] [--in-channels 64] [--seed 1] [--shards N]
//
// Values depend only on (seed, tensor name without prefix), so the variants of
// one seed hold the same weights. Tensors are written in the model's module
// order, not sorted. With --shards N > 1 the tensors are split into N files
// "<stem>-0000k-of-0000N.safetensors" and "<out>.index.json" lists them.
// Only one tensor is in memory at a time, so multi-GB files are fine.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "diffusion/diffusion.h"
#include "formats/formats.h"
#include "safetensors/safetensors.h"

namespace {

using mixq::safetensors::DType;
using mixq::safetensors::TensorDecl;

struct Options {
  std::string out;
  int64_t hidden = 256;
  int64_t depth = 2;
  int64_t depth_single = 2;
  int64_t vec = 256;
  int64_t ctx = 512;
  int64_t in_channels = 64;
  std::string dtype = "BF16";
  bool prefix = false;
  bool extra = false;
  bool no_guidance = false;
  uint64_t seed = 1;
  int shards = 1;
};

using Spec = mixq::diffusion::LayoutTensor;

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// Weights look roughly like a trained model's: scale 1/sqrt(fan_in) varied per
// tensor, a triangular bulk and rare 8x outliers (which make the quant types
// differ as they do on real weights); norm scales near 1, biases small.
void Fill(const Spec& spec, uint64_t seed, std::vector<float>& out) {
  uint64_t state = Fnv1a(spec.name) ^ (seed * 0x632BE59BD9B4E019ull);
  auto uniform = [&] { return static_cast<float>(SplitMix(state) >> 40) / 16777216.0f; };  // [0, 1)
  int64_t n = 1;
  for (int64_t d : spec.shape) n *= d;
  out.resize(static_cast<size_t>(n));
  const bool is_scale = spec.name.ends_with(".scale");
  const bool is_bias = spec.name.ends_with(".bias");
  float scale = is_scale ? 0.1f : is_bias ? 0.01f : 0.5f / std::sqrt(static_cast<float>(spec.shape.back()));
  scale *= 0.5f + uniform();
  for (auto& v : out) {
    float x = (uniform() + uniform() - 1.0f) * scale;
    if (!is_scale && (SplitMix(state) & 1023) == 0) x *= 8.0f;
    v = is_scale ? 1.0f + x : x;
  }
}

// Nearest value among the codes of an 8-bit float (ties to the even code).
uint8_t ToF8(float x, const DType& dtype) {
  static std::vector<std::pair<float, uint8_t>> table[2];
  auto& t = table[dtype.name == "F8_E5M2"];
  if (t.empty()) {
    for (int b = 0; b < 0x80; ++b) {
      float v;
      uint8_t byte = static_cast<uint8_t>(b);
      (void)mixq::safetensors::DecodeToF32(dtype, {&byte, 1}, &v);
      if (std::isfinite(v)) t.push_back({v, byte});
    }
    std::sort(t.begin(), t.end());
  }
  float a = std::fabs(x);
  auto it = std::lower_bound(t.begin(), t.end(), std::make_pair(a, uint8_t{0}));
  if (it == t.end()) it = std::prev(t.end());
  if (it != t.begin()) {
    auto below = std::prev(it);
    float da = a - below->first, db = it->first - a;
    if (da < db || (da == db && (below->second & 1) == 0)) it = below;
  }
  return static_cast<uint8_t>(it->second | (x < 0 ? 0x80 : 0));
}

void Encode(const std::vector<float>& values, const DType& dtype, std::vector<uint8_t>& out) {
  out.resize(values.size() * dtype.n_bytes);
  for (size_t i = 0; i < values.size(); ++i) {
    uint8_t* p = out.data() + i * dtype.n_bytes;
    if (dtype.name == "F32") {
      std::memcpy(p, &values[i], 4);
    } else if (dtype.n_bytes == 2) {
      uint16_t bits = dtype.name == "F16" ? mixq::formats::F32ToF16(values[i]) : mixq::formats::F32ToBF16(values[i]);
      std::memcpy(p, &bits, 2);
    } else {
      *p = ToF8(values[i], dtype);
    }
  }
}

int Fail(const mixq::Status& s) {
  std::fprintf(stderr, "make_flux_checkpoint: error: %s\n", s.message().c_str());
  return 1;
}

std::string ShardName(const std::string& stem, int k, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.safetensors", k, n);
  return stem + buf;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"write a small Flux.1-shaped safetensors checkpoint with deterministic values", "make_flux_checkpoint"};
  app.add_option("--out", o.out, "output .safetensors path")->required();
  app.add_option("--hidden", o.hidden, "hidden size H (a multiple of 128)")->capture_default_str();
  app.add_option("--depth", o.depth, "double blocks")->capture_default_str();
  app.add_option("--depth-single", o.depth_single, "single blocks")->capture_default_str();
  app.add_option("--vec", o.vec, "vector_in width (CLIP pooled)")->capture_default_str();
  app.add_option("--ctx", o.ctx, "txt_in width (T5 features)")->capture_default_str();
  app.add_option("--in-channels", o.in_channels, "img_in width")->capture_default_str();
  app.add_option("--dtype", o.dtype, "BF16, F16, F32, F8_E4M3 or F8_E5M2")->capture_default_str();
  app.add_flag("--prefix", o.prefix, "prefix every key with model.diffusion_model. (ComfyUI checkpoints)");
  app.add_flag("--extra", o.extra, "add a VAE tensor outside the prefix (implies --prefix)");
  app.add_flag("--no-guidance", o.no_guidance, "no guidance_in (schnell-like)");
  app.add_option("--seed", o.seed, "value seed")->capture_default_str();
  app.add_option("--shards", o.shards, "split into this many files plus an index")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const DType* dtype = mixq::safetensors::FindDType(o.dtype);
  if (dtype == nullptr || !dtype->is_float) return Fail(mixq::Status::InvalidArgument("unknown --dtype " + o.dtype));
  if (o.hidden <= 0 || o.hidden % 128 != 0 || o.depth < 0 || o.depth_single < 0 || o.shards < 1) {
    return Fail(mixq::Status::InvalidArgument("--hidden must be a positive multiple of 128; depths >= 0; shards >= 1"));
  }
  if (o.extra) o.prefix = true;
  const std::string prefix = o.prefix ? "model.diffusion_model." : "";
  mixq::diffusion::FluxDims dims;
  dims.hidden = o.hidden;
  dims.depth = o.depth;
  dims.depth_single = o.depth_single;
  dims.vec = o.vec;
  dims.ctx = o.ctx;
  dims.in_channels = o.in_channels;
  dims.guidance = !o.no_guidance;
  std::vector<Spec> layout = mixq::diffusion::FluxLayout(dims);
  if (o.extra) layout.push_back({"first_stage_model.decoder.conv_in.weight", {4, 4}});

  std::vector<TensorDecl> decls;
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const auto& s : layout) {
    const bool outside = s.name.starts_with("first_stage_model.");
    decls.push_back({outside ? s.name : prefix + s.name, dtype, s.shape});
    uint64_t n = dtype->n_bytes;
    for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
    sizes.push_back(n);
    total += n;
  }

  // Contiguous groups of roughly total/shards bytes each.
  std::vector<size_t> first_of_shard = {0};
  uint64_t acc = 0;
  for (size_t i = 0; i < decls.size() && static_cast<int>(first_of_shard.size()) < o.shards; ++i) {
    acc += sizes[i];
    if (acc * o.shards >= total * first_of_shard.size() && i + 1 < decls.size()) first_of_shard.push_back(i + 1);
  }
  const int n_shards = static_cast<int>(first_of_shard.size());
  first_of_shard.push_back(decls.size());

  std::string stem = o.out;
  if (stem.ends_with(".safetensors")) stem.resize(stem.size() - std::strlen(".safetensors"));
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  for (int k = 0; k < n_shards; ++k) {
    const std::string path = n_shards == 1 ? o.out : ShardName(stem, k + 1, n_shards);
    std::vector<TensorDecl> part(decls.begin() + first_of_shard[k], decls.begin() + first_of_shard[k + 1]);
    auto writer = mixq::safetensors::SafetensorsWriter::Begin(path, part, {{"format", "pt"}});
    if (!writer) return Fail(writer.error());
    for (size_t i = first_of_shard[k]; i < first_of_shard[k + 1]; ++i) {
      Fill(layout[i], o.seed, values);
      Encode(values, *dtype, bytes);
      if (auto s = writer->WriteTensor(bytes); !s.ok()) return Fail(s);
      weight_map[decls[i].name] = std::filesystem::path(path).filename().string();
    }
    if (auto s = writer->Finish(); !s.ok()) return Fail(s);
  }
  if (n_shards > 1) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::ofstream(o.out + ".index.json") << index.dump(2) << "\n";
  }
  return 0;
}
