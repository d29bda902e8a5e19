// The numeric steps of a layer: tiled dequantize-and-multiply, RMS norm, RoPE
// and causal attention. Reductions that ggml carries out in double (norm and
// softmax sums) are done in double here too.
#include <algorithm>
#include <cmath>

#include "engine/gemm.h"
#include "engine/int_gemm.h"
#include "engine/internal.h"
#include "formats/int_rows.h"

namespace mixq::engine {
namespace {

constexpr int64_t kAttentionBlock = 64;        // query rows per attention task
constexpr int64_t kTileRows = 128;             // weight rows per product task (a multiple of every panel width)
constexpr int64_t kTileTokens = 512;           // activation rows per product task
constexpr int64_t kDecodeRows = 16;            // weight rows per decoding task
constexpr int64_t kMaxDecodedBytes = 1 << 26;  // 64 MiB of decoded weights at a time

void Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// Weight rows decoded at a time: whole tiles, at most kMaxDecodedBytes
// (unless one tile is more).
int64_t BlockRows(int64_t n_out, int64_t packed_row_bytes) {
  return std::max(
      kTileRows,
      std::min((n_out + kTileRows - 1) / kTileRows, kMaxDecodedBytes / (kTileRows * packed_row_bytes)) * kTileRows);
}

// Weights are decoded once per call, a row block at a time, straight into
// the packed layout the kernel reads, in a buffer the threads share; then
// fixed tiles of (weight rows x tokens) are multiplied. The tiles do not
// depend on the thread count, so neither do the results.
// decode(row, r, thread) packs weight row `row` as row r of its block;
// multiply(r0, rows, i0, tokens, b0) runs one tile of the block at row b0.
template <typename Decode, typename Multiply>
void RunRowBlocks(int64_t n_out, int64_t n_tokens, int64_t block_rows, Buffers& buffers, int n_threads,
                  const Decode& decode, const Multiply& multiply) {
  if (static_cast<int>(buffers.threads.size()) < n_threads) buffers.threads.resize(n_threads);
  for (int64_t b0 = 0; b0 < n_out; b0 += block_rows) {
    const int64_t rows = std::min(block_rows, n_out - b0);
    RunTasks((rows + kDecodeRows - 1) / kDecodeRows, n_threads, [&](int64_t t, int thread) {
      for (int64_t r = t * kDecodeRows; r < std::min(rows, (t + 1) * kDecodeRows); ++r) decode(b0 + r, r, thread);
    });
    const int64_t row_tiles = (rows + kTileRows - 1) / kTileRows;
    const int64_t token_tiles = (n_tokens + kTileTokens - 1) / kTileTokens;
    RunTasks(row_tiles * token_tiles, n_threads, [&](int64_t t, int) {
      const int64_t r0 = (t % row_tiles) * kTileRows;
      const int64_t i0 = (t / row_tiles) * kTileTokens;
      multiply(r0, std::min(kTileRows, rows - r0), i0, std::min(kTileTokens, n_tokens - i0), b0);
    });
  }
}

void MatMulF32(const Weight& w, const float* x, int64_t n_tokens, float* y, Buffers& buffers, int n_threads) {
  const int64_t n_in = w.n_in;
  const int64_t block_rows = BlockRows(w.n_out, 4 * n_in);
  Grow(buffers.weights, PackedFloats(block_rows, n_in));
  float* packed = buffers.weights.data();
  auto decode = [&](int64_t row, int64_t r, int thread) {
    std::vector<float>& decoded = buffers.threads[thread].row;
    Grow(decoded, n_in);
    w.format->dequantize_row(w.data + row * w.row_bytes, decoded.data(), n_in);
    PackRow(decoded.data(), r, n_in, packed);
  };
  auto multiply = [&](int64_t r0, int64_t rows, int64_t i0, int64_t tokens, int64_t b0) {
    Gemm(tokens, rows, n_in, x + i0 * n_in, n_in, packed + r0 * n_in, n_in, y + i0 * w.n_out + b0 + r0, w.n_out);
  };
  RunRowBlocks(w.n_out, n_tokens, block_rows, buffers, n_threads, decode, multiply);
}

void MatMulInt(const Weight& w, const formats::IntDecoding& decoding, const IntActivations& acts, int64_t n_tokens,
               float* y, Buffers& buffers, int n_threads) {
  const int64_t n_in = w.n_in;
  const IntLayout layout = {decoding.group_elems, decoding.has_mins};
  const int64_t block_rows = BlockRows(w.n_out, IntPackedBytes(kIntPanel, n_in, layout) / kIntPanel);
  if (static_cast<int64_t>(buffers.int_weights.size()) < IntPackedBytes(block_rows, n_in, layout)) {
    buffers.int_weights.resize(static_cast<size_t>(IntPackedBytes(block_rows, n_in, layout)));
  }
  uint8_t* packed = buffers.int_weights.data();
  auto decode = [&](int64_t row, int64_t r, int thread) {
    ThreadScratch& s = buffers.threads[thread];
    s.int_row.resize(static_cast<size_t>(n_in));
    Grow(s.group_scales, n_in / layout.group);
    Grow(s.group_mins, n_in / layout.group);
    decoding.decode_row(w.data + row * w.row_bytes, s.int_row.data(), s.group_scales.data(), s.group_mins.data(), n_in);
    PackIntRow(s.int_row.data(), s.group_scales.data(), s.group_mins.data(), r, n_in, layout, packed);
  };
  auto multiply = [&](int64_t r0, int64_t rows, int64_t i0, int64_t tokens, int64_t b0) {
    IntActivations a = acts;
    a.q += i0 * a.ldq;
    a.d += i0 * a.ldd;
    if (layout.has_mins) a.sums += i0 * a.lds;
    IntGemm(tokens, rows, n_in, a, packed + IntPackedBytes(r0, n_in, layout), n_in, layout, y + i0 * w.n_out + b0 + r0,
            w.n_out, ActiveIntGemmIsa());
  };
  RunRowBlocks(w.n_out, n_tokens, block_rows, buffers, n_threads, decode, multiply);
}

void AddBias(const Weight& bias, int64_t n_tokens, int64_t n_out, float* y, Buffers& buffers) {
  DecodeVector(bias, buffers.vec);
  for (int64_t i = 0; i < n_tokens; ++i) {
    float* row = y + i * n_out;
    for (int64_t j = 0; j < n_out; ++j) row[j] += buffers.vec[j];
  }
}

// The integer form of a product's weights when the integer kernel can run it:
// activations rounded to Q8_0/Q8_K blocks and a format with an integer form.
const formats::IntDecoding* IntDecodingFor(const formats::Format& format, ActRounding rounding) {
  if (ActiveIntGemmIsa() == IntGemmIsa::kNone) return nullptr;
  if (rounding != ActRounding::kQ8_0 && rounding != ActRounding::kQ8_K) return nullptr;
  return format.int_decoding;
}

}  // namespace

void MatMul(std::initializer_list<Product> products, const float* x, int64_t n_tokens, Buffers& buffers,
            const RunOptions& options) {
  const int n_threads = std::max(1, options.n_threads);
  ActRounding done = ActRounding::kNone;
  const float* input = x;
  // The rounding and group of what buffers.int_acts holds.
  ActRounding int_done = ActRounding::kNone;
  int int_group = 0;
  for (const Product& p : products) {
    const int64_t n_in = p.w->n_in;
    const ActRounding rounding =
        options.activations == Activations::kGgml ? RoundingFor(*p.w->format) : ActRounding::kNone;
    if (const formats::IntDecoding* decoding = IntDecodingFor(*p.w->format, rounding)) {
      const int block = rounding == ActRounding::kQ8_K ? 256 : 32;
      const int group = decoding->group_elems;
      if (rounding != int_done || group != int_group) {
        if (static_cast<int64_t>(buffers.int_acts.size()) < n_tokens * n_in) {
          buffers.int_acts.resize(static_cast<size_t>(n_tokens * n_in));
        }
        Grow(buffers.int_act_d, n_tokens * (n_in / block));
        Grow(buffers.int_act_sums, n_tokens * (n_in / group));
        RunTasks(n_tokens, n_threads, [&](int64_t t, int) {
          QuantizeActivations(rounding, x + t * n_in, n_in, group, buffers.int_acts.data() + t * n_in,
                              buffers.int_act_d.data() + t * (n_in / block),
                              buffers.int_act_sums.data() + t * (n_in / group));
        });
        int_done = rounding;
        int_group = group;
      }
      const IntActivations acts = {buffers.int_acts.data(),
                                   n_in,
                                   buffers.int_act_d.data(),
                                   n_in / block,
                                   buffers.int_act_sums.data(),
                                   n_in / group,
                                   block};
      MatMulInt(*p.w, *decoding, acts, n_tokens, p.y, buffers, n_threads);
    } else {
      if (rounding == ActRounding::kNone) {
        input = x;
      } else if (rounding != done || input == x) {
        Grow(buffers.rounded, n_tokens * n_in);
        float* rounded = buffers.rounded.data();
        RunTasks(n_tokens, n_threads,
                 [&](int64_t t, int) { RoundActivations(rounding, x + t * n_in, 1, n_in, rounded + t * n_in); });
        input = rounded;
        done = rounding;
      }
      MatMulF32(*p.w, input, n_tokens, p.y, buffers, n_threads);
    }
    if (p.bias != nullptr) AddBias(*p.bias, n_tokens, p.w->n_out, p.y, buffers);
  }
}

void DecodeVector(const Weight& w, std::vector<float>& out) {
  out.resize(static_cast<size_t>(w.n_in * w.n_out));
  for (int64_t r = 0; r < w.n_out; ++r)
    w.format->dequantize_row(w.data + r * w.row_bytes, out.data() + r * w.n_in, w.n_in);
}

void Swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void RmsNorm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* y) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i] * xr[i]);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * weight[i];
  }
}

void ApplyRope(const ModelConfig& c, float* x, int64_t n_tokens, int64_t seq_len, int64_t n_heads,
               const float* freq_factors, Buffers& buffers) {
  const int64_t half = c.n_rot / 2;
  Grow(buffers.rope_cos, seq_len * half);
  Grow(buffers.rope_sin, seq_len * half);
  // The angle is stepped by repeated float multiplication, as ggml does, so
  // that positions far into the context round the same way.
  const float theta_scale = std::pow(c.rope_freq_base, -2.0f / static_cast<float>(c.n_rot));
  for (int64_t pos = 0; pos < seq_len; ++pos) {
    float theta = static_cast<float>(pos);
    for (int64_t i = 0; i < half; ++i) {
      const float ff = freq_factors != nullptr ? freq_factors[i] : 1.0f;
      const float angle = c.rope_freq_scale * (theta / ff);
      buffers.rope_cos[pos * half + i] = std::cos(angle);
      buffers.rope_sin[pos * half + i] = std::sin(angle);
      theta *= theta_scale;
    }
  }
  const int64_t stride = n_heads * c.head_dim;
  // NeoX pairs dim i with i + n_rot/2; the original llama pairs 2i with 2i+1.
  const int64_t pair_step = c.rope_neox ? half : 1;
  for (int64_t row = 0; row < n_tokens; ++row) {
    const float* cs = buffers.rope_cos.data() + (row % seq_len) * half;
    const float* sn = buffers.rope_sin.data() + (row % seq_len) * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + row * stride + h * c.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = c.rope_neox ? i : 2 * i;
        const float x0 = v[a];
        const float x1 = v[a + pair_step];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[a + pair_step] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

void Attention(const ModelConfig& c, const float* q, const float* k, const float* v, int64_t n_tokens, int64_t seq_len,
               float* out, Buffers& buffers, int n_threads) {
  n_threads = std::max(1, n_threads);
  if (static_cast<int>(buffers.threads.size()) < n_threads) buffers.threads.resize(n_threads);
  const int64_t hd = c.head_dim;
  const int64_t q_stride = c.n_head * hd;
  const int64_t kv_stride = c.n_head_kv * hd;
  const int64_t group = c.n_head / c.n_head_kv;
  const int64_t n_seqs = n_tokens / seq_len;
  const int64_t n_blocks = (seq_len + kAttentionBlock - 1) / kAttentionBlock;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // K (keys as rows) and Vᵀ packed once per sequence and KV head, shared by
  // the query blocks and the heads of its group.
  const int64_t k_floats = PackedFloats(seq_len, hd);
  const int64_t v_floats = PackedFloats(hd, seq_len);
  const int64_t n_slots = n_seqs * c.n_head_kv;
  Grow(buffers.keys, n_slots * k_floats);
  Grow(buffers.values, n_slots * v_floats);
  RunTasks(n_slots, n_threads, [&](int64_t slot, int) {
    const int64_t row0 = (slot / c.n_head_kv) * seq_len;
    const int64_t kvh = slot % c.n_head_kv;
    float* kp = buffers.keys.data() + slot * k_floats;
    for (int64_t j = 0; j < seq_len; ++j) PackRow(k + (row0 + j) * kv_stride + kvh * hd, j, hd, kp);
    PackTransposed(v + row0 * kv_stride + kvh * hd, kv_stride, seq_len, hd, buffers.values.data() + slot * v_floats);
  });

  // Largest blocks (latest queries) first, so the dynamic schedule ends evenly.
  RunTasks(n_seqs * c.n_head * n_blocks, n_threads, [&](int64_t task, int thread) {
    const int64_t blk = n_blocks - 1 - task / (c.n_head * n_seqs);
    const int64_t seq = (task / c.n_head) % n_seqs;
    const int64_t h = task % c.n_head;
    const int64_t slot = seq * c.n_head_kv + h / group;
    const int64_t i0 = blk * kAttentionBlock;
    const int64_t i1 = std::min(seq_len, i0 + kAttentionBlock);
    const int64_t row0 = seq * seq_len;  // the sequence's first row
    const int64_t m = i1 - i0;
    const int64_t nk = i1;  // causal: queries in this block see keys 0..i1-1 at most
    std::vector<float>& s = buffers.threads[thread].scores;
    Grow(s, m * nk);
    Gemm(m, nk, hd, q + (row0 + i0) * q_stride + h * hd, q_stride, buffers.keys.data() + slot * k_floats, hd, s.data(),
         nk);
    for (int64_t r = 0; r < m; ++r) {
      float* row = s.data() + r * nk;
      const int64_t n_valid = i0 + r + 1;
      SoftmaxRow(row, n_valid, scale);
      for (int64_t j = n_valid; j < nk; ++j) row[j] = 0.0f;
    }
    Gemm(m, hd, nk, s.data(), nk, buffers.values.data() + slot * v_floats, seq_len,
         out + (row0 + i0) * q_stride + h * hd, q_stride);
  });
}

}  // namespace mixq::engine
