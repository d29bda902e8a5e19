// Hyperparameters from GGUF metadata, with llama.cpp's defaults for the keys
// a file may leave out.
#include <cmath>

#include "engine/internal.h"

namespace mixq::engine {
namespace {

struct ArchTraits {
  std::string_view name;
  bool rope_neox;
  bool qk_norm;
};

constexpr ArchTraits kArchs[] = {
    {"llama", false, false},
    {"qwen2", true, false},
    {"qwen3", true, true},
};

Result<int64_t> RequiredInt(const gguf::GgufFile& file, const std::string& key) {
  auto v = file.GetInt(key);
  if (!v) return Status::Corruption("missing or non-integer model metadata: " + key + " (" + file.path() + ")");
  if (*v <= 0 || *v > (int64_t{1} << 31)) {
    return Status::Corruption("model metadata out of range: " + key + " = " + std::to_string(*v));
  }
  return *v;
}

}  // namespace

std::string_view SupportedArchitectures() { return "llama, qwen2, qwen3"; }

Result<ModelConfig> ReadConfig(const gguf::GgufFile& file) {
  ModelConfig c;
  auto arch = file.GetString("general.architecture");
  if (!arch) return Status::Corruption("missing general.architecture: " + file.path());
  const ArchTraits* traits = nullptr;
  for (const auto& t : kArchs) {
    if (t.name == *arch) traits = &t;
  }
  if (traits == nullptr) {
    return Status::NotSupported("unsupported architecture '" + *arch + "': " + file.path() +
                                "; supported: " + std::string(SupportedArchitectures()));
  }
  c.arch = *arch;
  c.rope_neox = traits->rope_neox;
  c.qk_norm = traits->qk_norm;
  const std::string p = c.arch + ".";

  auto n_layer = RequiredInt(file, p + "block_count");
  MIXQ_TRY(n_layer);
  auto n_embd = RequiredInt(file, p + "embedding_length");
  MIXQ_TRY(n_embd);
  auto n_ff = RequiredInt(file, p + "feed_forward_length");
  MIXQ_TRY(n_ff);
  auto n_head = RequiredInt(file, p + "attention.head_count");
  MIXQ_TRY(n_head);
  c.n_layer = *n_layer;
  c.n_embd = *n_embd;
  c.n_ff = *n_ff;
  c.n_head = *n_head;
  c.n_head_kv = file.GetInt(p + "attention.head_count_kv").value_or(c.n_head);
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0) {
    return Status::Corruption("head_count " + std::to_string(c.n_head) + " is not a multiple of head_count_kv " +
                              std::to_string(c.n_head_kv));
  }
  c.head_dim = file.GetInt(p + "attention.key_length").value_or(c.n_embd / c.n_head);
  int64_t v_dim = file.GetInt(p + "attention.value_length").value_or(c.head_dim);
  if (c.head_dim <= 0 || v_dim != c.head_dim) {
    return Status::NotSupported("key_length " + std::to_string(c.head_dim) + " and value_length " +
                                std::to_string(v_dim) + " must be equal and positive");
  }
  c.n_rot = file.GetInt(p + "rope.dimension_count").value_or(c.head_dim);
  if (c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2 != 0) {
    return Status::Corruption("rope.dimension_count " + std::to_string(c.n_rot) + " does not fit head size " +
                              std::to_string(c.head_dim));
  }
  c.n_ctx_train = file.GetInt(p + "context_length").value_or(0);
  c.rms_eps = static_cast<float>(file.GetFloat(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(file.GetFloat(p + "rope.freq_base").value_or(10000.0));

  std::string scaling = file.GetString(p + "rope.scaling.type").value_or("none");
  double factor = file.GetFloat(p + "rope.scaling.factor").value_or(0.0);
  if (scaling == "linear") {
    if (factor > 0) c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none") {
    return Status::NotSupported("unsupported rope scaling '" + scaling + "' (" + p +
                                "rope.scaling.type); supported: none, linear");
  }
  if (auto scale = file.GetFloat(p + "rope.scale_linear"); scale && *scale > 0) {
    c.rope_freq_scale = static_cast<float>(1.0 / *scale);
  }

  const gguf::TensorInfo* embd = file.FindTensor("token_embd.weight");
  if (embd == nullptr) return Status::Corruption("missing tensor 'token_embd.weight': " + file.path());
  c.n_vocab = embd->ne[1];
  c.tied_output = file.FindTensor("output.weight") == nullptr;
  return c;
}

}  // namespace mixq::engine
