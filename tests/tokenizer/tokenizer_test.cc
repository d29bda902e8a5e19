#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace mixq::tokenizer {
namespace {

std::string ValText() { return testing::RefDevTextStart(std::string::npos); }

Tokenizer RefDevTokenizer(const gguf::GgufFile& file) {
  auto tok = Tokenizer::FromGguf(file);
  EXPECT_TRUE(tok.has_value()) << tok.error().message();
  return std::move(tok).value();
}

// llama.cpp's token ids for `text` (gguf-oracle tokenize), which reads a file
// and drops one trailing newline, as llama-perplexity does.
std::vector<int32_t> OracleTokens(const std::string& model, const std::string& text, bool bos) {
  testing::TempDir dir;
  testing::WriteFileBytes(dir.File("t.txt"), std::vector<uint8_t>(text.begin(), text.end()));
  auto r = testing::RunCommand(testing::OraclePath() + " tokenize " + model + " --text-file " + dir.File("t.txt") +
                               (bos ? "" : " --no-bos") + " --out " + dir.File("t.tok"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto bytes = testing::ReadFileBytes(dir.File("t.tok"));
  std::vector<int32_t> ids(bytes.size() / 4);
  std::memcpy(ids.data(), bytes.data(), ids.size() * 4);
  return ids;
}

std::string_view WithoutTrailingNewline(std::string_view s) {
  if (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

TEST(Tokenizer, RefDevVocabMetadata) {
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  Tokenizer tok = RefDevTokenizer(*file);
  EXPECT_EQ(tok.model(), "llama");
  EXPECT_EQ(tok.n_vocab(), 4096);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.TokenText(1), "<s>");
  EXPECT_EQ(tok.Encode("", true), std::vector<int32_t>{1});
  EXPECT_TRUE(tok.Encode("", false).empty());
}

TEST(Tokenizer, RefDevValTextMatchesLlamaCpp) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "gguf-oracle not configured";
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  Tokenizer tok = RefDevTokenizer(*file);
  std::string text = ValText();
  ASSERT_GT(text.size(), 500000u);
  std::vector<int32_t> ours = tok.Encode(WithoutTrailingNewline(text), true);
  std::vector<int32_t> theirs = OracleTokens(testing::RefDevModel(), text, true);
  ASSERT_EQ(ours.size(), theirs.size());
  size_t first_diff = 0;
  while (first_diff < ours.size() && ours[first_diff] == theirs[first_diff]) ++first_diff;
  EXPECT_EQ(first_diff, ours.size()) << "first differing token at " << first_diff;
}

// Edge cases the val text lacks: leading and repeated spaces, newlines only,
// characters outside the vocabulary (byte fallback), invalid UTF-8, the text
// of a special token (not parsed as special).
TEST(Tokenizer, EdgeCasesMatchLlamaCpp) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "gguf-oracle not configured";
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  Tokenizer tok = RefDevTokenizer(*file);
  const std::vector<std::string> samples = {
      "Hello world",
      "  two leading spaces and  double  gaps   ",
      "\n\n\n",
      "tabs\tand\r\ncarriage returns",
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 emoji",
      "broken \xFF\xFE utf8 \xC3",
      "<s> is not special here </s>",
      "x",
  };
  for (const std::string& s : samples) {
    for (bool bos : {true, false}) {
      EXPECT_EQ(tok.Encode(WithoutTrailingNewline(s), bos), OracleTokens(testing::RefDevModel(), s, bos))
          << "sample '" << s << "' bos " << bos;
    }
  }
}

TEST(Tokenizer, UnknownTokenizerModelIsNotSupported) {
  testing::TempDir dir;
  const std::string path = dir.File("bert.gguf");
  std::vector<gguf::KeyValue> kv = {{"general.architecture", gguf::Value::String("llama")},
                                    {"tokenizer.ggml.model", gguf::Value::String("bert")},
                                    {"tokenizer.ggml.tokens", gguf::Value::StringArray({"a", "b"})}};
  auto w = gguf::GgufWriter::Begin(path, kv, {});
  ASSERT_TRUE(w.has_value()) << w.error().message();
  ASSERT_TRUE(w->Finish().ok());
  auto file = gguf::GgufFile::Open(path);
  ASSERT_TRUE(file.has_value());
  auto tok = Tokenizer::FromGguf(*file);
  ASSERT_FALSE(tok.has_value());
  EXPECT_EQ(tok.error().kind(), StatusKind::kNotSupported);
  EXPECT_NE(tok.error().message().find("supported: llama"), std::string::npos) << tok.error().message();
}

}  // namespace
}  // namespace mixq::tokenizer
