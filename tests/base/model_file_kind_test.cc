#include "base/model_file_kind.h"

#include <gtest/gtest.h>

#include <string>

#include "test_support.h"

namespace mixq {
namespace {

class ModelFileKindTest : public ::testing::Test {
 protected:
  Result<ModelFileKind> KindOf(const std::string& content) {
    testing::WriteFileBytes(dir_.File("f"), std::vector<uint8_t>(content.begin(), content.end()));
    return DetectModelFileKind(dir_.File("f"));
  }
  testing::TempDir dir_;
};

TEST_F(ModelFileKindTest, TellsKindsByTheirFirstBytes) {
  EXPECT_EQ(*DetectModelFileKind(testing::RefDevModel()), ModelFileKind::kGguf);
  EXPECT_EQ(*KindOf(std::string("\x02\0\0\0\0\0\0\0{}", 10)), ModelFileKind::kSafetensors);
  EXPECT_EQ(*KindOf("{\"weight_map\": {}}"), ModelFileKind::kSafetensorsIndex);
  EXPECT_EQ(*KindOf("\n  {\"metadata\": {}}"), ModelFileKind::kSafetensorsIndex);
  // A '{' at byte 8 after a length that is printable text is not a header.
  EXPECT_EQ(*KindOf("{\"abcdef{\"x\":1}"), ModelFileKind::kSafetensorsIndex);
}

TEST_F(ModelFileKindTest, AnythingElseIsCorruptionQuotingTheStart) {
  auto empty = KindOf("");
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(empty.error().message().find("is neither a GGUF nor a safetensors file (it is empty)"), std::string::npos)
      << empty.error().message();
  auto text = KindOf(std::string("GGML\x01\n", 6));
  ASSERT_FALSE(text.has_value());
  EXPECT_EQ(text.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(text.error().message().find("starts with \"GGML\\x01\\x0a\""), std::string::npos) << text.error().message();
  auto missing = DetectModelFileKind(dir_.File("missing"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind(), StatusKind::kIOError);
}

}  // namespace
}  // namespace mixq
