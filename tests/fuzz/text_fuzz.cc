// libFuzzer harness: a calibration or evaluation text (`--text`, plain or
// gzip) must be read or refused without crashing, and tokenizing what was
// read with ref-dev's SentencePiece vocabulary (tests/fuzz/data; another via
// $MIXQ_FUZZ_VOCAB) must give ids inside the vocabulary, and some for any
// text that is not empty.
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "base/text_file.h"
#include "fuzz_file.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

std::optional<mixq::tokenizer::Tokenizer> vocab;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("MIXQ_FUZZ_VOCAB");
  auto file =
      mixq::gguf::GgufFile::Open(path != nullptr ? path : MIXQ_SOURCE_DIR "/tests/fuzz/data/ref-dev-vocab.gguf");
  if (!file.has_value()) std::abort();
  auto tokenizer = mixq::tokenizer::Tokenizer::FromGguf(*file);
  if (!tokenizer.has_value()) std::abort();
  vocab.emplace(std::move(tokenizer).value());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto text = mixq::ReadTextFile(mixq::fuzz::WriteScratch(data, size));
  if (!text.has_value()) {
    if (text.error().message().empty()) std::abort();
    return 0;
  }
  const auto ids = vocab->Encode(*text, true);
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab->n_vocab()) std::abort();
  }
  if (!text->empty() && ids.size() <= (vocab->add_bos() ? 1u : 0u)) std::abort();
  return 0;
}
