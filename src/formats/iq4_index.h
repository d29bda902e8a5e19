// Nearest IQ4 codebook index by table lookup, equal to ggml's binary search
// (ggml-formats.md §2.8) for every finite float.
//
// ggml decides between neighbours a < b with the float comparison
// `v - a < b - v`, whose rounding moves the switch point a few ulps away from
// (a+b)/2. The table is built at compile time from that very comparison: each
// bin (the truncated integer part of v) holds the index at its low end and the
// exact float where the index steps up, if it does inside the bin. Codebook
// neighbours are at least 9 apart, so a bin holds at most one step.
#ifndef MIXQ_FORMATS_IQ4_INDEX_H_
#define MIXQ_FORMATS_IQ4_INDEX_H_

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

#include "formats/blocks.h"
#include "formats/lanes.h"

namespace mixq::formats::internal {

// ggml's definition, kept as the reference the table is built from and tested against.
constexpr int IQ4BestIndexReference(float v) {
  if (v <= kIQ4Values[0]) return 0;
  if (v >= kIQ4Values[15]) return 15;
  int lo = 0;
  int hi = 15;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (v < kIQ4Values[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return v - kIQ4Values[hi - 1] < kIQ4Values[hi] - v ? hi - 1 : hi;
}

namespace iq4_detail {

// Floats mapped to integers in value order (same-sign ranges only are searched).
constexpr int32_t OrderedKey(float f) {
  int32_t bits = std::bit_cast<int32_t>(f);
  return bits >= 0 ? bits : -(bits & 0x7FFFFFFF);
}
constexpr float FromOrderedKey(int32_t key) {
  return key >= 0 ? std::bit_cast<float>(key) : std::bit_cast<float>(static_cast<int32_t>((-key) | INT32_MIN));
}

inline constexpr int kBinOffset = 127;  // bins -127..127
inline constexpr float kNoStep = 1e30f;

struct Bin {
  float step_at;  // smallest v in the bin with index base + 1, or kNoStep
  int32_t base;   // index at the bin's lowest value
};

// The bin of v is (int)v: [k, k+1) for k > 0, (k-1, k] for k < 0, (-1, 1) for 0.
constexpr std::array<Bin, 2 * kBinOffset + 1> BuildBins() {
  std::array<Bin, 2 * kBinOffset + 1> bins{};
  for (int k = -kBinOffset; k <= kBinOffset; ++k) {
    float lowest = k > 0 ? static_cast<float>(k) : FromOrderedKey(OrderedKey(static_cast<float>(k - 1)) + 1);
    float highest = k < 0 ? static_cast<float>(k) : FromOrderedKey(OrderedKey(static_cast<float>(k + 1)) - 1);
    Bin bin{kNoStep, IQ4BestIndexReference(lowest)};
    if (IQ4BestIndexReference(highest) != bin.base) {
      int32_t lo = OrderedKey(lowest);   // index base here
      int32_t hi = OrderedKey(highest);  // index base + 1 here
      while (hi - lo > 1) {
        int32_t mid = lo + (hi - lo) / 2;
        if (IQ4BestIndexReference(FromOrderedKey(mid)) == bin.base) {
          lo = mid;
        } else {
          hi = mid;
        }
      }
      bin.step_at = FromOrderedKey(hi);
    }
    bins[k + kBinOffset] = bin;
  }
  return bins;
}

inline constexpr std::array<Bin, 2 * kBinOffset + 1> kBins = BuildBins();

}  // namespace iq4_detail

namespace iq4_detail {

// The smallest float whose reference index is at least k (1 <= k <= 15).
constexpr float StepUpTo(int k) {
  int64_t lo = OrderedKey(-128.0f);  // index 0 here
  int64_t hi = OrderedKey(128.0f);   // index 15 here
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (IQ4BestIndexReference(FromOrderedKey(static_cast<int32_t>(mid))) >= k) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return FromOrderedKey(static_cast<int32_t>(hi));
}

constexpr std::array<float, 15> BuildSteps() {
  std::array<float, 15> steps{};
  for (int k = 1; k <= 15; ++k) steps[k - 1] = StepUpTo(k);
  return steps;
}

}  // namespace iq4_detail

// The index is monotone in v, so it is the number of these it reaches:
// IQ4BestIndex(v) = #{k : v >= kIQ4Steps[k]} for every float, also NaN (0).
// The search lanes use this form: compares instead of table lookups.
inline constexpr std::array<float, 15> kIQ4Steps = iq4_detail::BuildSteps();

// The codebook value of IQ4BestIndex(v) for each lane, as a float: the
// compare form of the index (kIQ4Steps), each step selecting the next value.
template <typename V>
[[gnu::always_inline]] inline V CodebookValueLanes(V v) {
  V q = Broadcast<V>(static_cast<float>(kIQ4Values[0]));
  for (int k = 1; k < 16; ++k) q = v >= kIQ4Steps[k - 1] ? Broadcast<V>(static_cast<float>(kIQ4Values[k])) : q;
  return q;
}

// REQUIRES: v is not NaN.
inline int IQ4BestIndex(float v) {
  v = std::min(127.5f, std::max(-127.5f, v));
  const iq4_detail::Bin& bin = iq4_detail::kBins[static_cast<int>(v) + iq4_detail::kBinOffset];
  return bin.base + (v >= bin.step_at ? 1 : 0);
}

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_IQ4_INDEX_H_
