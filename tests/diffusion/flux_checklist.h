// Test helpers for the diffusion tests: generating Flux-shaped checkpoints
// with tools/make_flux_checkpoint, and asserting the checklist of
// docs/reference/comfyui-gguf.md §6 on a produced GGUF. Header-only: the test
// build compiles only *_test.cc files and test_support.cc.
#ifndef MIXQ_TESTS_DIFFUSION_FLUX_CHECKLIST_H_
#define MIXQ_TESTS_DIFFUSION_FLUX_CHECKLIST_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "diffusion/diffusion.h"
#include "gguf/gguf.h"
#include "safetensors/safetensors.h"
#include "test_support.h"

namespace mixq::diffusion::testing {

using mixq::testing::RunCommand;
using mixq::testing::TempDir;

// Runs make_flux_checkpoint with `args` (already shell-quoted); fails the test on error.
inline void Generate(const std::string& out, const std::string& args = "") {
  auto r = RunCommand(std::string(MIXQ_FLUX_CHECKPOINT) + " --out " + out + " " + args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

inline bool IsEntryExit(const std::string& name) {
  for (const char* p : {"img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer."}) {
    if (name.starts_with(p)) return true;
  }
  return false;
}

// What the caller expects of a converted file.
struct Expectation {
  std::string source;  // the checkpoint (file or index) it was made from
  // Type of the 2-D block weights of each block ("double_blocks.0" -> "Q4_K").
  std::function<std::string(const std::string& block)> block_type;
  // Allowed types of the entry/exit weights.
  std::set<std::string> entry_exit_types = {"F32", "F16", "BF16"};
};

// Largest relative RMS error a type may leave on a tensor (the round-trip
// item): float types by their mantissa, quantized ones 2^(2 - bpw), about
// four times the error of a uniform grid of that many bits.
inline double RelErrorBound(const formats::Format& f, const safetensors::DType& source) {
  if (f.name == source.name || f.name == "F32") return 0.0;
  if (f.name == "BF16") return std::ldexp(1.0, -8);
  if (f.name == "F16") return std::ldexp(1.0, -10);
  return std::ldexp(1.0, 2) / std::exp2(f.bpw());
}

// The facts document's checklist (§6), item by item.
inline void ExpectComfyChecklist(const std::string& gguf_path, const Expectation& e) {
  SCOPED_TRACE(gguf_path);
  auto file = gguf::GgufFile::Open(gguf_path);
  ASSERT_TRUE(file.has_value()) << file.error().message();
  auto checkpoint = safetensors::Checkpoint::Open(e.source);
  ASSERT_TRUE(checkpoint.has_value()) << checkpoint.error().message();

  // Magic, version 3, n_tensors, alignment.
  auto bytes = mixq::testing::ReadFileBytes(gguf_path);
  ASSERT_GE(bytes.size(), 8u);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 4), "GGUF");
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  if (const gguf::Value* a = file->Find("general.alignment")) {
    EXPECT_EQ(a->type, gguf::ValueType::kUint32);
  }

  // KVs: architecture STRING flux; quantization_version UINT32 2; file_type UINT32; no orig_shape.
  const gguf::Value* arch = file->Find("general.architecture");
  ASSERT_NE(arch, nullptr);
  EXPECT_EQ(arch->type, gguf::ValueType::kString);
  EXPECT_EQ(arch->str, "flux");
  if (const gguf::Value* q = file->Find("general.quantization_version")) {
    EXPECT_EQ(q->type, gguf::ValueType::kUint32);
    EXPECT_EQ(q->u64, 2u);
  }
  if (const gguf::Value* ft = file->Find("general.file_type")) {
    EXPECT_EQ(ft->type, gguf::ValueType::kUint32);
  }
  for (const auto& kv : file->metadata()) EXPECT_FALSE(kv.key.starts_with("comfy.gguf.orig_shape.")) << kv.key;

  // Names: the source keys without the prefix, nothing extra or missing.
  std::map<std::string, const safetensors::TensorEntry*> expected;
  const std::string prefix = "model.diffusion_model.";
  bool prefixed = std::any_of(checkpoint->tensors().begin(), checkpoint->tensors().end(),
                              [&](const auto& t) { return t.name.starts_with(prefix); });
  for (const auto& t : checkpoint->tensors()) {
    if (!prefixed) {
      expected[t.name] = &t;
    } else if (t.name.starts_with(prefix)) {
      expected[t.name.substr(prefix.size())] = &t;
    }
  }
  ASSERT_EQ(file->tensors().size(), expected.size());
  std::set<std::string> seen;
  std::map<std::string, std::set<int64_t>> block_indices;
  std::map<std::string, std::set<std::string>> block_weight_types;
  for (const auto& t : file->tensors()) {
    SCOPED_TRACE(t.name);
    EXPECT_TRUE(seen.insert(t.name).second) << "duplicate";
    EXPECT_LE(t.name.size(), 63u);
    auto it = expected.find(t.name);
    ASSERT_NE(it, expected.end()) << "not in the source";
    const safetensors::TensorEntry& src = *it->second;
    // Shape: reversed ne == torch shape, n_dims == rank.
    ASSERT_EQ(t.n_dims, src.shape.size());
    for (uint32_t d = 0; d < t.n_dims; ++d) EXPECT_EQ(t.ne[d], src.shape[src.shape.size() - 1 - d]);
    const std::string type(t.format->name);
    // Scales and biases F32; entry/exit unquantized.
    if (t.name.ends_with(".scale") || t.name.ends_with(".bias")) {
      EXPECT_EQ(type, "F32");
    }
    if (IsEntryExit(t.name)) {
      EXPECT_TRUE(e.entry_exit_types.contains(type)) << type;
    }
    // Block weights: the block's type, shared by the whole block.
    const std::string block = BlockOf(t.name);
    if (!block.empty()) {
      const std::string kind = block.substr(0, block.find('.'));
      block_indices[kind].insert(std::stoll(block.substr(block.find('.') + 1)));
      if (t.n_dims == 2) {
        block_weight_types[block].insert(type);
        if (e.block_type) {
          EXPECT_EQ(type, e.block_type(block));
        }
      }
    }
    // Block-size rule and byte size.
    if (t.format->quantized) {
      EXPECT_EQ(t.ne[0] % t.format->block_elems, 0);
    }
    EXPECT_EQ(t.n_bytes, static_cast<uint64_t>(t.n_rows() * (t.ne[0] / t.format->block_elems) * t.format->block_bytes));
    // Types in the loader's fast set.
    static const std::set<std::string> kFast = {"F32",  "F16",  "BF16", "Q8_0", "Q5_1", "Q5_0",   "Q4_1",  "Q4_0",
                                                "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"};
    EXPECT_TRUE(kFast.contains(type)) << type;

    // Round trip against the source.
    std::vector<float> decoded(static_cast<size_t>(t.n_elems())), original(decoded.size());
    ASSERT_TRUE(
        formats::DequantizeRows(*t.format, file->TensorData(t).data(), decoded.data(), t.n_rows(), t.ne[0], 1).ok());
    ASSERT_TRUE(safetensors::DecodeToF32(*src.dtype, checkpoint->Data(src), original.data()).ok());
    double err = 0, ref = 0;
    for (size_t i = 0; i < decoded.size(); ++i) {
      err += (static_cast<double>(decoded[i]) - original[i]) * (static_cast<double>(decoded[i]) - original[i]);
      ref += static_cast<double>(original[i]) * original[i];
    }
    const double rel = ref > 0 ? std::sqrt(err / ref) : std::sqrt(err);
    EXPECT_LE(rel, RelErrorBound(*t.format, *src.dtype)) << type << " from " << src.dtype->name;
  }
  for (const auto& [block, types] : block_weight_types) EXPECT_EQ(types.size(), 1u) << block;
  for (const auto& [kind, indices] : block_indices) {
    EXPECT_EQ(*indices.begin(), 0) << kind;
    EXPECT_EQ(*indices.rbegin(), static_cast<int64_t>(indices.size()) - 1) << kind << " has gaps";
  }

  // Payloads tile the data section in order, with only zero padding between them.
  uint64_t expected_offset = 0;
  for (const auto& t : file->tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    ASSERT_EQ(t.offset, expected_offset) << t.name;
    const uint64_t end = file->data_offset() + t.offset + t.n_bytes;
    expected_offset = (t.offset + t.n_bytes + 31) / 32 * 32;
    for (uint64_t p = end; p < file->data_offset() + expected_offset && p < bytes.size(); ++p) {
      ASSERT_EQ(bytes[p], 0) << "padding after " << t.name;
    }
  }
  EXPECT_EQ(file->data_offset() + expected_offset, bytes.size());
}

}  // namespace mixq::diffusion::testing

#endif  // MIXQ_TESTS_DIFFUSION_FLUX_CHECKLIST_H_
