#include "formats/codecs.h"

namespace mixq::formats::internal {

void quantize_iq4_nl_best(const float* s, uint8_t* d, int64_t n, const float* w) { quantize_iq4_nl_ggml(s, d, n, w); }
void quantize_iq4_xs_best(const float* s, uint8_t* d, int64_t n, const float* w) { quantize_iq4_xs_ggml(s, d, n, w); }

}  // namespace mixq::formats::internal
