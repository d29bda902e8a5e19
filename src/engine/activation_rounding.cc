// How ggml's CPU backend rounds activations before multiplying them with
// stored weights: it converts each activation row to the weight format's
// "vec_dot_type" and computes exact block dot products from there. Rounding
// the activations the same way and multiplying in F32 reproduces its results
// up to float summation order. The block rules follow ggml's x86 code:
//  - Q8_0 (32 values): d = amax/127 stored as F16, q = round-half-even(x·127/amax);
//  - Q8_K (256 values): iscale = -127/v where v is the first value of largest
//    magnitude, q = min(127, round-half-even(iscale·x)), d = 1/iscale in F32.
#include <algorithm>
#include <cmath>

#include "engine/internal.h"

namespace mixq::engine {
namespace {

// One Q8_0 block: the int8 values and the stored (F16-rounded) d.
float QuantizeQ8_0Block(const float* x, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) q[j] = static_cast<int8_t>(RoundToInt(x[j] * id));
  return formats::F16ToF32(formats::F32ToF16(d));
}

// One Q8_K block: the int8 values and d (0 for an all-zero block).
float QuantizeQ8_KBlock(const float* x, int8_t* q) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < 256; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax == 0.0f) {
    std::fill(q, q + 256, int8_t{0});
    return 0.0f;
  }
  const float iscale = -127.0f / max;
  for (int j = 0; j < 256; ++j) q[j] = static_cast<int8_t>(std::min(127.0f, RoundToInt(iscale * x[j])));
  return 1.0f / iscale;
}

using QuantizeBlockFn = float (*)(const float* x, int8_t* q);

QuantizeBlockFn BlockQuantizer(ActRounding rounding, int* block) {
  *block = rounding == ActRounding::kQ8_K ? 256 : 32;
  return rounding == ActRounding::kQ8_K ? QuantizeQ8_KBlock : QuantizeQ8_0Block;
}

void RoundBlocks(ActRounding rounding, const float* x, float* out, int64_t n) {
  int block;
  const QuantizeBlockFn quantize = BlockQuantizer(rounding, &block);
  int8_t q[256];
  for (int64_t b = 0; b < n; b += block) {
    const float d = quantize(x + b, q);
    for (int j = 0; j < block; ++j) out[b + j] = d * static_cast<float>(q[j]);
  }
}

}  // namespace

ActRounding RoundingFor(const formats::Format& f) {
  const formats::Format* to = f.vec_dot();
  if (to == nullptr) return ActRounding::kNone;
  if (to->name == "F16") return ActRounding::kF16;
  if (to->name == "BF16") return ActRounding::kBF16;
  // Q8_1 rounds its values as Q8_0 does; only its stored sum differs.
  return to->block_elems == 256 ? ActRounding::kQ8_K : ActRounding::kQ8_0;
}

void RoundActivations(ActRounding rounding, const float* x, int64_t n_rows, int64_t n, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = out + r * n;
    switch (rounding) {
      case ActRounding::kNone:
        std::copy(xr, xr + n, yr);
        break;
      case ActRounding::kF16:
        for (int64_t i = 0; i < n; ++i) yr[i] = RoundToHalf(xr[i]);
        break;
      case ActRounding::kBF16:
        for (int64_t i = 0; i < n; ++i) yr[i] = RoundToBFloat16(xr[i]);
        break;
      case ActRounding::kQ8_0:
      case ActRounding::kQ8_K:
        RoundBlocks(rounding, xr, yr, n);
        break;
    }
  }
}

void QuantizeActivations(ActRounding rounding, const float* x, int64_t n, int group, uint8_t* q, float* d,
                         float* sums) {
  int block;
  const QuantizeBlockFn quantize = BlockQuantizer(rounding, &block);
  int8_t v[256];
  for (int64_t b = 0; b < n; b += block) {
    d[b / block] = quantize(x + b, v);
    for (int j = 0; j < block; ++j) q[b + j] = static_cast<uint8_t>(v[j] + 128);
    for (int g = 0; g < block; g += group) {
      int32_t sum = 0;
      for (int j = g; j < g + group; ++j) sum += v[j];
      sums[(b + g) / group] = static_cast<float>(sum);
    }
  }
}

}  // namespace mixq::engine
