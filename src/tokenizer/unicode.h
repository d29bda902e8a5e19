// Internal: the Unicode facts the BPE pre-tokenizers need.
#ifndef MIXQ_TOKENIZER_UNICODE_H_
#define MIXQ_TOKENIZER_UNICODE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mixq::tokenizer {

inline constexpr uint32_t kLetter = 1;       // \p{L}
inline constexpr uint32_t kNumber = 2;       // \p{N}
inline constexpr uint32_t kPunctuation = 4;  // \p{P}
inline constexpr uint32_t kWhitespace = 8;   // White_Space

// The classes of a codepoint (0 for codepoints past U+10FFFF).
uint32_t CodepointClasses(uint32_t cp);

// Decodes UTF-8 as llama.cpp does: a malformed sequence yields U+FFFD and
// consumes one byte; lead bytes are trusted for the sequence length (no
// overlong or range checks).
std::vector<uint32_t> DecodeUtf8(std::string_view text);
void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace mixq::tokenizer

#endif  // MIXQ_TOKENIZER_UNICODE_H_
