#include "base/content_hash.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/file_lock.h"
#include "test_support.h"

namespace mixq {
namespace {

TEST(ContentHash, DependsOnEveryValueAndOnWhereSpansEnd) {
  const std::vector<int32_t> a = {1, 2, 3}, b = {1, 3, 2};
  EXPECT_EQ(HashOfValues(std::span<const int32_t>(a)).size(), 32u);
  EXPECT_EQ(HashOfValues(std::span<const int32_t>(a)), HashOfValues(std::span<const int32_t>(a)));
  EXPECT_NE(HashOfValues(std::span<const int32_t>(a)), HashOfValues(std::span<const int32_t>(b)));
  ContentHasher ab_c, a_bc;
  ab_c.UpdateString("ab");
  ab_c.UpdateString("c");
  a_bc.UpdateString("a");
  a_bc.UpdateString("bc");
  EXPECT_NE(ab_c.HexDigest(), a_bc.HexDigest());
}

TEST(ContentHash, StaleReasonNamesTheFirstChangedField) {
  const CacheKey wanted = {{"model", "m1"}, {"tokens", "t1"}};
  EXPECT_EQ(StaleReason(wanted, wanted), "");
  EXPECT_EQ(StaleReason({{"model", "m1"}, {"tokens", "t2"}}, wanted), "tokens changed");
  EXPECT_EQ(StaleReason({{"model", "m1"}}, wanted), "tokens changed");
  EXPECT_EQ(StaleReason({{"model", "m1"}, {"tokens", "t1"}, {"n_ctx", "8"}}, wanted), "n_ctx changed");
  EXPECT_EQ(StaleReason({}, wanted), "it records no key");
}

TEST(FileLock, LocksFilesAndDirectories) {
  testing::TempDir dir;
  auto on_file = FileLock::Acquire(dir.File("cache"), nullptr);
  ASSERT_TRUE(on_file.has_value()) << on_file.error().message();
  auto on_dir = FileLock::Acquire(dir.path(), nullptr);
  ASSERT_TRUE(on_dir.has_value()) << on_dir.error().message();
  auto missing = FileLock::Acquire(dir.File("no/such/dir"), nullptr);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind(), StatusKind::kIOError);
}

}  // namespace
}  // namespace mixq
