// libFuzzer harness: base logits files (mixq's MQBL and the oracle's LGT2,
// given to `eval --base-logits`) must open or be refused without crashing,
// and every chunk of an accepted file must decode to finite log-probs, a
// finite next-token NLL and an argmax inside the vocabulary, or be refused.
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "engine/engine.h"
#include "engine/internal.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mixq::fuzz::WriteScratch(data, size);
  auto base = mixq::engine::BaseLogits::Open(path);
  if (!base.has_value()) {
    if (base.error().message().empty()) std::abort();
    return 0;
  }
  if (static_cast<int64_t>(base->tokens().size()) != base->n_ctx() * base->n_chunks()) std::abort();
  mixq::engine::BaseRows rows;
  for (int64_t chunk = 0; chunk < base->n_chunks(); ++chunk) {
    if (!mixq::engine::ReadBaseChunk(*base, chunk, &rows).ok()) continue;
    if (static_cast<int64_t>(rows.lp.size()) != rows.n_rows * rows.n_vocab) std::abort();
    for (float lp : rows.lp) {
      if (!std::isfinite(lp) || lp > 1e-3f) std::abort();
    }
    for (int64_t k = 0; k < rows.n_rows; ++k) {
      if (rows.argmax[k] < 0 || rows.argmax[k] >= rows.n_vocab || !std::isfinite(rows.nll[k])) std::abort();
    }
  }
  return 0;
}
