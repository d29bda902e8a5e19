// Evaluation, base logits files, imatrix collection and their CLI commands.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/engine.h"
#include "engine_test_util.h"
#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::engine {
namespace {

using testing::Q;

// The first 20 kB of the held-out text, gzipped like the original, so that
// CLI runs do not tokenize all of it.
class ValSlice {
 public:
  ValSlice() {
    const std::string slice = testing::RefDevTextStart(20000);
    testing::WriteFileBytes(dir_.File("val.txt"), std::vector<uint8_t>(slice.begin(), slice.end()));
    EXPECT_EQ(testing::RunCommand("gzip -k " + dir_.File("val.txt")).exit_code, 0);
  }
  std::string path() const { return dir_.File("val.txt.gz"); }

 private:
  testing::TempDir dir_;
};

using testing::JsonLines;

// The inputs the activation hook sees for weight `name` (only expert
// `expert`'s, when >= 0; n_in columns), squared and summed per column, and
// how many rows, running `n_chunks` chunks of n_ctx tokens one at a time
// (each starting with BOS).
struct Squares {
  std::vector<double> sum2;
  int64_t count = 0;
};
Squares HookedSquares(Model& model, const std::vector<int32_t>& tokens, int64_t n_ctx, int n_chunks,
                      const std::string& name, int64_t expert, int64_t n_in) {
  Squares out{std::vector<double>(static_cast<size_t>(n_in), 0.0), 0};
  ActivationHook hook = [&](const std::string& w, int64_t e, const float* x, int64_t n, int64_t cols) {
    if (w != name || (expert >= 0 && e != expert)) return;
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t j = 0; j < cols; ++j) out.sum2[j] += double(x[t * cols + j]) * x[t * cols + j];
    }
    out.count += n;
  };
  RunOptions run;
  run.hook = &hook;
  for (int c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    chunk[0] = 1;
    std::vector<float> logits;
    EXPECT_TRUE(model.Forward(chunk, n_ctx, &logits, run).ok());
  }
  return out;
}

class Eval : public test::RefDevModelTest {
 protected:
  void SetUp() override {
    RefDevModelTest::SetUp();
    tokens_ = TextTokens(20000);
    options_.n_ctx = 128;
    options_.n_chunks = 5;
    options_.bos_id = 1;
  }
  std::vector<int32_t> tokens_;
  EvalOptions options_;
};

TEST_F(Eval, ChunkingAndScoredPositions) {
  auto r = Evaluate(*model_, tokens_, options_);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->n_chunks, 5);
  EXPECT_EQ(r->first_scored, 64);
  EXPECT_EQ(r->n_scored, 5 * 63);
  ASSERT_EQ(r->chunk_ppl.size(), 5u);
  EXPECT_GT(r->ppl, 1.0);
  EXPECT_LT(r->ppl, 100.0);
  EXPECT_NEAR(r->ppl_stderr, r->ppl * r->nll_stderr, 1e-12);
  EXPECT_FALSE(r->kld.has_value());
  // One chunk at a time gives the same numbers as batched chunks.
  EvalOptions one = options_;
  one.n_chunks = 1;
  auto r1 = Evaluate(*model_, tokens_, one);
  ASSERT_TRUE(r1.has_value());
  EXPECT_NEAR(r1->chunk_ppl[0], r->chunk_ppl[0], 1e-3 * r->chunk_ppl[0]);
}

// Eval's pass scores on the backend: the same NLL and argmax as log-softmax
// of Forward's logits, and a KLD of exactly 0 against an identical base,
// whether the base is another model's pass or log-probs in host memory.
TEST_F(Eval, ForwardScoresMatchForwardLogits) {
  const int64_t n_ctx = 128, first = 64, n_scored = n_ctx - 1 - first;
  std::vector<int32_t> input(tokens_.begin(), tokens_.begin() + 2 * n_ctx);
  input[0] = input[n_ctx] = 1;
  std::vector<int32_t> targets;
  for (int64_t c = 0; c < 2; ++c) {
    for (int64_t k = 0; k < n_scored; ++k) targets.push_back(tokens_[c * n_ctx + first + k + 1]);
  }
  RunOptions run;
  run.seq_len = n_ctx;
  std::vector<float> logits;
  ASSERT_TRUE(model_->Forward(input, first, &logits, run).ok());
  std::vector<RowScore> scores(targets.size());
  ASSERT_TRUE(model_->ForwardScores(input, first, targets, {}, scores, run).ok());
  const int64_t n_vocab = model_->config().n_vocab;
  for (size_t i = 0; i < targets.size(); ++i) {
    const float* z = logits.data() + ((i / n_scored) * (n_scored + 1) + i % n_scored) * n_vocab;
    const int64_t best = std::max_element(z, z + n_vocab) - z;
    double sum = 0;
    for (int64_t j = 0; j < n_vocab; ++j) sum += std::exp(static_cast<double>(z[j] - z[best]));
    EXPECT_EQ(scores[i].argmax, best) << i;
    EXPECT_NEAR(scores[i].nll, std::log(sum) - static_cast<double>(z[targets[i]] - z[best]), 1e-9) << i;
    EXPECT_EQ(scores[i].kld, 0.0);
  }

  auto base = Model::Load(*file_);
  ASSERT_TRUE(base.has_value());
  std::vector<RowScore> base_scores(targets.size());
  ASSERT_TRUE(base->ForwardScores(input, first, targets, {}, base_scores, run).ok());
  std::vector<float> base_lp;
  base->LastLogProbs(&base_lp);
  ASSERT_EQ(base_lp.size(), targets.size() * n_vocab);
  for (const ScoreBase& source : {ScoreBase{&*base, nullptr}, ScoreBase{nullptr, base_lp.data()}}) {
    ASSERT_TRUE(model_->ForwardScores(input, first, targets, source, scores, run).ok());
    for (size_t i = 0; i < targets.size(); ++i) {
      EXPECT_EQ(scores[i].kld, 0.0) << i;
      EXPECT_EQ(scores[i].nll, base_scores[i].nll) << i;
    }
  }
  // A base whose last pass scored other rows is refused, not misread.
  const std::span<const int32_t> one_chunk(input.data(), n_ctx);
  const std::span<const int32_t> one_target(targets.data(), n_scored);
  auto refused = model_->ForwardScores(one_chunk, first, one_target, {&*base, nullptr},
                                       std::span<RowScore>(scores.data(), n_scored), run);
  EXPECT_EQ(refused.kind(), StatusKind::kInvalidArgument);
}

TEST_F(Eval, TooFewTokensIsAnInvalidArgument) {
  std::vector<int32_t> few(tokens_.begin(), tokens_.begin() + 100);
  auto r = Evaluate(*model_, few, options_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kInvalidArgument);
}

// Zero chunks score nothing: an error, not a NaN perplexity or an empty imatrix.
TEST_F(Eval, ZeroChunksIsAnInvalidArgument) {
  EvalOptions none = options_;
  none.n_chunks = 0;
  auto r = Evaluate(*model_, tokens_, none);
  ASSERT_FALSE(r.has_value()) << "PPL " << r->ppl;
  EXPECT_EQ(r.error().kind(), StatusKind::kInvalidArgument);
  ImatrixOptions o;
  o.n_ctx = 128;
  o.n_chunks = 0;
  auto im = CollectImatrix(*model_, tokens_, o);
  ASSERT_FALSE(im.has_value()) << im->entries.size() << " entries";
  EXPECT_EQ(im.error().kind(), StatusKind::kInvalidArgument);
}

TEST_F(Eval, NanWeightsAreReportedNotScored) {
  auto bytes = testing::ReadFileBytes(testing::RefDevModel());
  auto file = gguf::GgufFile::Parse(bytes);
  ASSERT_TRUE(file.has_value());
  const gguf::TensorInfo* t = file->FindTensor("blk.2.ffn_down.weight");
  const uint16_t f16_nan = 0x7E00;
  std::memcpy(bytes.data() + file->data_offset() + t->offset + 2 * 1000, &f16_nan, 2);
  auto model = Model::Load(*file);
  ASSERT_FALSE(model.has_value());
  EXPECT_EQ(model.error().kind(), StatusKind::kCorruption);
  EXPECT_EQ(model.error().message(), "tensor 'blk.2.ffn_down.weight' holds NaN at index 1000 (row 1, column 232)");
}

TEST_F(Eval, SelfKldIsZero) {
  auto r = EvaluateVsModel(*model_, *model_, tokens_, options_);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_TRUE(r->kld.has_value());
  EXPECT_NEAR(r->kld->kld_mean, 0.0, 1e-9);
  EXPECT_EQ(r->kld->same_top, 1.0);
  EXPECT_NEAR(r->kld->ln_ppl_ratio, 0.0, 1e-12);
  EXPECT_NEAR(r->kld->base_ppl, r->ppl, 1e-9);
}

// A saved base file reproduces the KLD of evaluating against the base model.
TEST_F(Eval, SavedBaseLogitsGiveTheSameKld) {
  testing::TempDir dir;
  EvalOptions save = options_;
  save.save_logits = dir.File("base.mqbl");
  auto base_run = Evaluate(*model_, tokens_, save);
  ASSERT_TRUE(base_run.has_value()) << base_run.error().message();
  auto base = BaseLogits::Open(dir.File("base.mqbl"));
  ASSERT_TRUE(base.has_value()) << base.error().message();
  EXPECT_EQ(base->n_ctx(), 128);
  EXPECT_EQ(base->n_chunks(), 5);
  EXPECT_TRUE(base->bos_at_chunk_start());
  EXPECT_EQ(std::filesystem::file_size(dir.File("base.mqbl")), 32u + 4u * 5 * 128 + 5u * 63 * (12 + 2 * 4096));

  // The candidate: ref-dev with one layer's FFN in Q4_K.
  Model& candidate = *model_;
  const std::string name = "blk.1.ffn_up.weight";
  std::vector<float> values;
  ASSERT_TRUE(quantize::TensorToF32(*file_, *file_->FindTensor(name), &values, 2).ok());
  const formats::Format* q4k = formats::FindFormatByName("Q4_K");
  std::vector<uint8_t> bytes(size_t(*formats::RowBytes(*q4k, 256) * 768));
  ASSERT_TRUE(
      formats::QuantizeRows(*q4k, formats::QuantMethod::kGgml, values.data(), bytes.data(), 768, 256, nullptr, 2).ok());
  auto base_model_file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(base_model_file.has_value());
  auto base_model = Model::Load(*base_model_file);
  ASSERT_TRUE(base_model.has_value());
  ASSERT_TRUE(candidate.SetWeight(name, *q4k, bytes).ok());

  auto from_model = EvaluateVsModel(candidate, *base_model, tokens_, options_);
  auto from_file = EvaluateVsLogits(candidate, *base, options_);
  ASSERT_TRUE(from_model.has_value()) << from_model.error().message();
  ASSERT_TRUE(from_file.has_value()) << from_file.error().message();
  const KldStats& a = *from_model->kld;
  const KldStats& b = *from_file->kld;
  EXPECT_GT(a.kld_mean, 1e-5);
  EXPECT_NEAR(b.kld_mean / a.kld_mean, 1.0, 0.01);
  EXPECT_NEAR(b.kld_p99 / a.kld_p99, 1.0, 0.02);
  EXPECT_EQ(b.same_top, a.same_top);
  EXPECT_NEAR(b.ln_ppl_ratio, a.ln_ppl_ratio, 1e-6);
  EXPECT_NEAR(b.base_ppl, a.base_ppl, 1e-4 * a.base_ppl);
  EXPECT_NEAR(from_file->ppl, from_model->ppl, 1e-9 * from_model->ppl);
}

TEST_F(Eval, CorruptBaseFilesAreRejected) {
  testing::TempDir dir;
  EvalOptions save = options_;
  save.n_chunks = 1;
  save.save_logits = dir.File("b.mqbl");
  ASSERT_TRUE(Evaluate(*model_, tokens_, save).has_value());
  auto bytes = testing::ReadFileBytes(dir.File("b.mqbl"));
  auto cut = bytes;
  cut.resize(cut.size() - 1);
  testing::WriteFileBytes(dir.File("cut.mqbl"), cut);
  auto r = BaseLogits::Open(dir.File("cut.mqbl"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  auto bad_magic = bytes;
  bad_magic[0] = 'X';
  testing::WriteFileBytes(dir.File("magic.mqbl"), bad_magic);
  r = BaseLogits::Open(dir.File("magic.mqbl"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
}

TEST_F(Eval, ImatrixSumsSquaredInputs) {
  ImatrixOptions o;
  o.n_ctx = 128;
  o.n_chunks = 3;
  o.bos_id = 1;
  o.dataset = "val";
  auto im = CollectImatrix(*model_, tokens_, o);
  ASSERT_TRUE(im.has_value()) << im.error().message();
  EXPECT_EQ(im->chunk_count, 3u);
  EXPECT_EQ(im->chunk_size, 128u);
  ASSERT_EQ(im->entries.size(), 6u * 7 + 1);
  for (const auto& [name, e] : im->entries) {
    ASSERT_EQ(e.counts.size(), 1u) << name;
    EXPECT_EQ(e.counts[0], 3 * 128) << name;
  }
  // q, k and v read the same normalized input.
  EXPECT_EQ(im->entries.at("blk.2.attn_q.weight").in_sum2, im->entries.at("blk.2.attn_v.weight").in_sum2);
  EXPECT_EQ(im->entries.at("blk.2.ffn_down.weight").in_sum2.size(), 768u);

  // Independently: the hook's inputs of one weight, squared and summed.
  const std::vector<double> sum2 = HookedSquares(*model_, tokens_, 128, 3, "blk.4.ffn_up.weight", -1, 256).sum2;
  const auto& got = im->entries.at("blk.4.ffn_up.weight").in_sum2;
  // Batched and single chunks round a few activations differently (F16, Q8).
  for (int j = 0; j < 256; ++j) EXPECT_NEAR(got[j], sum2[j], 1e-3 * sum2[j] + 1e-6) << j;

  o.include_output = false;
  auto no_out = CollectImatrix(*model_, tokens_, o);
  ASSERT_TRUE(no_out.has_value());
  EXPECT_EQ(no_out->entries.count("output.weight"), 0u);
}

// A random qwen3moe (2 layers, 4 experts, top 2) and byte tokens of the text.
test::RandomModelSpec SmallMoe() {
  return {.arch = "qwen3moe", .seed = 12, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32};
}

// The first n bytes of the held-out text as byte tokens.
std::vector<int32_t> ByteTokens(size_t n) {
  const std::string text = testing::RefDevTextStart(n);
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < n; ++i) tokens.push_back(3 + static_cast<unsigned char>(text[i]));  // <0xXX> ids
  return tokens;
}

// Expert tensors get one slice and one count per expert, from the tokens
// routed to it; the hook's per-expert inputs, squared and summed, agree.
TEST(MoeImatrix, SumsAndCountsPerExpert) {
  testing::TempDir dir;
  test::WriteRandomModel(dir.File("moe.gguf"), SmallMoe());
  auto file = gguf::GgufFile::Open(dir.File("moe.gguf"));
  ASSERT_TRUE(file.has_value());
  auto model = Model::Load(*file);
  ASSERT_TRUE(model.has_value()) << model.error().message();
  const std::vector<int32_t> tokens = ByteTokens(3 * 64);
  ImatrixOptions o;
  o.n_ctx = 64;
  o.bos_id = 1;
  auto im = CollectImatrix(*model, tokens, o);
  ASSERT_TRUE(im.has_value()) << im.error().message();
  const quantize::ImatrixEntry& router = im->entries.at("blk.1.ffn_gate_inp.weight");
  EXPECT_EQ(router.counts, std::vector<float>{3 * 64});
  for (const char* name : {"blk.0.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight", "blk.1.ffn_down_exps.weight"}) {
    const quantize::ImatrixEntry& e = im->entries.at(name);
    ASSERT_EQ(e.counts.size(), 4u) << name;
    EXPECT_EQ(e.in_sum2.size(), 4u * (std::string(name).find("down") != std::string::npos ? 32 : 64)) << name;
    // Every token reaches two experts.
    EXPECT_EQ(e.counts[0] + e.counts[1] + e.counts[2] + e.counts[3], 2 * 3 * 64) << name;
  }
  EXPECT_EQ(im->entries.at("blk.1.ffn_gate_exps.weight").counts, im->entries.at("blk.1.ffn_down_exps.weight").counts);

  // Independently: one expert's hooked inputs, squared and summed.
  const auto [sum2, count] = HookedSquares(*model, tokens, 64, 3, "blk.1.ffn_down_exps.weight", 2, 32);
  const quantize::ImatrixEntry& down = im->entries.at("blk.1.ffn_down_exps.weight");
  EXPECT_EQ(down.counts[2], count);
  for (int j = 0; j < 32; ++j) EXPECT_NEAR(down.in_sum2[2 * 32 + j], sum2[j], 1e-4 * sum2[j] + 1e-6) << j;

  // Saved and loaded back, each expert's importance is its own mean.
  ASSERT_TRUE(quantize::SaveImatrix(*im, dir.File("im.gguf")).ok());
  auto loaded = quantize::LoadImatrix(dir.File("im.gguf"));
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message();
  auto imp = loaded->Importance("blk.1.ffn_down_exps.weight", 32, 4);
  ASSERT_TRUE(imp.has_value() && imp->has_value());
  EXPECT_NEAR((**imp)[2 * 32 + 5], sum2[5] / double(count), 1e-4 * sum2[5] / double(count));
}

// A type that needs an imatrix (IQ2_XS) on expert tensors takes each
// expert's slice of a per-expert imatrix, as for any other type.
TEST(MoeImatrix, TypesThatNeedAnImatrixQuantizeExperts) {
  testing::TempDir dir;
  test::RandomModelSpec spec = SmallMoe();
  spec.n_embd = 256;
  spec.head_dim = 64;
  test::WriteRandomModel(dir.File("moe.gguf"), spec);
  auto file = gguf::GgufFile::Open(dir.File("moe.gguf"));
  ASSERT_TRUE(file.has_value());
  auto model = Model::Load(*file);
  ASSERT_TRUE(model.has_value()) << model.error().message();
  ImatrixOptions o;
  o.n_ctx = 64;
  o.bos_id = 1;
  auto im = CollectImatrix(*model, ByteTokens(2 * 64), o);
  ASSERT_TRUE(im.has_value()) << im.error().message();

  quantize::QuantizeOptions q;
  q.rules.default_format = formats::FindFormatByName("Q8_0");
  q.rules.overrides.push_back(*quantize::ParseTensorTypeOverride("ffn_(gate|up)_exps=IQ2_XS"));
  q.imatrix = &*im;
  auto report = quantize::QuantizeModel(*file, dir.File("q.gguf"), q);
  ASSERT_TRUE(report.has_value()) << report.error().message();
  auto out = gguf::GgufFile::Open(dir.File("q.gguf"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->FindTensor("blk.1.ffn_up_exps.weight")->format->name, "IQ2_XS");
}

TEST(EvalCli, JsonSummaryAndSavedLogits) {
  testing::TempDir dir;
  ValSlice val;
  const std::string common = " --text " + Q(val.path()) + " --ctx 128 --chunks 3 -t 2";
  auto r =
      testing::RunMixq("eval --json " + Q(testing::RefDevModel()) + common + " --save-logits " + Q(dir.File("b.mqbl")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 5u);  // begin, 3 chunks, summary
  EXPECT_EQ(lines.front()["type"], "begin");
  EXPECT_EQ(lines[1]["type"], "chunk");
  EXPECT_EQ(lines.back()["type"], "summary");
  const auto& s = lines.back()["data"];
  for (const char* key : {"ppl", "ppl_stderr", "nll_mean", "n_scored", "n_ctx", "n_chunks", "tokens_per_second",
                          "steady_tokens_per_second"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_EQ(s["n_scored"], 3 * 63);

  // Against the saved logits, with and without the text.
  for (const std::string& text : {std::string(""), " --text " + Q(val.path())}) {
    auto k =
        testing::RunMixq("eval --json " + Q(testing::RefDevModel()) + " --base-logits " + Q(dir.File("b.mqbl")) + text);
    ASSERT_EQ(k.exit_code, 0) << k.err;
    auto k_lines = JsonLines(k.out);
    ASSERT_FALSE(k_lines.empty());
    const auto& d = k_lines.back()["data"];
    for (const char* key : {"kld_mean", "kld_stderr", "kld_median", "kld_p90", "kld_p99", "kld_max", "same_top_p",
                            "ln_ppl_ratio", "ln_ppl_ratio_stderr", "base_ppl"}) {
      EXPECT_TRUE(d.contains(key)) << key;
    }
    EXPECT_LT(d["kld_mean"].get<double>(), 1e-6);
    EXPECT_EQ(d["same_top_p"].get<double>(), 1.0);
  }
  // The human-readable form prints the llama-perplexity style line.
  auto h = testing::RunMixq("eval " + Q(testing::RefDevModel()) + common);
  ASSERT_EQ(h.exit_code, 0) << h.err;
  EXPECT_NE(h.out.find("PPL = "), std::string::npos) << h.out;
}

TEST(EvalCli, FlagsAndExitCodes) {
  testing::TempDir dir;
  ValSlice val;
  const std::string model = Q(testing::RefDevModel());
  EXPECT_EQ(testing::RunMixq("eval " + model).exit_code, 2);  // neither --text nor --base-logits
  EXPECT_EQ(testing::RunMixq("eval " + model + " --text x --ctx 4").exit_code, 2);
  EXPECT_EQ(testing::RunMixq("eval " + model + " --text x --base a --base-logits b").exit_code, 2);
  EXPECT_EQ(testing::RunMixq("eval " + model + " --text /nonexistent.txt").exit_code, 4);
  EXPECT_EQ(testing::RunMixq("eval " + model + " --text x --activations f16").exit_code, 2);
  auto exact =
      testing::RunMixq("eval --json " + model + " --text " + Q(val.path()) + " --ctx 64 --chunks 2 --activations f32");
  EXPECT_EQ(exact.exit_code, 0) << exact.err;
  auto r = testing::RunMixq("eval " + model + " --text " + Q(val.path()) + " --ctx 100000");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("fewer than one chunk"), std::string::npos) << r.err;
  testing::WriteFileBytes(dir.File("junk.mqbl"), std::vector<uint8_t>(100, 7));
  EXPECT_EQ(testing::RunMixq("eval " + model + " --base-logits " + Q(dir.File("junk.mqbl"))).exit_code, 3);
  EXPECT_EQ(testing::RunMixq("eval " + model + " --text " + Q(val.path()) + " --chunks 1 --ctx 64 --base " +
                             Q(dir.File("junk.mqbl")))
                .exit_code,
            3);
}

TEST(ImatrixCli, WritesALoadableImatrix) {
  testing::TempDir dir;
  ValSlice val;
  auto r = testing::RunMixq("imatrix --json " + Q(testing::RefDevModel()) + " --text " + Q(val.path()) +
                            " --ctx 128 --chunks 2 -o " + Q(dir.File("im.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_FALSE(lines.empty());
  const auto& s = lines.back()["data"];
  EXPECT_EQ(s["n_entries"], 43);
  EXPECT_EQ(s["n_chunks"], 2);
  auto im = quantize::LoadImatrix(dir.File("im.gguf"));
  ASSERT_TRUE(im.has_value()) << im.error().message();
  EXPECT_EQ(im->entries.size(), 43u);
  EXPECT_EQ(im->chunk_count, 2u);
  EXPECT_EQ(im->chunk_size, 128u);
  ASSERT_EQ(im->datasets.size(), 1u);

  auto skip = testing::RunMixq("imatrix -q " + Q(testing::RefDevModel()) + " --text " + Q(val.path()) +
                               " --ctx 128 --chunks 1 --no-output -o " + Q(dir.File("im2.gguf")));
  ASSERT_EQ(skip.exit_code, 0) << skip.err;
  EXPECT_TRUE(skip.err.empty()) << skip.err;
  auto im2 = quantize::LoadImatrix(dir.File("im2.gguf"));
  ASSERT_TRUE(im2.has_value());
  EXPECT_EQ(im2->entries.size(), 42u);

  EXPECT_EQ(testing::RunMixq("imatrix " + Q(testing::RefDevModel()) + " --text x").exit_code, 2);  // no -o
}

// llama.cpp reads our imatrix and quantizes with it.
TEST(ImatrixCli, LlamaCppQuantizesWithOurImatrix) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "gguf-oracle not configured";
  testing::TempDir dir;
  ValSlice val;
  auto r = testing::RunMixq("imatrix -q " + Q(testing::RefDevModel()) + " --text " + Q(val.path()) +
                            " --ctx 256 --chunks 2 -o " + Q(dir.File("im.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = test::RunOracle("quantize " + testing::RefDevModel() + " " + dir.File("iq2.gguf") +
                                     " Q4_K_M --imatrix " + dir.File("im.gguf"));
  EXPECT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["imatrix_entries"], 43);
  EXPECT_EQ(j["imatrix_chunks"], 2);
}

// With every ffn_norm zero, the router sees zeros, all experts tie and the
// first two win every token: the other two are reported and saved with zero
// counts, as llama-imatrix saves them.
TEST(ImatrixCli, ReportsExpertsThatNoTokenReached) {
  testing::TempDir dir;
  ValSlice val;
  test::WriteRandomModel(dir.File("moe.gguf"), SmallMoe());
  auto bytes = testing::ReadFileBytes(dir.File("moe.gguf"));
  {
    auto parsed = gguf::GgufFile::Parse(bytes);
    ASSERT_TRUE(parsed.has_value());
    for (const auto& t : parsed->tensors()) {
      if (t.name.ends_with("ffn_norm.weight")) {
        std::fill_n(bytes.begin() + static_cast<long>(parsed->data_offset() + t.offset), t.n_bytes, uint8_t{0});
      }
    }
  }
  testing::WriteFileBytes(dir.File("tied.gguf"), bytes);
  auto r = testing::RunMixq("imatrix " + Q(dir.File("tied.gguf")) + " --text " + Q(val.path()) +
                            " --ctx 64 --chunks 2 -o " + Q(dir.File("im.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: 6 expert tensors have experts that no token reached (blk.0.ffn_down_exps.weight: 2 "
                       "of 4)"),
            std::string::npos)
      << r.err;
  auto im = quantize::LoadImatrix(dir.File("im.gguf"));
  ASSERT_TRUE(im.has_value()) << im.error().message();
  EXPECT_EQ(im->entries.at("blk.1.ffn_up_exps.weight").counts, (std::vector<float>{128, 128, 0, 0}));
  auto imp = im->Importance("blk.1.ffn_up_exps.weight", 64, 4);
  ASSERT_TRUE(imp.has_value() && imp->has_value());
  EXPECT_EQ((**imp)[3 * 64 + 7], 1.0f);

  auto json = testing::RunMixq("imatrix --json " + Q(dir.File("tied.gguf")) + " --text " + Q(val.path()) +
                               " --ctx 64 --chunks 2 -o " + Q(dir.File("im2.gguf")));
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(JsonLines(json.out).back()["data"]["n_entries_with_unreached_experts"], 6);
}

// llama.cpp reads our per-expert imatrix: its quantization with it equals ours.
TEST(ImatrixCli, LlamaCppQuantizesExpertsWithOurImatrixAsWeDo) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "gguf-oracle not configured";
  testing::TempDir dir;
  ValSlice val;
  const std::string model = dir.File("moe.gguf");
  test::WriteRandomModel(model, SmallMoe());
  auto r = testing::RunMixq("imatrix -q " + Q(model) + " --text " + Q(val.path()) + " --ctx 64 --chunks 4 -o " +
                            Q(dir.File("im.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ours = testing::RunMixq("quantize -q --method ggml " + Q(model) + " " + Q(dir.File("ours.gguf")) +
                               " --type IQ4_NL --output-tensor-type IQ4_NL --token-embedding-type IQ4_NL --imatrix " +
                               Q(dir.File("im.gguf")));
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  nlohmann::json j = test::RunOracle("quantize " + model + " " + dir.File("theirs.gguf") +
                                     " IQ4_NL --pure --output-tensor-type iq4_nl --token-embedding-type iq4_nl "
                                     "--imatrix " +
                                     dir.File("im.gguf"));
  ASSERT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["imatrix_entries"], 2 * 8 + 1);
  nlohmann::json cmp = test::RunOracle("tensors " + dir.File("ours.gguf") + " --ref " + dir.File("theirs.gguf"));
  for (const auto& t : cmp["tensors"]) EXPECT_EQ(t["bytes_equal"], true) << t["name"];
  EXPECT_EQ(cmp["tensors"].size(), 27u);
}

}  // namespace
}  // namespace mixq::engine
