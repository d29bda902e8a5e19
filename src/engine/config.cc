// Hyperparameters from GGUF metadata, with llama.cpp's defaults for the keys
// a file may leave out.
#include <cmath>

#include "engine/architecture.h"
#include "engine/internal.h"

namespace mixq::engine {
namespace {

Result<int64_t> RequiredInt(const gguf::GgufFile& file, const std::string& key) {
  auto v = file.GetInt(key);
  if (!v) return Status::Corruption("missing or non-integer model metadata: " + key + " (" + file.path() + ")");
  if (*v <= 0 || *v > (int64_t{1} << 31)) {
    return Status::Corruption("model metadata out of range: " + key + " = " + std::to_string(*v));
  }
  return *v;
}

// llama.cpp's LLAMA_MAX_EXPERTS.
constexpr int64_t kMaxExperts = 1024;

// Routed-expert hyperparameters, for architectures that have experts.
Status ReadExperts(const gguf::GgufFile& file, const Architecture& arch, ModelConfig& c) {
  const std::string p = c.arch + ".";
  if (arch.experts == Experts::kNever) return Status::Ok();
  c.n_expert = file.GetInt(p + "expert_count").value_or(0);
  if (c.n_expert == 0 && arch.experts == Experts::kOptional) return Status::Ok();
  if (c.n_expert <= 0 || c.n_expert > kMaxExperts) {
    return Status::Corruption(p + "expert_count " + std::to_string(c.n_expert) + " is outside 1.." +
                              std::to_string(kMaxExperts) + ": " + file.path());
  }
  auto used = RequiredInt(file, p + "expert_used_count");
  MIXQ_TRY(used);
  c.n_expert_used = *used;
  if (c.n_expert_used > c.n_expert) {
    return Status::Corruption(p + "expert_used_count " + std::to_string(c.n_expert_used) + " exceeds expert_count " +
                              std::to_string(c.n_expert) + ": " + file.path());
  }
  c.n_ff_exp = c.n_ff;
  if (arch.reads_ff_exp) {
    c.n_ff_exp = file.GetInt(p + "expert_feed_forward_length").value_or(c.n_ff / c.n_expert_used);
    if (c.n_ff_exp <= 0) {
      return Status::Corruption(p + "expert_feed_forward_length " + std::to_string(c.n_ff_exp) +
                                " is not positive: " + file.path());
    }
  }
  // Only the shared expert's tensor shapes use it: a wrong value is their
  // shape error.
  c.n_ff_shexp = file.GetInt(p + "expert_shared_feed_forward_length").value_or(c.n_ff);
  c.expert_weights_norm = arch.norm_expert_weights;
  return Status::Ok();
}

}  // namespace

Result<const Architecture*> ArchitectureOf(const gguf::GgufFile& file) {
  auto arch = file.GetString("general.architecture");
  if (!arch) return Status::Corruption("missing general.architecture: " + file.path());
  const Architecture* a = FindArchitecture(*arch);
  if (a == nullptr) {
    return Status::NotSupported("unsupported architecture '" + *arch + "': " + file.path() +
                                "; supported: " + std::string(SupportedArchitectures()));
  }
  return a;
}

Result<ModelConfig> ReadConfig(const gguf::GgufFile& file, const Architecture& arch) {
  ModelConfig c;
  c.arch = std::string(arch.name);
  c.rope_neox = arch.rope_neox;
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
  MIXQ_TRY(ReadExperts(file, arch, c));
  return c;
}

}  // namespace mixq::engine
