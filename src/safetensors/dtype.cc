// The safetensors dtype table and the float decoders (comfyui-gguf.md §1).
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/formats.h"
#include "safetensors/safetensors.h"

namespace mixq::safetensors {
namespace {

constexpr std::array<DType, 15> kDTypes = {{
    {"BOOL", 1, false},
    {"U8", 1, false},
    {"I8", 1, false},
    {"F8_E5M2", 1, true},
    {"F8_E4M3", 1, true},
    {"I16", 2, false},
    {"U16", 2, false},
    {"F16", 2, true},
    {"BF16", 2, true},
    {"I32", 4, false},
    {"U32", 4, false},
    {"F32", 4, true},
    {"F64", 8, false},
    {"I64", 8, false},
    {"U64", 8, false},
}};

// float8_e4m3fn: bias 7, no infinities, only S.1111.111 is NaN; subnormals
// when the exponent field is 0.
float E4M3ToF32(uint8_t bits) {
  const int exponent = (bits >> 3) & 0xF;
  const int mantissa = bits & 0x7;
  if (exponent == 0xF && mantissa == 0x7) return std::numeric_limits<float>::quiet_NaN();
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                                        : std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  return (bits & 0x80) ? -magnitude : magnitude;
}

const std::array<float, 256>& E4M3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = E4M3ToF32(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

template <typename T>
T LoadLe(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The bits that are all ones exactly when an element is NaN or Inf (the
// exponent field; for E4M3, which has no Inf, the exponent and mantissa).
uint32_t NonFiniteMask(std::string_view name) {
  if (name == "F32") return 0x7F800000u;
  if (name == "F16") return 0x7C00u;
  if (name == "BF16") return 0x7F80u;
  if (name == "F8_E5M2") return 0x7Cu;
  if (name == "F8_E4M3") return 0x7Fu;
  return 0;
}

template <typename T>
std::optional<int64_t> FirstWithMaskSet(std::span<const uint8_t> src, uint32_t mask) {
  const uint64_t n = src.size() / sizeof(T);
  for (uint64_t i = 0; i < n; ++i) {
    if ((LoadLe<T>(src.data() + i * sizeof(T)) & mask) == mask) return static_cast<int64_t>(i);
  }
  return std::nullopt;
}

}  // namespace

std::span<const DType> AllDTypes() { return kDTypes; }

const DType* FindDType(std::string_view name) {
  for (const auto& d : kDTypes) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

Status DecodeToF32(const DType& dtype, std::span<const uint8_t> src, float* dst) {
  if (!dtype.is_float) {
    return Status::NotSupported("dtype " + std::string(dtype.name) + " cannot be converted to float");
  }
  if (src.size() % dtype.n_bytes != 0) {
    return Status::InvalidArgument(std::to_string(src.size()) + " bytes are not a whole number of " +
                                   std::string(dtype.name) + " elements");
  }
  const size_t n = src.size() / dtype.n_bytes;
  const uint8_t* p = src.data();
  if (dtype.name == "F32") {
    std::memcpy(dst, p, n * sizeof(float));
  } else if (dtype.name == "F16") {
    for (size_t i = 0; i < n; ++i) dst[i] = formats::F16ToF32(LoadLe<uint16_t>(p + 2 * i));
  } else if (dtype.name == "BF16") {
    for (size_t i = 0; i < n; ++i) dst[i] = formats::BF16ToF32(LoadLe<uint16_t>(p + 2 * i));
  } else if (dtype.name == "F8_E5M2") {
    // E5M2 is the upper byte of an IEEE half.
    for (size_t i = 0; i < n; ++i) dst[i] = formats::F16ToF32(static_cast<uint16_t>(p[i] << 8));
  } else {
    const auto& table = E4M3Table();
    for (size_t i = 0; i < n; ++i) dst[i] = table[p[i]];
  }
  return Status::Ok();
}

std::optional<int64_t> FindNonFinite(const DType& dtype, std::span<const uint8_t> src) {
  const uint32_t mask = NonFiniteMask(dtype.name);
  if (mask == 0) return std::nullopt;
  switch (dtype.n_bytes) {
    case 1:
      return FirstWithMaskSet<uint8_t>(src, mask);
    case 2:
      return FirstWithMaskSet<uint16_t>(src, mask);
    default:
      return FirstWithMaskSet<uint32_t>(src, mask);
  }
}

}  // namespace mixq::safetensors
