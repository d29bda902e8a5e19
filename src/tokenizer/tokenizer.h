// tokenizer: text to token ids exactly as llama.cpp's llama_tokenize does it
// (parse_special = false), from a GGUF file's tokenizer.ggml.* metadata.
//
// Supported tokenizer.ggml.model values:
//  - "llama": SentencePiece-style BPE over Unicode characters, merges chosen
//    by token score, a "▁" space prefix, spaces escaped as "▁", and byte
//    fallback (<0xXX> tokens) for characters outside the vocabulary;
//  - "gpt2": byte-level BPE with ranked merges (tokenizer.ggml.merges), after
//    the pre-tokenizer split named by tokenizer.ggml.pre ("default", "llama3"
//    / "llama-bpe" / "llama-v3", "qwen2" and their aliases).
// User-defined tokens (token type 4) are split out of the text first, as
// llama.cpp does even without special-token parsing.
//
// A Tokenizer is immutable after construction and cheap to copy (the vocab is
// shared); Encode is thread-safe.
#ifndef MIXQ_TOKENIZER_TOKENIZER_H_
#define MIXQ_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"

namespace mixq::tokenizer {

struct Vocab;

class Tokenizer {
 public:
  // NotSupported for other tokenizer models or pre-tokenizers (the message
  // lists the supported ones); Corruption for inconsistent metadata.
  static Result<Tokenizer> FromGguf(const gguf::GgufFile& file);

  // Token ids of `text`. With add_special, BOS (and EOS) are added when the
  // vocab asks for them, like llama_tokenize's add_special.
  std::vector<int32_t> Encode(std::string_view text, bool add_special) const;

  int32_t n_vocab() const;
  int32_t bos_id() const;          // -1 when the vocab has none
  bool add_bos() const;            // whether add_special prepends BOS
  std::string_view model() const;  // "llama" or "gpt2"
  // REQUIRES: 0 <= id < n_vocab().
  std::string_view TokenText(int32_t id) const;

 private:
  explicit Tokenizer(std::shared_ptr<const Vocab> vocab) : vocab_(std::move(vocab)) {}
  std::shared_ptr<const Vocab> vocab_;
};

}  // namespace mixq::tokenizer

#endif  // MIXQ_TOKENIZER_TOKENIZER_H_
