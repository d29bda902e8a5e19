// Model: tensors from the architecture's table, checked against the file;
// weight overrides; the layer loop.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "base/parallel.h"
#include "engine/architecture.h"
#include "engine/backend.h"
#include "engine/blocks.h"
#include "engine/internal.h"

namespace mixq::engine {

struct Model::Impl {
  const gguf::GgufFile* file = nullptr;
  const Architecture* arch = nullptr;
  ModelConfig config;
  std::map<std::string, Weight> weights;  // every tensor the pass reads, by name
  std::map<std::string, std::vector<uint8_t>> overrides;
  LayerWeights globals;
  std::vector<LayerWeights> layers;
  Weight* output = nullptr;  // output.weight, or token_embd.weight when tied
  std::vector<WeightInfo> infos;
  std::unique_ptr<Backend> backend;
  std::vector<float> layer_rope_factors;
  std::vector<float> forward_hidden;
  std::vector<float> forward_gathered;
  Device device = Device::kCpu;
  Tensor last_lp;  // of the last ForwardScores, in the backend's memory
  int64_t last_lp_rows = 0;

  Status Embed(std::span<const int32_t> tokens, float* hidden, int n_threads);
  Status RunBlocks(int64_t first, int64_t last, Tensor h, int64_t n_tokens, const RunOptions& options);
  Tensor LogitsOf(Tensor h, int64_t n_tokens, bool want_logits, const RunOptions& options);

  Status AddTensors(LayerWeights& slots, int64_t layer);
  Result<Weight*> Add(const std::string& name, const TensorEntry& entry, bool required);
  void Reset(Weight& w);
};

namespace {

std::string ShapeString(std::span<const int64_t> ne) {
  std::string s;
  for (size_t d = 0; d < ne.size(); ++d) s += (d ? " x " : "") + std::to_string(ne[d]);
  return s;
}

// With every weight finite (Load checks them), a NaN or infinity in the
// activations means they overflowed float. Notes are tagged with the layer
// the values leave, n_layer for the logits; a device checks them once per
// pass, the CPU after every layer.
Status TakeNonFinite(Backend& ops, const ModelConfig& c) {
  NonFinite bad;
  if (!ops.TakeNonFinite(&bad)) return Status::Ok();
  const bool logits = bad.tag >= c.n_layer;
  const int64_t n_cols = logits ? c.n_vocab : c.n_embd;
  const std::string where = logits ? "logit" : "activation leaving layer " + std::to_string(bad.tag);
  return Status::Corruption("non-finite " + where + " (" + (bad.nan ? "NaN" : "an infinity") + ") at token " +
                            std::to_string(bad.index / n_cols) + ", element " + std::to_string(bad.index % n_cols) +
                            ": the model's activations overflow");
}

bool Applies(Need need, const ModelConfig& c) {
  switch (need) {
    case Need::kRequired:
    case Need::kOptional:
      return true;
    case Need::kDense:
    case Need::kDenseOptional:
      return c.n_expert == 0;
    case Need::kMoe:
      return c.n_expert > 0;
  }
  return false;
}

bool Required(Need need) { return need == Need::kRequired || need == Need::kDense || need == Need::kMoe; }

}  // namespace

uint64_t NextWeightGeneration() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

Result<Weight*> Model::Impl::Add(const std::string& name, const TensorEntry& entry, bool required) {
  const gguf::TensorInfo* t = file->FindTensor(name);
  if (t == nullptr) {
    if (required) return Status::Corruption("missing tensor '" + name + "' for " + config.arch + ": " + file->path());
    return static_cast<Weight*>(nullptr);
  }
  std::array<int64_t, 4> want = {1, 1, 1, 1};
  size_t n_dims = 0;
  for (Dim d : entry.shape) {
    if (d != Dim::kNone) want[n_dims++] = DimSize(d, config);
  }
  if (t->ne != want) {
    return Status::Corruption("tensor '" + name + "' has shape " + ShapeString({t->ne.data(), t->n_dims}) +
                              ", expected " + ShapeString({want.data(), n_dims}) + ": " + file->path());
  }
  if (!t->format->can_decode()) {
    return Status::NotSupported("tensor '" + name + "' is " + std::string(t->format->name) +
                                ", which mixq cannot decode yet");
  }
  // Every later result depends on every value: a NaN norm or block scale
  // would otherwise turn into silently wrong costs or perplexities.
  MIXQ_TRY(quantize::CheckTensorFinite(*file, *t, 0));
  // Read once for that check: the pass reads the bytes again, from the file,
  // when it needs them (a device copies them once).
  file->ReleasePages(file->TensorData(*t));
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
  w.n_out = w.info->ne[1];
  w.n_expert = w.info->ne[2];
  w.row_bytes = static_cast<int64_t>(w.info->n_bytes) / w.info->n_rows();
  w.file = file;
  // The file's bytes never change: a device keeps its copy of them across
  // overrides (measure restores every weight it substitutes).
  w.generation = 0;
}

// The tensors of block `layer` (or, for -1, those outside the blocks) that
// the architecture's table lists and this config uses.
Status Model::Impl::AddTensors(LayerWeights& slots, int64_t layer) {
  const std::string prefix = layer < 0 ? "" : "blk." + std::to_string(layer) + ".";
  for (const TensorEntry& entry : arch->tensors) {
    const RoleSpec& spec = SpecOf(entry.role);
    if (spec.in_block != (layer >= 0) || !Applies(entry.need, config)) continue;
    auto w = Add(prefix + std::string(spec.name), entry, Required(entry.need));
    MIXQ_TRY(w);
    slots.slots[static_cast<size_t>(entry.role)] = *w;
    if (*w != nullptr) infos.push_back(*DescribeWeight((*w)->name));
  }
  return Status::Ok();
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Result<Model> Model::Load(const gguf::GgufFile& file, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->file = &file;
  auto arch = ArchitectureOf(file);
  MIXQ_TRY(arch);
  impl->arch = *arch;
  auto config = ReadConfig(file, **arch);
  MIXQ_TRY(config);
  impl->config = *config;
  MIXQ_TRY(impl->AddTensors(impl->globals, -1));
  impl->output =
      impl->globals[Role::kOutput] != nullptr ? impl->globals[Role::kOutput] : impl->globals[Role::kTokenEmbd];
  impl->layers.resize(static_cast<size_t>(impl->config.n_layer));
  for (int64_t il = 0; il < impl->config.n_layer; ++il) MIXQ_TRY(impl->AddTensors(impl->layers[il], il));
  if (options.device == Device::kCuda) {
    auto backend = MakeCudaBackend(impl->config, options.gpu_mem_bytes);
    MIXQ_TRY(backend);
    impl->backend = std::move(backend).value();
    impl->device = Device::kCuda;
  } else {
    impl->backend = MakeCpuBackend(impl->config);
  }
  return Model(std::move(impl));
}

const ModelConfig& Model::config() const { return impl_->config; }
const gguf::GgufFile& Model::file() const { return *impl_->file; }
const std::vector<WeightInfo>& Model::Weights() const { return impl_->infos; }

std::vector<std::string> Model::LinearWeights() const {
  std::vector<std::string> names;
  for (const LayerWeights& l : impl_->layers) {
    for (const TensorEntry& entry : impl_->arch->tensors) {
      const Weight* w = l[entry.role];
      if (w != nullptr && entry.shape[1] != Dim::kNone) names.push_back(w->name);
    }
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
  w.generation = NextWeightGeneration();
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

Status Model::Embed(std::span<const int32_t> tokens, float* hidden) { return impl_->Embed(tokens, hidden, 1); }

Status Model::Impl::Embed(std::span<const int32_t> tokens, float* hidden, int n_threads) {
  const Weight& w = *globals[Role::kTokenEmbd];
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= w.n_out) {
      return Status::InvalidArgument("token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                                     " is outside the vocabulary of " + std::to_string(w.n_out));
    }
  }
  ParallelFor(static_cast<int64_t>(tokens.size()), 64, n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      w.format->dequantize_row(w.data + tokens[i] * w.row_bytes, hidden + i * w.n_in, w.n_in);
    }
  });
  // The CPU reads the weights in place on every pass (a tied output head
  // reads this table); a device reads only its own copies.
  if (device != Device::kCpu) w.ReleasePages(w.Bytes());
  return Status::Ok();
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
  Backend& ops = *impl_->backend;
  const Tensor h = ops.Attach(Slot::kHidden, hidden, n_tokens * impl_->config.n_embd, true);
  MIXQ_TRY(impl_->RunBlocks(first, last, h, n_tokens, options));
  ops.Download(h, n_tokens * impl_->config.n_embd, hidden);
  return Status::Ok();
}

Status Model::Impl::RunBlocks(int64_t first, int64_t last, Tensor h, int64_t n_tokens, const RunOptions& options) {
  const float* rope_factors = nullptr;
  if (const Weight* freqs = globals[Role::kRopeFreqs]) {
    DecodeVector(*freqs, layer_rope_factors);
    rope_factors = layer_rope_factors.data();
  }
  Backend& ops = *backend;
  for (int64_t il = first; il < last; ++il) {
    LayerContext context{config, layers[il], rope_factors, h, n_tokens, ops, options};
    arch->block(context);
    ops.NoteNonFinite(h, n_tokens * config.n_embd, il);
    if (!ops.DefersChecks()) MIXQ_TRY(TakeNonFinite(ops, config));
    // Queued after this block's work: a device copies the next block's
    // weights while it runs.
    if (il + 1 < last) ops.Prefetch(layers[il + 1].slots);
  }
  return TakeNonFinite(ops, config);
}

// Final norm and output projection of h[n_tokens] into Slot::kLogits (the
// hook alone when !want_logits); non-finite logits are noted.
Tensor Model::Impl::LogitsOf(Tensor h, int64_t n_tokens, bool want_logits, const RunOptions& options) {
  Backend& ops = *backend;
  const Tensor norm = ops.Scratch(Slot::kNorm, n_tokens * config.n_embd);
  ops.RmsNorm(h, *globals[Role::kOutputNorm], n_tokens, config.n_embd, config.rms_eps, norm);
  ops.Hook(options, output, -1, norm, n_tokens);
  if (!want_logits) return {};
  const Tensor logits = ops.Scratch(Slot::kLogits, n_tokens * config.n_vocab);
  ops.MatMul({{output, nullptr, logits}}, norm, n_tokens, options);
  ops.NoteNonFinite(logits, n_tokens * config.n_vocab, config.n_layer);
  return logits;
}

Status Model::Logits(const float* hidden, int64_t n_tokens, float* logits, const RunOptions& options) {
  Impl& m = *impl_;
  if (n_tokens <= 0) return Status::Ok();
  Backend& ops = *m.backend;
  // The hidden states are only read.
  const Tensor h = ops.Attach(Slot::kHidden, const_cast<float*>(hidden), n_tokens * m.config.n_embd, true);
  const Tensor out = m.LogitsOf(h, n_tokens, logits != nullptr, options);
  if (logits == nullptr) return Status::Ok();
  MIXQ_TRY(TakeNonFinite(ops, m.config));
  ops.Download(out, n_tokens * m.config.n_vocab, logits);
  return Status::Ok();
}

Status Model::ForwardScores(std::span<const int32_t> tokens, int64_t logits_from, std::span<const int32_t> targets,
                            const ScoreBase& base, std::span<RowScore> out, const RunOptions& options) {
  Impl& m = *impl_;
  const ModelConfig& c = m.config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t seq_len = options.seq_len;
  if (seq_len <= 0 || n == 0 || n % seq_len != 0 || logits_from < 0 || logits_from >= seq_len - 1) {
    return Status::InvalidArgument("ForwardScores needs whole sequences and rows to score");
  }
  const int64_t n_seqs = n / seq_len, per_seq = seq_len - logits_from, n_scored = per_seq - 1;
  if (static_cast<int64_t>(targets.size()) != n_seqs * n_scored || out.size() != targets.size()) {
    return Status::InvalidArgument("ForwardScores: " + std::to_string(targets.size()) + " targets for " +
                                   std::to_string(n_seqs * n_scored) + " scored rows");
  }
  if (base.model != nullptr && base.model->impl_->device != m.device) {
    return Status::InvalidArgument("the base model runs on another device than the model");
  }
  if (base.model != nullptr && base.model->impl_->last_lp_rows != n_seqs * n_scored) {
    return Status::InvalidArgument("the base model's last pass scored other rows");
  }
  Backend& ops = *m.backend;
  float* hidden = ops.HostBuffer(Slot::kHidden, n * c.n_embd);
  MIXQ_TRY(m.Embed(tokens, hidden, options.n_threads));
  const Tensor h = ops.Attach(Slot::kHidden, hidden, n * c.n_embd, true);
  MIXQ_TRY(m.RunBlocks(0, c.n_layer, h, n, options));
  // The rows that want logits, gathered so that one product serves them all.
  std::vector<int64_t> rows(static_cast<size_t>(n_seqs * per_seq));
  for (int64_t s = 0; s < n_seqs; ++s) {
    for (int64_t r = 0; r < per_seq; ++r) rows[s * per_seq + r] = s * seq_len + logits_from + r;
  }
  const Tensor gathered = ops.Scratch(Slot::kRows, n_seqs * per_seq * c.n_embd);
  ops.GatherRows(h, rows, 1, c.n_embd, gathered);
  const Tensor logits = m.LogitsOf(gathered, n_seqs * per_seq, true, options);
  ScoreSpec spec{n_seqs, per_seq, n_scored, c.n_vocab, targets, {}};
  const int64_t lp_floats = n_seqs * n_scored * c.n_vocab;
  if (base.model != nullptr) {
    spec.base_lp = base.model->impl_->last_lp;
  } else if (base.lp != nullptr) {
    spec.base_lp = ops.Attach(Slot::kBaseLp, const_cast<float*>(base.lp), lp_floats, true);
  }
  MIXQ_TRY(TakeNonFinite(ops, c));
  ops.ScoreRows(logits, spec, out, options.n_threads);
  m.last_lp = ops.Scratch(Slot::kLogProbs, lp_floats);
  m.last_lp_rows = n_seqs * n_scored;
  return Status::Ok();
}

void Model::LastLogProbs(std::vector<float>* lp) {
  lp->resize(static_cast<size_t>(impl_->last_lp_rows * impl_->config.n_vocab));
  impl_->backend->Download(impl_->last_lp, static_cast<int64_t>(lp->size()), lp->data());
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
  if (layer_inputs != nullptr) {
    layer_inputs->assign(static_cast<size_t>(c.n_layer + 1), {});
    for (int64_t il = 0; il < c.n_layer; ++il) {
      (*layer_inputs)[il] = hidden;
      MIXQ_TRY(RunLayers(il, il + 1, hidden.data(), n, options));
    }
    (*layer_inputs)[c.n_layer] = hidden;
  } else {
    // One call keeps the hidden states in the backend's memory throughout.
    MIXQ_TRY(RunLayers(0, c.n_layer, hidden.data(), n, options));
  }
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
