// Which type each tensor gets (ggml-formats.md §4.1, §4.3).
#include <algorithm>
#include <array>

#include "quantize/quantize.h"

namespace mixq::quantize {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) { return s.ends_with(suffix); }
bool Contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// Name fragments of tensors llama.cpp never quantizes even though they are 2-D weights.
constexpr std::array<std::string_view, 12> kNeverQuantized = {
    "ffn_gate_inp.weight",   "ffn_gate_tid2eid", "altup",          "laurel",
    "per_layer_model_proj",  "position_embd",    "token_types",    "ssm_conv1d",
    "shortconv.conv.weight", "attn_rel_b",       "time_mix_first", "time_mix_w0"};

bool Fits(const formats::Format* f, int64_t row_length) { return f != nullptr && formats::RowFits(*f, row_length); }

// Flux's (and HunyuanVideo's) entry and exit layers (comfyui-gguf.md §2.7 item 4).
constexpr std::array<std::string_view, 6> kFluxEntryExit = {"txt_in.",    "img_in.",      "time_in.",
                                                            "vector_in.", "guidance_in.", "final_layer."};
constexpr std::array<ArchProfile, 3> kProfiles = {{
    {"", false, {}, true},
    {"flux", true, kFluxEntryExit, false},
    {"hyvid", true, kFluxEntryExit, false},
}};

}  // namespace

const ArchProfile& ProfileFor(std::string_view architecture) {
  for (const auto& p : kProfiles) {
    if (p.architecture == architecture) return p;
  }
  return kProfiles[0];
}

const ArchProfile& ProfileOf(const gguf::GgufFile& file) {
  return ProfileFor(file.GetString("general.architecture").value_or(""));
}

bool IsQuantizable(const gguf::TensorInfo& tensor, const ArchProfile& profile) {
  std::string_view name = tensor.name;
  if (tensor.n_dims < 2 || !EndsWith(name, "weight") || EndsWith(name, "_norm.weight")) return false;
  if (profile.only_2d && tensor.n_dims != 2) return false;
  auto in_name = [&](std::string_view part) { return Contains(name, part); };
  return std::none_of(kNeverQuantized.begin(), kNeverQuantized.end(), in_name) &&
         std::none_of(profile.keep_input_type.begin(), profile.keep_input_type.end(), in_name);
}

const formats::Format* KeptFormat(const gguf::TensorInfo& tensor) {
  return tensor.n_dims < 2 ? formats::FindFormat(0) : tensor.format;
}

Result<std::map<std::string, const formats::Format*>> PlanTypes(const plan::Plan& plan,
                                                                std::span<const gguf::TensorInfo> tensors,
                                                                const ArchProfile& profile) {
  std::vector<plan::PlanTensor> planned;
  for (const auto& t : tensors) planned.push_back({t.name, t.ne[0], t.n_rows(), IsQuantizable(t, profile)});
  return plan::MatchPlanToModel(plan, planned);
}

// Walks the format table's shape-fallback chain (ggml-formats.md §4.3), with
// F16 as the last resort for every type.
const formats::Format* FallbackFor(const formats::Format& wanted, int64_t row_length) {
  for (const formats::Format* f = &wanted; f != nullptr; f = f->shape_fallback()) {
    if (Fits(f, row_length)) return f;
  }
  const formats::Format* f16 = formats::FindFormatByName("F16");
  return Fits(f16, row_length) ? f16 : nullptr;
}

Result<const formats::Format*> ParseTypeName(std::string_view name, std::string_view what) {
  const formats::Format* f = formats::FindFormatByName(name);
  if (f == nullptr || !f->can_encode()) {
    return Status::InvalidArgument(std::string(what) + ": unknown or unsupported type '" + std::string(name) +
                                   "'; valid types: " + formats::EncodableFormatNames());
  }
  return f;
}

std::string_view MethodName(formats::QuantMethod method) {
  return method == formats::QuantMethod::kGgml ? "ggml" : "best";
}

Result<TensorTypeOverride> ParseTensorTypeOverride(const std::string& text) {
  size_t eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return Status::InvalidArgument("tensor type override '" + text + "' is not REGEX=TYPE");
  }
  std::string type = text.substr(eq + 1);
  const formats::Format* format = formats::FindFormatByName(type);
  if (format == nullptr || !format->can_encode()) {
    return Status::InvalidArgument("unknown or unsupported type '" + type + "' in '" + text +
                                   "'; valid types: " + formats::EncodableFormatNames());
  }
  auto pattern = NamePattern::Compile(text.substr(0, eq));
  MIXQ_TRY(pattern);
  TensorTypeOverride o{std::move(pattern).value(), format};
  return o;
}

Result<TypeChoice> ChooseType(const gguf::TensorInfo& tensor, const TypeRules& rules, bool tied_embeddings) {
  const ArchProfile& profile = rules.profile != nullptr ? *rules.profile : ProfileFor("");
  TypeChoice choice;
  if (!IsQuantizable(tensor, profile)) {
    choice.format = KeptFormat(tensor);
    if (!choice.format->can_encode() && !choice.format->can_decode()) {
      return Status::NotSupported("tensor '" + tensor.name + "' has type " + std::string(tensor.format->name) +
                                  ", which mixq cannot convert");
    }
    return choice;
  }
  // Without a default type, tensors no rule names keep their input type.
  const formats::Format* def = rules.default_format != nullptr ? rules.default_format : tensor.format;
  const bool is_output = profile.llm_head_rules &&
                         (tensor.name == "output.weight" || (tied_embeddings && tensor.name == "token_embd.weight"));
  const bool is_token_embd = profile.llm_head_rules && !is_output && tensor.name == "token_embd.weight";
  const formats::Format* wanted = def;
  if (auto it = rules.exact.find(tensor.name); it != rules.exact.end()) {
    wanted = it->second;
  } else if (is_output && rules.output_format != nullptr) {
    wanted = rules.output_format;
  } else if (is_token_embd && rules.token_embd_format != nullptr) {
    wanted = rules.token_embd_format;
  } else {
    auto match = std::find_if(rules.overrides.begin(), rules.overrides.end(),
                              [&](const TensorTypeOverride& o) { return o.pattern.Search(tensor.name); });
    if (match != rules.overrides.end()) {
      wanted = match->format;
    } else if (is_output && def->output_head() != nullptr) {
      // llama.cpp keeps the output head higher than the default: it is the most sensitive tensor.
      wanted = def->output_head();
      if (!Fits(wanted, tensor.ne[0])) wanted = formats::FindFormatByName("Q8_0");
    }
  }
  choice.format = FallbackFor(*wanted, tensor.ne[0]);
  if (choice.format == nullptr) {
    return Status::InvalidArgument("tensor '" + tensor.name + "' (row length " + std::to_string(tensor.ne[0]) +
                                   ") fits neither " + std::string(wanted->name) + " nor any fallback");
  }
  if (choice.format != wanted) {
    choice.note = "tensor '" + tensor.name + "': row length " + std::to_string(tensor.ne[0]) + " does not fit " +
                  std::string(wanted->name) + ", using " + std::string(choice.format->name);
  }
  if (!choice.format->can_encode()) {
    return Status::NotSupported("type " + std::string(choice.format->name) + " for tensor '" + tensor.name +
                                "' cannot be encoded by mixq; valid types: " + formats::EncodableFormatNames());
  }
  return choice;
}

Result<std::vector<TypeChoice>> ChooseAllTypes(const gguf::GgufFile& input, const TypeRules& rules) {
  bool tied = input.FindTensor("output.weight") == nullptr;
  TypeRules with_profile = rules;
  if (with_profile.profile == nullptr) {
    with_profile.profile = &ProfileOf(input);
  }
  std::vector<TypeChoice> out;
  for (const auto& t : input.tensors()) {
    auto c = ChooseType(t, with_profile, tied);
    MIXQ_TRY(c);
    out.push_back(std::move(c).value());
  }
  return out;
}

}  // namespace mixq::quantize
