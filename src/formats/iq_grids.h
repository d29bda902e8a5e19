// ggml's lattice codebooks for the IQ2/IQ3/IQ1 types (ggml-formats.md §2.9).
// Each row packs 8 (u64) or 4 (u32) values, byte k = element k: magnitudes for
// IQ2/IQ3, signed int8 in {-1, 0, 1} for IQ1.
#ifndef MIXQ_FORMATS_IQ_GRIDS_H_
#define MIXQ_FORMATS_IQ_GRIDS_H_

#include <cstdint>

namespace mixq::formats::internal {

extern const uint64_t kIQ2XXSGrid[256];
extern const uint64_t kIQ2XSGrid[512];
extern const uint64_t kIQ2SGrid[1024];
extern const uint32_t kIQ3XXSGrid[256];
extern const uint32_t kIQ3SGrid[512];
extern const uint64_t kIQ1SGrid[2048];

// Sign mask k (7 bits) with bit 7 set to make the number of set bits even.
constexpr uint8_t IQ2SignMask(int k) { return static_cast<uint8_t>(k | ((__builtin_popcount(k) & 1) << 7)); }

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_IQ_GRIDS_H_
