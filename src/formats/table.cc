// The format table (ggml-formats.md §2.1) and the lookups over it.
#include <array>
#include <cctype>
#include <limits>

#include "formats/blocks.h"
#include "formats/codecs.h"
#include "formats/feedback.h"
#include "formats/formats.h"

namespace mixq::formats {
namespace internal {
namespace {

// Ids the columns refer to.
constexpr int32_t kF16 = 1, kQ4_0 = 2, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15,
                  kIQ4_NL = 20, kBF16 = 30;

// One table row, built column by column: B<Block>(...).Decode(...).Encode(...)...
struct Row {
  Format f;
  template <typename Edit>
  constexpr Row Set(Edit edit) const {
    Row r = *this;
    edit(r.f);
    return r;
  }
  constexpr Row Decode(DequantizeRowFn fn) const {
    return Set([&](Format& x) { x.dequantize_row = fn; });
  }
  constexpr Row Encode(QuantizeRowFn ggml, QuantizeRowFn best) const {
    return Set([&](Format& x) {
      x.quantize_row_ggml = ggml;
      x.quantize_row_best = best;
    });
  }
  constexpr Row FileType(int32_t ftype) const {
    return Set([&](Format& x) { x.llama_ftype = ftype; });
  }
  constexpr Row Fallback(int32_t id) const {
    return Set([&](Format& x) { x.shape_fallback_id = id; });
  }
  constexpr Row Head(int32_t id) const {
    return Set([&](Format& x) { x.output_head_id = id; });
  }
  constexpr Row Int(const IntDecoding* d) const {
    return Set([&](Format& x) { x.int_decoding = d; });
  }
  constexpr Row Feedback(const FeedbackCodec* c) const {
    return Set([&](Format& x) { x.feedback = c; });
  }
  constexpr Row NeedsImatrix() const {
    return Set([](Format& x) { x.needs_imatrix = true; });
  }
  constexpr Row ComfyGpu() const {
    return Set([](Format& x) { x.comfyui_gpu = true; });
  }
  constexpr Row Calibration() const {
    return Set([](Format& x) { x.default_calibration = true; });
  }
  constexpr Row VecDot(int32_t id) const {
    return Set([&](Format& x) { x.vec_dot_id = id; });
  }
};

// A block type, its geometry from its block struct.
template <typename Block>
constexpr Row B(std::string_view name, uint32_t id, int32_t vec_dot_id) {
  return {{.name = name,
           .ggml_id = id,
           .block_elems = Block::kElems,
           .block_bytes = sizeof(Block),
           .quantized = true,
           .vec_dot_id = vec_dot_id}};
}
// Plain storage, one element per block.
constexpr Row P(std::string_view name, uint32_t id, int32_t bytes) {
  return {{.name = name, .ggml_id = id, .block_elems = 1, .block_bytes = bytes}};
}
// An id ggml removed: no blocks.
constexpr Row R(std::string_view name, uint32_t id) { return {{.name = name, .ggml_id = id}}; }

// Types whose encoders need no search have the same function for both methods.
constexpr std::array<Row, kGgmlTypeCount> kRows = {{
    P("F32", 0, 4).Decode(dequantize_f32).Encode(quantize_f32_ggml, quantize_f32_ggml).FileType(0),
    P("F16", 1, 2).Decode(dequantize_f16).Encode(quantize_f16_ggml, quantize_f16_ggml).FileType(1).VecDot(kF16),
    B<BlockQ4_0>("Q4_0", 2, kQ8_0)
        .Decode(dequantize_q4_0)
        .Encode(quantize_q4_0_ggml, quantize_q4_0_best)
        .Feedback(&kFeedbackQ4_0)
        .FileType(2)
        .Head(kQ6_K)
        .ComfyGpu(),
    B<BlockQ4_1>("Q4_1", 3, kQ8_1)
        .Decode(dequantize_q4_1)
        .Encode(quantize_q4_1_ggml, quantize_q4_1_best)
        .FileType(3)
        .Head(kQ6_K)
        .ComfyGpu(),
    R("Q4_2", 4),
    R("Q4_3", 5),
    B<BlockQ5_0>("Q5_0", 6, kQ8_0)
        .Decode(dequantize_q5_0)
        .Encode(quantize_q5_0_ggml, quantize_q5_0_best)
        .FileType(8)
        .Head(kQ6_K)
        .ComfyGpu(),
    B<BlockQ5_1>("Q5_1", 7, kQ8_1)
        .Decode(dequantize_q5_1)
        .Encode(quantize_q5_1_ggml, quantize_q5_1_best)
        .FileType(9)
        .Head(kQ6_K)
        .ComfyGpu(),
    B<BlockQ8_0>("Q8_0", 8, kQ8_0)
        .Decode(dequantize_q8_0)
        .Encode(quantize_q8_0_ggml, quantize_q8_0_best)
        .Feedback(&kFeedbackQ8_0)
        .FileType(7)
        .Fallback(kF16)
        .Head(kQ8_0)
        .Int(&kIntQ8_0)
        .ComfyGpu(),
    B<BlockQ8_1>("Q8_1", 9, kQ8_1),
    B<BlockQ2K>("Q2_K", 10, kQ8_K)
        .Decode(dequantize_q2_k)
        .Encode(quantize_q2_k_ggml, quantize_q2_k_best)
        .Feedback(&kFeedbackQ2K)
        .FileType(10)
        .Fallback(kQ4_0)
        .Head(kQ6_K)
        .ComfyGpu()
        .Calibration(),
    B<BlockQ3K>("Q3_K", 11, kQ8_K)
        .Decode(dequantize_q3_k)
        .Encode(quantize_q3_k_ggml, quantize_q3_k_best)
        .Feedback(&kFeedbackQ3K)
        .FileType(12)
        .Fallback(kQ4_0)
        .Head(kQ6_K)
        .ComfyGpu(),
    B<BlockQ4K>("Q4_K", 12, kQ8_K)
        .Decode(dequantize_q4_k)
        .Encode(quantize_q4_k_ggml, quantize_q4_k_best)
        .Feedback(&kFeedbackQ4K)
        .FileType(15)
        .Fallback(kQ5_0)
        .Head(kQ6_K)
        .Int(&kIntQ4K)
        .ComfyGpu()
        .Calibration(),
    B<BlockQ5K>("Q5_K", 13, kQ8_K)
        .Decode(dequantize_q5_k)
        .Encode(quantize_q5_k_ggml, quantize_q5_k_best)
        .Feedback(&kFeedbackQ5K)
        .FileType(17)
        .Fallback(kQ5_1)
        .Head(kQ6_K)
        .Int(&kIntQ5K)
        .ComfyGpu(),
    B<BlockQ6K>("Q6_K", 14, kQ8_K)
        .Decode(dequantize_q6_k)
        .Encode(quantize_q6_k_ggml, quantize_q6_k_best)
        .Feedback(&kFeedbackQ6K)
        .FileType(18)
        .Fallback(kQ8_0)
        .Head(kQ6_K)
        .Int(&kIntQ6K)
        .ComfyGpu(),
    B<BlockQ8K>("Q8_K", 15, kNoType),
    B<BlockIQ2XXS>("IQ2_XXS", 16, kQ8_K)
        .Decode(dequantize_iq2_xxs)
        .Encode(quantize_iq2_xxs_ggml, quantize_iq2_xxs_best)
        .FileType(19)
        .Fallback(kIQ4_NL)
        .Head(kQ5_K)
        .NeedsImatrix(),
    B<BlockIQ2XS>("IQ2_XS", 17, kQ8_K)
        .Decode(dequantize_iq2_xs)
        .Encode(quantize_iq2_xs_ggml, quantize_iq2_xs_best)
        .FileType(20)
        .Fallback(kIQ4_NL)
        .Head(kQ5_K)
        .NeedsImatrix(),
    B<BlockIQ3XXS>("IQ3_XXS", 18, kQ8_K)
        .Decode(dequantize_iq3_xxs)
        .Encode(quantize_iq3_xxs_ggml, quantize_iq3_xxs_best)
        .FileType(23)
        .Fallback(kIQ4_NL)
        .Head(kQ5_K),
    B<BlockIQ1S>("IQ1_S", 19, kQ8_K)
        .Decode(dequantize_iq1_s)
        .Encode(quantize_iq1_s_ggml, quantize_iq1_s_best)
        .FileType(24)
        .Fallback(kIQ4_NL)
        .Head(kQ5_K)
        .NeedsImatrix(),
    B<BlockIQ4NL>("IQ4_NL", 20, kQ8_0)
        .Decode(dequantize_iq4_nl)
        .Encode(quantize_iq4_nl_ggml, quantize_iq4_nl_best)
        .FileType(25)
        .Fallback(kF16)
        .Head(kQ6_K)
        .ComfyGpu(),
    B<BlockIQ3S>("IQ3_S", 21, kQ8_K)
        .Decode(dequantize_iq3_s)
        .Encode(quantize_iq3_s_ggml, quantize_iq3_s_best)
        .FileType(26)
        .Fallback(kIQ4_NL)
        .Head(kQ6_K),
    B<BlockIQ2S>("IQ2_S", 22, kQ8_K)
        .Decode(dequantize_iq2_s)
        .Encode(quantize_iq2_s_ggml, quantize_iq2_s_best)
        .FileType(29)
        .Fallback(kIQ4_NL)
        .Head(kQ5_K),
    B<BlockIQ4XS>("IQ4_XS", 23, kQ8_K)
        .Decode(dequantize_iq4_xs)
        .Encode(quantize_iq4_xs_ggml, quantize_iq4_xs_best)
        .Feedback(&kFeedbackIQ4XS)
        .FileType(30)
        .Fallback(kIQ4_NL)
        .Head(kQ6_K)
        .ComfyGpu(),
    P("I8", 24, 1),
    P("I16", 25, 2),
    P("I32", 26, 4),
    P("I64", 27, 8),
    P("F64", 28, 8),
    B<BlockIQ1M>("IQ1_M", 29, kQ8_K)
        .Decode(dequantize_iq1_m)
        .Encode(quantize_iq1_m_ggml, quantize_iq1_m_best)
        .FileType(31)
        .Fallback(kIQ4_NL)
        .Head(kQ5_K),
    P("BF16", 30, 2).Decode(dequantize_bf16).Encode(quantize_bf16_ggml, quantize_bf16_ggml).FileType(32).VecDot(kBF16),
    R("Q4_0_4_4", 31),
    R("Q4_0_4_8", 32),
    R("Q4_0_8_8", 33),
    B<BlockTQ1_0>("TQ1_0", 34, kQ8_K)
        .Decode(dequantize_tq1_0)
        .Encode(quantize_tq1_0_ggml, quantize_tq1_0_best)
        .FileType(36)
        .Fallback(kQ4_0)
        .Head(kQ6_K),
    B<BlockTQ2_0>("TQ2_0", 35, kQ8_K)
        .Decode(dequantize_tq2_0)
        .Encode(quantize_tq2_0_ggml, quantize_tq2_0_best)
        .FileType(37)
        .Fallback(kQ4_0)
        .Head(kQ6_K),
    R("IQ4_NL_4_4", 36),
    R("IQ4_NL_4_8", 37),
    R("IQ4_NL_8_8", 38),
    B<BlockMXFP4>("MXFP4", 39, kQ8_0)
        .Decode(dequantize_mxfp4)
        .Encode(quantize_mxfp4_ggml, quantize_mxfp4_best)
        .FileType(38)
        .Head(kQ8_0),
    B<BlockNVFP4>("NVFP4", 40, kQ8_0)
        .Decode(dequantize_nvfp4)
        .Encode(quantize_nvfp4_ggml, quantize_nvfp4_best)
        .FileType(39)
        .Head(kQ6_K),
    B<BlockQ1_0>("Q1_0", 41, kQ8_0)
        .Decode(dequantize_q1_0)
        .Encode(quantize_q1_0_ggml, quantize_q1_0_best)
        .FileType(40)
        .Head(kQ6_K),
    B<BlockQ2_0>("Q2_0", 42, kQ8_0)
        .Decode(dequantize_q2_0)
        .Encode(quantize_q2_0_ggml, quantize_q2_0_best)
        .FileType(41)
        .Fallback(kQ4_0)
        .Head(kQ6_K),
}};

constexpr std::array<Format, kGgmlTypeCount> Formats() {
  std::array<Format, kGgmlTypeCount> out{};
  for (size_t i = 0; i < kRows.size(); ++i) out[i] = kRows[i].f;
  return out;
}
constexpr std::array<Format, kGgmlTypeCount> kFormats = Formats();

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

// Comma-separated names of the table's formats that `keep` accepts, in table order.
template <typename Keep>
std::string JoinFormatNames(Keep keep) {
  std::string names;
  for (const Format& f : kFormats) {
    if (!keep(f)) continue;
    if (!names.empty()) names += ", ";
    names += f.name;
  }
  return names;
}

}  // namespace

std::span<const Format> AllFormats() { return kFormats; }

namespace {
const Format* ById(int32_t id) { return id == kNoType ? nullptr : FindFormat(static_cast<uint32_t>(id)); }
}  // namespace

const Format* Format::vec_dot() const { return ById(vec_dot_id); }
const Format* Format::shape_fallback() const { return ById(shape_fallback_id); }
const Format* Format::output_head() const { return ById(output_head_id); }

const Format* FindFormat(uint32_t ggml_id) { return ggml_id < kFormats.size() ? &kFormats[ggml_id] : nullptr; }

const Format* FindFormatByName(std::string_view name) {
  for (const Format& f : kFormats) {
    if (!f.removed() && EqualsIgnoreCase(f.name, name)) return &f;
  }
  return nullptr;
}

std::string EncodableFormatNames() {
  return JoinFormatNames([](const Format& f) { return f.can_encode(); });
}

std::string DecodeOnlyFormatNames() {
  return JoinFormatNames([](const Format& f) { return f.can_decode() && !f.can_encode(); });
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
