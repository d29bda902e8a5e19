// SentencePiece-style tokenization as llama.cpp's SPM tokenizer does it:
// start from single UTF-8 characters, repeatedly merge the adjacent pair whose
// concatenation is the vocabulary token with the highest score (leftmost on
// ties), then emit each remaining piece as its token or as byte tokens.
#include <algorithm>
#include <cstdio>
#include <queue>
#include <unordered_set>

#include "tokenizer/vocab.h"

namespace mixq::tokenizer {
namespace {

struct SpmSymbol {
  uint32_t begin = 0;  // byte offset in the text
  uint32_t n = 0;      // byte length; 0 once merged into its left neighbour
  int32_t prev = -1;
  int32_t next = -1;
};

struct SpmCandidate {
  float score;
  int32_t left;
  int32_t right;
  uint32_t n;  // combined byte length when queued; stale when it changed
};

struct SpmCandidateOrder {
  bool operator()(const SpmCandidate& a, const SpmCandidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

// Length of the UTF-8 sequence that starts with `lead`; stray continuation
// bytes count as one character, as in llama.cpp.
uint32_t Utf8Length(uint8_t lead) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

int32_t ByteToken(const Vocab& vocab, uint8_t byte) {
  char name[8];
  std::snprintf(name, sizeof(name), "<0x%02X>", byte);
  int32_t id = vocab.Find(name);
  if (id >= 0) return id;
  char plain[1] = {static_cast<char>(byte)};
  id = vocab.Find(std::string_view(plain, 1));
  return id >= 0 ? id : vocab.unk;
}

}  // namespace

uint64_t CharPairKey(std::string_view a, std::string_view b) {
  auto pack = [](std::string_view c) {
    uint32_t v = 0;
    for (char ch : c) v = (v << 8) | static_cast<uint8_t>(ch);
    return v;
  };
  return (uint64_t{pack(a)} << 32) | pack(b);
}

std::unordered_set<uint64_t> AdjacentCharPairs(const std::vector<std::string>& tokens) {
  std::unordered_set<uint64_t> pairs;
  for (const std::string& t : tokens) {
    std::string_view prev;
    for (uint32_t offset = 0; offset < t.size();) {
      const uint32_t n =
          std::min<uint32_t>(Utf8Length(static_cast<uint8_t>(t[offset])), static_cast<uint32_t>(t.size()) - offset);
      const std::string_view ch(t.data() + offset, n);
      if (!prev.empty()) pairs.insert(CharPairKey(prev, ch));
      prev = ch;
      offset += n;
    }
  }
  return pairs;
}

void EncodeSpm(const Vocab& vocab, std::string_view text, std::vector<int32_t>* out) {
  std::vector<SpmSymbol> symbols;
  symbols.reserve(text.size());
  for (uint32_t offset = 0; offset < text.size();) {
    uint32_t n =
        std::min<uint32_t>(Utf8Length(static_cast<uint8_t>(text[offset])), static_cast<uint32_t>(text.size()) - offset);
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({offset, n, index - 1, offset + n == text.size() ? -1 : index + 1});
    offset += n;
  }
  if (symbols.empty()) return;

  // No merge can join two characters that are adjacent in no token, so the
  // text falls apart there into segments that merge independently; within a
  // segment the order of merges (score, then position) is the same as over
  // the whole text, and the small queues are much faster.
  std::vector<int32_t> segment_starts = {0};
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) {
    const std::string_view a = text.substr(symbols[i - 1].begin, symbols[i - 1].n);
    const std::string_view b = text.substr(symbols[i].begin, symbols[i].n);
    if (vocab.spm_pairs.count(CharPairKey(a, b)) == 0) {
      symbols[i - 1].next = -1;
      symbols[i].prev = -1;
      segment_starts.push_back(i);
    }
  }

  std::priority_queue<SpmCandidate, std::vector<SpmCandidate>, SpmCandidateOrder> queue;
  auto try_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    uint32_t n = symbols[left].n + symbols[right].n;
    int32_t id = vocab.Find(text.substr(symbols[left].begin, n));
    if (id < 0) return;
    queue.push({vocab.scores[id], left, right, n});
  };
  for (int32_t start : segment_starts) {
    for (int32_t i = start; symbols[i].next >= 0; i = symbols[i].next) try_pair(i, symbols[i].next);
    while (!queue.empty()) {
      SpmCandidate c = queue.top();
      queue.pop();
      SpmSymbol& left = symbols[c.left];
      SpmSymbol& right = symbols[c.right];
      if (left.n == 0 || right.n == 0 || left.n + right.n != c.n) continue;
      left.n += right.n;
      right.n = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      try_pair(left.prev, c.left);
      try_pair(c.left, left.next);
    }
    // A surviving piece is either a merged token or a single character; only
    // characters outside the vocabulary fall back to bytes.
    for (int32_t i = start; i >= 0; i = symbols[i].next) {
      std::string_view piece = text.substr(symbols[i].begin, symbols[i].n);
      int32_t id = vocab.Find(piece);
      if (id >= 0) {
        out->push_back(id);
        continue;
      }
      for (char ch : piece) out->push_back(ByteToken(vocab, static_cast<uint8_t>(ch)));
    }
  }
}

}  // namespace mixq::tokenizer
