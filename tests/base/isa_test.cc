// The ISA decision: the environment can only lower the level, never raise it
// past the CPU, and an unknown name falls back to the portable code.
#include "base/isa.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace mixq {
namespace {

TEST(Isa, UnsetMeansTheBest) {
  for (Isa best : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) EXPECT_EQ(ResolveIsa(std::nullopt, best), best);
}

TEST(Isa, ANamedLevelIsTakenWhereTheCpuHasIt) {
  EXPECT_EQ(ResolveIsa("scalar", Isa::kAvx512), Isa::kScalar);
  EXPECT_EQ(ResolveIsa("avx2", Isa::kAvx512), Isa::kAvx2);
  EXPECT_EQ(ResolveIsa("avx512", Isa::kAvx512), Isa::kAvx512);
  EXPECT_EQ(ResolveIsa("avx2", Isa::kAvx2), Isa::kAvx2);
}

TEST(Isa, ALevelTheCpuLacksGivesTheBestItHas) {
  EXPECT_EQ(ResolveIsa("avx512", Isa::kAvx2), Isa::kAvx2);
  EXPECT_EQ(ResolveIsa("avx512", Isa::kScalar), Isa::kScalar);
  EXPECT_EQ(ResolveIsa("avx2", Isa::kScalar), Isa::kScalar);
}

TEST(Isa, AnUnknownNameGivesScalar) {
  for (const char* name : {"", "AVX2", "avx", "sse2", "avx512f", "native"}) {
    EXPECT_EQ(ResolveIsa(name, Isa::kAvx512), Isa::kScalar) << name;
  }
}

TEST(Isa, NamesRoundTrip) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) EXPECT_EQ(ResolveIsa(IsaName(isa), Isa::kAvx512), isa);
}

TEST(Isa, BestIsSupportedAndLevelsAreNested) {
  EXPECT_TRUE(IsaSupported(Isa::kScalar));
  EXPECT_TRUE(IsaSupported(BestSupportedIsa()));
  if (IsaSupported(Isa::kAvx512)) {
    EXPECT_TRUE(IsaSupported(Isa::kAvx2));
    EXPECT_EQ(BestSupportedIsa(), Isa::kAvx512);
  }
}

TEST(Isa, ActiveFollowsTheEnvironment) {
  const char* requested = std::getenv("MIXQ_ISA");
  EXPECT_EQ(ActiveIsa(), ResolveIsa(requested != nullptr ? std::optional<std::string_view>(requested) : std::nullopt,
                                    BestSupportedIsa()));
  EXPECT_TRUE(IsaSupported(ActiveIsa()));
}

}  // namespace
}  // namespace mixq
