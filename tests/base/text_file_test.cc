// The one text-file reader: plain and gzip give the same text; what cannot be
// read is an IOError naming the file, a cut gzip stream Corruption.
#include "base/text_file.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_support.h"

namespace mixq {
namespace {

TEST(ReadTextFile, GzipAndPlainGiveTheSameText) {
  auto text = ReadTextFile(testing::RefDevText());
  ASSERT_TRUE(text.has_value()) << text.error().message();
  ASSERT_GT(text->size(), 1000u);
  testing::TempDir dir;
  testing::WriteFileBytes(dir.File("plain.txt"), std::vector<uint8_t>(text->begin(), text->end()));
  auto plain = ReadTextFile(dir.File("plain.txt"));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(*plain, *text);
}

// One message for every text input (calibration text, plan, measurement,
// cost table), as docs/reliability.md shows it.
TEST(ReadTextFile, MissingFileIsAnIOErrorNamingTheFileAndTheReason) {
  auto r = ReadTextFile("/nonexistent/mixq/text.txt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kIOError);
  EXPECT_EQ(r.error().message(), "cannot open '/nonexistent/mixq/text.txt': No such file or directory");
}

TEST(ReadTextFile, DirectoryIsNotARegularFile) {
  testing::TempDir dir;
  std::filesystem::create_directory(dir.File("sub"));
  auto r = ReadTextFile(dir.File("sub"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kIOError);
  EXPECT_EQ(r.error().message(), "not a regular file: '" + dir.File("sub") + "'");
}

TEST(ReadTextFile, TruncatedGzipIsCorruption) {
  auto bytes = testing::ReadFileBytes(testing::RefDevText());
  bytes.resize(bytes.size() / 2);
  testing::TempDir dir;
  testing::WriteFileBytes(dir.File("cut.txt.gz"), bytes);
  auto r = ReadTextFile(dir.File("cut.txt.gz"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption) << r.error().message();
}

TEST(WriteTextFileAtomic, WritesTheTextReadBackUnchanged) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteTextFileAtomic(dir.File("out.json"), "{\"a\": 1}\n").ok());
  auto back = ReadTextFile(dir.File("out.json"));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, "{\"a\": 1}\n");
}

}  // namespace
}  // namespace mixq
