#include "measure/depth_scale.h"

#include <gtest/gtest.h>

#include <cmath>

namespace mixq::measure {
namespace {

TEST(ProbeLayersTest, EvenlySpacedWithFirstAndLast) {
  EXPECT_EQ(ProbeLayers(32, 4), (std::vector<int64_t>{0, 10, 21, 31}));
  EXPECT_EQ(ProbeLayers(6, 4), (std::vector<int64_t>{0, 2, 3, 5}));
  EXPECT_EQ(ProbeLayers(3, 4), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(ProbeLayers(8, 1), (std::vector<int64_t>{4}));
  EXPECT_TRUE(ProbeLayers(0, 4).empty());
}

TEST(RoleOfTest, StripsTheBlockPrefix) {
  EXPECT_EQ(RoleOf("blk.12.ffn_down.weight"), "ffn_down");
  EXPECT_EQ(RoleOf("blk.3.ffn_up_exps.weight"), "ffn_up_exps");
  EXPECT_EQ(RoleOf("output.weight"), "output");
  EXPECT_EQ(RoleOf("double_blocks.7.img_mod.lin.weight"), "double_blocks.7.img_mod.lin.weight");
}

TEST(DepthScaleTest, InterpolatesRatiosGeometricallyAndHoldsThemOutside) {
  DepthScale s;
  s.Add(2, "attn_q.weight", "Q4_K", 1.0, 1.0);
  s.Add(6, "attn_q.weight", "Q4_K", 0.5, 8.0);  // ratio 16
  EXPECT_NEAR(s.Predict(4, "attn_q.weight", "Q4_K", 1.0), 4.0, 1e-9);
  EXPECT_NEAR(s.Predict(3, "attn_q.weight", "Q4_K", 2.0), 4.0, 1e-9);
  EXPECT_NEAR(s.Predict(0, "attn_q.weight", "Q4_K", 3.0), 3.0, 1e-9);
  EXPECT_NEAR(s.Predict(9, "attn_q.weight", "Q4_K", 1.0), 16.0, 1e-9);
  EXPECT_EQ(s.Predict(4, "attn_q.weight", "Q4_K", 0.0), 0.0);
}

TEST(DepthScaleTest, UnprobedRolesAndTypesFallBackToPooledRatios) {
  DepthScale s;
  s.Add(0, "attn_q.weight", "Q4_K", 1.0, 2.0);
  s.Add(0, "ffn_up.weight", "Q4_K", 1.0, 8.0);
  s.Add(0, "ffn_up.weight", "Q2_K", 1.0, 3.0);
  s.Add(0, "ffn_up.weight", "Q2_K", 0.0, 3.0);  // no ratio: ignored
  EXPECT_NEAR(s.Predict(0, "ffn_down.weight", "Q4_K", 1.0), 4.0, 1e-9);
  EXPECT_NEAR(s.Predict(0, "ffn_up.weight", "Q2_K", 1.0), 3.0, 1e-9);
  EXPECT_NEAR(s.Predict(0, "ffn_up.weight", "Q6_K", 1.0), std::cbrt(2.0 * 8.0 * 3.0), 1e-9);
  EXPECT_EQ(DepthScale().Predict(0, "ffn_up.weight", "Q4_K", 1.0), 0.0);
}

}  // namespace
}  // namespace mixq::measure
