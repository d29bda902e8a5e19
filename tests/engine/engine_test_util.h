// Helpers for the engine tests: running gguf-oracle, reading its LGT2 logits
// and writing small random-weight models of each supported architecture.
#ifndef MIXQ_TESTS_ENGINE_ENGINE_TEST_UTIL_H_
#define MIXQ_TESTS_ENGINE_ENGINE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "test_support.h"

namespace mixq::engine::test {

// env: "NAME=VALUE ..." for the oracle's environment, or empty.
inline nlohmann::json RunOracle(const std::string& args, const std::string& env = "") {
  auto r = testing::RunCommand((env.empty() ? "" : "env " + env + " ") + testing::OraclePath() + " " + args);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.out.substr(0, 2000) << "\n" << r.err.substr(0, 2000);
  return nlohmann::json::parse(r.out, nullptr, false);
}

// The oracle's text-mode logits file (tools/oracle/README.md).
struct Lgt2 {
  uint32_t n_ctx = 0, n_chunks = 0, n_vocab = 0, first = 0, n_scored = 0;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [n_chunks][n_scored][n_vocab]
};

inline Lgt2 ReadLgt2(const std::string& path) {
  auto bytes = testing::ReadFileBytes(path);
  Lgt2 l;
  EXPECT_GE(bytes.size(), 28u);
  EXPECT_EQ(std::memcmp(bytes.data(), "LGT2", 4), 0);
  uint32_t h[6];
  std::memcpy(h, bytes.data() + 4, sizeof(h));
  l.n_ctx = h[0], l.n_chunks = h[1], l.n_vocab = h[2], l.first = h[3], l.n_scored = h[4];
  l.tokens.resize(size_t{l.n_chunks} * l.n_ctx);
  std::memcpy(l.tokens.data(), bytes.data() + 28, l.tokens.size() * 4);
  l.logits.resize(size_t{l.n_chunks} * l.n_scored * l.n_vocab);
  EXPECT_EQ(bytes.size(), 28 + 4 * (l.tokens.size() + l.logits.size()));
  std::memcpy(l.logits.data(), bytes.data() + 28 + 4 * l.tokens.size(), l.logits.size() * 4);
  return l;
}

struct LogitDiff {
  double rel_rms = 0;
  double max_abs = 0;
  double top1_agreement = 0;
  // Positions whose top token differs although the reference's lead over our
  // top token is more than kTieNoise times that row's RMS logit difference:
  // a flip there is no near-tie broken by summation order, but a real error.
  int64_t unexplained_flips = 0;
};
inline constexpr double kTieNoise = 6.0;

// Our logits for every chunk of an LGT2 file (same tokens, BOS first) vs its logits.
inline LogitDiff CompareWithLgt2(Model& model, const Lgt2& ref, int32_t bos, const RunOptions& options) {
  double se = 0, sr = 0, max_abs = 0;
  int64_t agree = 0, rows = 0, unexplained = 0;
  for (uint32_t c = 0; c < ref.n_chunks; ++c) {
    std::vector<int32_t> input(ref.tokens.begin() + c * ref.n_ctx, ref.tokens.begin() + (c + 1) * ref.n_ctx);
    input[0] = bos;
    std::vector<float> logits;
    Status s = model.Forward(input, ref.first, &logits, options);
    EXPECT_TRUE(s.ok()) << s.message();
    for (uint32_t k = 0; k < ref.n_scored; ++k) {
      const float* a = logits.data() + size_t{k} * ref.n_vocab;
      const float* b = ref.logits.data() + (size_t{c} * ref.n_scored + k) * ref.n_vocab;
      uint32_t am = 0, bm = 0;
      double row_se = 0;
      for (uint32_t j = 0; j < ref.n_vocab; ++j) {
        const double d = double(a[j]) - b[j];
        row_se += d * d;
        sr += double(b[j]) * b[j];
        max_abs = std::max(max_abs, std::fabs(d));
        if (a[j] > a[am]) am = j;
        if (b[j] > b[bm]) bm = j;
      }
      se += row_se;
      agree += am == bm;
      if (am != bm && double(b[bm]) - b[am] > kTieNoise * std::sqrt(row_se / ref.n_vocab)) ++unexplained;
      ++rows;
    }
  }
  return {std::sqrt(se / sr), max_abs, double(agree) / double(rows), unexplained};
}

struct RandomModelSpec {
  std::string arch = "llama";
  int64_t n_embd = 64;
  int64_t n_ff = 128;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  int64_t head_dim = 16;
  bool tied = false;
  std::string type = "F32";  // of the matrices (the router stays F32, as llama.cpp's converter writes it)
  uint32_t seed = 1;
  // Routed experts instead of the dense feed-forward block when n_expert > 0:
  // qwen3moe, qwen2moe (plus a shared expert), or llama with experts
  // (Mixtral), whose experts are n_ff wide.
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_exp = 0;    // qwen3moe's and qwen2moe's expert_feed_forward_length
  int64_t n_ff_shexp = 0;  // qwen2moe's expert_shared_feed_forward_length
};

// A random-weight model with a byte-fallback SPM vocab (<unk>, <s>, </s>,
// <0x00>..<0xFF>: every text tokenizes), with the extra tensors qwen2 and
// qwen2moe (q/k/v biases), qwen3 and qwen3moe (q/k norms), routed experts
// (router, 3-D expert tensors) and qwen2moe's shared expert need.
inline void WriteRandomModel(const std::string& path, const RandomModelSpec& s) {
  const int64_t n_vocab = 259;
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<gguf::Value> scores, types;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    tokens.push_back(name);
  }
  for (int64_t i = 0; i < n_vocab; ++i) {
    scores.push_back(gguf::Value::Float32(0.0f));
    types.push_back(gguf::Value::Int32(i == 0 ? 2 : i < 3 ? 3 : 6));
  }
  gguf::Value score_array, type_array;
  score_array.type = type_array.type = gguf::ValueType::kArray;
  score_array.array_type = gguf::ValueType::kFloat32;
  score_array.array = scores;
  type_array.array_type = gguf::ValueType::kInt32;
  type_array.array = types;
  const std::string a = s.arch + ".";
  std::vector<gguf::KeyValue> kv = {
      {"general.architecture", gguf::Value::String(s.arch)},
      {"general.name", gguf::Value::String("random-" + s.arch)},
      {a + "context_length", gguf::Value::Uint32(1024)},
      {a + "embedding_length", gguf::Value::Uint32(uint32_t(s.n_embd))},
      {a + "feed_forward_length", gguf::Value::Uint32(uint32_t(s.n_ff))},
      {a + "block_count", gguf::Value::Uint32(uint32_t(s.n_layer))},
      {a + "attention.head_count", gguf::Value::Uint32(uint32_t(s.n_head))},
      {a + "attention.head_count_kv", gguf::Value::Uint32(uint32_t(s.n_head_kv))},
      {a + "attention.key_length", gguf::Value::Uint32(uint32_t(s.head_dim))},
      {a + "attention.value_length", gguf::Value::Uint32(uint32_t(s.head_dim))},
      {a + "rope.dimension_count", gguf::Value::Uint32(uint32_t(s.head_dim))},
      {a + "rope.freq_base", gguf::Value::Float32(s.arch == "llama" ? 10000.0f : 1000000.0f)},
      {a + "attention.layer_norm_rms_epsilon", gguf::Value::Float32(1e-6f)},
  };
  if (s.n_expert > 0) {
    kv.push_back({a + "expert_count", gguf::Value::Uint32(uint32_t(s.n_expert))});
    kv.push_back({a + "expert_used_count", gguf::Value::Uint32(uint32_t(s.n_expert_used))});
    if (s.arch == "qwen3moe" || s.arch == "qwen2moe") {
      kv.push_back({a + "expert_feed_forward_length", gguf::Value::Uint32(uint32_t(s.n_ff_exp))});
    }
    if (s.arch == "qwen2moe") {
      kv.push_back({a + "expert_shared_feed_forward_length", gguf::Value::Uint32(uint32_t(s.n_ff_shexp))});
    }
  }
  std::vector<gguf::KeyValue> vocab = {
      {"tokenizer.ggml.model", gguf::Value::String("llama")},
      {"tokenizer.ggml.tokens", gguf::Value::StringArray(tokens)},
      {"tokenizer.ggml.scores", score_array},
      {"tokenizer.ggml.token_type", type_array},
      {"tokenizer.ggml.bos_token_id", gguf::Value::Uint32(1)},
      {"tokenizer.ggml.eos_token_id", gguf::Value::Uint32(2)},
  };
  kv.insert(kv.end(), vocab.begin(), vocab.end());
  const int64_t q_dim = s.n_head * s.head_dim, kv_dim = s.n_head_kv * s.head_dim;
  struct T {
    std::string name;
    int64_t n_in, n_out;  // n_out == 0: a vector
    bool norm;
    int64_t n_mat = 1;  // experts stacked along ne[2]
    bool f32 = false;   // kept F32 whatever the spec's type
  };
  std::vector<T> ts = {{"token_embd.weight", s.n_embd, n_vocab, false}, {"output_norm.weight", s.n_embd, 0, true}};
  if (!s.tied) ts.push_back({"output.weight", s.n_embd, n_vocab, false});
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    ts.push_back({p + "attn_norm.weight", s.n_embd, 0, true});
    ts.push_back({p + "attn_q.weight", s.n_embd, q_dim, false});
    ts.push_back({p + "attn_k.weight", s.n_embd, kv_dim, false});
    ts.push_back({p + "attn_v.weight", s.n_embd, kv_dim, false});
    if (s.arch == "qwen2" || s.arch == "qwen2moe") {
      ts.push_back({p + "attn_q.bias", q_dim, 0, false});
      ts.push_back({p + "attn_k.bias", kv_dim, 0, false});
      ts.push_back({p + "attn_v.bias", kv_dim, 0, false});
    }
    if (s.arch == "qwen3" || s.arch == "qwen3moe") {
      ts.push_back({p + "attn_q_norm.weight", s.head_dim, 0, true});
      ts.push_back({p + "attn_k_norm.weight", s.head_dim, 0, true});
    }
    ts.push_back({p + "attn_output.weight", q_dim, s.n_embd, false});
    ts.push_back({p + "ffn_norm.weight", s.n_embd, 0, true});
    if (s.n_expert > 0) {
      const int64_t n_ff_exp = s.arch == "llama" ? s.n_ff : s.n_ff_exp;
      ts.push_back({p + "ffn_gate_inp.weight", s.n_embd, s.n_expert, false, 1, true});
      ts.push_back({p + "ffn_gate_exps.weight", s.n_embd, n_ff_exp, false, s.n_expert});
      ts.push_back({p + "ffn_up_exps.weight", s.n_embd, n_ff_exp, false, s.n_expert});
      ts.push_back({p + "ffn_down_exps.weight", n_ff_exp, s.n_embd, false, s.n_expert});
      if (s.arch == "qwen2moe") {
        ts.push_back({p + "ffn_gate_inp_shexp.weight", s.n_embd, 0, false});
        ts.push_back({p + "ffn_gate_shexp.weight", s.n_embd, s.n_ff_shexp, false});
        ts.push_back({p + "ffn_up_shexp.weight", s.n_embd, s.n_ff_shexp, false});
        ts.push_back({p + "ffn_down_shexp.weight", s.n_ff_shexp, s.n_embd, false});
      }
    } else {
      ts.push_back({p + "ffn_gate.weight", s.n_embd, s.n_ff, false});
      ts.push_back({p + "ffn_up.weight", s.n_embd, s.n_ff, false});
      ts.push_back({p + "ffn_down.weight", s.n_ff, s.n_embd, false});
    }
  }
  const formats::Format* f32 = formats::FindFormatByName("F32");
  const formats::Format* wtype = formats::FindFormatByName(s.type);
  std::vector<gguf::TensorSpec> specs;
  for (const T& t : ts) {
    gguf::TensorSpec spec;
    spec.name = t.name;
    spec.ne = {t.n_in, t.n_out == 0 ? 1 : t.n_out, t.n_mat, 1};
    spec.n_dims = t.n_out == 0 ? 1 : t.n_mat > 1 ? 3 : 2;
    spec.format = t.n_out == 0 || t.f32 ? f32 : wtype;
    specs.push_back(spec);
  }
  auto w = gguf::GgufWriter::Begin(path, kv, specs);
  ASSERT_TRUE(w.has_value()) << w.error().message();
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t i = 0; i < ts.size(); ++i) {
    const T& t = ts[i];
    const int64_t n = t.n_in * std::max<int64_t>(1, t.n_out) * t.n_mat;
    std::vector<float> v(static_cast<size_t>(n));
    const float scale = t.n_out == 0 ? 0.2f : 1.0f / std::sqrt(float(t.n_in));
    for (float& x : v) x = (t.norm ? 1.0f : 0.0f) + scale * normal(rng);
    auto row = formats::RowBytes(*specs[i].format, t.n_in);
    ASSERT_TRUE(row.has_value());
    std::vector<uint8_t> bytes(static_cast<size_t>(*row * (n / t.n_in)));
    ASSERT_TRUE(formats::QuantizeRows(*specs[i].format, formats::QuantMethod::kGgml, v.data(), bytes.data(), n / t.n_in,
                                      t.n_in, nullptr, 1)
                    .ok());
    ASSERT_TRUE(w->WriteTensor(bytes).ok());
  }
  ASSERT_TRUE(w->Finish().ok());
}

// ref-dev opened and loaded (CPU), for the tests that run it.
class RefDevModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = gguf::GgufFile::Open(testing::RefDevModel());
    ASSERT_TRUE(f.has_value());
    file_ = std::make_unique<gguf::GgufFile>(std::move(f).value());
    auto m = Model::Load(*file_);
    ASSERT_TRUE(m.has_value()) << m.error().message();
    model_ = std::make_unique<Model>(std::move(m).value());
  }
  // The first n_bytes of the held-out text, tokenized as eval does.
  std::vector<int32_t> TextTokens(size_t n_bytes) const {
    auto tok = tokenizer::Tokenizer::FromGguf(*file_);
    EXPECT_TRUE(tok.has_value());
    return tok.has_value() ? TokenizeForEval(*tok, testing::RefDevTextStart(n_bytes)) : std::vector<int32_t>();
  }
  std::unique_ptr<gguf::GgufFile> file_;
  std::unique_ptr<Model> model_;
};

}  // namespace mixq::engine::test

#endif  // MIXQ_TESTS_ENGINE_ENGINE_TEST_UTIL_H_
