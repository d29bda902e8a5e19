// Base logits files (MQBL, LGT2) as a hostile user may hand them to
// `eval --base-logits`: headers that promise more than the file holds, and
// logits whose log-probs do not fit a float.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/internal.h"
#include "test_support.h"

namespace mixq::engine {
namespace {

template <typename T>
void Put(std::vector<uint8_t>& out, T value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

// Magic and the six header fields (n_ctx, n_chunks, n_vocab, first, n_scored, flags).
std::vector<uint8_t> Lgt2Header(uint32_t n_ctx, uint32_t n_chunks, uint32_t n_vocab) {
  std::vector<uint8_t> out = {'L', 'G', 'T', '2'};
  for (uint32_t v : {n_ctx, n_chunks, n_vocab, n_ctx / 2, n_ctx - 1 - n_ctx / 2, 0u}) Put(out, v);
  return out;
}

// A header of 2^31 chunks of 65536 tokens in a file of 32 bytes: refused
// from the file's size, before the tokens are allocated (found by
// base_logits_fuzz; seeds/base_logits/fuzz-oom-token-count.lgt2 is its input).
TEST(BaseLogitsFile, TokenCountBeyondTheFileIsRefusedBeforeAllocating) {
  testing::TempDir dir;
  testing::WriteFileBytes(dir.File("huge.lgt2"), Lgt2Header(65536, 1u << 31, 4));
  auto base = BaseLogits::Open(dir.File("huge.lgt2"));
  ASSERT_FALSE(base.has_value());
  EXPECT_EQ(base.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(base.error().message().find("huge.lgt2"), std::string::npos) << base.error().message();
}

// Finite logits 3e38 apart have a log-prob of -inf in float: the chunk is
// refused instead of passing -inf on to KLD (seen while writing
// base_logits_fuzz, whose check fails on seeds/base_logits/float-range-logits.lgt2).
TEST(BaseLogitsFile, LogitsSpanningMoreThanTheFloatRangeAreRefused) {
  testing::TempDir dir;
  std::vector<uint8_t> bytes = Lgt2Header(4, 1, 2);
  for (int32_t token : {0, 1, 0, 1}) Put(bytes, token);
  for (float logit : {3e38f, -3e38f}) Put(bytes, logit);
  testing::WriteFileBytes(dir.File("range.lgt2"), bytes);
  auto base = BaseLogits::Open(dir.File("range.lgt2"));
  ASSERT_TRUE(base.has_value()) << base.error().message();
  BaseRows rows;
  const Status s = ReadBaseChunk(*base, 0, &rows);
  ASSERT_FALSE(s.ok()) << "log-probs: " << rows.lp[0] << ", " << rows.lp[1];
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
}

}  // namespace
}  // namespace mixq::engine
