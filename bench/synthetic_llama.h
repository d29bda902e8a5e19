// Random-weight llama models for the benchmarks that need a model larger or
// deeper than ref-dev: a byte-fallback SPM vocab (<unk>, <s>, </s>,
// <0x00>..<0xFF>), F32 norms near 1, and N(0, 1/n_in) matrices stored in the
// given types. With n_expert > 0, a qwen3moe model instead (q/k norms, an F32
// router, 3-D expert tensors n_ff_exp wide). The same spec and seed always give
// the same file.
#ifndef MIXQ_BENCH_SYNTHETIC_LLAMA_H_
#define MIXQ_BENCH_SYNTHETIC_LLAMA_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/status.h"
#include "formats/formats.h"
#include "gguf/gguf.h"

namespace mixq::bench {

struct SyntheticLlama {
  int64_t n_embd = 512;
  int64_t n_ff = 1536;
  int64_t n_layer = 4;
  int64_t n_head = 8;
  int64_t n_head_kv = 4;
  int64_t head_dim = 64;
  const char* matrix_type = "F16";     // of the layers' linear weights
  const char* embedding_type = "F16";  // of token_embd and output
  int n_threads = 2;
  int64_t n_expert = 0;  // > 0: qwen3moe with routed experts instead of the dense FFN
  int64_t n_expert_used = 2;
  int64_t n_ff_exp = 256;
};

inline Status WriteSyntheticLlama(const std::string& path, const SyntheticLlama& s) {
  const int64_t vocab = 259;
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    tokens.push_back(name);
  }
  gguf::Value scores, types;
  scores.type = types.type = gguf::ValueType::kArray;
  scores.array_type = gguf::ValueType::kFloat32;
  types.array_type = gguf::ValueType::kInt32;
  for (int64_t i = 0; i < vocab; ++i) {
    scores.array.push_back(gguf::Value::Float32(0.0f));
    types.array.push_back(gguf::Value::Int32(i == 0 ? 2 : i < 3 ? 3 : 6));
  }
  const bool moe = s.n_expert > 0;
  const std::string a = moe ? "qwen3moe." : "llama.";
  auto u32 = [](int64_t v) { return gguf::Value::Uint32(static_cast<uint32_t>(v)); };
  std::vector<gguf::KeyValue> kv = {
      {"general.architecture", gguf::Value::String(a.substr(0, a.size() - 1))},
      {a + "context_length", u32(4096)},
      {a + "embedding_length", u32(s.n_embd)},
      {a + "feed_forward_length", u32(s.n_ff)},
      {a + "block_count", u32(s.n_layer)},
      {a + "attention.head_count", u32(s.n_head)},
      {a + "attention.head_count_kv", u32(s.n_head_kv)},
      {a + "attention.key_length", u32(s.head_dim)},
      {a + "attention.value_length", u32(s.head_dim)},
      {a + "rope.dimension_count", u32(s.head_dim)},
      {a + "attention.layer_norm_rms_epsilon", gguf::Value::Float32(1e-5f)},
      {"tokenizer.ggml.model", gguf::Value::String("llama")},
      {"tokenizer.ggml.tokens", gguf::Value::StringArray(tokens)},
      {"tokenizer.ggml.scores", scores},
      {"tokenizer.ggml.token_type", types},
  };
  if (moe) {
    kv.push_back({a + "expert_count", u32(s.n_expert)});
    kv.push_back({a + "expert_used_count", u32(s.n_expert_used)});
    kv.push_back({a + "expert_feed_forward_length", u32(s.n_ff_exp)});
  }
  const formats::Format* f32 = formats::FindFormatByName("F32");
  const formats::Format* matrix = formats::FindFormatByName(s.matrix_type);
  const formats::Format* embedding = formats::FindFormatByName(s.embedding_type);
  if (matrix == nullptr || embedding == nullptr) return Status::InvalidArgument("unknown synthetic model type");
  struct T {
    std::string name;
    int64_t n_in, n_out;
    const formats::Format* f;
    int64_t n_mat = 1;  // experts, stacked along ne[2]
  };
  const int64_t d = s.n_embd, q_dim = s.n_head * s.head_dim, kv_dim = s.n_head_kv * s.head_dim;
  std::vector<T> ts = {{"token_embd.weight", d, vocab, embedding},
                       {"output_norm.weight", d, 1, f32},
                       {"output.weight", d, vocab, embedding}};
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    ts.push_back({p + "attn_norm.weight", d, 1, f32});
    ts.push_back({p + "attn_q.weight", d, q_dim, matrix});
    ts.push_back({p + "attn_k.weight", d, kv_dim, matrix});
    ts.push_back({p + "attn_v.weight", d, kv_dim, matrix});
    if (moe) {
      ts.push_back({p + "attn_q_norm.weight", s.head_dim, 1, f32});
      ts.push_back({p + "attn_k_norm.weight", s.head_dim, 1, f32});
    }
    ts.push_back({p + "attn_output.weight", q_dim, d, matrix});
    ts.push_back({p + "ffn_norm.weight", d, 1, f32});
    if (moe) {
      ts.push_back({p + "ffn_gate_inp.weight", d, s.n_expert, f32});
      ts.push_back({p + "ffn_gate_exps.weight", d, s.n_ff_exp, matrix, s.n_expert});
      ts.push_back({p + "ffn_up_exps.weight", d, s.n_ff_exp, matrix, s.n_expert});
      ts.push_back({p + "ffn_down_exps.weight", s.n_ff_exp, d, matrix, s.n_expert});
    } else {
      ts.push_back({p + "ffn_gate.weight", d, s.n_ff, matrix});
      ts.push_back({p + "ffn_up.weight", d, s.n_ff, matrix});
      ts.push_back({p + "ffn_down.weight", s.n_ff, d, matrix});
    }
  }
  std::vector<gguf::TensorSpec> specs;
  for (const T& t : ts) {
    const uint32_t n_dims = t.n_mat > 1 ? 3u : t.n_out == 1 ? 1u : 2u;
    specs.push_back({t.name, {t.n_in, t.n_out, t.n_mat, 1}, n_dims, t.f});
  }
  auto w = gguf::GgufWriter::Begin(path, kv, specs);
  if (!w) return w.error();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const T& t : ts) {
    const int64_t n_rows = t.n_out * t.n_mat;
    std::vector<float> v(static_cast<size_t>(t.n_in * n_rows));
    const float scale = t.n_out == 1 ? 0.1f : 1.0f / std::sqrt(static_cast<float>(t.n_in));
    for (float& x : v) x = (t.n_out == 1 ? 1.0f : 0.0f) + scale * normal(rng);
    auto row_bytes = formats::RowBytes(*t.f, t.n_in);
    if (!row_bytes) return row_bytes.error();
    std::vector<uint8_t> bytes(static_cast<size_t>(*row_bytes * n_rows));
    Status quantized = formats::QuantizeRows(*t.f, formats::QuantMethod::kGgml, v.data(), bytes.data(), n_rows, t.n_in,
                                             nullptr, s.n_threads);
    if (!quantized.ok()) return quantized;
    Status written = w->WriteTensor(bytes);
    if (!written.ok()) return written;
  }
  return w->Finish();
}

}  // namespace mixq::bench

#endif  // MIXQ_BENCH_SYNTHETIC_LLAMA_H_
