// Builds the Vocab from GGUF metadata and runs the shared part of encoding:
// splitting out user-defined tokens, BOS/EOS and the SPM space prefix.
#include "tokenizer/vocab.h"

#include <algorithm>

#include "tokenizer/tokenizer.h"

namespace mixq::tokenizer {
namespace {

constexpr const char* kSupportedModels = "llama, gpt2";
constexpr const char* kSupportedPre = "default, llama3, llama-v3, llama-bpe, qwen2, deepseek-r1-qwen";

Result<const gguf::Value*> FindArray(const gguf::GgufFile& file, std::string_view key, gguf::ValueType elem,
                                     bool required) {
  const gguf::Value* v = file.Find(key);
  if (v == nullptr) {
    if (required) return Status::Corruption("missing tokenizer metadata: " + std::string(key));
    return static_cast<const gguf::Value*>(nullptr);
  }
  if (v->type != gguf::ValueType::kArray || v->array_type != elem) {
    return Status::Corruption("tokenizer metadata of the wrong type: " + std::string(key));
  }
  return v;
}

std::optional<bool> GetBool(const gguf::GgufFile& file, std::string_view key) {
  const gguf::Value* v = file.Find(key);
  if (v == nullptr || v->type != gguf::ValueType::kBool) return std::nullopt;
  return v->u64 != 0;
}

Status ReadSpecialId(const gguf::GgufFile& file, std::string_view key, int32_t n_vocab, int32_t* id) {
  auto v = file.GetInt(key);
  if (!v) return Status::Ok();
  // llama.cpp keeps its default for ids outside the vocabulary.
  if (*v >= 0 && *v < n_vocab) *id = static_cast<int32_t>(*v);
  return Status::Ok();
}

// Sets the pre-tokenizer and its flags the way llama.cpp maps tokenizer.ggml.pre.
Status ChoosePreTokenizer(const std::string& pre, Vocab& vocab) {
  if (pre.empty() || pre == "default") {
    vocab.pre = PreTokenizer::kDefault;
  } else if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe") {
    vocab.pre = PreTokenizer::kLlama3;
    vocab.ignore_merges = true;
    vocab.add_bos = true;
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
    vocab.pre = PreTokenizer::kQwen2;
  } else {
    return Status::NotSupported("unsupported pre-tokenizer '" + pre +
                                "' (tokenizer.ggml.pre); supported: " + kSupportedPre);
  }
  return Status::Ok();
}

Status LoadMerges(const gguf::GgufFile& file, Vocab& vocab) {
  auto merges = FindArray(file, "tokenizer.ggml.merges", gguf::ValueType::kString, true);
  MIXQ_TRY(merges);
  const auto& items = (*merges)->array;
  vocab.merge_rank.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    // llama.cpp splits at the first space after the first byte, so a merge
    // whose left part starts with a space stays intact.
    const std::string& m = items[i].str;
    size_t pos = m.find(' ', 1);
    if (pos == std::string::npos) continue;
    vocab.merge_rank.emplace(m, static_cast<int32_t>(i));
  }
  return Status::Ok();
}

}  // namespace

Result<Tokenizer> Tokenizer::FromGguf(const gguf::GgufFile& file) {
  auto vocab = std::make_shared<Vocab>();
  auto model = file.GetString("tokenizer.ggml.model");
  if (!model) return Status::Corruption("missing tokenizer metadata: tokenizer.ggml.model");
  vocab->model = *model;
  if (*model == "llama") {
    vocab->is_spm = true;
    vocab->bos = 1;
    vocab->eos = 2;
    vocab->unk = 0;
    vocab->add_bos = true;
    vocab->add_space_prefix = true;
  } else if (*model == "gpt2") {
    vocab->is_spm = false;
    vocab->bos = 11;
    vocab->eos = 11;
    MIXQ_TRY(ChoosePreTokenizer(file.GetString("tokenizer.ggml.pre").value_or(""), *vocab));
    vocab->byte_to_unicode = Gpt2ByteChars();
    MIXQ_TRY(LoadMerges(file, *vocab));
  } else {
    return Status::NotSupported("unsupported tokenizer model '" + *model +
                                "' (tokenizer.ggml.model); supported: " + kSupportedModels);
  }

  auto tokens = FindArray(file, "tokenizer.ggml.tokens", gguf::ValueType::kString, true);
  MIXQ_TRY(tokens);
  auto scores = FindArray(file, "tokenizer.ggml.scores", gguf::ValueType::kFloat32, false);
  MIXQ_TRY(scores);
  auto types = FindArray(file, "tokenizer.ggml.token_type", gguf::ValueType::kInt32, false);
  MIXQ_TRY(types);
  const size_t n = (*tokens)->array.size();
  if (n == 0 || n > (1u << 30))
    return Status::Corruption("tokenizer.ggml.tokens has " + std::to_string(n) + " entries");
  if ((*scores && (*scores)->array.size() != n) || (*types && (*types)->array.size() != n)) {
    return Status::Corruption("tokenizer.ggml.scores/token_type lengths differ from tokenizer.ggml.tokens (" +
                              std::to_string(n) + ")");
  }
  vocab->tokens.reserve(n);
  vocab->scores.assign(n, 0.0f);
  vocab->types.assign(n, 1);
  vocab->token_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    vocab->tokens.push_back((*tokens)->array[i].str);
    if (*scores) vocab->scores[i] = static_cast<float>((*scores)->array[i].f64);
    if (*types) vocab->types[i] = static_cast<int32_t>((*types)->array[i].i64);
    // Duplicate texts: the last id wins, as in llama.cpp's map assignment.
    vocab->token_to_id[vocab->tokens.back()] = static_cast<int32_t>(i);
  }

  const int32_t n_vocab = static_cast<int32_t>(n);
  MIXQ_TRY(ReadSpecialId(file, "tokenizer.ggml.bos_token_id", n_vocab, &vocab->bos));
  MIXQ_TRY(ReadSpecialId(file, "tokenizer.ggml.eos_token_id", n_vocab, &vocab->eos));
  MIXQ_TRY(ReadSpecialId(file, "tokenizer.ggml.unknown_token_id", n_vocab, &vocab->unk));
  if (vocab->is_spm) vocab->add_space_prefix = GetBool(file, "tokenizer.ggml.add_space_prefix").value_or(true);
  if (auto b = GetBool(file, "tokenizer.ggml.add_bos_token")) vocab->add_bos = *b;
  if (auto b = GetBool(file, "tokenizer.ggml.add_eos_token")) vocab->add_eos = *b;
  if (vocab->bos >= n_vocab) vocab->bos = -1;
  if (vocab->eos >= n_vocab) vocab->eos = -1;
  if (vocab->add_bos && vocab->bos < 0) return Status::Corruption("the vocab adds BOS but has no BOS token");

  if (vocab->is_spm) vocab->spm_pairs = AdjacentCharPairs(vocab->tokens);
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (vocab->types[i] == kTokenTypeUserDefined && !vocab->tokens[i].empty()) vocab->user_defined.push_back(i);
  }
  std::stable_sort(vocab->user_defined.begin(), vocab->user_defined.end(),
                   [&](int32_t a, int32_t b) { return vocab->tokens[a].size() > vocab->tokens[b].size(); });
  return Tokenizer(std::move(vocab));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special) const {
  const Vocab& v = *vocab_;
  // Fragments: raw text pieces, or a user-defined token (id >= 0).
  struct Fragment {
    std::string_view text;
    int32_t id = -1;
  };
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({text, -1});
  for (int32_t special : v.user_defined) {
    const std::string& needle = v.tokens[special];
    std::vector<Fragment> split;
    for (const Fragment& f : fragments) {
      if (f.id >= 0) {
        split.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t pos = rest.find(needle); pos != std::string_view::npos; pos = rest.find(needle)) {
        if (pos > 0) split.push_back({rest.substr(0, pos), -1});
        split.push_back({{}, special});
        rest = rest.substr(pos + needle.size());
      }
      if (!rest.empty()) split.push_back({rest, -1});
    }
    fragments = std::move(split);
  }

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && v.add_bos) out.push_back(v.bos);
  bool prev_special = true;
  for (const Fragment& f : fragments) {
    if (f.id >= 0) {
      out.push_back(f.id);
      prev_special = true;
      continue;
    }
    if (v.is_spm) {
      std::string escaped;
      escaped.reserve(f.text.size() + 16);
      if (v.add_space_prefix && prev_special) escaped = "\xE2\x96\x81";
      for (char c : f.text) {
        if (c == ' ') {
          escaped += "\xE2\x96\x81";
        } else {
          escaped.push_back(c);
        }
      }
      EncodeSpm(v, escaped, &out);
    } else {
      EncodeBpe(v, f.text, &out);
    }
    prev_special = false;
  }
  if (add_special && v.add_eos && v.eos >= 0) out.push_back(v.eos);
  return out;
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(vocab_->tokens.size()); }
int32_t Tokenizer::bos_id() const { return vocab_->bos; }
bool Tokenizer::add_bos() const { return vocab_->add_bos; }
std::string_view Tokenizer::model() const { return vocab_->model; }
std::string_view Tokenizer::TokenText(int32_t id) const { return vocab_->tokens[id]; }

std::array<std::string, 256> Gpt2ByteChars() {
  auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
  std::array<std::string, 256> chars;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
    std::string& s = chars[b];
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return chars;
}

}  // namespace mixq::tokenizer
