// Row kernels behind the format table (formats.h). One signature per role:
//   dequantize_<type>(src, dst, n_elems)                 bit-exact with ggml's to_float
//   quantize_<type>_ggml(src, dst, n_elems, importance)  byte-identical to ggml_quantize_chunk
//   quantize_<type>_best(src, dst, n_elems, importance)  mixq's search (quantized types)
// REQUIRES: n_elems is a multiple of the type's block size; importance is
// nullptr or holds n_elems values. The row is the unit: the legacy types'
// importance path uses whole-row statistics, as ggml does. F32/F16/BF16 need
// no search: round-to-nearest is already the least-error encoding.
#ifndef MIXQ_FORMATS_CODECS_H_
#define MIXQ_FORMATS_CODECS_H_

#include <cstdint>

namespace mixq::formats {
struct IntDecoding;
}  // namespace mixq::formats

namespace mixq::formats::internal {

// Integer forms (int_rows.cc).
extern const IntDecoding kIntQ4K;
extern const IntDecoding kIntQ5K;
extern const IntDecoding kIntQ6K;
extern const IntDecoding kIntQ8_0;

void dequantize_f32(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_f32_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_f16(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_f16_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_bf16(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_bf16_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q4_0(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q4_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q4_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q4_1(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q4_1_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q4_1_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q5_0(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q5_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q5_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q5_1(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q5_1_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q5_1_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q8_0(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q8_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q8_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q2_k(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q2_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q2_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q3_k(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q3_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q3_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q4_k(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q4_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q4_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q5_k(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q5_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q5_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q6_k(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q6_k_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q6_k_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_iq4_nl(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq4_nl_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq4_nl_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_iq4_xs(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq4_xs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq4_xs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

// The lattice types (iq_grid_dequant.cc, iq_grid_quants.cc, iq_grid_best.cc).
// IQ2_XXS and IQ2_XS need importance in ggml; without it they use ones.
void dequantize_iq2_xxs(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq2_xxs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq2_xxs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_iq2_xs(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq2_xs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq2_xs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_iq2_s(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq2_s_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq2_s_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_iq3_xxs(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq3_xxs_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq3_xxs_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_iq3_s(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq3_s_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq3_s_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

// IQ1 (iq_grid_dequant.cc, iq1_quants.cc, iq1_best.cc). IQ1_S needs
// importance in ggml; without it it uses ones.
void dequantize_iq1_s(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq1_s_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq1_s_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_iq1_m(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_iq1_m_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_iq1_m_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

// TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0 and Q2_0 (small_types_dequant.cc,
// small_types.cc, small_types_best.cc); ggml's encoders ignore importance.
void dequantize_tq1_0(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_tq1_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_tq1_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_tq2_0(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_tq2_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_tq2_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_mxfp4(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_mxfp4_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_mxfp4_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_nvfp4(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_nvfp4_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_nvfp4_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q1_0(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q1_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q1_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

void dequantize_q2_0(const uint8_t* src, float* dst, int64_t n_elems);
void quantize_q2_0_ggml(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);
void quantize_q2_0_best(const float* src, uint8_t* dst, int64_t n_elems, const float* importance);

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_CODECS_H_
