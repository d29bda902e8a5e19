// Four float lanes (GCC/Clang vector extensions, one SSE register) for searches that evaluate
// several candidate scales at once. Each lane is computed with exactly the
// scalar operations, in the same order, so results are bit-identical to the
// scalar code.
#ifndef MIXQ_FORMATS_LANES_H_
#define MIXQ_FORMATS_LANES_H_

#include <cstdint>

namespace mixq::formats::internal {

using Lanes4 = float __attribute__((vector_size(16)));
using Mask4 = int32_t __attribute__((vector_size(16)));

inline constexpr Lanes4 kLaneIndex = {0, 1, 2, 3};

// NearestInt of each lane as a float, for |v| <= 2^22 (1.5 * 2^23 trick, §2.2).
inline Lanes4 RoundLanes(Lanes4 v) {
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

// std::max(v, lo) and std::min(v, hi) per lane, with std::'s tie rules.
inline Lanes4 MaxLanes(Lanes4 v, Lanes4 lo) { return v < lo ? lo : v; }
inline Lanes4 MinLanes(Lanes4 v, Lanes4 hi) { return hi < v ? hi : v; }

inline Lanes4 AbsLanes(Lanes4 v) { return reinterpret_cast<Lanes4>(reinterpret_cast<Mask4>(v) & 0x7FFFFFFF); }

inline Lanes4 Broadcast(float v) { return Lanes4{} + v; }

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_LANES_H_
