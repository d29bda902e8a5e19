// Internal: the word splits that come before BPE merges.
#ifndef MIXQ_TOKENIZER_PRETOKENIZE_H_
#define MIXQ_TOKENIZER_PRETOKENIZE_H_

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace mixq::tokenizer {

// The words of `text` (UTF-8; malformed bytes become U+FFFD) under the
// pre-tokenizer's regexes, in order; they concatenate back to the text.
std::vector<std::string> PreTokenize(PreTokenizer pre, std::string_view text);

}  // namespace mixq::tokenizer

#endif  // MIXQ_TOKENIZER_PRETOKENIZE_H_
