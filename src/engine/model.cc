// Model: tensor lookup and validation, weight overrides, and the layer loop.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/internal.h"

namespace mixq::engine {

struct Model::Impl {
  const gguf::GgufFile* file = nullptr;
  ModelConfig config;
  std::map<std::string, Weight> weights;  // every tensor the pass reads, by name
  std::map<std::string, std::vector<uint8_t>> overrides;
  std::vector<LayerWeights> layers;
  Weight* token_embd = nullptr;
  Weight* output_norm = nullptr;
  Weight* output = nullptr;
  Weight* rope_freqs = nullptr;
  Buffers buffers;
  std::vector<float> layer_rope_factors;
  std::vector<float> forward_hidden;
  std::vector<float> forward_gathered;

  Result<Weight*> Add(const std::string& name, std::initializer_list<int64_t> shape, bool required);
  Status AddLayers();
  void Reset(Weight& w);
  void Hook(const RunOptions& options, const Weight* w, const float* x, int64_t n_tokens) const {
    if (options.hook != nullptr && w != nullptr) (*options.hook)(w->name, x, n_tokens, w->n_in);
  }
  void RunLayer(int64_t il, float* hidden, int64_t n_tokens, const RunOptions& options);
};

namespace {

std::string ShapeString(const gguf::TensorInfo& t) {
  std::string s;
  for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? " x " : "") + std::to_string(t.ne[d]);
  return s;
}

void Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

}  // namespace

Result<Weight*> Model::Impl::Add(const std::string& name, std::initializer_list<int64_t> shape, bool required) {
  const gguf::TensorInfo* t = file->FindTensor(name);
  if (t == nullptr) {
    if (required) return Status::Corruption("missing tensor '" + name + "' for " + config.arch + ": " + file->path());
    return static_cast<Weight*>(nullptr);
  }
  std::array<int64_t, 4> want = {1, 1, 1, 1};
  size_t d = 0;
  for (int64_t n : shape) want[d++] = n;
  if (t->ne != want) {
    return Status::Corruption("tensor '" + name + "' has shape " + ShapeString(*t) + ", expected " +
                              std::to_string(want[0]) + (shape.size() > 1 ? " x " + std::to_string(want[1]) : ""));
  }
  if (!t->format->can_decode()) {
    return Status::NotSupported("tensor '" + name + "' is " + std::string(t->format->name) +
                                ", which mixq cannot decode yet");
  }
  Weight& w = weights[name];
  w.name = name;
  w.info = t;
  Reset(w);
  return &w;
}

void Model::Impl::Reset(Weight& w) {
  w.format = w.info->format;
  w.data = file->TensorData(*w.info).data();
  w.n_in = w.info->ne[0];
  w.n_out = w.info->n_rows();
  w.row_bytes = static_cast<int64_t>(w.info->n_bytes) / w.n_out;
}

Status Model::Impl::AddLayers() {
  const ModelConfig& c = config;
  const int64_t q_dim = c.n_head * c.head_dim;
  const int64_t kv_dim = c.n_head_kv * c.head_dim;
  layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& l = layers[il];
    struct Slot {
      Weight** dst;
      const char* name;
      std::initializer_list<int64_t> shape;
      bool required;
    };
    const Slot slots[] = {
        {&l.attn_norm, "attn_norm.weight", {c.n_embd}, true},
        {&l.wq, "attn_q.weight", {c.n_embd, q_dim}, true},
        {&l.wk, "attn_k.weight", {c.n_embd, kv_dim}, true},
        {&l.wv, "attn_v.weight", {c.n_embd, kv_dim}, true},
        {&l.wo, "attn_output.weight", {q_dim, c.n_embd}, true},
        {&l.bq, "attn_q.bias", {q_dim}, false},
        {&l.bk, "attn_k.bias", {kv_dim}, false},
        {&l.bv, "attn_v.bias", {kv_dim}, false},
        {&l.bo, "attn_output.bias", {c.n_embd}, false},
        {&l.q_norm, "attn_q_norm.weight", {c.head_dim}, c.qk_norm},
        {&l.k_norm, "attn_k_norm.weight", {c.head_dim}, c.qk_norm},
        {&l.ffn_norm, "ffn_norm.weight", {c.n_embd}, true},
        {&l.gate, "ffn_gate.weight", {c.n_embd, c.n_ff}, true},
        {&l.up, "ffn_up.weight", {c.n_embd, c.n_ff}, true},
        {&l.down, "ffn_down.weight", {c.n_ff, c.n_embd}, true},
        {&l.b_gate, "ffn_gate.bias", {c.n_ff}, false},
        {&l.b_up, "ffn_up.bias", {c.n_ff}, false},
        {&l.b_down, "ffn_down.bias", {c.n_embd}, false},
    };
    for (const Slot& s : slots) {
      auto w = Add(p + s.name, s.shape, s.required);
      MIXQ_TRY(w);
      *s.dst = *w;
    }
    if (!c.qk_norm) {
      l.q_norm = nullptr;
      l.k_norm = nullptr;
    }
  }
  return Status::Ok();
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Result<Model> Model::Load(const gguf::GgufFile& file) {
  auto impl = std::make_unique<Impl>();
  impl->file = &file;
  auto config = ReadConfig(file);
  MIXQ_TRY(config);
  impl->config = *config;
  const ModelConfig& c = impl->config;

  auto embd = impl->Add("token_embd.weight", {c.n_embd, c.n_vocab}, true);
  MIXQ_TRY(embd);
  impl->token_embd = *embd;
  auto norm = impl->Add("output_norm.weight", {c.n_embd}, true);
  MIXQ_TRY(norm);
  impl->output_norm = *norm;
  if (c.tied_output) {
    impl->output = impl->token_embd;
  } else {
    auto out = impl->Add("output.weight", {c.n_embd, c.n_vocab}, true);
    MIXQ_TRY(out);
    impl->output = *out;
  }
  auto freqs = impl->Add("rope_freqs.weight", {c.n_rot / 2}, false);
  MIXQ_TRY(freqs);
  impl->rope_freqs = *freqs;
  MIXQ_TRY(impl->AddLayers());
  return Model(std::move(impl));
}

const ModelConfig& Model::config() const { return impl_->config; }
const gguf::GgufFile& Model::file() const { return *impl_->file; }

std::vector<std::string> Model::LinearWeights() const {
  std::vector<std::string> names;
  for (const LayerWeights& l : impl_->layers) {
    for (const Weight* w : {l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down}) names.push_back(w->name);
  }
  names.push_back(impl_->output->name);
  return names;
}

Status Model::SetWeight(const std::string& name, const formats::Format& format, std::vector<uint8_t> bytes) {
  auto it = impl_->weights.find(name);
  if (it == impl_->weights.end()) {
    return Status::InvalidArgument("no tensor '" + name + "' in the forward pass of " + impl_->file->path());
  }
  Weight& w = it->second;
  if (!format.can_decode()) {
    return Status::InvalidArgument("cannot decode " + std::string(format.name) + " for tensor '" + name + "'");
  }
  auto row_bytes = formats::RowBytes(format, w.info->ne[0]);
  MIXQ_TRY(row_bytes.status().WithContext("tensor '" + name + "'"));
  const int64_t n_rows = w.info->n_rows();
  if (static_cast<int64_t>(bytes.size()) != *row_bytes * n_rows) {
    return Status::InvalidArgument("tensor '" + name + "' needs " + std::to_string(*row_bytes * n_rows) + " bytes of " +
                                   std::string(format.name) + ", got " + std::to_string(bytes.size()));
  }
  auto& stored = impl_->overrides[name];
  stored = std::move(bytes);
  w.format = &format;
  w.data = stored.data();
  w.row_bytes = *row_bytes;
  return Status::Ok();
}

Status Model::SetWeightF32(const std::string& name, const std::vector<float>& values) {
  const formats::Format* f32 = formats::FindFormatByName("F32");
  if (f32 == nullptr) return Status::Internal("the format table has no F32");
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return SetWeight(name, *f32, std::move(bytes));
}

void Model::ClearWeight(const std::string& name) {
  auto it = impl_->weights.find(name);
  if (it == impl_->weights.end()) return;
  impl_->Reset(it->second);
  impl_->overrides.erase(name);
}

void Model::ClearAllWeights() {
  for (auto& [name, w] : impl_->weights) impl_->Reset(w);
  impl_->overrides.clear();
}

Status Model::Embed(std::span<const int32_t> tokens, float* hidden) {
  const Weight& w = *impl_->token_embd;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= w.n_out) {
      return Status::InvalidArgument("token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                                     " is outside the vocabulary of " + std::to_string(w.n_out));
    }
    w.format->dequantize_row(w.data + tokens[i] * w.row_bytes, hidden + i * w.n_in, w.n_in);
  }
  return Status::Ok();
}

void Model::Impl::RunLayer(int64_t il, float* hidden, int64_t n_tokens, const RunOptions& options) {
  const ModelConfig& c = config;
  const LayerWeights& l = layers[il];
  Buffers& b = buffers;
  const int nt = options.n_threads;
  const int64_t q_dim = c.n_head * c.head_dim;
  const int64_t kv_dim = c.n_head_kv * c.head_dim;
  Grow(b.norm, n_tokens * std::max(c.n_embd, c.n_ff));
  Grow(b.q, n_tokens * q_dim);
  Grow(b.k, n_tokens * kv_dim);
  Grow(b.v, n_tokens * kv_dim);
  Grow(b.attn, n_tokens * std::max(q_dim, c.n_embd));

  DecodeVector(*l.attn_norm, b.vec);
  RmsNorm(hidden, b.vec.data(), n_tokens, c.n_embd, c.rms_eps, b.norm.data());
  Hook(options, l.wq, b.norm.data(), n_tokens);
  Hook(options, l.wk, b.norm.data(), n_tokens);
  Hook(options, l.wv, b.norm.data(), n_tokens);
  MatMul({{l.wq, l.bq, b.q.data()}, {l.wk, l.bk, b.k.data()}, {l.wv, l.bv, b.v.data()}}, b.norm.data(), n_tokens, b,
         options);
  if (l.q_norm != nullptr) {
    DecodeVector(*l.q_norm, b.vec);
    RmsNorm(b.q.data(), b.vec.data(), n_tokens * c.n_head, c.head_dim, c.rms_eps, b.q.data());
    DecodeVector(*l.k_norm, b.vec);
    RmsNorm(b.k.data(), b.vec.data(), n_tokens * c.n_head_kv, c.head_dim, c.rms_eps, b.k.data());
  }
  const float* factors = nullptr;
  if (rope_freqs != nullptr) {
    DecodeVector(*rope_freqs, layer_rope_factors);
    factors = layer_rope_factors.data();
  }
  const int64_t seq_len = options.seq_len > 0 ? options.seq_len : n_tokens;
  ApplyRope(c, b.q.data(), n_tokens, seq_len, c.n_head, factors, b);
  ApplyRope(c, b.k.data(), n_tokens, seq_len, c.n_head_kv, factors, b);
  if (options.activations == Activations::kGgml) {
    // llama.cpp keeps K and V in an F16 cache.
    RoundActivations(ActRounding::kF16, b.k.data(), n_tokens, kv_dim, b.k.data());
    RoundActivations(ActRounding::kF16, b.v.data(), n_tokens, kv_dim, b.v.data());
  }
  Attention(c, b.q.data(), b.k.data(), b.v.data(), n_tokens, seq_len, b.attn.data(), b, nt);
  Hook(options, l.wo, b.attn.data(), n_tokens);
  MatMul({{l.wo, l.bo, b.q.data()}}, b.attn.data(), n_tokens, b, options);
  for (int64_t i = 0; i < n_tokens * c.n_embd; ++i) hidden[i] += b.q[i];

  DecodeVector(*l.ffn_norm, b.vec);
  RmsNorm(hidden, b.vec.data(), n_tokens, c.n_embd, c.rms_eps, b.norm.data());
  Grow(b.gate, n_tokens * c.n_ff);
  Grow(b.up, n_tokens * c.n_ff);
  Hook(options, l.gate, b.norm.data(), n_tokens);
  Hook(options, l.up, b.norm.data(), n_tokens);
  MatMul({{l.gate, l.b_gate, b.gate.data()}, {l.up, l.b_up, b.up.data()}}, b.norm.data(), n_tokens, b, options);
  for (int64_t i = 0; i < n_tokens * c.n_ff; ++i) {
    const float g = b.gate[i];
    b.gate[i] = g / (1.0f + std::exp(-g)) * b.up[i];
  }
  Hook(options, l.down, b.gate.data(), n_tokens);
  MatMul({{l.down, l.b_down, b.q.data()}}, b.gate.data(), n_tokens, b, options);
  for (int64_t i = 0; i < n_tokens * c.n_embd; ++i) hidden[i] += b.q[i];
}

Status Model::RunLayers(int64_t first, int64_t last, float* hidden, int64_t n_tokens, const RunOptions& options) {
  if (first < 0 || last > impl_->config.n_layer || first > last) {
    return Status::InvalidArgument("layer range [" + std::to_string(first) + ", " + std::to_string(last) +
                                   ") outside 0.." + std::to_string(impl_->config.n_layer));
  }
  if (n_tokens <= 0) return Status::InvalidArgument("no tokens to run");
  if (options.seq_len < 0 || (options.seq_len > 0 && n_tokens % options.seq_len != 0)) {
    return Status::InvalidArgument(std::to_string(n_tokens) + " rows are not whole sequences of " +
                                   std::to_string(options.seq_len));
  }
  for (int64_t il = first; il < last; ++il) impl_->RunLayer(il, hidden, n_tokens, options);
  return Status::Ok();
}

Status Model::Logits(const float* hidden, int64_t n_tokens, float* logits, const RunOptions& options) {
  Impl& m = *impl_;
  if (n_tokens <= 0) return Status::Ok();
  Grow(m.buffers.norm, n_tokens * m.config.n_embd);
  DecodeVector(*m.output_norm, m.buffers.vec);
  RmsNorm(hidden, m.buffers.vec.data(), n_tokens, m.config.n_embd, m.config.rms_eps, m.buffers.norm.data());
  m.Hook(options, m.output, m.buffers.norm.data(), n_tokens);
  if (logits == nullptr) return Status::Ok();
  MatMul({{m.output, nullptr, logits}}, m.buffers.norm.data(), n_tokens, m.buffers, options);
  return Status::Ok();
}

Status Model::Forward(std::span<const int32_t> tokens, int64_t logits_from, std::vector<float>* logits,
                      const RunOptions& options, std::vector<std::vector<float>>* layer_inputs) {
  const ModelConfig& c = impl_->config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return Status::InvalidArgument("no tokens to run");
  const int64_t seq_len = options.seq_len > 0 ? options.seq_len : n;
  if (logits_from < 0 || logits_from > seq_len) {
    return Status::InvalidArgument("logits_from " + std::to_string(logits_from) + " outside 0.." +
                                   std::to_string(seq_len));
  }
  // Kept across calls: fresh multi-megabyte buffers would cost page faults.
  std::vector<float>& hidden = impl_->forward_hidden;
  hidden.resize(static_cast<size_t>(n * c.n_embd));
  MIXQ_TRY(Embed(tokens, hidden.data()));
  if (layer_inputs != nullptr) layer_inputs->assign(static_cast<size_t>(c.n_layer + 1), {});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    if (layer_inputs != nullptr) (*layer_inputs)[il] = hidden;
    MIXQ_TRY(RunLayers(il, il + 1, hidden.data(), n, options));
  }
  if (layer_inputs != nullptr) (*layer_inputs)[c.n_layer] = hidden;
  // Gather the rows that want logits so that one product serves them all.
  const int64_t n_seqs = n / seq_len;
  const int64_t per_seq = seq_len - logits_from;
  const float* rows = hidden.data() + logits_from * c.n_embd;
  std::vector<float>& gathered = impl_->forward_gathered;
  if (n_seqs > 1 && logits_from > 0) {
    gathered.resize(static_cast<size_t>(n_seqs * per_seq * c.n_embd));
    for (int64_t s = 0; s < n_seqs; ++s) {
      std::copy_n(hidden.data() + (s * seq_len + logits_from) * c.n_embd, per_seq * c.n_embd,
                  gathered.data() + s * per_seq * c.n_embd);
    }
    rows = gathered.data();
  }
  logits->resize(static_cast<size_t>(n_seqs * per_seq * c.n_vocab));
  return Logits(rows, n_seqs * per_seq, logits->data(), options);
}

}  // namespace mixq::engine
