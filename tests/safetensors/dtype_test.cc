#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "safetensors/safetensors.h"

namespace mixq::safetensors {
namespace {

float Decode1(const char* dtype, std::vector<uint8_t> bytes) {
  float out = 0;
  EXPECT_TRUE(DecodeToF32(*FindDType(dtype), bytes, &out).ok());
  return out;
}

TEST(DType, TableHasTheFormatSizes) {
  EXPECT_EQ(AllDTypes().size(), 15u);
  EXPECT_EQ(FindDType("BF16")->n_bytes, 2u);
  EXPECT_EQ(FindDType("F8_E4M3")->n_bytes, 1u);
  EXPECT_EQ(FindDType("U64")->n_bytes, 8u);
  EXPECT_EQ(FindDType("bf16"), nullptr);
  EXPECT_EQ(FindDType("F8_E8M0"), nullptr);
  EXPECT_FALSE(FindDType("I64")->is_float);
}

// Values from the OCP FP8 specification's E4M3 (no infinities) and E5M2 (IEEE-like) definitions.
TEST(DType, DecodesE4M3) {
  EXPECT_EQ(Decode1("F8_E4M3", {0x38}), 1.0f);    // exponent 7 = bias
  EXPECT_EQ(Decode1("F8_E4M3", {0x7E}), 448.0f);  // largest finite
  EXPECT_EQ(Decode1("F8_E4M3", {0xFE}), -448.0f);
  EXPECT_EQ(Decode1("F8_E4M3", {0x08}), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(Decode1("F8_E4M3", {0x01}), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Decode1("F8_E4M3", {0x78}), 256.0f);
  EXPECT_TRUE(std::isnan(Decode1("F8_E4M3", {0x7F})));
  EXPECT_TRUE(std::isnan(Decode1("F8_E4M3", {0xFF})));
  EXPECT_TRUE(std::signbit(Decode1("F8_E4M3", {0x80})));
  // Positive codes 0x00..0x7E increase strictly.
  float prev = -1;
  for (int b = 0; b < 0x7F; ++b) {
    float v = Decode1("F8_E4M3", {static_cast<uint8_t>(b)});
    EXPECT_GT(v, prev) << b;
    prev = v;
  }
}

TEST(DType, DecodesE5M2) {
  EXPECT_EQ(Decode1("F8_E5M2", {0x3C}), 1.0f);
  EXPECT_EQ(Decode1("F8_E5M2", {0x7B}), 57344.0f);
  EXPECT_EQ(Decode1("F8_E5M2", {0x01}), std::ldexp(1.0f, -16));
  EXPECT_TRUE(std::isinf(Decode1("F8_E5M2", {0x7C})));
  EXPECT_TRUE(std::isnan(Decode1("F8_E5M2", {0x7D})));
}

TEST(DType, DecodesWideFloats) {
  EXPECT_EQ(Decode1("BF16", {0x80, 0x3F}), 1.0f);
  EXPECT_EQ(Decode1("BF16", {0x49, 0xC0}), -3.140625f);
  EXPECT_EQ(Decode1("F16", {0x00, 0x3C}), 1.0f);
  EXPECT_EQ(Decode1("F16", {0x01, 0x00}), std::ldexp(1.0f, -24));
  float x = -1.25e-3f;
  std::vector<uint8_t> b(4);
  std::memcpy(b.data(), &x, 4);
  EXPECT_EQ(Decode1("F32", b), x);
}

TEST(DType, RefusesNonFloatAndPartialElements) {
  float out[2];
  std::vector<uint8_t> bytes(8);
  EXPECT_EQ(DecodeToF32(*FindDType("I64"), bytes, out).kind(), StatusKind::kNotSupported);
  std::vector<uint8_t> three(3);
  EXPECT_EQ(DecodeToF32(*FindDType("BF16"), three, out).kind(), StatusKind::kInvalidArgument);
}

TEST(DType, FindsNonFiniteValues) {
  std::vector<uint8_t> bf16 = {0x80, 0x3F, 0x80, 0x3F, 0x80, 0x7F};  // 1, 1, +Inf
  EXPECT_EQ(FindNonFinite(*FindDType("BF16"), bf16), 2);
  bf16[5] = 0x3F;
  EXPECT_EQ(FindNonFinite(*FindDType("BF16"), bf16), std::nullopt);
  EXPECT_EQ(FindNonFinite(*FindDType("F8_E4M3"), std::vector<uint8_t>{0x7E, 0xFF}), 1);
  EXPECT_EQ(FindNonFinite(*FindDType("F8_E5M2"), std::vector<uint8_t>{0xFC}), 0);
  EXPECT_EQ(FindNonFinite(*FindDType("F16"), std::vector<uint8_t>{0x00, 0x7E}), 0);
  float nan = std::nanf("");
  std::vector<uint8_t> f32(8);
  std::memcpy(f32.data() + 4, &nan, 4);
  EXPECT_EQ(FindNonFinite(*FindDType("F32"), f32), 1);
  EXPECT_EQ(FindNonFinite(*FindDType("I32"), f32), std::nullopt);
}

}  // namespace
}  // namespace mixq::safetensors
