// Internal: how the engine describes an architecture. Each architecture is one
// entry of architectures.cc: its hyperparameter traits, its tensor table (which
// roles it reads, their shapes in terms of the config, required or optional)
// and its block function, composed of the shared blocks in blocks.h. Tensor
// names, layer and expert come from the role table below, so that every
// weight's meaning is known in one place (DescribeWeight, Model::Weights).
#ifndef MIXQ_ENGINE_ARCHITECTURE_H_
#define MIXQ_ENGINE_ARCHITECTURE_H_

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "engine/engine.h"

namespace mixq::engine {

// Every tensor the forward pass can read, named as llama.cpp names it.
enum class Role : uint8_t {
  // Outside the blocks.
  kTokenEmbd,
  kOutputNorm,
  kOutput,
  kRopeFreqs,
  // In every block.
  kAttnNorm,
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnOut,
  kAttnQBias,
  kAttnKBias,
  kAttnVBias,
  kAttnOutBias,
  kAttnQNorm,
  kAttnKNorm,
  kFfnNorm,
  kFfnGate,
  kFfnUp,
  kFfnDown,
  kFfnGateBias,
  kFfnUpBias,
  kFfnDownBias,
  kFfnRouter,
  kFfnGateExps,
  kFfnUpExps,
  kFfnDownExps,
  kFfnGateInpShexp,
  kFfnGateShexp,
  kFfnUpShexp,
  kFfnDownShexp,
  kCount
};
inline constexpr size_t kRoleCount = static_cast<size_t>(Role::kCount);

struct RoleSpec {
  Role role;
  std::string_view name;  // the tensor name, after "blk.N." for block roles
  WeightPart part;
  bool in_block;
};
const RoleSpec& SpecOf(Role role);

// A tensor dimension in terms of the config.
enum class Dim : uint8_t {
  kNone,      // past the last dimension
  kEmbd,      // n_embd
  kVocab,     // n_vocab
  kQ,         // n_head * head_dim
  kKv,        // n_head_kv * head_dim
  kHeadDim,   // head_dim
  kRopeHalf,  // n_rot / 2
  kFf,        // n_ff
  kFfExp,     // n_ff_exp
  kExpert,    // n_expert
  kFfShexp,   // n_ff_shexp
};
int64_t DimSize(Dim dim, const ModelConfig& config);

// When a tensor must be present. Dense/Moe entries exist only in models
// without/with routed experts (config.n_expert == 0 / > 0).
enum class Need : uint8_t { kRequired, kOptional, kDense, kDenseOptional, kMoe };

struct TensorEntry {
  Role role;
  std::array<Dim, 3> shape;  // ne[0], ne[1], ne[2]; kNone past the last
  Need need;
};

// The weights of one block (or those outside the blocks), by role; null for
// roles the architecture or the file does not have.
struct Weight;
struct LayerWeights {
  std::array<Weight*, kRoleCount> slots{};
  Weight* operator[](Role role) const { return slots[static_cast<size_t>(role)]; }
};

struct LayerContext;  // blocks.h

// Whether an architecture has routed experts: never, when expert_count > 0
// (llama: Mixtral), or always.
enum class Experts : uint8_t { kNever, kOptional, kRequired };

struct Architecture {
  std::string_view name;  // general.architecture
  bool rope_neox;         // RoPE pairs (i, i + n_rot/2) instead of (2i, 2i+1)
  Experts experts;
  // Experts are expert_feed_forward_length wide (n_ff / n_expert_used when
  // absent), or else n_ff wide, as llama.cpp reads them.
  bool reads_ff_exp;
  // Routing weights divided by their sum over the chosen experts; llama.cpp
  // fixes this per architecture rather than reading expert_weights_norm.
  bool norm_expert_weights;
  std::span<const TensorEntry> tensors;
  void (*block)(LayerContext& context);  // runs one block in place
};

// nullptr for architectures the engine does not know.
const Architecture* FindArchitecture(std::string_view name);

}  // namespace mixq::engine

#endif  // MIXQ_ENGINE_ARCHITECTURE_H_
