// What a ComfyUI user needs to know about an output: which GPUs it fits and
// a name that says its size (the MixedQuantFlux convention, seed 003).
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "diffusion/diffusion.h"

namespace mixq::diffusion {
namespace {

// Memory sizes of common consumer and workstation GPUs, in GiB.
constexpr int kGpuGib[] = {4, 6, 8, 10, 11, 12, 16, 20, 24, 32, 48, 80};

}  // namespace

int SmallestGpuGib(uint64_t file_bytes) {
  for (int gib : kGpuGib) {
    if (file_bytes + kWorkingBytes <= (static_cast<uint64_t>(gib) << 30)) return gib;
  }
  return 0;
}

std::string FitSummary(uint64_t file_bytes, double bpw) {
  char buf[160];
  const double gib = static_cast<double>(file_bytes) / static_cast<double>(1ull << 30);
  const int gpu = SmallestGpuGib(file_bytes);
  if (gpu > 0) {
    std::snprintf(buf, sizeof buf, "%.2f GiB, %.2f bpw: fits GPUs with %d GB or more", gib, bpw, gpu);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB, %.2f bpw: larger than common GPUs (ComfyUI will offload)", gib, bpw);
  }
  return buf;
}

std::string OutputName(const std::string& input_path, const std::string& type_label, bool mixed, double bpw) {
  std::filesystem::path in(input_path);
  std::string stem = in.filename().string();
  for (std::string_view ext : {".safetensors.index.json", ".index.json", ".safetensors", ".json"}) {
    if (stem.size() > ext.size() && stem.ends_with(ext)) {
      stem.resize(stem.size() - ext.size());
      break;
    }
  }
  std::string name;
  if (mixed) {
    const long tenths = std::lround(bpw * 10.0);
    name = stem + "_mx" + std::to_string(tenths / 10) + "_" + std::to_string(tenths % 10) + ".gguf";
  } else {
    name = stem + "-" + type_label + ".gguf";
  }
  return (in.parent_path() / name).string();
}

}  // namespace mixq::diffusion
