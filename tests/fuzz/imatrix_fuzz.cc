// libFuzzer harness: the imatrix reader (llama.cpp's GGUF imatrix and the
// legacy .dat format, told apart by the magic) must accept or reject any
// bytes without crashing. What it accepts must hold finite values in whole
// matrices, give every entry an importance for its own shape, and that
// importance must let a row be quantized to finite weights.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "formats/formats.h"
#include "quantize/quantize.h"

namespace {

// Quantizes a fixed row with the importance, as quantize and measure do.
void QuantizeWith(const std::vector<float>& importance) {
  const int64_t n = static_cast<int64_t>(importance.size());
  std::vector<float> row(importance.size());
  for (int64_t i = 0; i < n; ++i) row[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + (i % 7));
  for (const char* name : {"Q4_K", "IQ4_XS", "Q8_0"}) {
    const mixq::formats::Format* f = mixq::formats::FindFormatByName(name);
    if (!mixq::formats::RowFits(*f, n)) continue;
    for (auto method : {mixq::formats::QuantMethod::kGgml, mixq::formats::QuantMethod::kBest}) {
      std::vector<uint8_t> bytes(static_cast<size_t>(*mixq::formats::RowBytes(*f, n)));
      std::vector<float> back(importance.size());
      if (!mixq::formats::QuantizeRows(*f, method, row.data(), bytes.data(), 1, n, importance.data(), 1).ok() ||
          !mixq::formats::DequantizeRows(*f, bytes.data(), back.data(), 1, n, 1).ok() ||
          mixq::formats::FirstNonFinite(back.data(), n) >= 0) {
        std::abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto im = mixq::quantize::ParseImatrix({data, size}, "<fuzz>");
  if (!im.has_value()) {
    if (im.error().message().empty()) std::abort();
    return 0;
  }
  bool quantized = false;
  for (const auto& [name, e] : im->entries) {
    if (e.counts.empty() || e.in_sum2.empty() || e.in_sum2.size() % e.counts.size() != 0) std::abort();
    const int64_t n_mat = static_cast<int64_t>(e.counts.size());
    const int64_t n_per_row = static_cast<int64_t>(e.in_sum2.size()) / n_mat;
    auto importance = im->Importance(name, n_per_row, n_mat);
    if (!importance.has_value() || !importance->has_value() || (*importance)->size() != e.in_sum2.size()) std::abort();
    if (mixq::formats::FirstNonFinite((*importance)->data(), static_cast<int64_t>(e.in_sum2.size())) >= 0) {
      std::abort();
    }
    // One row per input keeps the harness fast; the first entry of a
    // quantizable width stands for all.
    if (!quantized && n_per_row % 256 == 0 && n_per_row <= 1024) {
      QuantizeWith(std::vector<float>((*importance)->begin(), (*importance)->begin() + n_per_row));
      quantized = true;
    }
  }
  return 0;
}
