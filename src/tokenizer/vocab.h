// Internal: the vocabulary shared by the tokenizer algorithms.
#ifndef MIXQ_TOKENIZER_VOCAB_H_
#define MIXQ_TOKENIZER_VOCAB_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mixq::tokenizer {

// Heterogeneous lookup so that string_view keys need no allocation.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// llama.cpp's token types (tokenizer.ggml.token_type).
inline constexpr int32_t kTokenTypeUserDefined = 4;

enum class PreTokenizer { kDefault, kLlama3, kQwen2 };

struct Vocab {
  bool is_spm = true;  // "llama"; otherwise "gpt2"
  std::string model;
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  TokenMap token_to_id;
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t unk = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  // User-defined tokens, longest text first: split out before tokenizing.
  std::vector<int32_t> user_defined;

  // llama only: every pair of characters adjacent in some token (CharPairKey).
  std::unordered_set<uint64_t> spm_pairs;

  // gpt2 only.
  PreTokenizer pre = PreTokenizer::kDefault;
  TokenMap merge_rank;                           // "left right" -> rank
  bool ignore_merges = false;                    // a whole pre-token that is a token is taken as is
  std::array<std::string, 256> byte_to_unicode;  // GPT-2's printable stand-in for each byte

  int32_t Find(std::string_view text) const {
    auto it = token_to_id.find(text);
    return it == token_to_id.end() ? -1 : it->second;
  }
};

// A key for two adjacent SPM characters (each 1..4 bytes).
// GPT-2's byte-to-printable mapping, as UTF-8: printable Latin-1 bytes stand
// for themselves, the others are shifted to U+0100 and up in byte order.
std::array<std::string, 256> Gpt2ByteChars();

uint64_t CharPairKey(std::string_view a, std::string_view b);
std::unordered_set<uint64_t> AdjacentCharPairs(const std::vector<std::string>& tokens);

// Appends the ids of `text` (one raw fragment, no special tokens) to *out.
void EncodeSpm(const Vocab& vocab, std::string_view text, std::vector<int32_t>* out);
void EncodeBpe(const Vocab& vocab, std::string_view text, std::vector<int32_t>* out);

}  // namespace mixq::tokenizer

#endif  // MIXQ_TOKENIZER_VOCAB_H_
