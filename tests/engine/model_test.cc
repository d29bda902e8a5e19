// The measurement API: split forward passes, captured layer inputs, weight
// substitution and activation hooks, on ref-dev and random models.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "engine/engine.h"
#include "engine_test_util.h"
#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::engine {
namespace {

std::vector<int32_t> SomeTokens(int64_t n, int32_t n_vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  t[0] = 1;
  for (int64_t i = 1; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % n_vocab);
  return t;
}

class RefDev : public test::RefDevModelTest {};

TEST_F(RefDev, ConfigFromMetadata) {
  const ModelConfig& c = model_->config();
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_layer, 6);
  EXPECT_EQ(c.n_embd, 256);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_ff, 768);
  EXPECT_EQ(c.n_vocab, 4096);
  EXPECT_FALSE(c.rope_neox);
  EXPECT_FALSE(c.tied_output);
  std::vector<std::string> names = model_->LinearWeights();
  ASSERT_EQ(names.size(), 6u * 7 + 1);
  EXPECT_EQ(names.front(), "blk.0.attn_q.weight");
  EXPECT_EQ(names.back(), "output.weight");
}

TEST_F(RefDev, EveryTensorIsDescribedByTheArchitecture) {
  const std::vector<WeightInfo>& weights = model_->Weights();
  ASSERT_EQ(weights.size(), file_->tensors().size());
  for (const auto& t : file_->tensors()) {
    auto it = std::find_if(weights.begin(), weights.end(), [&](const WeightInfo& w) { return w.name == t.name; });
    EXPECT_NE(it, weights.end()) << t.name;
  }
  EXPECT_EQ(weights.front().name, "token_embd.weight");
  const WeightInfo& down = *std::find_if(weights.begin(), weights.end(),
                                         [](const WeightInfo& w) { return w.name == "blk.4.ffn_down.weight"; });
  EXPECT_EQ(down.layer, 4);
  EXPECT_EQ(down.role, "ffn_down");
  EXPECT_EQ(down.part, WeightPart::kFfn);
  EXPECT_FALSE(down.per_expert);
}

TEST(DescribeWeight, LayerRoleAndExpertsFromTheTensorTables) {
  auto exps = DescribeWeight("blk.13.ffn_down_exps.weight");
  ASSERT_TRUE(exps.has_value());
  EXPECT_EQ(exps->layer, 13);
  EXPECT_EQ(exps->role, "ffn_down_exps");
  EXPECT_EQ(exps->part, WeightPart::kExperts);
  EXPECT_TRUE(exps->per_expert);
  auto router = DescribeWeight("blk.0.ffn_gate_inp.weight");
  ASSERT_TRUE(router.has_value());
  EXPECT_EQ(router->part, WeightPart::kRouter);
  EXPECT_FALSE(router->per_expert);
  auto bias = DescribeWeight("blk.2.attn_q.bias");
  ASSERT_TRUE(bias.has_value());
  EXPECT_EQ(bias->role, "attn_q.bias");
  EXPECT_EQ(bias->part, WeightPart::kAttention);
  auto output = DescribeWeight("output.weight");
  ASSERT_TRUE(output.has_value());
  EXPECT_EQ(output->layer, -1);
  EXPECT_EQ(output->part, WeightPart::kOutput);
  EXPECT_EQ(DescribeWeight("token_embd.weight")->part, WeightPart::kEmbedding);
  for (const char* name : {"blk.3.ffn_gate_inp_shexp.weight", "blk.3.ffn_gate_shexp.weight",
                           "blk.3.ffn_up_shexp.weight", "blk.3.ffn_down_shexp.weight"}) {
    auto shared = DescribeWeight(name);
    ASSERT_TRUE(shared.has_value()) << name;
    EXPECT_EQ(shared->layer, 3);
    EXPECT_EQ(shared->part, WeightPart::kSharedExpert);
    EXPECT_FALSE(shared->per_expert);
  }
  for (const char* name :
       {"blk.x.attn_q.weight", "blk.1.attn_x.weight", "blk.1", "blk..attn_q.weight", "blk.-1.attn_q.weight",
        "attn_q.weight", "blk.1.output.weight", "double_blocks.0.img_attn"}) {
    EXPECT_FALSE(DescribeWeight(name).has_value()) << name;
  }
}

// Load reads every weight once (the finiteness check) and lets go of the
// file's pages afterwards; the CPU reads them back from the file.
TEST_F(RefDev, LoadLeavesTheFileUnmapped) {
  // Reading one tensor maps the cached pages next to it back in (the
  // kernel's fault-around), so only pages further inside are counted.
  int64_t checked = 0;
  for (const gguf::TensorInfo& t : file_->tensors()) {
    const std::span<const uint8_t> inside = testing::BeyondFaultAround(file_->TensorData(t));
    const int64_t present = testing::PresentPages(inside);
    if (present < 0) GTEST_SKIP() << "/proc/self/pagemap cannot be read here";
    EXPECT_EQ(present, 0) << t.name;
    checked += static_cast<int64_t>(inside.size());
  }
  EXPECT_GT(checked, int64_t{8} << 20);  // most of the file
  std::vector<float> logits;
  ASSERT_TRUE(model_->Forward(SomeTokens(16, 4096), 0, &logits, {}).ok());
  EXPECT_GT(testing::PresentPages(file_->TensorData(*file_->FindTensor("output.weight"))), 0);
}

TEST_F(RefDev, SplitPassEqualsWholePass) {
  const ModelConfig& c = model_->config();
  const int64_t n = 96;
  std::vector<int32_t> tokens = SomeTokens(n, 4096);
  RunOptions o;
  std::vector<float> whole;
  std::vector<std::vector<float>> inputs;
  ASSERT_TRUE(model_->Forward(tokens, 40, &whole, o, &inputs).ok());
  ASSERT_EQ(inputs.size(), size_t(c.n_layer + 1));
  ASSERT_EQ(whole.size(), size_t((n - 40) * c.n_vocab));

  std::vector<float> hidden(size_t(n * c.n_embd));
  ASSERT_TRUE(model_->Embed(tokens, hidden.data()).ok());
  EXPECT_EQ(hidden, inputs[0]);
  ASSERT_TRUE(model_->RunLayers(0, 3, hidden.data(), n, o).ok());
  EXPECT_EQ(hidden, inputs[3]);
  // Restart from the cached input of layer 3.
  std::vector<float> resumed = inputs[3];
  ASSERT_TRUE(model_->RunLayers(3, c.n_layer, resumed.data(), n, o).ok());
  EXPECT_EQ(resumed, inputs[c.n_layer]);
  std::vector<float> logits(size_t((n - 40) * c.n_vocab));
  ASSERT_TRUE(model_->Logits(resumed.data() + 40 * c.n_embd, n - 40, logits.data(), o).ok());
  EXPECT_EQ(logits, whole);
}

TEST_F(RefDev, ThreadCountDoesNotChangeLogits) {
  std::vector<int32_t> tokens = SomeTokens(80, 4096);
  RunOptions one, three;
  one.n_threads = 1;
  three.n_threads = 3;
  std::vector<float> a, b;
  ASSERT_TRUE(model_->Forward(tokens, 0, &a, one).ok());
  ASSERT_TRUE(model_->Forward(tokens, 0, &b, three).ok());
  EXPECT_EQ(a, b);
}

TEST_F(RefDev, SubstitutedWeightsChangeOnlyWhatTheyShould) {
  std::vector<int32_t> tokens = SomeTokens(64, 4096);
  RunOptions o;
  o.activations = Activations::kF32;
  std::vector<float> base, same, changed, restored;
  ASSERT_TRUE(model_->Forward(tokens, 0, &base, o).ok());

  // The tensor's own values as F32 give the same result (F32 activations).
  const std::string name = "blk.2.ffn_down.weight";
  std::vector<float> values;
  ASSERT_TRUE(quantize::TensorToF32(*file_, *file_->FindTensor(name), &values, 2).ok());
  ASSERT_TRUE(model_->SetWeightF32(name, values).ok());
  ASSERT_TRUE(model_->Forward(tokens, 0, &same, o).ok());
  EXPECT_EQ(same, base);

  // A Q4_K version of it changes the logits a little.
  const formats::Format* q4k = formats::FindFormatByName("Q4_K");
  const gguf::TensorInfo* t = file_->FindTensor(name);
  std::vector<uint8_t> bytes(size_t(*formats::RowBytes(*q4k, t->ne[0]) * t->ne[1]));
  ASSERT_TRUE(formats::QuantizeRows(*q4k, formats::QuantMethod::kGgml, values.data(), bytes.data(), t->ne[1], t->ne[0],
                                    nullptr, 2)
                  .ok());
  ASSERT_TRUE(model_->SetWeight(name, *q4k, bytes).ok());
  ASSERT_TRUE(model_->Forward(tokens, 0, &changed, o).ok());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    diff += (changed[i] - base[i]) * (changed[i] - base[i]);
    norm += base[i] * base[i];
  }
  EXPECT_GT(diff / norm, 1e-8);
  EXPECT_LT(diff / norm, 1e-2);

  model_->ClearWeight(name);
  ASSERT_TRUE(model_->Forward(tokens, 0, &restored, o).ok());
  EXPECT_EQ(restored, base);
}

TEST_F(RefDev, BadSubstitutionsAreRejected) {
  const formats::Format* f32 = formats::FindFormatByName("F32");
  auto s = model_->SetWeight("blk.9.attn_q.weight", *f32, std::vector<uint8_t>(4));
  EXPECT_EQ(s.kind(), StatusKind::kInvalidArgument);
  s = model_->SetWeight("blk.0.attn_q.weight", *f32, std::vector<uint8_t>(4));
  EXPECT_EQ(s.kind(), StatusKind::kInvalidArgument);
  EXPECT_NE(s.message().find("needs 262144 bytes"), std::string::npos) << s.message();
  // Q4_K needs rows that are a multiple of 256 values; ffn_down rows have 768.
  const formats::Format* q4k = formats::FindFormatByName("Q4_K");
  s = model_->SetWeight("blk.0.ffn_down.weight", *q4k, std::vector<uint8_t>(144 * 3 * 256));
  EXPECT_TRUE(s.ok()) << s.message();
  std::vector<int32_t> bad = {1, 5000};
  std::vector<float> logits;
  EXPECT_EQ(model_->Forward(bad, 0, &logits, RunOptions{}).kind(), StatusKind::kInvalidArgument);
}

TEST_F(RefDev, HookSeesEveryLinearInputOnce) {
  std::vector<int32_t> tokens = SomeTokens(32, 4096);
  std::map<std::string, int> calls;
  std::map<std::string, std::vector<float>> first_rows;
  ActivationHook hook = [&](const std::string& w, int64_t, const float* x, int64_t n_tokens, int64_t n_in) {
    ++calls[w];
    EXPECT_EQ(n_tokens, 32);
    first_rows[w].assign(x, x + n_in);
  };
  RunOptions o;
  o.hook = &hook;
  std::vector<float> logits;
  ASSERT_TRUE(model_->Forward(tokens, 0, &logits, o).ok());
  std::vector<std::string> names = model_->LinearWeights();
  ASSERT_EQ(calls.size(), names.size());
  for (const auto& n : names) EXPECT_EQ(calls[n], 1) << n;
  EXPECT_EQ(first_rows["blk.1.attn_q.weight"], first_rows["blk.1.attn_v.weight"]);
  EXPECT_EQ(first_rows["blk.1.ffn_gate.weight"].size(), 256u);
  EXPECT_EQ(first_rows["blk.1.ffn_down.weight"].size(), 768u);
}

// Why a random model of `spec` does not load once the first `from` in its
// bytes reads `to` (a same-length rename); Ok if it loads.
Status LoadErrorWithRenamed(const test::RandomModelSpec& spec, const std::string& from, const std::string& to) {
  testing::TempDir dir;
  test::WriteRandomModel(dir.File("m.gguf"), spec);
  auto bytes = testing::ReadFileBytes(dir.File("m.gguf"));
  auto it = std::search(bytes.begin(), bytes.end(), from.begin(), from.end());
  EXPECT_NE(it, bytes.end()) << from;
  if (it == bytes.end()) return Status::Ok();
  std::copy(to.begin(), to.end(), it);
  auto file = gguf::GgufFile::Parse(bytes);
  if (!file) return file.error();
  auto model = Model::Load(*file);
  return model ? Status::Ok() : model.error();
}

TEST(Model, UnsupportedArchitectureListsTheSupportedOnes) {
  const Status s = LoadErrorWithRenamed(test::RandomModelSpec{}, "llama", "bloom");  // the architecture value
  EXPECT_EQ(s.kind(), StatusKind::kNotSupported);
  EXPECT_NE(s.message().find("'bloom'"), std::string::npos);
  EXPECT_NE(s.message().find("llama, qwen2, qwen3"), std::string::npos) << s.message();
}

TEST(Model, MissingTensorIsCorruption) {
  test::RandomModelSpec spec;
  spec.arch = "qwen3";
  spec.head_dim = 32;
  // blk.1.attn_k_norm renamed, so that the loader cannot find it.
  const Status s = LoadErrorWithRenamed(spec, "blk.1.attn_k_norm", "blk.1.attn_x_norm");
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("blk.1.attn_k_norm.weight"), std::string::npos) << s.message();
}

// A small qwen3moe (4 experts, top 2; or spec_'s model) with one metadata key
// changed or a tensor renamed, loaded back.
class SmallMoe : public ::testing::Test {
 protected:
  test::RandomModelSpec spec_ = {.arch = "qwen3moe", .seed = 11, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32};
  Status LoadWith(const std::string& key, std::optional<gguf::Value> value, const std::string& rename_from = "",
                  const std::string& rename_to = "") {
    test::WriteRandomModel(dir_.File("good.gguf"), spec_);
    auto good = gguf::GgufFile::Open(dir_.File("good.gguf"));
    EXPECT_TRUE(good.has_value());
    std::vector<gguf::KeyValue> kv = good->metadata();
    if (!key.empty()) {
      if (value) {
        gguf::SetValue(kv, key, *value);
      } else {
        gguf::EraseKey(kv, key);
      }
    }
    std::vector<gguf::TensorSpec> specs;
    for (const auto& t : good->tensors()) {
      specs.push_back({t.name == rename_from ? rename_to : t.name, t.ne, t.n_dims, t.format});
    }
    auto writer = gguf::GgufWriter::Begin(dir_.File("bad.gguf"), kv, specs);
    EXPECT_TRUE(writer.has_value());
    for (const auto& t : good->tensors()) EXPECT_TRUE(writer->WriteTensor(good->TensorData(t)).ok());
    EXPECT_TRUE(writer->Finish().ok());
    file_ = std::make_unique<gguf::GgufFile>(std::move(gguf::GgufFile::Open(dir_.File("bad.gguf")).value()));
    auto model = Model::Load(*file_);
    return model.has_value() ? Status::Ok() : model.error();
  }
  testing::TempDir dir_;
  std::unique_ptr<gguf::GgufFile> file_;
};

TEST_F(SmallMoe, TheUntouchedModelLoads) {
  Status s = LoadWith("", std::nullopt);
  EXPECT_TRUE(s.ok()) << s.message();
  auto model = Model::Load(*file_);
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->config().n_expert, 4);
  EXPECT_EQ(model->config().n_expert_used, 2);
  EXPECT_EQ(model->config().n_ff_exp, 32);
  EXPECT_TRUE(model->config().expert_weights_norm);
  const std::vector<std::string> names = model->LinearWeights();
  EXPECT_NE(std::find(names.begin(), names.end(), "blk.1.ffn_gate_inp.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "blk.1.ffn_down_exps.weight"), names.end());
}

// Each token reaches n_expert_used experts; each expert's products see only
// its tokens, and a token's result does not depend on which other tokens
// share its experts.
TEST_F(SmallMoe, ExpertsSeeTheirTokensOnlyAndBatchesDoNotMatter) {
  ASSERT_TRUE(LoadWith("", std::nullopt).ok());
  auto model = Model::Load(*file_);
  ASSERT_TRUE(model.has_value());
  std::map<std::string, int64_t> rows;
  std::set<int64_t> experts;
  ActivationHook hook = [&](const std::string& w, int64_t expert, const float*, int64_t n_tokens, int64_t n_in) {
    rows[w] += n_tokens;
    if (w == "blk.0.ffn_down_exps.weight") {
      experts.insert(expert);
      EXPECT_EQ(n_in, 32);
    } else if (w.find("_exps") == std::string::npos) {
      EXPECT_EQ(expert, -1) << w;
    }
  };
  RunOptions o;
  o.hook = &hook;
  std::vector<int32_t> tokens = SomeTokens(64, 259);
  std::vector<float> both;
  o.seq_len = 32;
  ASSERT_TRUE(model->Forward(tokens, 0, &both, o).ok());
  EXPECT_EQ(rows["blk.0.ffn_gate_inp.weight"], 64);
  EXPECT_EQ(rows["blk.0.ffn_gate_exps.weight"], 64 * 2);
  EXPECT_EQ(rows["blk.1.ffn_down_exps.weight"], 64 * 2);
  EXPECT_GE(experts.size(), 2u);
  for (int64_t e : experts) EXPECT_TRUE(e >= 0 && e < 4) << e;

  o.hook = nullptr;
  o.seq_len = 0;
  std::vector<float> first, second;
  ASSERT_TRUE(model->Forward(std::span(tokens).first(32), 0, &first, o).ok());
  ASSERT_TRUE(model->Forward(std::span(tokens).last(32), 0, &second, o).ok());
  first.insert(first.end(), second.begin(), second.end());
  EXPECT_EQ(first, both);
}

TEST_F(SmallMoe, MissingExpertTensor) {
  Status s = LoadWith("", std::nullopt, "blk.1.ffn_up_exps.weight", "blk.1.ffn_up_expz.weight");
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("missing tensor 'blk.1.ffn_up_exps.weight'"), std::string::npos) << s.message();
}

TEST_F(SmallMoe, ExpertCountDisagreesWithTheTensors) {
  Status s = LoadWith("qwen3moe.expert_count", gguf::Value::Uint32(6));
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("'blk.0.ffn_gate_inp.weight' has shape 64 x 4, expected 64 x 6"), std::string::npos)
      << s.message();
}

TEST_F(SmallMoe, ExpertWidthDisagreesWithTheTensors) {
  Status s = LoadWith("qwen3moe.expert_feed_forward_length", gguf::Value::Uint32(48));
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("'blk.0.ffn_gate_exps.weight' has shape 64 x 32 x 4, expected 64 x 48 x 4"),
            std::string::npos)
      << s.message();
}

TEST_F(SmallMoe, MoreExpertsUsedThanThereAre) {
  Status s = LoadWith("qwen3moe.expert_used_count", gguf::Value::Uint32(5));
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("expert_used_count 5 exceeds expert_count 4"), std::string::npos) << s.message();
}

TEST_F(SmallMoe, NoExpertCount) {
  Status s = LoadWith("qwen3moe.expert_count", std::nullopt);
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("qwen3moe.expert_count 0 is outside 1..1024"), std::string::npos) << s.message();
}

// qwen2moe: qwen3moe's routed experts (without renormalisation) plus a
// shared expert of its own width behind a sigmoid gate.
class SmallQwen2Moe : public SmallMoe {
 protected:
  SmallQwen2Moe() {
    spec_ = {.arch = "qwen2moe", .seed = 12, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32, .n_ff_shexp = 96};
  }
};

TEST_F(SmallQwen2Moe, TheUntouchedModelLoadsWithItsSharedExpert) {
  Status s = LoadWith("", std::nullopt);
  ASSERT_TRUE(s.ok()) << s.message();
  auto model = Model::Load(*file_);
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->config().n_ff_shexp, 96);
  EXPECT_FALSE(model->config().expert_weights_norm);
  int shared = 0;
  for (const WeightInfo& w : model->Weights()) {
    if (w.part != WeightPart::kSharedExpert) continue;
    ++shared;
    EXPECT_FALSE(w.per_expert) << w.name;
  }
  EXPECT_EQ(shared, 4 * 2);
}

// The shared expert sees every token; its gate is multiplied like the router.
TEST_F(SmallQwen2Moe, TheSharedExpertSeesEveryToken) {
  ASSERT_TRUE(LoadWith("", std::nullopt).ok());
  auto model = Model::Load(*file_);
  ASSERT_TRUE(model.has_value());
  std::map<std::string, int64_t> rows;
  ActivationHook hook = [&](const std::string& w, int64_t expert, const float*, int64_t n_tokens, int64_t n_in) {
    rows[w] += n_tokens;
    if (w.find("shexp") != std::string::npos) {
      EXPECT_EQ(expert, -1) << w;
    }
    if (w == "blk.1.ffn_down_shexp.weight") {
      EXPECT_EQ(n_in, 96);
    }
  };
  RunOptions o;
  o.hook = &hook;
  std::vector<float> logits;
  ASSERT_TRUE(model->Forward(SomeTokens(40, 259), 0, &logits, o).ok());
  for (const char* w : {"blk.1.ffn_gate_inp_shexp.weight", "blk.1.ffn_gate_shexp.weight", "blk.1.ffn_up_shexp.weight",
                        "blk.1.ffn_down_shexp.weight", "blk.1.ffn_gate_inp.weight"}) {
    EXPECT_EQ(rows[w], 40) << w;
  }
  EXPECT_EQ(rows["blk.1.ffn_down_exps.weight"], 40 * 2);
}

TEST_F(SmallQwen2Moe, MissingSharedExpertGate) {
  Status s = LoadWith("", std::nullopt, "blk.1.ffn_gate_inp_shexp.weight", "blk.1.ffn_gate_inp_shexz.weight");
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("missing tensor 'blk.1.ffn_gate_inp_shexp.weight' for qwen2moe"), std::string::npos)
      << s.message();
}

TEST_F(SmallQwen2Moe, SharedExpertWidthDisagreesWithTheTensors) {
  Status s = LoadWith("qwen2moe.expert_shared_feed_forward_length", gguf::Value::Uint32(80));
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("'blk.0.ffn_gate_shexp.weight' has shape 64 x 96, expected 64 x 80"), std::string::npos)
      << s.message();
}

// Without expert_shared_feed_forward_length the shared expert is
// feed_forward_length wide, as llama.cpp reads it.
TEST_F(SmallQwen2Moe, SharedExpertWidthDefaultsToTheFeedForwardLength) {
  Status s = LoadWith("qwen2moe.expert_shared_feed_forward_length", std::nullopt);
  EXPECT_EQ(s.kind(), StatusKind::kCorruption);
  EXPECT_NE(s.message().find("'blk.0.ffn_gate_shexp.weight' has shape 64 x 96, expected 64 x 128"), std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace mixq::engine
