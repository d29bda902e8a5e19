// Integer C = A · Bᵀ kernels. A kernel computes an MR x kIntPanel block of C
// over a k block: per group, int32 sums start at the record's bias and
// collect 4 products per lane and step (vpdpbusd); the group's scale (and
// min, against the activations' group sum) turns them into floats summed
// over the activation block, which its d then scales into the result.
#include "engine/int_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "engine/gemm.h"

namespace mixq::engine {
namespace {

// 256 k values per pass over C: one Q8_K block, a few KB of a panel in L1.
constexpr int64_t kIntKBlock = 256;
constexpr int kMr = 6;

// One kernel call: mr rows of A (mr <= kMr) times nr rows of one panel
// (nr <= kIntPanel), over kc values of k starting at a group record.
struct Tile {
  int64_t kc;
  const uint8_t* q;  // A's first row, at the first k
  int64_t ldq;
  const float* d;  // its block scales, at the first block
  int64_t ldd;
  const float* sums;  // its group sums, at the first group
  int64_t lds;
  int block;
  const uint8_t* rec;  // the panel's first group record
  int group;
  int64_t group_bytes;
  float* c;
  int64_t ldc;
  int mr;
  int nr;
  bool accumulate;
};

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

void KernelScalar(const Tile& t, bool mins) {
  const int64_t tail = t.group * kIntPanel;
  for (int i = 0; i < t.mr; ++i) {
    const uint8_t* q = t.q + i * t.ldq;
    for (int lane = 0; lane < t.nr; ++lane) {
      const uint8_t* rec = t.rec;
      float acc = 0.0f;
      for (int64_t k0 = 0; k0 < t.kc; k0 += t.block) {
        float blk = 0.0f;
        for (int64_t g0 = k0; g0 < k0 + t.block; g0 += t.group, rec += t.group_bytes) {
          int32_t isum = Load<int32_t>(rec + tail + 4 * lane);
          for (int j = 0; j < t.group; ++j) {
            isum += q[g0 + j] * static_cast<int8_t>(rec[(j / 4) * 4 * kIntPanel + 4 * lane + j % 4]);
          }
          blk += static_cast<float>(isum) * Load<float>(rec + tail + 4 * (kIntPanel + lane));
          if (mins) {
            blk -= Load<float>(rec + tail + 4 * (2 * kIntPanel + lane)) * t.sums[i * t.lds + g0 / t.group];
          }
        }
        acc += blk * t.d[i * t.ldd + k0 / t.block];
      }
      float& c = t.c[i * t.ldc + lane];
      c = t.accumulate ? c + acc : acc;
    }
  }
}

// The group size is a template argument so that its loop unrolls completely:
// with a run-time count GCC 12 copies every accumulator twice per step.
template <int kGroup, bool kMins>
__attribute__((target("avx512f,avx512vnni"))) void KernelVnni(const Tile& t) {
  // Rows past mr repeat row 0 so that every load stays inside A; their sums are dropped.
  const uint8_t* q[kMr];
  const float* d[kMr];
  const float* s[kMr];
  for (int i = 0; i < kMr; ++i) {
    const int row = i < t.mr ? i : 0;
    q[i] = t.q + row * t.ldq;
    d[i] = t.d + row * t.ldd;
    s[i] = kMins ? t.sums + row * t.lds : nullptr;
  }
  const __mmask16 m0 = t.nr >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << t.nr) - 1);
  const __mmask16 m1 = t.nr >= 32 ? 0xFFFF : t.nr > 16 ? static_cast<__mmask16>((1u << (t.nr - 16)) - 1) : 0;
  const uint8_t* rec = t.rec;
  const int64_t tail = kGroup * kIntPanel;
  for (int64_t k0 = 0; k0 < t.kc; k0 += t.block) {
    __m512 blk[kMr][2];
    for (int i = 0; i < kMr; ++i) blk[i][0] = blk[i][1] = _mm512_setzero_ps();
    for (int64_t g0 = k0; g0 < k0 + t.block; g0 += kGroup, rec += t.group_bytes) {
      __m512i isum[kMr][2];
      const __m512i bias0 = _mm512_loadu_si512(rec + tail);
      const __m512i bias1 = _mm512_loadu_si512(rec + tail + 64);
      for (int i = 0; i < kMr; ++i) {
        isum[i][0] = bias0;
        isum[i][1] = bias1;
      }
#pragma GCC unroll 8
      for (int j = 0; j < kGroup; j += 4) {
        const __m512i b0 = _mm512_loadu_si512(rec + j * kIntPanel);
        const __m512i b1 = _mm512_loadu_si512(rec + j * kIntPanel + 64);
#pragma GCC unroll 6
        for (int i = 0; i < kMr; ++i) {
          const __m512i ai = _mm512_set1_epi32(Load<int32_t>(q[i] + g0 + j));
          isum[i][0] = _mm512_dpbusd_epi32(isum[i][0], ai, b0);
          isum[i][1] = _mm512_dpbusd_epi32(isum[i][1], ai, b1);
        }
      }
      // The masked conversion avoids GCC 12's -Wmaybe-uninitialized in the plain intrinsic.
      const __m512 sc0 = _mm512_loadu_ps(rec + tail + 4 * kIntPanel);
      const __m512 sc1 = _mm512_loadu_ps(rec + tail + 4 * kIntPanel + 64);
      for (int i = 0; i < kMr; ++i) {
        blk[i][0] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, isum[i][0]), sc0, blk[i][0]);
        blk[i][1] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, isum[i][1]), sc1, blk[i][1]);
      }
      if constexpr (kMins) {
        const __m512 n0 = _mm512_loadu_ps(rec + tail + 8 * kIntPanel);
        const __m512 n1 = _mm512_loadu_ps(rec + tail + 8 * kIntPanel + 64);
        for (int i = 0; i < kMr; ++i) {
          const __m512 si = _mm512_set1_ps(s[i][g0 / kGroup]);
          blk[i][0] = _mm512_fnmadd_ps(n0, si, blk[i][0]);
          blk[i][1] = _mm512_fnmadd_ps(n1, si, blk[i][1]);
        }
      }
    }
    // C is updated once per activation block (once per call for Q8_K), which
    // leaves the registers to the sums.
    const bool first = k0 == 0 && !t.accumulate;
#pragma GCC unroll 6
    for (int i = 0; i < kMr; ++i) {
      if (i >= t.mr) break;
      float* ci = t.c + i * t.ldc;
      const __m512 di = _mm512_set1_ps(d[i][k0 / t.block]);
      const __m512 c0 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, ci);
      const __m512 c1 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, ci + 16);
      _mm512_mask_storeu_ps(ci, m0, _mm512_fmadd_ps(blk[i][0], di, c0));
      _mm512_mask_storeu_ps(ci + 16, m1, _mm512_fmadd_ps(blk[i][1], di, c1));
    }
  }
}

IntGemmIsa DetectIsa() {
  switch (ActiveGemmIsa()) {
    case GemmIsa::kAvx512:
      return IntGemmIsaSupported(IntGemmIsa::kVnni) ? IntGemmIsa::kVnni : IntGemmIsa::kNone;
    case GemmIsa::kAvx2:
      return IntGemmIsa::kNone;
    case GemmIsa::kScalar:
      break;
  }
  return IntGemmIsa::kScalar;
}

std::atomic<IntGemmIsa>& Selected() {
  static std::atomic<IntGemmIsa> isa{DetectIsa()};
  return isa;
}

}  // namespace

IntGemmIsa ActiveIntGemmIsa() { return Selected().load(std::memory_order_relaxed); }

void SetIntGemmIsa(IntGemmIsa isa) { Selected().store(isa, std::memory_order_relaxed); }

bool IntGemmIsaSupported(IntGemmIsa isa) {
  switch (isa) {
    case IntGemmIsa::kVnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
    case IntGemmIsa::kNone:
    case IntGemmIsa::kScalar:
      break;
  }
  return true;
}

int64_t IntGroupBytes(const IntLayout& layout) {
  return layout.group * kIntPanel + (layout.has_mins ? 3 : 2) * 4 * kIntPanel;
}

int64_t IntPackedBytes(int64_t n, int64_t k, const IntLayout& layout) {
  return (n + kIntPanel - 1) / kIntPanel * (k / layout.group) * IntGroupBytes(layout);
}

void PackIntRow(const int8_t* q, const float* scales, const float* mins, int64_t r, int64_t k, const IntLayout& layout,
                uint8_t* packed) {
  const int64_t group_bytes = IntGroupBytes(layout);
  const int64_t lane = r % kIntPanel;
  uint8_t* rec = packed + (r / kIntPanel) * (k / layout.group) * group_bytes;
  for (int64_t g = 0; g < k / layout.group; ++g, rec += group_bytes) {
    const int8_t* qg = q + g * layout.group;
    int32_t sum = 0;
    for (int j = 0; j < layout.group; ++j) {
      rec[(j / 4) * 4 * kIntPanel + 4 * lane + j % 4] = static_cast<uint8_t>(qg[j]);
      sum += qg[j];
    }
    uint8_t* tail = rec + layout.group * kIntPanel;
    const int32_t bias = -128 * sum;
    std::memcpy(tail + 4 * lane, &bias, 4);
    std::memcpy(tail + 4 * (kIntPanel + lane), &scales[g], 4);
    if (layout.has_mins) std::memcpy(tail + 4 * (2 * kIntPanel + lane), &mins[g], 4);
  }
}

void IntGemm(int64_t m, int64_t n, int64_t k, const IntActivations& a, const uint8_t* packed, int64_t packed_k,
             const IntLayout& layout, float* c, int64_t ldc, IntGemmIsa isa) {
  const int64_t group_bytes = IntGroupBytes(layout);
  const int64_t panel_bytes = (packed_k / layout.group) * group_bytes;
  void (*const vnni)(const Tile&) = layout.group == 16
                                        ? (layout.has_mins ? KernelVnni<16, true> : KernelVnni<16, false>)
                                        : (layout.has_mins ? KernelVnni<32, true> : KernelVnni<32, false>);
  for (int64_t k0 = 0; k0 < k; k0 += kIntKBlock) {
    const int64_t kc = std::min(kIntKBlock, k - k0);
    for (int64_t p = 0; p * kIntPanel < n; ++p) {
      const int nr = static_cast<int>(std::min<int64_t>(kIntPanel, n - p * kIntPanel));
      for (int64_t i0 = 0; i0 < m; i0 += kMr) {
        const Tile t = {kc,
                        a.q + i0 * a.ldq + k0,
                        a.ldq,
                        a.d + i0 * a.ldd + k0 / a.block,
                        a.ldd,
                        layout.has_mins ? a.sums + i0 * a.lds + k0 / layout.group : nullptr,
                        a.lds,
                        a.block,
                        packed + p * panel_bytes + (k0 / layout.group) * group_bytes,
                        layout.group,
                        group_bytes,
                        c + i0 * ldc + p * kIntPanel,
                        ldc,
                        static_cast<int>(std::min<int64_t>(kMr, m - i0)),
                        nr,
                        k0 > 0};
        if (isa == IntGemmIsa::kVnni) {
          vnni(t);
        } else {
          KernelScalar(t, layout.has_mins);
        }
      }
    }
  }
}

}  // namespace mixq::engine
