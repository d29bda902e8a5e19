// Bit packing shared by the K-quant encoders and decoders (ggml-formats.md §2.5).
#ifndef MIXQ_FORMATS_K_PACKING_H_
#define MIXQ_FORMATS_K_PACKING_H_

#include <cstdint>
#include <cstring>

namespace mixq::formats::internal {

// The 2-bit-plane layout of Q2_K quants and Q3_K low bits: L holds 256 values < 4.
inline void PackTwoBitPlanes(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* l = L + 128 * h;
    for (int i = 0; i < 32; ++i) {
      qs[32 * h + i] = static_cast<uint8_t>(l[i] | (l[i + 32] << 2) | (l[i + 64] << 4) | (l[i + 96] << 6));
    }
  }
}

inline int TwoBitPlaneValue(const uint8_t* qs, int e) {
  int h = e / 128;
  int r = e % 128;
  return (qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
}

// The 12-byte 6-bit scale/min packing of Q4_K and Q5_K.
inline void GetScaleMinK4(int j, const uint8_t* s, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// Same operations as ggml, so codes above 63 (never produced for finite input) pack alike.
inline void PackScaleMinK4(const uint8_t* sc, const uint8_t* m, uint8_t* s) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] = sc[j];
      s[j + 4] = m[j];
    } else {
      s[j + 4] = static_cast<uint8_t>((sc[j] & 0x0F) | ((m[j] & 0x0F) << 4));
      s[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((m[j] >> 4) << 6);
    }
  }
}

// Q3_K's 16 6-bit scales u (0..63, the stored value s + 32).
inline void PackQ3KScales(const uint8_t* u, uint8_t* s) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 16; ++j) {
    if (j < 8) {
      s[j] = u[j] & 0x0F;
    } else {
      s[j - 8] |= static_cast<uint8_t>((u[j] & 0x0F) << 4);
    }
    s[8 + j % 4] |= static_cast<uint8_t>((u[j] >> 4) << (2 * (j / 4)));
  }
}

inline int Q3KScale(const uint8_t* s, int j) {
  int low = j < 8 ? s[j] & 0x0F : s[j - 8] >> 4;
  int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// Q3_K: L holds 256 values 0..7; bit 2 goes to hmask, bits 0-1 to the planes.
inline void PackQ3KQuants(const uint8_t* L, uint8_t* hmask, uint8_t* qs) {
  uint8_t low[256];
  std::memset(hmask, 0, 32);
  for (int e = 0; e < 256; ++e) {
    hmask[e % 32] |= static_cast<uint8_t>(((L[e] >> 2) & 1) << (e / 32));
    low[e] = L[e] & 3;
  }
  PackTwoBitPlanes(low, qs);
}

// Q4_K nibbles: chunk c of 64 elements uses qs[32c..32c+31], low then high nibble.
inline void PackQ4KQuants(const uint8_t* L, uint8_t* qs) {
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

// Q5_K: low nibbles as Q4_K, fifth bits in qh.
inline void PackQ5KQuants(const uint8_t* L, uint8_t* qh, uint8_t* qs) {
  std::memset(qh, 0, 32);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      uint8_t a = L[64 * c + l];
      uint8_t b = L[64 * c + 32 + l];
      qs[32 * c + l] = static_cast<uint8_t>((a & 0x0F) | ((b & 0x0F) << 4));
      qh[l] |= static_cast<uint8_t>(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
    }
  }
}

// Q6_K: L holds 256 values 0..63.
inline void PackQ6KQuants(const uint8_t* L, uint8_t* ql, uint8_t* qh) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* e = L + 128 * h;
    for (int l = 0; l < 32; ++l) {
      ql[64 * h + l] = static_cast<uint8_t>((e[l] & 0x0F) | ((e[l + 64] & 0x0F) << 4));
      ql[64 * h + l + 32] = static_cast<uint8_t>((e[l + 32] & 0x0F) | ((e[l + 96] & 0x0F) << 4));
      qh[32 * h + l] = static_cast<uint8_t>((e[l] >> 4) | ((e[l + 32] >> 4) << 2) | ((e[l + 64] >> 4) << 4) |
                                            ((e[l + 96] >> 4) << 6));
    }
  }
}

}  // namespace mixq::formats::internal

#endif  // MIXQ_FORMATS_K_PACKING_H_
