// The pre-tokenizer splits of GPT-2 style BPE vocabularies, as llama.cpp
// applies them: the text becomes codepoints, each split rule cuts every piece
// of the previous rule further (a regex's matches and the text between them
// both become pieces), and each final piece is one word for BPE.
//
// The regexes, in the order llama.cpp applies them for each tokenizer.ggml.pre:
//  default: [\p{P}\$\+<=>\^~\|]+ ; 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) ;
//           \p{N}+ ; [0-9][0-9][0-9]
//  llama3:  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//           \s*[\r\n]+|\s+(?!\S)|\s+
//  qwen2:   the llama3 one with \p{N} for \p{N}{1,3}
#include "tokenizer/pretokenize.h"

#include <functional>

#include "tokenizer/unicode.h"

namespace mixq::tokenizer {
namespace {

using Pieces = std::vector<size_t>;  // lengths in codepoints, covering the text in order

// A view of one piece: classes and codepoints by absolute index, with
// "nothing" (0) outside the piece, as the regex engine sees its end.
class Piece {
 public:
  Piece(const std::vector<uint32_t>& cps, size_t begin, size_t end) : cps_(cps), begin_(begin), end_(end) {}
  bool in(size_t i) const { return i >= begin_ && i < end_; }
  uint32_t cp(size_t i) const { return in(i) ? cps_[i] : 0xFFFFFFFFu; }
  uint32_t classes(size_t i) const { return in(i) ? CodepointClasses(cps_[i]) : 0; }
  bool letter(size_t i) const { return (classes(i) & kLetter) != 0; }
  bool number(size_t i) const { return (classes(i) & kNumber) != 0; }
  bool space(size_t i) const { return (classes(i) & kWhitespace) != 0; }
  // [^\s\p{L}\p{N}]: anything else inside the piece.
  bool other(size_t i) const { return in(i) && (classes(i) & (kLetter | kNumber | kWhitespace)) == 0; }
  size_t end() const { return end_; }

 private:
  const std::vector<uint32_t>& cps_;
  size_t begin_, end_;
};

uint32_t AsciiLower(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; }

// 's 't 'm 'd 're 've 'll at i: the match length, or 0.
size_t Contraction(const Piece& p, size_t i, bool any_case) {
  if (p.cp(i) != '\'' || !p.in(i + 1)) return 0;
  auto lower = [&](size_t j) { return any_case ? AsciiLower(p.cp(j)) : p.cp(j); };
  const uint32_t a = lower(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (!p.in(i + 2)) return 0;
  const uint32_t b = lower(i + 2);
  return (a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l') ? 3 : 0;
}

// \s+(?!\S) then \s+ at a whitespace run starting at i: all of it at the end
// of the piece, otherwise all but the last (which then leads the next word).
size_t SpaceRun(const Piece& p, size_t i) {
  size_t n = 0;
  while (p.space(i + n)) ++n;
  return n > 1 && p.in(i + n) ? n - 1 : n;
}

// One piece by the GPT-2 regex; appends word lengths.
void SplitGpt2(const Piece& p, size_t begin, Pieces* out) {
  for (size_t i = begin; i < p.end();) {
    size_t n = Contraction(p, i, false);
    if (n == 0) {
      const size_t j = p.cp(i) == ' ' ? i + 1 : i;  // the optional leading space
      if (p.letter(j)) {
        n = j - i;
        while (p.letter(i + n)) ++n;
      } else if (p.number(j)) {
        n = j - i;
        while (p.number(i + n)) ++n;
      } else if (p.other(j)) {
        n = j - i;
        while (p.other(i + n)) ++n;
      } else {
        n = std::max<size_t>(1, SpaceRun(p, i));
      }
    }
    out->push_back(n);
    i += n;
  }
}

// One piece by the llama3 (max_digits 3) or qwen2 (max_digits 1) regex.
void SplitLlama3(const Piece& p, size_t begin, size_t max_digits, Pieces* out) {
  for (size_t i = begin; i < p.end();) {
    const uint32_t cp = p.cp(i);
    size_t n = Contraction(p, i, true);
    if (n == 0 && cp != '\r' && cp != '\n' && !p.number(i) && (p.letter(i) || p.letter(i + 1))) {
      n = 1;  // [^\r\n\p{L}\p{N}]?\p{L}+: one prefix char or the first letter
      while (p.letter(i + n)) ++n;
    }
    if (n == 0 && p.number(i)) {
      while (p.number(i + n)) ++n;
      while (n > max_digits) {
        out->push_back(max_digits);
        i += max_digits;
        n -= max_digits;
      }
    }
    if (n == 0) {
      const size_t j = cp == ' ' ? i + 1 : i;
      // " ?[^\s\p{L}\p{N}]+[\r\n]*"; a lone space at the piece's end lands
      // here too, with the same result as \s+.
      if (p.other(j) || (cp == ' ' && !p.in(j))) {
        n = j - i;
        while (p.other(i + n)) ++n;
        while (p.cp(i + n) == '\r' || p.cp(i + n) == '\n') ++n;
      }
    }
    if (n == 0 && p.space(i)) {
      size_t run = 0, through_newline = 0;  // \s*[\r\n]+ ends at the run's last \r or \n
      for (; p.space(i + run); ++run) {
        if (p.cp(i + run) == '\r' || p.cp(i + run) == '\n') through_newline = run + 1;
      }
      n = through_newline > 0 ? through_newline : SpaceRun(p, i);
    }
    if (n == 0) n = 1;
    out->push_back(n);
    i += n;
  }
}

// A regex of the form "[set]+" (or a fixed count of set members, count > 0):
// matches and the text between them become pieces.
void SplitMatches(const Piece& p, size_t begin, const std::function<bool(uint32_t)>& in_set, size_t count,
                  Pieces* out) {
  size_t gap_start = begin;
  for (size_t i = begin; i < p.end();) {
    size_t n = 0;
    if (count == 0) {
      while (p.in(i + n) && in_set(p.cp(i + n))) ++n;
    } else {
      while (n < count && p.in(i + n) && in_set(p.cp(i + n))) ++n;
      if (n < count) n = 0;
    }
    if (n == 0) {
      ++i;
      continue;
    }
    if (i > gap_start) out->push_back(i - gap_start);
    out->push_back(n);
    i += n;
    gap_start = i;
  }
  if (p.end() > gap_start) out->push_back(p.end() - gap_start);
}

using Rule = std::function<void(const Piece&, size_t begin, Pieces*)>;

Pieces Apply(const std::vector<uint32_t>& cps, const Pieces& pieces, const Rule& rule) {
  Pieces out;
  out.reserve(pieces.size() * 2);
  size_t start = 0;
  for (size_t len : pieces) {
    rule(Piece(cps, start, start + len), start, &out);
    start += len;
  }
  return out;
}

std::vector<Rule> RulesFor(PreTokenizer pre) {
  switch (pre) {
    case PreTokenizer::kLlama3:
      return {[](const Piece& p, size_t b, Pieces* o) { SplitLlama3(p, b, 3, o); }};
    case PreTokenizer::kQwen2:
      return {[](const Piece& p, size_t b, Pieces* o) { SplitLlama3(p, b, 1, o); }};
    case PreTokenizer::kDefault:
      break;
  }
  auto punct = [](uint32_t cp) {
    return (CodepointClasses(cp) & kPunctuation) != 0 || cp == '$' || cp == '+' || cp == '<' || cp == '=' ||
           cp == '>' || cp == '^' || cp == '~' || cp == '|';
  };
  auto number = [](uint32_t cp) { return (CodepointClasses(cp) & kNumber) != 0; };
  auto digit = [](uint32_t cp) { return cp >= '0' && cp <= '9'; };
  return {
      [punct](const Piece& p, size_t b, Pieces* o) { SplitMatches(p, b, punct, 0, o); },
      [](const Piece& p, size_t b, Pieces* o) { SplitGpt2(p, b, o); },
      [number](const Piece& p, size_t b, Pieces* o) { SplitMatches(p, b, number, 0, o); },
      [digit](const Piece& p, size_t b, Pieces* o) { SplitMatches(p, b, digit, 3, o); },
  };
}

}  // namespace

std::vector<std::string> PreTokenize(PreTokenizer pre, std::string_view text) {
  const std::vector<uint32_t> cps = DecodeUtf8(text);
  Pieces pieces = {cps.size()};
  for (const Rule& rule : RulesFor(pre)) pieces = Apply(cps, pieces, rule);
  std::vector<std::string> words;
  words.reserve(pieces.size());
  size_t start = 0;
  for (size_t len : pieces) {
    std::string w;
    for (size_t i = start; i < start + len; ++i) AppendUtf8(cps[i], &w);
    words.push_back(std::move(w));
    start += len;
  }
  return words;
}

std::vector<uint32_t> DecodeUtf8(std::string_view text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  auto cont = [&](size_t i) { return i < text.size() && (static_cast<uint8_t>(text[i]) & 0xC0) == 0x80; };
  for (size_t i = 0; i < text.size();) {
    const uint8_t b = static_cast<uint8_t>(text[i]);
    size_t len = b < 0x80 ? 1 : b < 0xC0 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 0;
    for (size_t k = 1; k < len; ++k) {
      if (!cont(i + k)) len = 0;
    }
    if (len == 0) {
      cps.push_back(0xFFFD);
      ++i;
      continue;
    }
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1Fu) : len == 3 ? (b & 0x0Fu) : (b & 0x07u);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3Fu);
    cps.push_back(cp);
    i += len;
  }
  return cps;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace mixq::tokenizer
