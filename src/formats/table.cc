// The format table (ggml-formats.md §2.1) and the lookups over it.
#include <array>
#include <cctype>
#include <limits>

#include "formats/codecs.h"
#include "formats/formats.h"

namespace mixq::formats {
namespace internal {
namespace {

constexpr Format Plain(std::string_view name, uint32_t id, int32_t bytes) {
  return {name, id, 1, bytes, false, nullptr, nullptr, nullptr};
}
constexpr Format Quantized(std::string_view name, uint32_t id, int32_t elems, int32_t bytes) {
  return {name, id, elems, bytes, true, nullptr, nullptr, nullptr};
}
constexpr Format Removed(std::string_view name, uint32_t id) {
  return {name, id, 0, 0, false, nullptr, nullptr, nullptr};
}

// Types whose encoders need no search have the same function for both methods.
constexpr std::array<Format, kGgmlTypeCount> kFormats = {{
    {"F32", 0, 1, 4, false, dequantize_f32, quantize_f32_ggml, quantize_f32_ggml},
    {"F16", 1, 1, 2, false, dequantize_f16, quantize_f16_ggml, quantize_f16_ggml},
    {"Q4_0", 2, 32, 18, true, dequantize_q4_0, quantize_q4_0_ggml, quantize_q4_0_best},
    {"Q4_1", 3, 32, 20, true, dequantize_q4_1, quantize_q4_1_ggml, quantize_q4_1_best},
    Removed("Q4_2", 4),
    Removed("Q4_3", 5),
    {"Q5_0", 6, 32, 22, true, dequantize_q5_0, quantize_q5_0_ggml, quantize_q5_0_best},
    {"Q5_1", 7, 32, 24, true, dequantize_q5_1, quantize_q5_1_ggml, quantize_q5_1_best},
    {"Q8_0", 8, 32, 34, true, dequantize_q8_0, quantize_q8_0_ggml, quantize_q8_0_best},
    Quantized("Q8_1", 9, 32, 36),
    {"Q2_K", 10, 256, 84, true, dequantize_q2_k, quantize_q2_k_ggml, quantize_q2_k_best},
    {"Q3_K", 11, 256, 110, true, dequantize_q3_k, quantize_q3_k_ggml, quantize_q3_k_best},
    {"Q4_K", 12, 256, 144, true, dequantize_q4_k, quantize_q4_k_ggml, quantize_q4_k_best},
    {"Q5_K", 13, 256, 176, true, dequantize_q5_k, quantize_q5_k_ggml, quantize_q5_k_best},
    {"Q6_K", 14, 256, 210, true, dequantize_q6_k, quantize_q6_k_ggml, quantize_q6_k_best},
    Quantized("Q8_K", 15, 256, 292),
    {"IQ2_XXS", 16, 256, 66, true, dequantize_iq2_xxs, nullptr, nullptr},
    {"IQ2_XS", 17, 256, 74, true, dequantize_iq2_xs, nullptr, nullptr},
    {"IQ3_XXS", 18, 256, 98, true, dequantize_iq3_xxs, nullptr, nullptr},
    {"IQ1_S", 19, 256, 50, true, dequantize_iq1_s, nullptr, nullptr},
    {"IQ4_NL", 20, 32, 18, true, dequantize_iq4_nl, quantize_iq4_nl_ggml, quantize_iq4_nl_best},
    {"IQ3_S", 21, 256, 110, true, dequantize_iq3_s, nullptr, nullptr},
    {"IQ2_S", 22, 256, 82, true, dequantize_iq2_s, nullptr, nullptr},
    {"IQ4_XS", 23, 256, 136, true, dequantize_iq4_xs, quantize_iq4_xs_ggml, quantize_iq4_xs_best},
    Plain("I8", 24, 1),
    Plain("I16", 25, 2),
    Plain("I32", 26, 4),
    Plain("I64", 27, 8),
    Plain("F64", 28, 8),
    {"IQ1_M", 29, 256, 56, true, dequantize_iq1_m, nullptr, nullptr},
    {"BF16", 30, 1, 2, false, dequantize_bf16, quantize_bf16_ggml, quantize_bf16_ggml},
    Removed("Q4_0_4_4", 31),
    Removed("Q4_0_4_8", 32),
    Removed("Q4_0_8_8", 33),
    {"TQ1_0", 34, 256, 54, true, dequantize_tq1_0, nullptr, nullptr},
    {"TQ2_0", 35, 256, 66, true, dequantize_tq2_0, nullptr, nullptr},
    Removed("IQ4_NL_4_4", 36),
    Removed("IQ4_NL_4_8", 37),
    Removed("IQ4_NL_8_8", 38),
    {"MXFP4", 39, 32, 17, true, dequantize_mxfp4, nullptr, nullptr},
    {"NVFP4", 40, 64, 36, true, dequantize_nvfp4, nullptr, nullptr},
    {"Q1_0", 41, 128, 18, true, dequantize_q1_0, nullptr, nullptr},
    {"Q2_0", 42, 64, 18, true, dequantize_q2_0, nullptr, nullptr},
}};

constexpr bool IdsMatchPositions() {
  for (uint32_t i = 0; i < kFormats.size(); ++i) {
    if (kFormats[i].ggml_id != i) return false;
  }
  return true;
}
static_assert(IdsMatchPositions(), "the table is indexed by ggml id");

}  // namespace
}  // namespace internal

namespace {

using internal::kFormats;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

}  // namespace

std::span<const Format> AllFormats() { return kFormats; }

const Format* FindFormat(uint32_t ggml_id) { return ggml_id < kFormats.size() ? &kFormats[ggml_id] : nullptr; }

const Format* FindFormatByName(std::string_view name) {
  for (const Format& f : kFormats) {
    if (!f.removed() && EqualsIgnoreCase(f.name, name)) return &f;
  }
  return nullptr;
}

std::string EncodableFormatNames() {
  std::string names;
  for (const Format& f : kFormats) {
    if (!f.can_encode()) continue;
    if (!names.empty()) names += ", ";
    names += f.name;
  }
  return names;
}

Result<int64_t> RowBytes(const Format& format, int64_t n_elems) {
  if (format.removed()) {
    return Status::InvalidArgument("type " + std::string(format.name) + " was removed from ggml; no row size");
  }
  if (n_elems < 0 || n_elems % format.block_elems != 0) {
    return Status::InvalidArgument("row of " + std::to_string(n_elems) + " elements does not fit type " +
                                   std::string(format.name) + " (blocks of " + std::to_string(format.block_elems) +
                                   " elements)");
  }
  int64_t n_blocks = n_elems / format.block_elems;
  if (n_blocks > std::numeric_limits<int64_t>::max() / format.block_bytes) {
    return Status::InvalidArgument("row of " + std::to_string(n_elems) + " elements overflows a 64-bit byte count");
  }
  return n_blocks * format.block_bytes;
}

bool RowFits(const Format& format, int64_t n_elems) { return RowBytes(format, n_elems).has_value(); }

}  // namespace mixq::formats
