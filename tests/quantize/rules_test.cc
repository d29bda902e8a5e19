#include <gtest/gtest.h>

#include "quantize/quantize.h"

namespace mixq::quantize {
namespace {

gguf::TensorInfo Tensor(const std::string& name, int64_t ne0, int64_t ne1, uint32_t n_dims = 2) {
  gguf::TensorInfo t;
  t.name = name;
  t.n_dims = n_dims;
  t.ne = {ne0, ne1, 1, 1};
  t.format = formats::FindFormatByName("F16");
  t.type_id = t.format->ggml_id;
  return t;
}

const formats::Format* F(const char* name) { return formats::FindFormatByName(name); }

TypeRules Rules(const char* type) {
  TypeRules r;
  r.default_format = F(type);
  return r;
}

std::string Choose(const gguf::TensorInfo& t, const TypeRules& rules, bool tied = false) {
  auto c = ChooseType(t, rules, tied);
  return c.has_value() ? std::string(c->format->name) : "error: " + c.error().message();
}

TEST(TypeRules, NormsAndVectorsStayF32) {
  EXPECT_EQ(Choose(Tensor("blk.0.attn_norm.weight", 256, 1, 1), Rules("Q4_K")), "F32");
  EXPECT_EQ(Choose(Tensor("blk.0.attn_q.bias", 256, 1, 1), Rules("Q4_K")), "F32");
}

TEST(TypeRules, OutputHeadFollowsLlamaCppDefaults) {
  EXPECT_EQ(Choose(Tensor("output.weight", 256, 4096), Rules("Q4_K")), "Q6_K");
  EXPECT_EQ(Choose(Tensor("output.weight", 256, 4096), Rules("Q8_0")), "Q8_0");
  EXPECT_EQ(Choose(Tensor("output.weight", 256, 4096), Rules("F16")), "F16");
  EXPECT_EQ(Choose(Tensor("token_embd.weight", 256, 4096), Rules("Q4_K")), "Q4_K");
  // Tied embeddings: token_embd is the output head.
  EXPECT_EQ(Choose(Tensor("token_embd.weight", 256, 4096), Rules("Q4_K"), true), "Q6_K");
  TypeRules r = Rules("Q4_K");
  r.output_format = F("Q8_0");
  r.token_embd_format = F("Q5_K");
  EXPECT_EQ(Choose(Tensor("output.weight", 256, 4096), r), "Q8_0");
  EXPECT_EQ(Choose(Tensor("token_embd.weight", 256, 4096), r), "Q5_K");
}

TEST(TypeRules, OverridesFirstMatchWinsAndPlanIsExact) {
  TypeRules r = Rules("Q4_K");
  r.overrides.push_back(*ParseTensorTypeOverride("attn_v=Q8_0"));
  r.overrides.push_back(*ParseTensorTypeOverride("blk\\.0\\.=Q5_K"));
  EXPECT_EQ(Choose(Tensor("blk.0.attn_v.weight", 256, 128), r), "Q8_0");
  EXPECT_EQ(Choose(Tensor("blk.0.attn_q.weight", 256, 256), r), "Q5_K");
  EXPECT_EQ(Choose(Tensor("blk.1.attn_q.weight", 256, 256), r), "Q4_K");
  r.exact["blk.0.attn_v.weight"] = F("Q2_K");
  EXPECT_EQ(Choose(Tensor("blk.0.attn_v.weight", 256, 128), r), "Q2_K");
}

TEST(TypeRules, ShapeFallbacks) {
  EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 96, 256), Rules("Q4_K")), "Q5_0");
  EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 96, 256), Rules("Q6_K")), "Q8_0");
  EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 96, 256), Rules("IQ4_XS")), "IQ4_NL");
  EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 96, 256), Rules("Q3_K")), "Q4_0");
  EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 100, 256), Rules("Q4_K")), "F16");
  // llama.cpp's tensor_type_fallback for the lattice, ternary and 2026 types.
  for (const char* t : {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"}) {
    EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 96, 256), Rules(t)), "IQ4_NL") << t;
  }
  for (const char* t : {"TQ1_0", "TQ2_0", "Q2_0"}) {
    EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 96, 256), Rules(t)), "Q4_0") << t;
  }
  EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 96, 256), Rules("Q1_0")), "F16");
  EXPECT_EQ(Choose(Tensor("blk.0.ffn_down.weight", 48, 256), Rules("MXFP4")), "F16");
  auto c = ChooseType(Tensor("blk.0.ffn_down.weight", 96, 256), Rules("Q4_K"), false);
  ASSERT_TRUE(c.has_value());
  EXPECT_NE(c->note.find("does not fit Q4_K"), std::string::npos);
}

TEST(TypeRules, BadOverridesAreRejectedWithTheValidNames) {
  auto bad_type = ParseTensorTypeOverride("attn_v=Q9_X");
  ASSERT_FALSE(bad_type.has_value());
  EXPECT_NE(bad_type.error().message().find("Q4_K"), std::string::npos);
  EXPECT_FALSE(ParseTensorTypeOverride("attn_v").has_value());
  EXPECT_FALSE(ParseTensorTypeOverride("([=Q4_K").has_value());
}

}  // namespace
}  // namespace mixq::quantize
