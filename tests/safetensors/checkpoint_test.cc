#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "safetensors/safetensors.h"
#include "test_support.h"

namespace mixq::safetensors {
namespace {

using testing::TempDir;

void WriteShard(const std::string& path, const std::vector<std::string>& names, uint8_t fill) {
  std::vector<TensorDecl> decls;
  for (const auto& n : names) decls.push_back({n, FindDType("F16"), {2}});
  auto w = SafetensorsWriter::Begin(path, decls);
  ASSERT_TRUE(w.has_value());
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<uint8_t> bytes(4, static_cast<uint8_t>(fill + i));
    ASSERT_TRUE(w->WriteTensor(bytes).ok());
  }
  ASSERT_TRUE(w->Finish().ok());
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

class ShardedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteShard(dir_.File("m-00001-of-00002.safetensors"), {"b", "d"}, 10);
    WriteShard(dir_.File("m-00002-of-00002.safetensors"), {"a", "c"}, 20);
  }
  std::string Index(const std::string& weight_map) {
    return R"({"metadata":{"total_size":16,"nested":[{"x":1}]},"weight_map":{)" + weight_map + "}}";
  }
  std::string Good() {
    return Index(R"("a":"m-00002-of-00002.safetensors","b":"m-00001-of-00002.safetensors",)"
                 R"("c":"m-00002-of-00002.safetensors","d":"m-00001-of-00002.safetensors")");
  }
  Status OpenWith(const std::string& index_text) {
    WriteText(dir_.File("m.safetensors.index.json"), index_text);
    return Checkpoint::Open(dir_.File("m.safetensors.index.json")).status();
  }
  TempDir dir_;
};

TEST_F(ShardedCheckpoint, MergesShardsInNameOrder) {
  WriteText(dir_.File("m.safetensors.index.json"), Good());
  auto c = Checkpoint::Open(dir_.File("m.safetensors.index.json"));
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_TRUE(c->sharded());
  ASSERT_EQ(c->files().size(), 2u);
  ASSERT_EQ(c->tensors().size(), 4u);
  const std::vector<std::pair<std::string, uint8_t>> expected = {{"a", 20}, {"b", 10}, {"c", 21}, {"d", 11}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& t = c->tensors()[i];
    EXPECT_EQ(t.name, expected[i].first);
    EXPECT_EQ(c->Data(t)[0], expected[i].second) << t.name;
  }
  EXPECT_EQ(c->Find("c")->shard, 1u);
  EXPECT_EQ(c->total_file_bytes(), std::filesystem::file_size(dir_.File("m-00001-of-00002.safetensors")) +
                                       std::filesystem::file_size(dir_.File("m-00002-of-00002.safetensors")));
}

TEST_F(ShardedCheckpoint, RejectsIndexesThatDisagreeWithTheShards) {
  auto expect = [](const Status& s, const std::string& fragment) {
    ASSERT_FALSE(s.ok()) << fragment;
    EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("m.safetensors.index.json"), std::string::npos) << s.message();
  };
  expect(OpenWith(Index(R"("a":"m-00002-of-00002.safetensors","b":"m-00001-of-00002.safetensors",)"
                        R"("c":"m-00002-of-00002.safetensors","d":"m-00001-of-00002.safetensors",)"
                        R"("e":"m-00002-of-00002.safetensors")")),
         "tensor 'e' is missing from shard");
  expect(OpenWith(Index(R"("a":"m-00002-of-00002.safetensors","b":"m-00001-of-00002.safetensors",)"
                        R"("c":"m-00001-of-00002.safetensors","d":"m-00001-of-00002.safetensors")")),
         "'weight_map' puts it in 'm-00001-of-00002.safetensors'");
  expect(OpenWith(Index(R"("a":"m-00002-of-00002.safetensors","b":"m-00001-of-00002.safetensors",)"
                        R"("d":"m-00001-of-00002.safetensors")")),
         "holds tensor 'c', which 'weight_map' does not list");
  expect(OpenWith(Index(R"("a":"../m-00002-of-00002.safetensors")")), "not a file name");
  expect(OpenWith(Index(R"("a":"missing.safetensors")")), "shard 'missing.safetensors'");
  expect(OpenWith(Index("")), "lists no tensors");
  expect(OpenWith(R"({"metadata":{}})"), "no 'weight_map'");
  expect(OpenWith(R"({"weight_map":{"a":1}})"), "not a string");
  expect(OpenWith(R"({"weight_map":{"a":"x","a":"y"}})"), "listed twice");
  expect(OpenWith(R"({"weight_map":)"), "invalid JSON");
}

TEST(Checkpoint, OpensASingleFile) {
  TempDir dir;
  WriteShard(dir.File("one.safetensors"), {"x", "w"}, 1);
  auto c = Checkpoint::Open(dir.File("one.safetensors"));
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_FALSE(c->sharded());
  EXPECT_EQ(c->tensors().front().name, "w");
  EXPECT_EQ(c->Data(*c->Find("x"))[0], 1);
  auto missing = Checkpoint::Open(dir.File("none.safetensors"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind(), StatusKind::kIOError);
}

}  // namespace
}  // namespace mixq::safetensors
