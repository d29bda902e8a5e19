// The Flux layout, family detection, prefix handling and the loader's name
// rules, against the counts of comfyui-gguf.md §4 and §6.
#include <gtest/gtest.h>

#include <numeric>

#include "diffusion/diffusion.h"
#include "flux_checklist.h"
#include "quantize/quantize.h"

namespace mixq::diffusion {
namespace {

using testing::Generate;
using testing::TempDir;

int64_t Params(const std::vector<LayoutTensor>& layout, const std::string& prefix = "") {
  int64_t n = 0;
  for (const auto& t : layout) {
    if (!t.name.starts_with(prefix)) continue;
    n += std::accumulate(t.shape.begin(), t.shape.end(), int64_t{1}, std::multiplies<>());
  }
  return n;
}

// Entries with data offsets but no data, enough for InspectTensors.
std::vector<safetensors::TensorEntry> Entries(const std::vector<LayoutTensor>& layout, const std::string& prefix = "") {
  std::vector<safetensors::TensorEntry> out;
  for (const auto& t : layout) {
    safetensors::TensorEntry e;
    e.name = prefix + t.name;
    e.dtype = safetensors::FindDType("BF16");
    e.shape = t.shape;
    e.n_elems = Params({t});
    e.n_bytes = static_cast<uint64_t>(e.n_elems) * 2;
    out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

TEST(FluxLayout, MatchesTheFluxDevInventory) {
  const auto dev = FluxLayout(FluxDims{});
  EXPECT_EQ(dev.size(), 780u);
  EXPECT_EQ(Params(dev), 11'901'408'320);
  int64_t block_weights = 0;
  for (const auto& t : dev) {
    if (t.shape.size() == 2 && !BlockOf(t.name).empty()) block_weights += Params({t});
  }
  EXPECT_EQ(block_weights, 11'834'228'736);
  EXPECT_EQ(Params(dev, "double_blocks.7.") - 92'160 - 512, 339'738'624);
  EXPECT_EQ(Params(dev, "single_blocks.30.") - 33'792 - 256, 141'557'760);
  FluxDims schnell;
  schnell.guidance = false;
  EXPECT_EQ(FluxLayout(schnell).size(), 776u);
  FluxDims tiny{256, 2, 2, 256, 512, 64, true};
  EXPECT_EQ(FluxLayout(tiny).size(), 84u);
  EXPECT_EQ(Params(FluxLayout(tiny)), 7'397'952);
}

TEST(Inspect, DerivesDimsLikeComfyUiAndFindsNoDifferences) {
  FluxDims dims{384, 3, 5, 768, 4096, 128, false};  // a Canny/Depth-like img_in, schnell-like guidance
  auto entries = Entries(FluxLayout(dims));
  auto model = InspectTensors(entries, "test");
  ASSERT_TRUE(model.has_value()) << model.error().message();
  EXPECT_EQ(model->architecture, "flux");
  EXPECT_EQ(model->n_double_blocks, 3);
  EXPECT_EQ(model->n_single_blocks, 5);
  EXPECT_EQ(model->dims.hidden, 384);
  EXPECT_EQ(model->dims.in_channels, 128);
  EXPECT_FALSE(model->dims.guidance);
  EXPECT_TRUE(model->layout_notes.empty()) << model->layout_notes.front();

  // A mis-shaped and a missing tensor are reported (ComfyUI would fail or leave a weight uninitialised).
  entries.erase(std::find_if(entries.begin(), entries.end(),
                             [](const auto& e) { return e.name == "single_blocks.2.linear2.bias"; }));
  for (auto& e : entries) {
    if (e.name == "double_blocks.1.txt_mlp.0.weight") e.shape = {1000, 384};
  }
  model = InspectTensors(entries, "test");
  ASSERT_TRUE(model.has_value());
  ASSERT_EQ(model->layout_notes.size(), 2u);
  EXPECT_NE(model->layout_notes[0].find("double_blocks.1.txt_mlp.0.weight"), std::string::npos);
  EXPECT_NE(model->layout_notes[1].find("missing tensor 'single_blocks.2.linear2.bias'"), std::string::npos);
}

TEST(Inspect, StripsPrefixesAndDropsTheRest) {
  FluxDims tiny{256, 1, 1, 256, 512, 64, true};
  auto entries = Entries(FluxLayout(tiny), "model.diffusion_model.");
  auto extra = Entries({{"first_stage_model.decoder.conv_in.weight", {4, 4}}, {"cond_stage_model.x", {3}}});
  entries.insert(entries.end(), extra.begin(), extra.end());
  auto model = InspectTensors(entries, "test");
  ASSERT_TRUE(model.has_value()) << model.error().message();
  EXPECT_EQ(model->prefix, "model.diffusion_model.");
  EXPECT_EQ(model->n_dropped, 2);
  EXPECT_EQ(model->tensors.size(), 52u);  // 20 entry/exit + 24 + 8
  EXPECT_TRUE(std::is_sorted(model->tensors.begin(), model->tensors.end(),
                             [](const auto& a, const auto& b) { return a.name < b.name; }));
  EXPECT_EQ(model->tensors.front().name, "double_blocks.0.img_attn.norm.key_norm.scale");

  // "net." is stripped only when every key has it.
  auto net = Entries(FluxLayout(tiny), "net.");
  model = InspectTensors(net, "test");
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->prefix, "net.");
}

TEST(Inspect, RefusesWhatComfyUiCannotLoad) {
  auto expect = [](const std::vector<safetensors::TensorEntry>& entries, StatusKind kind, const std::string& part) {
    auto model = InspectTensors(entries, "test");
    ASSERT_FALSE(model.has_value()) << part;
    EXPECT_EQ(model.error().kind(), kind) << model.error().message();
    EXPECT_NE(model.error().message().find(part), std::string::npos) << model.error().message();
  };
  FluxDims tiny{256, 2, 2, 256, 512, 64, true};
  auto diffusers = Entries({{"transformer_blocks.0.attn.norm_added_k.weight", {128}},
                            {"single_transformer_blocks.0.proj_out.weight", {256, 256}}});
  expect(diffusers, StatusKind::kNotSupported, "diffusers layout");
  expect(Entries({{"joint_blocks.0.x_block.attn.qkv.weight", {768, 256}}}), StatusKind::kNotSupported, "'sd3'");
  expect(Entries({{"encoder.layer.0.weight", {4, 4}}}), StatusKind::kNotSupported, "unknown model architecture");
  expect({}, StatusKind::kCorruption, "no tensors");

  auto gap = Entries(FluxLayout(tiny));
  std::erase_if(gap, [](const auto& e) { return e.name.starts_with("double_blocks.0."); });
  gap.insert(gap.begin(), Entries({{"double_blocks.0.img_attn.proj.weight", {256, 256}}}).front());
  std::erase_if(gap, [](const auto& e) { return e.name.starts_with("single_blocks.0."); });
  expect(gap, StatusKind::kCorruption, "single_blocks.0 is missing but single_blocks.1 exists");

  auto long_name = Entries(FluxLayout(tiny));
  long_name.push_back(long_name.front());
  long_name.back().name = "double_blocks.0." + std::string(60, 'x');
  expect(long_name, StatusKind::kNotSupported, "ggml allows 63");

  auto five_d = Entries(FluxLayout(tiny));
  five_d.front().shape = {1, 2, 2, 2, 16};
  expect(five_d, StatusKind::kNotSupported, "GGUF allows 4");

  auto ints = Entries(FluxLayout(tiny));
  ints.front().dtype = safetensors::FindDType("I64");
  expect(ints, StatusKind::kNotSupported, "dtype I64");
}

TEST(ArchProfile, FluxQuantizesOnlyTwoDimensionalBlockWeights) {
  const auto& flux = quantize::ProfileFor("flux");
  EXPECT_EQ(flux.architecture, "flux");
  EXPECT_EQ(quantize::ProfileFor("llama").architecture, "");
  auto info = [](std::string name, uint32_t n_dims) {
    gguf::TensorInfo t;
    t.name = std::move(name);
    t.n_dims = n_dims;
    t.ne = {256, n_dims > 1 ? 256 : 1, n_dims > 2 ? 2 : 1, 1};
    t.format = formats::FindFormatByName("BF16");
    return t;
  };
  EXPECT_TRUE(quantize::IsQuantizable(info("double_blocks.0.img_mlp.0.weight", 2), flux));
  EXPECT_TRUE(quantize::IsQuantizable(info("single_blocks.3.linear1.weight", 2), flux));
  EXPECT_FALSE(quantize::IsQuantizable(info("single_blocks.3.linear1.bias", 1), flux));
  EXPECT_FALSE(quantize::IsQuantizable(info("double_blocks.0.img_attn.norm.key_norm.scale", 1), flux));
  EXPECT_FALSE(quantize::IsQuantizable(info("img_in.weight", 2), flux));
  EXPECT_FALSE(quantize::IsQuantizable(info("final_layer.adaLN_modulation.1.weight", 2), flux));
  EXPECT_FALSE(quantize::IsQuantizable(info("guidance_in.out_layer.weight", 2), flux));
  EXPECT_FALSE(quantize::IsQuantizable(info("double_blocks.0.conv.weight", 3), flux));
  // The language-model profile would quantize the 3-D tensor and the entry layer.
  EXPECT_TRUE(quantize::IsQuantizable(info("double_blocks.0.conv.weight", 3)));
  EXPECT_TRUE(quantize::IsQuantizable(info("img_in.weight", 2)));

  // Rules with the flux profile: entry/exit keep their type, no output-head rule applies.
  quantize::TypeRules rules;
  rules.default_format = formats::FindFormatByName("Q4_K");
  rules.profile = &flux;
  auto entry = quantize::ChooseType(info("txt_in.weight", 2), rules, true);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->format->name, "BF16");
  auto block = quantize::ChooseType(info("double_blocks.1.txt_mod.lin.weight", 2), rules, true);
  ASSERT_TRUE(block.has_value());
  EXPECT_EQ(block->format->name, "Q4_K");
  rules.default_format = nullptr;  // no --type: everything keeps its storage
  EXPECT_EQ(quantize::ChooseType(info("double_blocks.1.txt_mod.lin.weight", 2), rules, true)->format->name, "BF16");
}

TEST(Report, GpuAdviceMatchesTheSeedCard) {
  // MixedQuantFlux (seed 003): 3.1 bpw might work on 6 GB, 3.8 on 8 GB, 6.9 for 12 GB, 9.2 fits 16 GB.
  const double params = 11'901'408'320.0;
  auto bytes = [&](double bpw) { return static_cast<uint64_t>(params * bpw / 8); };
  EXPECT_EQ(SmallestGpuGib(bytes(3.1)), 6);
  EXPECT_EQ(SmallestGpuGib(bytes(3.8)), 8);
  EXPECT_EQ(SmallestGpuGib(bytes(6.9)), 12);
  EXPECT_EQ(SmallestGpuGib(bytes(9.2)), 16);
  EXPECT_EQ(SmallestGpuGib(bytes(16.0)), 24);  // the full BF16 model
  EXPECT_EQ(SmallestGpuGib(uint64_t{100} << 30), 0);
  EXPECT_NE(FitSummary(bytes(3.8), 3.8).find("8 GB"), std::string::npos);
  EXPECT_NE(FitSummary(bytes(3.8), 3.8).find("3.80 bpw"), std::string::npos);
}

TEST(Report, OutputNamesSayTypeOrAverageBits) {
  EXPECT_EQ(OutputName("/m/flux1-dev.safetensors", "BF16", false, 16.0), "/m/flux1-dev-BF16.gguf");
  EXPECT_EQ(OutputName("flux1-dev.safetensors", "Q4_K", false, 4.5), "flux1-dev-Q4_K.gguf");
  EXPECT_EQ(OutputName("/m/t/diffusion_pytorch_model.safetensors.index.json", "F16", false, 16),
            "/m/t/diffusion_pytorch_model-F16.gguf");
  EXPECT_EQ(OutputName("/m/flux1-dev.safetensors", "", true, 3.8049), "/m/flux1-dev_mx3_8.gguf");
  EXPECT_EQ(OutputName("/m/flux1-dev.safetensors", "", true, 6.96), "/m/flux1-dev_mx7_0.gguf");
}

}  // namespace
}  // namespace mixq::diffusion
