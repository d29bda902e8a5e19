// Truncated, flipped and lying GGUF files must give a clean error, never a crash
// (run under the sanitizer build in CI).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

#include "gguf/gguf.h"
#include "test_support.h"

namespace mixq::gguf {
namespace {

std::vector<uint8_t> RefDevBytes() { return testing::ReadFileBytes(testing::RefDevModel()); }

template <typename T>
void Poke(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

TEST(GgufCorruption, EveryTruncationFailsCleanly) {
  auto bytes = RefDevBytes();
  auto full = GgufFile::Parse(bytes);
  ASSERT_TRUE(full.has_value());
  const uint64_t header_end = full->data_offset();
  // Every cut inside the header region, then a sample of cuts inside the data.
  std::vector<uint64_t> cuts;
  for (uint64_t n = 0; n < header_end; n += (n < 4096 ? 1 : 97)) cuts.push_back(n);
  for (uint64_t n = header_end; n < bytes.size(); n += bytes.size() / 50) cuts.push_back(n);
  cuts.push_back(bytes.size() - 1);
  for (uint64_t n : cuts) {
    auto r = GgufFile::Parse(std::span<const uint8_t>(bytes.data(), n));
    ASSERT_FALSE(r.has_value()) << "accepted a file truncated to " << n << " bytes";
    EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
  }
}

TEST(GgufCorruption, RandomByteFlipsNeverCrash) {
  auto original = RefDevBytes();
  auto full = GgufFile::Parse(original);
  ASSERT_TRUE(full.has_value());
  std::mt19937_64 rng(12345);
  std::uniform_int_distribution<uint64_t> pos(0, full->data_offset() - 1);
  int rejected = 0;
  auto bytes = original;
  for (int trial = 0; trial < 2000; ++trial) {
    // Flips are undone after each trial instead of copying the whole 13 MB
    // file, which dominated the sanitizer build's test time.
    std::array<std::pair<uint64_t, uint8_t>, 4> flips;
    for (auto& [at, mask] : flips) {
      at = pos(rng);
      mask = static_cast<uint8_t>(1u << (rng() % 8));
      bytes[at] ^= mask;
    }
    {
      auto r = GgufFile::Parse(bytes);
      if (!r.has_value()) {
        ++rejected;
      } else {
        // Whatever was accepted must be internally consistent.
        for (const auto& t : r->tensors()) ASSERT_LE(r->data_offset() + t.offset + t.n_bytes, bytes.size());
      }
    }
    for (const auto& [at, mask] : flips) bytes[at] ^= mask;
  }
  EXPECT_EQ(bytes, original);
  EXPECT_GT(rejected, 0);
}

TEST(GgufCorruption, SpecificLies) {
  auto original = RefDevBytes();
  struct Case {
    const char* what;
    size_t offset;
    uint64_t value;
    size_t width;
  };
  const Case cases[] = {
      {"bad magic", 0, 0x46554746, 4},
      {"version 1", 4, 1, 4},
      {"version 4", 4, 4, 4},
      {"absurd tensor count", 8, 1ull << 60, 8},
      {"negative tensor count", 8, ~0ull, 8},
      {"absurd kv count", 16, 1ull << 40, 8},
      {"first key length past the end", 24, 1ull << 40, 8},
  };
  for (const auto& c : cases) {
    auto bytes = original;
    std::memcpy(bytes.data() + c.offset, &c.value, c.width);
    auto r = GgufFile::Parse(bytes);
    EXPECT_FALSE(r.has_value()) << c.what;
  }
}

TEST(GgufCorruption, UnknownTypeIdAndBadShapeAreRejected) {
  auto original = RefDevBytes();
  auto full = GgufFile::Parse(original);
  ASSERT_TRUE(full.has_value());
  // Find the first tensor info by its name and patch its type id / dims.
  const std::string name = full->tensors()[0].name;
  auto it = std::search(original.begin(), original.end(), name.begin(), name.end());
  ASSERT_NE(it, original.end());
  size_t info = static_cast<size_t>(it - original.begin()) + name.size();
  uint32_t n_dims;
  std::memcpy(&n_dims, original.data() + info, 4);
  size_t type_at = info + 4 + 8 * n_dims;

  auto bytes = original;
  Poke<uint32_t>(bytes, type_at, 4);  // Q4_2: removed from ggml
  auto r = GgufFile::Parse(bytes);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("unknown ggml type id 4"), std::string::npos) << r.error().message();

  bytes = original;
  Poke<uint32_t>(bytes, type_at, 999);
  EXPECT_FALSE(GgufFile::Parse(bytes).has_value());

  bytes = original;
  Poke<int64_t>(bytes, info + 4, -5);
  EXPECT_FALSE(GgufFile::Parse(bytes).has_value());

  bytes = original;
  Poke<int64_t>(bytes, info + 4, 1ll << 40);  // shape far larger than the file
  EXPECT_FALSE(GgufFile::Parse(bytes).has_value());

  bytes = original;
  Poke<uint32_t>(bytes, info, 7);  // 7 dims
  EXPECT_FALSE(GgufFile::Parse(bytes).has_value());
}

// Where the tensor info of `name` starts its dims (after the length-prefixed name).
size_t TensorDimsOffset(const std::vector<uint8_t>& bytes, const std::string& name) {
  std::vector<uint8_t> key(8 + name.size());
  const uint64_t len = name.size();
  std::memcpy(key.data(), &len, 8);
  std::memcpy(key.data() + 8, name.data(), name.size());
  auto it = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
  EXPECT_NE(it, bytes.end()) << name;
  return static_cast<size_t>(it - bytes.begin()) + key.size();
}

// The reported file: ref-dev whose last tensor claims 2^64 - offset bytes, so
// that offset + size wraps to the start of the data.
TEST(GgufCorruption, LastTensorSizeThatWrapsIsRejected) {
  auto bytes = RefDevBytes();
  auto full = GgufFile::Parse(bytes);
  ASSERT_TRUE(full.has_value());
  const TensorInfo& last = full->tensors().back();
  ASSERT_EQ(last.format->block_elems, 1) << "the test needs a float last tensor";
  ASSERT_EQ(last.n_dims, 1u);
  const uint64_t wrapping_bytes = 0 - last.offset;  // 2^64 - offset
  ASSERT_EQ(wrapping_bytes % last.format->block_bytes, 0u);
  const size_t dims = TensorDimsOffset(bytes, last.name) + 4;
  Poke<int64_t>(bytes, dims, static_cast<int64_t>(wrapping_bytes / last.format->block_bytes));

  auto r = GgufFile::Parse(bytes);
  ASSERT_FALSE(r.has_value()) << "accepted " << r->tensors().back().n_bytes << " bytes";
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(r.error().message().find("'" + last.name + "'"), std::string::npos) << r.error().message();
  EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
}

struct TensorLie {
  std::string name;
  std::array<int64_t, 2> ne;
  uint64_t offset;
};

// A GGUF v3 image with no metadata, F32 tensors as described, and `data_bytes`
// zero bytes of data.
std::vector<uint8_t> GgufImage(const std::vector<TensorLie>& tensors, size_t data_bytes) {
  std::vector<uint8_t> bytes;
  auto put = [&](const auto& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof v);
  };
  bytes.insert(bytes.end(), {'G', 'G', 'U', 'F'});
  put(uint32_t{3});
  put(int64_t(tensors.size()));
  put(int64_t{0});  // metadata keys
  for (const auto& t : tensors) {
    put(uint64_t{t.name.size()});
    bytes.insert(bytes.end(), t.name.begin(), t.name.end());
    put(uint32_t{2});
    put(t.ne[0]);
    put(t.ne[1]);
    put(uint32_t{0});  // F32
    put(t.offset);
  }
  bytes.resize((bytes.size() + 31) / 32 * 32 + data_bytes);
  return bytes;
}

// Row sizes that fit, and a total that wraps offset + size past 2^64 to
// exactly the start of the data: only a check by subtraction sees it.
TEST(GgufCorruption, OffsetPlusSizeThatWrapsIsRejected) {
  const int64_t wrapping_rows = static_cast<int64_t>((0 - uint64_t{32}) / 32);  // (2^64 - 32) / 32 bytes a row
  ASSERT_TRUE(GgufFile::Parse(GgufImage({{"a", {8, 1}, 0}, {"b", {8, 1}, 32}}, 64)).has_value());
  auto r = GgufFile::Parse(GgufImage({{"a", {8, 1}, 0}, {"b", {8, wrapping_rows}, 32}}, 64));
  ASSERT_FALSE(r.has_value()) << "accepted " << r->tensors().back().n_bytes << " bytes";
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(r.error().message().find("'b'"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("past the end of the file"), std::string::npos) << r.error().message();
}

// A row too long for a 64-bit byte count, hidden by a zero dimension that
// makes the tensor empty: readers size a row before multiplying by the rows.
TEST(GgufCorruption, RowSizeThatOverflowsIsRejected) {
  ASSERT_TRUE(GgufFile::Parse(GgufImage({{"empty", {256, 0}, 0}}, 0)).has_value());
  auto r = GgufFile::Parse(GgufImage({{"huge_row", {int64_t{1} << 62, 0}, 0}}, 0));
  ASSERT_FALSE(r.has_value()) << "accepted a row of 2^62 F32 values";
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(r.error().message().find("'huge_row'"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace mixq::gguf
