// Inspect: family detection, prefix stripping and the loader's name rules
// (comfyui-gguf.md §2.1, §2.2, §3.2, §3.5).
#include <algorithm>
#include <array>
#include <charconv>
#include <set>

#include "diffusion/diffusion.h"

namespace mixq::diffusion {
namespace {

// convert.py's templates in its order: a family matches when all keys of one
// of its groups are present; a banned key present too means a layout the
// loader refuses (the diffusers names). Only families with a quantize
// ArchProfile are converted; the others are recognised to say so.
struct Family {
  std::string_view architecture;
  std::vector<std::vector<std::string_view>> groups;
  std::string_view banned;
  bool supported;
};

const std::vector<Family>& Families() {
  static const std::vector<Family> kFamilies = {
      {"flux",
       {{"double_blocks.0.img_attn.proj.weight"}, {"transformer_blocks.0.attn.norm_added_k.weight"}},
       "transformer_blocks.0.attn.norm_added_k.weight",
       true},
      {"sd3",
       {{"joint_blocks.0.x_block.attn.qkv.weight"}, {"transformer_blocks.0.attn.add_q_proj.weight"}},
       "transformer_blocks.0.attn.add_q_proj.weight",
       false},
      {"aura",
       {{"double_layers.3.modX.1.weight"}, {"joint_transformer_blocks.3.ff_context.out_projection.weight"}},
       "joint_transformer_blocks.3.ff_context.out_projection.weight",
       false},
      {"hidream",
       {{"caption_projection.0.linear.weight", "double_stream_blocks.0.block.ff_i.shared_experts.w3.weight"}},
       "",
       false},
      {"cosmos", {{"blocks.0.mlp.layer1.weight", "blocks.0.adaln_modulation_cross_attn.1.weight"}}, "", false},
      {"ltxv",
       {{"adaln_single.emb.timestep_embedder.linear_2.weight", "transformer_blocks.27.scale_shift_table",
         "caption_projection.linear_2.weight"}},
       "",
       false},
      {"hyvid",
       {{"double_blocks.0.img_attn_proj.weight", "txt_in.individual_token_refiner.blocks.1.self_attn_qkv.weight"}},
       "",
       false},
      {"wan", {{"blocks.0.self_attn.norm_q.weight", "text_embedding.2.weight", "head.modulation"}}, "", false},
      {"sdxl",
       {{"down_blocks.0.downsamplers.0.conv.weight", "add_embedding.linear_1.weight"},
        {"input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "output_blocks.2.2.conv.weight",
         "output_blocks.5.2.conv.weight"},
        {"label_emb.0.0.weight"}},
       "",
       false},
      {"sd1",
       {{"down_blocks.0.downsamplers.0.conv.weight"},
        {"input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "input_blocks.9.0.op.weight",
         "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.weight"}},
       "",
       false},
      {"lumina2", {{"cap_embedder.1.weight", "context_refiner.0.attention.qkv.weight"}}, "", false},
  };
  return kFamilies;
}

// Unpatched ggml keeps names in 64 bytes with the terminator (GGML_MAX_NAME).
constexpr size_t kMaxNameBytes = 63;
constexpr size_t kMaxDims = 4;

// Index N of "<kind>.N." names, or -1.
int64_t BlockIndex(std::string_view name, std::string_view kind) {
  if (!name.starts_with(kind) || name.size() <= kind.size() || name[kind.size()] != '.') return -1;
  std::string_view rest = name.substr(kind.size() + 1);
  int64_t index = -1;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), index);
  if (ec != std::errc() || end == rest.data() || end == rest.data() + rest.size() || *end != '.') return -1;
  return index;
}

// Block indices must be 0..n-1: ComfyUI counts depth as the contiguous run from 0.
Result<int64_t> ContiguousBlocks(const std::set<int64_t>& indices, std::string_view kind) {
  int64_t expected = 0;
  for (int64_t i : indices) {
    if (i != expected) {
      return Status::Corruption(std::string(kind) + "." + std::to_string(expected) + " is missing but " +
                                std::string(kind) + "." + std::to_string(i) +
                                " exists; ComfyUI would ignore the blocks after the gap");
    }
    ++expected;
  }
  return expected;
}

const safetensors::TensorEntry* FindIn(const Model& model, std::string_view name) {
  auto it = std::lower_bound(model.tensors.begin(), model.tensors.end(), name,
                             [](const ModelTensor& t, std::string_view n) { return t.name < n; });
  return it != model.tensors.end() && it->name == name ? it->source : nullptr;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Derives the dims the way ComfyUI's model detection does (§3.5) and lists
// every difference from the layout those dims imply.
void CompareWithFluxLayout(Model* model) {
  constexpr size_t kMaxNotes = 20;
  FluxDims& d = model->dims;
  d.depth = model->n_double_blocks;
  d.depth_single = model->n_single_blocks;
  const auto* img_in = FindIn(*model, "img_in.weight");
  const auto* txt_in = FindIn(*model, "txt_in.weight");
  const auto* vector_in = FindIn(*model, "vector_in.in_layer.weight");
  if (img_in == nullptr || img_in->shape.size() != 2 || txt_in == nullptr || txt_in->shape.size() != 2) {
    model->layout_notes.push_back(
        "img_in.weight or txt_in.weight is missing or not 2-D; ComfyUI cannot size the model");
    return;
  }
  d.hidden = img_in->shape[0];
  d.in_channels = img_in->shape[1];
  d.ctx = txt_in->shape[1];
  d.vec = vector_in != nullptr && vector_in->shape.size() == 2 ? vector_in->shape[1] : 0;
  d.guidance = FindIn(*model, "guidance_in.in_layer.weight") != nullptr;
  std::vector<std::string> notes;
  std::set<std::string> expected;
  for (const auto& e : FluxLayout(d)) {
    expected.insert(e.name);
    const auto* t = FindIn(*model, e.name);
    if (t == nullptr) {
      notes.push_back("missing tensor '" + e.name + "'");
    } else if (t->shape != e.shape) {
      notes.push_back("tensor '" + e.name + "' has shape " + ShapeString(t->shape) + ", Flux.1 with hidden size " +
                      std::to_string(d.hidden) + " has " + ShapeString(e.shape));
    }
  }
  for (const auto& t : model->tensors) {
    if (!expected.contains(t.name)) notes.push_back("tensor '" + t.name + "' is not part of Flux.1");
  }
  if (notes.size() > kMaxNotes) {
    const size_t more = notes.size() - kMaxNotes;
    notes.resize(kMaxNotes);
    notes.push_back("... and " + std::to_string(more) + " more differences from the Flux.1 layout");
  }
  model->layout_notes = std::move(notes);
}

}  // namespace

std::string BlockOf(std::string_view name) {
  for (std::string_view kind : {"double_blocks", "single_blocks"}) {
    int64_t i = BlockIndex(name, kind);
    if (i >= 0) return std::string(kind) + "." + std::to_string(i);
  }
  return "";
}

bool IsDiffusionArchitecture(std::string_view architecture) {
  const auto& families = Families();
  return std::any_of(families.begin(), families.end(), [&](const Family& f) { return f.architecture == architecture; });
}

std::string ConvertedArchitectures() {
  std::string names;
  for (const Family& f : Families()) {
    if (f.supported) names += (names.empty() ? "" : ", ") + std::string(f.architecture);
  }
  return names;
}

Result<Model> Inspect(const Source& source) {
  return InspectTensors(source.tensors(), "checkpoint '" + source.path() + "'");
}

Result<Model> Inspect(const safetensors::Checkpoint& checkpoint) {
  return InspectTensors(checkpoint.tensors(), "checkpoint '" + checkpoint.path() + "'");
}

Result<Model> InspectTensors(const std::vector<safetensors::TensorEntry>& all, const std::string& where) {
  Model model;
  for (std::string_view p : {"model.diffusion_model.", "model."}) {
    if (std::any_of(all.begin(), all.end(), [&](const auto& t) { return t.name.starts_with(p); })) {
      model.prefix = p;
      break;
    }
  }
  if (model.prefix.empty() && !all.empty() &&
      std::all_of(all.begin(), all.end(), [](const auto& t) { return t.name.starts_with("net."); })) {
    model.prefix = "net.";
  }
  std::set<std::string> names;
  for (const auto& t : all) {
    if (!t.name.starts_with(model.prefix)) {
      ++model.n_dropped;
      continue;
    }
    model.tensors.push_back({t.name.substr(model.prefix.size()), &t});
    names.insert(model.tensors.back().name);
  }
  if (model.tensors.empty()) return Status::Corruption(where + " holds no tensors");
  std::sort(model.tensors.begin(), model.tensors.end(),
            [](const ModelTensor& a, const ModelTensor& b) { return a.name < b.name; });

  const Family* family = nullptr;
  for (const auto& f : Families()) {
    bool match = std::any_of(f.groups.begin(), f.groups.end(), [&](const auto& group) {
      return std::all_of(group.begin(), group.end(),
                         [&](std::string_view k) { return names.contains(std::string(k)); });
    });
    if (match) {
      family = &f;
      break;
    }
  }
  if (family == nullptr) {
    return Status::NotSupported("unknown model architecture in " + where +
                                "; mixq converts Flux-class transformers (BFL names such as "
                                "double_blocks.0.img_attn.proj.weight)");
  }
  if (!family->banned.empty() && names.contains(std::string(family->banned))) {
    return Status::NotSupported(where + " uses the diffusers layout (" + std::string(family->banned) +
                                "), which ComfyUI-GGUF does not load; convert the original single-file checkpoint");
  }
  if (!family->supported) {
    return Status::NotSupported(where + " looks like a '" + std::string(family->architecture) +
                                "' model; mixq converts only " + ConvertedArchitectures() + " so far");
  }
  model.architecture = family->architecture;

  std::set<int64_t> doubles, singles;
  for (const auto& t : model.tensors) {
    const auto& src = *t.source;
    if (t.name.size() > kMaxNameBytes) {
      return Status::NotSupported("tensor '" + t.name + "' in " + where + " has a " + std::to_string(t.name.size()) +
                                  "-byte name; ggml allows " + std::to_string(kMaxNameBytes));
    }
    if (src.shape.size() > kMaxDims) {
      return Status::NotSupported("tensor '" + t.name + "' in " + where + " has " + std::to_string(src.shape.size()) +
                                  " dims; GGUF allows 4");
    }
    if (!src.dtype->is_float) {
      return Status::NotSupported("tensor '" + t.name + "' in " + where + " has dtype " + std::string(src.dtype->name) +
                                  "; mixq converts F32, F16, BF16 and F8 tensors");
    }
    if (src.n_elems == 0) {
      return Status::NotSupported("tensor '" + t.name + "' in " + where + " has no elements");
    }
    if (int64_t i = BlockIndex(t.name, "double_blocks"); i >= 0) doubles.insert(i);
    if (int64_t i = BlockIndex(t.name, "single_blocks"); i >= 0) singles.insert(i);
  }
  auto n_double = ContiguousBlocks(doubles, "double_blocks");
  if (!n_double) return n_double.error().WithContext(where);
  auto n_single = ContiguousBlocks(singles, "single_blocks");
  if (!n_single) return n_single.error().WithContext(where);
  model.n_double_blocks = *n_double;
  model.n_single_blocks = *n_single;
  CompareWithFluxLayout(&model);
  return model;
}

}  // namespace mixq::diffusion
