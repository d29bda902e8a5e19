// InputCovariance helpers.
#include "quantize/quantize.h"

namespace mixq::quantize {

std::vector<float> InputCovariance::MeanDiagonal() const {
  std::vector<float> d(static_cast<size_t>(n_in));
  const double scale = n_tokens > 0 ? 1.0 / static_cast<double>(n_tokens) : 0.0;
  for (int64_t j = 0; j < n_in; ++j) d[j] = static_cast<float>(sums[j * n_in + j] * scale);
  return d;
}

}  // namespace mixq::quantize
