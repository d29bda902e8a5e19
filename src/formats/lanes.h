// Float lanes (GCC/Clang vector extensions) for searches that evaluate several
// candidates, or several elements, at once. Each lane is computed with exactly
// the scalar operations, in the same order, so results are bit-identical to
// the scalar code.
//
// Lanes4 is one SSE register, the baseline x86-64 ISA. Lanes8 (AVX2) and
// Lanes16 (AVX-512) are used only inside functions compiled for that level
// (MIXQ_TARGET_AVX2/AVX512 of base/isa.h) and chosen at run time by
// LaneIsa(); the generic helpers below are templates that are always inlined,
// so they take the instruction set of the function that uses them.
#ifndef MIXQ_FORMATS_LANES_H_
#define MIXQ_FORMATS_LANES_H_

#include <cstdint>
#include <cstring>

#include "base/isa.h"

namespace mixq::formats::internal {

using Lanes4 = float __attribute__((vector_size(16)));
using Mask4 = int32_t __attribute__((vector_size(16)));
using Lanes8 = float __attribute__((vector_size(32)));
using Lanes16 = float __attribute__((vector_size(64)));

template <typename V>
inline constexpr int kLaneCount = sizeof(V) / sizeof(float);

// The ISA whose lanes the searches use: base's ActiveIsa(), or what a test set.
Isa LaneIsa();
// REQUIRES: IsaSupported(isa); no search running. For tests comparing ISAs.
void SetLaneIsa(Isa isa);

inline constexpr Lanes4 kLaneIndex = {0, 1, 2, 3};

// NearestInt of each lane as a float, for |v| <= 2^22 (1.5 * 2^23 trick, §2.2).
template <typename V>
[[gnu::always_inline]] inline V RoundLanes(V v) {
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

// std::max(v, lo) and std::min(v, hi) per lane, with std::'s tie rules.
template <typename V>
[[gnu::always_inline]] inline V MaxLanes(V v, V lo) {
  return v < lo ? lo : v;
}
template <typename V>
[[gnu::always_inline]] inline V MinLanes(V v, V hi) {
  return hi < v ? hi : v;
}

template <typename V>
[[gnu::always_inline]] inline V AbsLanes(V v) {
  using Mask = decltype(v < v);
  return reinterpret_cast<V>(reinterpret_cast<Mask>(v) & 0x7FFFFFFF);
}

template <typename V = Lanes4>
[[gnu::always_inline]] inline V Broadcast(float v) {
  return V{} + v;
}

template <typename V>
[[gnu::always_inline]] inline V LoadLanes(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename V>
[[gnu::always_inline]] inline void StoreLanes(float* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}

inline Lanes4 Load4(const float* p) { return LoadLanes<Lanes4>(p); }

// Four-lane piece k of v.
template <typename V>
[[gnu::always_inline]] inline Lanes4 Piece(V v, int k) {
  Lanes4 piece;
  std::memcpy(&piece, reinterpret_cast<const char*>(&v) + sizeof(Lanes4) * k, sizeof(piece));
  return piece;
}

// acc += the four-lane pieces of t, lowest first: a wide pass over elements
// i..i+kLaneCount-1 adds into a four-lane accumulator exactly as four-lane
// passes over i, i+4, ... would.
template <typename V>
[[gnu::always_inline]] inline void AddInOrder(Lanes4* acc, V t) {
  for (int k = 0; k < kLaneCount<V> / 4; ++k) *acc += Piece(t, k);
}

// The pieces p[0..kLaneCount<V> / 4) side by side, p[0] lowest.
template <typename V>
[[gnu::always_inline]] inline V Join(const Lanes4* p) {
  if constexpr (kLaneCount<V> == 4) {
    return p[0];
  } else if constexpr (kLaneCount<V> == 8) {
    return __builtin_shufflevector(p[0], p[1], 0, 1, 2, 3, 4, 5, 6, 7);
  } else {
    static_assert(kLaneCount<V> == 16);
    Lanes8 lo = __builtin_shufflevector(p[0], p[1], 0, 1, 2, 3, 4, 5, 6, 7);
    Lanes8 hi = __builtin_shufflevector(p[2], p[3], 0, 1, 2, 3, 4, 5, 6, 7);
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
}

// 0, 1, ..., kLaneCount - 1.
template <typename V>
[[gnu::always_inline]] inline V LaneIndex() {
  V v;
  for (int k = 0; k < kLaneCount<V>; ++k) v[k] = static_cast<float>(k);
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
