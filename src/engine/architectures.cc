// The architectures the engine runs, each described once: traits, tensor
// table and block function. Adding an architecture means adding an entry here
// (and a random-model case to tests/engine/oracle_test.cc); docs/extending.md.
#include <algorithm>
#include <charconv>

#include "engine/architecture.h"
#include "engine/blocks.h"

namespace mixq::engine {
namespace {

using D = Dim;
using P = WeightPart;

// In enum order.
constexpr RoleSpec kRoles[] = {
    {Role::kTokenEmbd, "token_embd.weight", P::kEmbedding, false},
    {Role::kOutputNorm, "output_norm.weight", P::kNorm, false},
    {Role::kOutput, "output.weight", P::kOutput, false},
    {Role::kRopeFreqs, "rope_freqs.weight", P::kOther, false},
    {Role::kAttnNorm, "attn_norm.weight", P::kNorm, true},
    {Role::kAttnQ, "attn_q.weight", P::kAttention, true},
    {Role::kAttnK, "attn_k.weight", P::kAttention, true},
    {Role::kAttnV, "attn_v.weight", P::kAttention, true},
    {Role::kAttnOut, "attn_output.weight", P::kAttention, true},
    {Role::kAttnQBias, "attn_q.bias", P::kAttention, true},
    {Role::kAttnKBias, "attn_k.bias", P::kAttention, true},
    {Role::kAttnVBias, "attn_v.bias", P::kAttention, true},
    {Role::kAttnOutBias, "attn_output.bias", P::kAttention, true},
    {Role::kAttnQNorm, "attn_q_norm.weight", P::kNorm, true},
    {Role::kAttnKNorm, "attn_k_norm.weight", P::kNorm, true},
    {Role::kFfnNorm, "ffn_norm.weight", P::kNorm, true},
    {Role::kFfnGate, "ffn_gate.weight", P::kFfn, true},
    {Role::kFfnUp, "ffn_up.weight", P::kFfn, true},
    {Role::kFfnDown, "ffn_down.weight", P::kFfn, true},
    {Role::kFfnGateBias, "ffn_gate.bias", P::kFfn, true},
    {Role::kFfnUpBias, "ffn_up.bias", P::kFfn, true},
    {Role::kFfnDownBias, "ffn_down.bias", P::kFfn, true},
    {Role::kFfnRouter, "ffn_gate_inp.weight", P::kRouter, true},
    {Role::kFfnGateExps, "ffn_gate_exps.weight", P::kExperts, true},
    {Role::kFfnUpExps, "ffn_up_exps.weight", P::kExperts, true},
    {Role::kFfnDownExps, "ffn_down_exps.weight", P::kExperts, true},
    {Role::kFfnGateInpShexp, "ffn_gate_inp_shexp.weight", P::kSharedExpert, true},
    {Role::kFfnGateShexp, "ffn_gate_shexp.weight", P::kSharedExpert, true},
    {Role::kFfnUpShexp, "ffn_up_shexp.weight", P::kSharedExpert, true},
    {Role::kFfnDownShexp, "ffn_down_shexp.weight", P::kSharedExpert, true},
};
static_assert(std::size(kRoles) == kRoleCount);

// ---- tensor tables ----

template <size_t... N>
constexpr std::array<TensorEntry, (N + ...)> Concat(const std::array<TensorEntry, N>&... parts) {
  std::array<TensorEntry, (N + ...)> out{};
  size_t i = 0;
  ((std::copy(parts.begin(), parts.end(), out.begin() + i), i += N), ...);
  return out;
}

// Outside the blocks, in every architecture; a missing output.weight means
// the output projection is tied to token_embd.weight.
constexpr std::array<TensorEntry, 4> kGlobalTensors = {{
    {Role::kTokenEmbd, {D::kEmbd, D::kVocab}, Need::kRequired},
    {Role::kOutputNorm, {D::kEmbd}, Need::kRequired},
    {Role::kOutput, {D::kEmbd, D::kVocab}, Need::kOptional},
    {Role::kRopeFreqs, {D::kRopeHalf}, Need::kOptional},
}};

constexpr std::array<TensorEntry, 9> kAttentionTensors = {{
    {Role::kAttnNorm, {D::kEmbd}, Need::kRequired},
    {Role::kAttnQ, {D::kEmbd, D::kQ}, Need::kRequired},
    {Role::kAttnK, {D::kEmbd, D::kKv}, Need::kRequired},
    {Role::kAttnV, {D::kEmbd, D::kKv}, Need::kRequired},
    {Role::kAttnOut, {D::kQ, D::kEmbd}, Need::kRequired},
    {Role::kAttnQBias, {D::kQ}, Need::kOptional},
    {Role::kAttnKBias, {D::kKv}, Need::kOptional},
    {Role::kAttnVBias, {D::kKv}, Need::kOptional},
    {Role::kAttnOutBias, {D::kEmbd}, Need::kOptional},
}};

constexpr std::array<TensorEntry, 2> kQkNormTensors = {{
    {Role::kAttnQNorm, {D::kHeadDim}, Need::kRequired},
    {Role::kAttnKNorm, {D::kHeadDim}, Need::kRequired},
}};

constexpr std::array<TensorEntry, 1> kFfnNormTensor = {{{Role::kFfnNorm, {D::kEmbd}, Need::kRequired}}};

constexpr std::array<TensorEntry, 6> FfnTensors(Need need, Need need_bias) {
  return {{
      {Role::kFfnGate, {D::kEmbd, D::kFf}, need},
      {Role::kFfnUp, {D::kEmbd, D::kFf}, need},
      {Role::kFfnDown, {D::kFf, D::kEmbd}, need},
      {Role::kFfnGateBias, {D::kFf}, need_bias},
      {Role::kFfnUpBias, {D::kFf}, need_bias},
      {Role::kFfnDownBias, {D::kEmbd}, need_bias},
  }};
}

constexpr std::array<TensorEntry, 4> kExpertTensors = {{
    {Role::kFfnRouter, {D::kEmbd, D::kExpert}, Need::kMoe},
    {Role::kFfnGateExps, {D::kEmbd, D::kFfExp, D::kExpert}, Need::kMoe},
    {Role::kFfnUpExps, {D::kEmbd, D::kFfExp, D::kExpert}, Need::kMoe},
    {Role::kFfnDownExps, {D::kFfExp, D::kEmbd, D::kExpert}, Need::kMoe},
}};

// A shared expert beside the routed ones, scaled per token by the sigmoid of
// its gate, a vector (llama.cpp multiplies it as a one-row matrix).
constexpr std::array<TensorEntry, 4> kSharedExpertTensors = {{
    {Role::kFfnGateInpShexp, {D::kEmbd}, Need::kRequired},
    {Role::kFfnGateShexp, {D::kEmbd, D::kFfShexp}, Need::kRequired},
    {Role::kFfnUpShexp, {D::kEmbd, D::kFfShexp}, Need::kRequired},
    {Role::kFfnDownShexp, {D::kFfShexp, D::kEmbd}, Need::kRequired},
}};

constexpr auto kLlamaTensors = Concat(kGlobalTensors, kAttentionTensors, kFfnNormTensor,
                                      FfnTensors(Need::kDense, Need::kDenseOptional), kExpertTensors);
constexpr auto kQwen2Tensors =
    Concat(kGlobalTensors, kAttentionTensors, kFfnNormTensor, FfnTensors(Need::kRequired, Need::kOptional));
constexpr auto kQwen3Tensors = Concat(kGlobalTensors, kAttentionTensors, kQkNormTensors, kFfnNormTensor,
                                      FfnTensors(Need::kRequired, Need::kOptional));
constexpr auto kQwen2MoeTensors =
    Concat(kGlobalTensors, kAttentionTensors, kFfnNormTensor, kExpertTensors, kSharedExpertTensors);
constexpr auto kQwen3MoeTensors =
    Concat(kGlobalTensors, kAttentionTensors, kQkNormTensors, kFfnNormTensor, kExpertTensors);

// ---- block functions ----

void DenseOrMoeBlock(LayerContext& c) {
  AttentionBlock(c);
  if (c.config.n_expert > 0) {
    MoeBlock(c);
  } else {
    FfnBlock(c);
  }
}

void MoeOnlyBlock(LayerContext& c) {
  AttentionBlock(c);
  MoeBlock(c);
}

// llama.cpp renormalises the routing weights of llama (Mixtral) and qwen3moe
// unconditionally, and never those of qwen2moe; none reads expert_weights_norm.
constexpr Architecture kArchitectures[] = {
    {"llama", false, Experts::kOptional, false, true, kLlamaTensors, DenseOrMoeBlock},
    {"qwen2", true, Experts::kNever, false, false, kQwen2Tensors, DenseOrMoeBlock},
    {"qwen3", true, Experts::kNever, false, false, kQwen3Tensors, DenseOrMoeBlock},
    {"qwen2moe", true, Experts::kRequired, true, false, kQwen2MoeTensors, MoeOnlyBlock},
    {"qwen3moe", true, Experts::kRequired, true, true, kQwen3MoeTensors, MoeOnlyBlock},
};

}  // namespace

const RoleSpec& SpecOf(Role role) { return kRoles[static_cast<size_t>(role)]; }

namespace {

// The role of a tensor name ("blk.3.ffn_up_exps.weight", "output.weight")
// and its block (-1 outside the blocks); false for names no role has.
bool ParseTensorName(std::string_view name, Role* role, int64_t* layer) {
  *layer = -1;
  constexpr std::string_view kBlock = "blk.";
  const bool in_block = name.starts_with(kBlock);
  if (in_block) {
    const char* first = name.data() + kBlock.size();
    const char* last = name.data() + name.size();
    int64_t n = 0;
    auto [end, ec] = std::from_chars(first, last, n);
    if (ec != std::errc() || end == first || end == last || *end != '.' || n < 0) return false;
    *layer = n;
    name = std::string_view(end + 1, last);
  }
  for (const RoleSpec& spec : kRoles) {
    if (spec.in_block == in_block && spec.name == name) {
      *role = spec.role;
      return true;
    }
  }
  return false;
}

}  // namespace

int64_t DimSize(Dim dim, const ModelConfig& c) {
  switch (dim) {
    case Dim::kNone:
      return 1;
    case Dim::kEmbd:
      return c.n_embd;
    case Dim::kVocab:
      return c.n_vocab;
    case Dim::kQ:
      return c.n_head * c.head_dim;
    case Dim::kKv:
      return c.n_head_kv * c.head_dim;
    case Dim::kHeadDim:
      return c.head_dim;
    case Dim::kRopeHalf:
      return c.n_rot / 2;
    case Dim::kFf:
      return c.n_ff;
    case Dim::kFfExp:
      return c.n_ff_exp;
    case Dim::kExpert:
      return c.n_expert;
    case Dim::kFfShexp:
      return c.n_ff_shexp;
  }
  return 0;
}

const Architecture* FindArchitecture(std::string_view name) {
  for (const Architecture& a : kArchitectures) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string_view SupportedArchitectures() {
  static const std::string names = [] {
    std::string s;
    for (const Architecture& a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a.name);
    return s;
  }();
  return names;
}

std::string_view WeightPartName(WeightPart part) {
  switch (part) {
    case WeightPart::kEmbedding:
      return "embedding";
    case WeightPart::kNorm:
      return "norm";
    case WeightPart::kAttention:
      return "attention";
    case WeightPart::kFfn:
      return "ffn";
    case WeightPart::kRouter:
      return "router";
    case WeightPart::kExperts:
      return "experts";
    case WeightPart::kSharedExpert:
      return "shared expert";
    case WeightPart::kOutput:
      return "output";
    case WeightPart::kOther:
      return "other";
  }
  return "other";
}

std::optional<WeightInfo> DescribeWeight(std::string_view name) {
  Role role;
  int64_t layer;
  if (!ParseTensorName(name, &role, &layer)) return std::nullopt;
  const RoleSpec& spec = SpecOf(role);
  WeightInfo info;
  info.name = std::string(name);
  std::string_view r = spec.name;
  if (r.ends_with(".weight")) r.remove_suffix(7);
  info.role = std::string(r);
  info.layer = layer;
  info.part = spec.part;
  info.per_expert = spec.part == WeightPart::kExperts;
  return info;
}

}  // namespace mixq::engine
