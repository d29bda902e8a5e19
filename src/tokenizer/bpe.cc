// GPT-2 style byte-level BPE as llama.cpp runs it: pre-tokenize into words,
// spell each word's UTF-8 bytes with GPT-2's printable byte characters, then
// repeatedly merge the adjacent pair with the lowest merge rank (leftmost on
// ties) within the word; pieces that are not tokens fall back to their single
// bytes, and bytes without a token are dropped.
#include <queue>

#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab.h"

namespace mixq::tokenizer {
namespace {

struct Symbol {
  uint32_t begin = 0;  // byte offset in the encoded word
  uint32_t n = 0;      // 0 once merged into its left neighbour
  int32_t prev = -1;
  int32_t next = -1;
};

struct Candidate {
  int32_t rank;
  int32_t left;
  int32_t right;
  uint32_t n;  // combined byte length when queued
};

struct CandidateOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

void MergeWord(const Vocab& vocab, const std::string& word, std::vector<int32_t>* out) {
  if (vocab.ignore_merges) {
    if (int32_t id = vocab.Find(word); id >= 0) {
      out->push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  for (uint32_t offset = 0; offset < word.size();) {
    // The encoded word is valid UTF-8: every character is 1 or 2 bytes.
    const uint32_t n = (static_cast<uint8_t>(word[offset]) & 0xE0) == 0xC0 ? 2 : 1;
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({offset, n, index - 1, offset + n == word.size() ? -1 : index + 1});
    offset += n;
  }
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
  std::string key;
  auto try_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    key.assign(word, l.begin, l.n);
    key.push_back(' ');
    key.append(word, r.begin, r.n);
    auto it = vocab.merge_rank.find(key);
    if (it == vocab.merge_rank.end()) return;
    queue.push({it->second, left, right, l.n + r.n});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_pair(i - 1, i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    // Symbols only grow to the right, so an unchanged total length means an
    // unchanged pair.
    if (left.n == 0 || right.n == 0 || left.n + right.n != c.n || left.next != c.right) continue;
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_pair(left.prev, c.left);
    try_pair(c.left, left.next);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece(word.data() + symbols[i].begin, symbols[i].n);
    if (int32_t id = vocab.Find(piece); id >= 0) {
      out->push_back(id);
      continue;
    }
    for (char byte : piece) {
      if (int32_t id = vocab.Find(std::string_view(&byte, 1)); id >= 0) out->push_back(id);
    }
  }
}

}  // namespace

void EncodeBpe(const Vocab& vocab, std::string_view text, std::vector<int32_t>* out) {
  std::string encoded;
  for (const std::string& word : PreTokenize(vocab.pre, text)) {
    encoded.clear();
    for (char byte : word) encoded += vocab.byte_to_unicode[static_cast<uint8_t>(byte)];
    MergeWord(vocab, encoded, out);
  }
}

}  // namespace mixq::tokenizer
