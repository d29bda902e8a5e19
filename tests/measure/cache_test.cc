// The measure cache file on its own: what survives a process killed mid-line.
#include "measure/cache.h"

#include <gtest/gtest.h>

#include <string>

#include "test_support.h"

namespace mixq::measure {
namespace {

const CacheKey kKey = {{"model", "m"}};

void WriteText(const std::string& path, const std::string& text) {
  testing::WriteFileBytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

// A run killed mid-write leaves a torn last line; the record the next run
// appends must start a line of its own, not be glued to the torn one and
// lost (found by measure_cache_fuzz; its input is seeds/measure_cache/fuzz-torn-tail.cache).
TEST(MeasurementCache, RecordAppendedAfterATornLineIsKept) {
  testing::TempDir dir;
  const std::string path = dir.File("cache");
  WriteText(path,
            "{\"key\":{\"model\":\"m\"}}\n"
            "{\"tensor\":\"a\",\"types\":[{\"type\":\"Q4_K\",\"n_bytes\":144,\"error\":0.5}]}\n"
            "{\"tensor\":\"b\",\"types\":[{\"type\":\"Q4");
  const TensorRecord b{"b", {{"Q4_K", 144, 0.25, 0.125, 0.5}}};
  {
    MeasurementCache cache(path, kKey);
    ASSERT_TRUE(cache.Load(nullptr).ok());
    EXPECT_NE(cache.Find("a"), nullptr);
    EXPECT_EQ(cache.Find("b"), nullptr);
    ASSERT_TRUE(cache.Append(b).ok());
  }
  MeasurementCache again(path, kKey);
  ASSERT_TRUE(again.Load(nullptr).ok());
  EXPECT_NE(again.Find("a"), nullptr);
  const TensorRecord* found = again.Find("b");
  ASSERT_NE(found, nullptr);
  ASSERT_EQ(found->types.size(), 1u);
  EXPECT_EQ(found->types[0].n_bytes, 144);
  EXPECT_EQ(found->types[0].kld, 0.125);
}

}  // namespace
}  // namespace mixq::measure
