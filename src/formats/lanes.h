// Four float lanes (GCC/Clang vector extensions, one SSE register) for searches that evaluate
// several candidate scales at once. Each lane is computed with exactly the
// scalar operations, in the same order, so results are bit-identical to the
// scalar code.
#ifndef MIXQ_FORMATS_LANES_H_
#define MIXQ_FORMATS_LANES_H_

#include <cstdint>
#include <cstring>

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

inline Lanes4 Load4(const float* p) {
  Lanes4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Four 4-float rows to columns: out[c] = {r0[c], r1[c], r2[c], r3[c]}; for
// working on four table rows (grid points) at a time, one per lane.
inline void Transpose4(Lanes4 r0, Lanes4 r1, Lanes4 r2, Lanes4 r3, Lanes4* out) {
  Lanes4 t0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5);
  Lanes4 t1 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5);
  Lanes4 t2 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
  Lanes4 t3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
  out[0] = __builtin_shufflevector(t0, t1, 0, 1, 4, 5);
  out[1] = __builtin_shufflevector(t0, t1, 2, 3, 6, 7);
  out[2] = __builtin_shufflevector(t2, t3, 0, 1, 4, 5);
  out[3] = __builtin_shufflevector(t2, t3, 2, 3, 6, 7);
}

// NearestInt of each lane (blocks.h), bit for bit, also out of its exact range.
inline Mask4 NearestIntLanes(Lanes4 v) {
  Mask4 bits = reinterpret_cast<Mask4>(v + 12582912.0f);
  return (bits & 0x007FFFFF) - 0x00400000;
}

// Where four lane-wise running minima (best, at positions pos) reduce to one:
// the smallest value, the first position among equal ones, as a sequential
// scan over the positions would find it.
inline int FirstMinimumLane(Lanes4 best, Mask4 pos) {
  int lane = 0;
  for (int i = 1; i < 4; ++i) {
    if (best[i] < best[lane] || (best[i] == best[lane] && pos[i] < pos[lane])) lane = i;
  }
  return lane;
}

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_LANES_H_
