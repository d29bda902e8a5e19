// GPT-2 byte-level BPE against llama.cpp: small vocabularies trained here on
// the held-out text, written as vocab-only GGUF files, tokenized by both.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace mixq::tokenizer {
namespace {

struct BpeVocab {
  std::vector<std::string> tokens;
  std::vector<std::string> merges;
};

// A plain BPE trainer: words split at spaces (with their leading space),
// the most frequent adjacent pair merged n_merges times.
BpeVocab Train(const std::string& text, int n_merges) {
  const auto chars = Gpt2ByteChars();
  std::map<std::vector<std::string>, int> words;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find_first_of(" \n", start + 1);
    if (end == std::string::npos) end = text.size();
    std::vector<std::string> w;
    for (size_t i = start; i < end; ++i) w.push_back(chars[static_cast<uint8_t>(text[i] == '\n' ? ' ' : text[i])]);
    ++words[w];
    start = end;
  }
  BpeVocab v;
  v.tokens.assign(chars.begin(), chars.end());
  for (int m = 0; m < n_merges; ++m) {
    std::map<std::pair<std::string, std::string>, int> pairs;
    for (const auto& [w, n] : words) {
      for (size_t i = 1; i < w.size(); ++i) pairs[{w[i - 1], w[i]}] += n;
    }
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const auto [a, b] = best->first;
    v.merges.push_back(a + " " + b);
    v.tokens.push_back(a + b);
    std::map<std::vector<std::string>, int> next;
    for (const auto& [w, n] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
          out.push_back(a + b);
          ++i;
        } else {
          out.push_back(w[i]);
        }
      }
      next[out] += n;
    }
    words = std::move(next);
  }
  return v;
}

void WriteVocabGguf(const std::string& path, const BpeVocab& v, const std::string& pre) {
  std::vector<std::string> tokens = v.tokens;
  tokens.push_back("<|endoftext|>");  // control
  tokens.push_back("<|user|>");       // user-defined: split out even without special parsing
  gguf::Value types, merges;
  types.type = merges.type = gguf::ValueType::kArray;
  types.array_type = gguf::ValueType::kInt32;
  for (size_t i = 0; i < tokens.size(); ++i) {
    types.array.push_back(gguf::Value::Int32(i + 2 == tokens.size() ? 3 : i + 1 == tokens.size() ? 4 : 1));
  }
  merges = gguf::Value::StringArray(v.merges);
  const uint32_t eot = static_cast<uint32_t>(tokens.size() - 2);
  std::vector<gguf::KeyValue> kv = {
      {"general.architecture", gguf::Value::String("llama")},
      {"llama.block_count", gguf::Value::Uint32(1)},
      {"llama.context_length", gguf::Value::Uint32(128)},
      {"llama.embedding_length", gguf::Value::Uint32(64)},
      {"llama.feed_forward_length", gguf::Value::Uint32(128)},
      {"llama.attention.head_count", gguf::Value::Uint32(4)},
      {"llama.attention.layer_norm_rms_epsilon", gguf::Value::Float32(1e-5f)},
      {"tokenizer.ggml.model", gguf::Value::String("gpt2")},
      {"tokenizer.ggml.pre", gguf::Value::String(pre)},
      {"tokenizer.ggml.tokens", gguf::Value::StringArray(tokens)},
      {"tokenizer.ggml.token_type", types},
      {"tokenizer.ggml.merges", merges},
      {"tokenizer.ggml.bos_token_id", gguf::Value::Uint32(eot)},
      {"tokenizer.ggml.eos_token_id", gguf::Value::Uint32(eot)},
  };
  auto w = gguf::GgufWriter::Begin(path, kv, {});
  ASSERT_TRUE(w.has_value()) << w.error().message();
  ASSERT_TRUE(w->Finish().ok());
}

std::vector<int32_t> OracleTokens(const std::string& model, const std::string& text) {
  testing::TempDir dir;
  // The oracle drops one trailing newline: add one so that the text stays whole.
  const std::string file_text = text + "\n";
  testing::WriteFileBytes(dir.File("t.txt"), std::vector<uint8_t>(file_text.begin(), file_text.end()));
  auto r = testing::RunCommand(testing::OraclePath() + " tokenize " + model + " --text-file " + dir.File("t.txt") +
                               " --out " + dir.File("t.tok"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto bytes = testing::ReadFileBytes(dir.File("t.tok"));
  std::vector<int32_t> ids(bytes.size() / 4);
  std::memcpy(ids.data(), bytes.data(), ids.size() * 4);
  return ids;
}

const std::vector<std::string>& Samples() {
  static const std::vector<std::string> samples = {
      "Hello world, it's 12345 apples!  They'RE here; I'd've LL'll go.",
      "\n\n  Spaces   and\ttabs\r\n\r\n  trailing   ",
      "numbers 1 22 333 4444 55555 1234567 3.14159 1,000,000 \xD9\xA3\xD9\xA4 \xE2\x85\xA7",
      "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 "
      "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D emoji",
      "punct: $100 + <tag> == a^b ~ c|d `code` @user #hash (x) [y] {z} \xE2\x80\x94 \xE2\x80\x9Cquoted\xE2\x80\x9D",
      "a <|user|> b <|endoftext|> c<|user|>d",
      "broken \xFF\xFE utf8 \xC3 end \xE2\x82",
      "\xC2\xA0nbsp\xE2\x80\x83"
      "em\xE3\x80\x80ideographic space",
      "x",
  };
  return samples;
}

class BpeTest : public ::testing::TestWithParam<const char*> {};

TEST_P(BpeTest, MatchesLlamaCpp) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "gguf-oracle not configured";
  const std::string text = testing::RefDevTextStart(160000);
  testing::TempDir dir;
  const std::string path = dir.File("bpe.gguf");
  WriteVocabGguf(path, Train(text.substr(0, 30000), 300), GetParam());
  auto file = gguf::GgufFile::Open(path);
  ASSERT_TRUE(file.has_value());
  auto tok = Tokenizer::FromGguf(*file);
  ASSERT_TRUE(tok.has_value()) << tok.error().message();
  EXPECT_EQ(tok->model(), "gpt2");
  std::vector<std::string> samples = Samples();
  samples.push_back(text.substr(100000, 60000));
  for (const std::string& s : samples) {
    std::vector<int32_t> ours = tok->Encode(s, true);
    std::vector<int32_t> theirs = OracleTokens(path, s);
    ASSERT_EQ(ours, theirs) << GetParam() << ": '" << s.substr(0, 200) << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Pre, BpeTest, ::testing::Values("default", "llama-bpe", "qwen2"), [](const auto& info) {
  std::string n = info.param;
  for (char& c : n) c = c == '-' ? '_' : c;
  return n;
});

TEST(Bpe, UnknownPreTokenizerIsNotSupported) {
  testing::TempDir dir;
  WriteVocabGguf(dir.File("v.gguf"), Train("ab ab ab", 2), "starcoder-ish");
  auto file = gguf::GgufFile::Open(dir.File("v.gguf"));
  ASSERT_TRUE(file.has_value());
  auto tok = Tokenizer::FromGguf(*file);
  ASSERT_FALSE(tok.has_value());
  EXPECT_EQ(tok.error().kind(), StatusKind::kNotSupported);
  EXPECT_NE(tok.error().message().find("qwen2"), std::string::npos) << tok.error().message();
}

}  // namespace
}  // namespace mixq::tokenizer
