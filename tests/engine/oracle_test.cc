// The forward pass and evaluation judged by llama.cpp (gguf-oracle) on the
// ref-dev model and on random models of each supported architecture.
#include <gtest/gtest.h>

#include <filesystem>

#include "agreement.h"
#include "base/text_file.h"
#include "engine/engine.h"
#include "engine_test_util.h"
#include "test_support.h"

namespace mixq::engine {
namespace {

constexpr int kChunks = 2;
constexpr int kCtx = 512;

// One slice of the held-out text, the oracle's F16 logits on it and a Q4_K_M
// quantization of ref-dev, shared by the tests of this file.
class OracleFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::OraclePath().empty()) return;
    dir_ = new testing::TempDir();
    const std::string slice = testing::RefDevTextStart(40000);
    testing::WriteFileBytes(Path("val.txt"), std::vector<uint8_t>(slice.begin(), slice.end()));
    const std::string common = " --text-file " + Path("val.txt") + " --ctx " + std::to_string(kCtx) + " --chunks " +
                               std::to_string(kChunks) + " --threads 2";
    *f16_json_ = test::RunOracle("eval " + testing::RefDevModel() + common + " --out " + Path("f16.lgt"));
    test::RunOracle("quantize " + testing::RefDevModel() + " " + Path("q4km.gguf") + " Q4_K_M");
    *q4_json_ = test::RunOracle("eval " + Path("q4km.gguf") + " --ref " + Path("f16.lgt") + " --out " +
                                Path("q4km.lgt") + " --threads 2");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (testing::OraclePath().empty()) GTEST_SKIP() << "gguf-oracle not configured";
  }
  static std::string Path(const std::string& name) { return dir_->File(name); }

  static testing::TempDir* dir_;
  static nlohmann::json* f16_json_;
  static nlohmann::json* q4_json_;
};

testing::TempDir* OracleFixture::dir_ = nullptr;
nlohmann::json* OracleFixture::f16_json_ = new nlohmann::json;
nlohmann::json* OracleFixture::q4_json_ = new nlohmann::json;

TEST_F(OracleFixture, RefDevF16LogitsMatchLlamaCpp) {
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  auto model = Model::Load(*file);
  ASSERT_TRUE(model.has_value()) << model.error().message();
  test::Lgt2 ref = test::ReadLgt2(Path("f16.lgt"));
  ASSERT_EQ(ref.n_chunks, uint32_t{kChunks});
  RunOptions options;
  test::LogitDiff d = test::CompareWithLgt2(*model, ref, 1, options);
  std::printf("ref-dev F16 vs llama.cpp: relative RMS %.3g, max abs %.4f, top-1 %.4f, unexplained flips %lld\n",
              d.rel_rms, d.max_abs, d.top1_agreement, static_cast<long long>(d.unexplained_flips));
  EXPECT_LT(d.rel_rms, 1e-3);
  EXPECT_EQ(d.unexplained_flips, 0);
}

TEST_F(OracleFixture, RefDevPerplexityMatchesLlamaCpp) {
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  auto model = Model::Load(*file);
  ASSERT_TRUE(model.has_value());
  auto tok = tokenizer::Tokenizer::FromGguf(*file);
  ASSERT_TRUE(tok.has_value());
  auto text = ReadTextFile(Path("val.txt"));
  ASSERT_TRUE(text.has_value());
  EvalOptions o;
  o.n_ctx = kCtx;
  o.n_chunks = kChunks;
  o.bos_id = tok->bos_id();
  auto r = Evaluate(*model, TokenizeForEval(*tok, *text), o);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const double oracle_ppl = (*f16_json_)["ppl"].get<double>();
  EXPECT_EQ(r->n_scored, (*f16_json_)["n_scored"].get<int64_t>());
  // F16 logits differ from llama.cpp's only at the 1e-4 level (no flipped
  // quantized roundings), so 0.1% holds with a wide margin on every variant.
  EXPECT_NEAR(r->ppl / oracle_ppl, 1.0, 1e-3) << r->ppl << " vs " << oracle_ppl;
  EXPECT_NEAR(r->ppl_stderr / (*f16_json_)["ppl_stderr"].get<double>(), 1.0, 1e-2);
}

// Our logits for every chunk of the reference's text, as Evaluate batches
// them (all chunks in one pass, BOS first).
std::vector<float> OurLogits(Model& model, const test::Lgt2& ref) {
  std::vector<int32_t> input = ref.tokens;
  for (uint32_t c = 0; c < ref.n_chunks; ++c) input[size_t{c} * ref.n_ctx] = 1;
  RunOptions run;
  run.seq_len = ref.n_ctx;
  std::vector<float> logits;
  Status s = model.Forward(input, ref.first, &logits, run);
  EXPECT_TRUE(s.ok()) << s.message();
  return logits;
}

struct Agreement {
  test::PositionScores ours, llama;
  std::string failures;  // empty when mixq's eval agrees with llama.cpp's
};

// Scores our evaluation of a quantized model and llama.cpp's (its logits in
// `llama`) against the F16 reference, position by position, and judges the
// paired differences. The margins are differences too small to matter: 0.1%
// in PPL (what users compare), 1% of the KLD, nothing for the top token.
Agreement JudgeAgainstLlamaCpp(Model& model, const test::Lgt2& f16, const test::Lgt2& llama) {
  Agreement a;
  const std::vector<float> ours = OurLogits(model, f16);
  const int64_t n_vocab = f16.n_vocab;
  for (uint32_t c = 0; c < f16.n_chunks; ++c) {
    for (uint32_t k = 0; k < f16.n_scored; ++k) {
      const size_t row = size_t{c} * f16.n_scored + k;
      const float* reference = f16.logits.data() + row * n_vocab;
      const int32_t next = f16.tokens[size_t{c} * f16.n_ctx + f16.first + k + 1];
      test::AddPosition(reference, ours.data() + (size_t{c} * (f16.n_scored + 1) + k) * n_vocab, n_vocab, next,
                        &a.ours);
      test::AddPosition(reference, llama.logits.data() + row * n_vocab, n_vocab, next, &a.llama);
    }
  }
  constexpr int64_t kBatch = 16;
  constexpr double kSigmas = 4.0;
  const int64_t per_chunk = f16.n_scored;
  double llama_kld = 0;
  for (double v : a.llama.kld) llama_kld += v;
  llama_kld /= double(a.llama.kld.size());
  const auto nll = test::PairedDifference(a.ours.nll, a.llama.nll, per_chunk, kBatch);
  const auto kld = test::PairedDifference(a.ours.kld, a.llama.kld, per_chunk, kBatch);
  const auto top = test::PairedDifference(a.ours.same_top, a.llama.same_top, per_chunk, kBatch);
  std::printf(
      "ours - llama.cpp, paired over %zu positions: NLL %+.5f ± %.5f, KLD %+.6f ± %.6f (llama.cpp %.6f), "
      "same top %+.4f ± %.4f\n",
      a.ours.nll.size(), nll.mean, nll.std_error, kld.mean, kld.std_error, llama_kld, top.mean, top.std_error);
  a.failures = test::JudgeAgreement("NLL", nll, kSigmas, 1e-3) +
               test::JudgeAgreement("KLD", kld, kSigmas, 0.01 * llama_kld) +
               test::JudgeAgreement("same top", top, kSigmas, 0.0);
  return a;
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / double(v.size());
}

TEST_F(OracleFixture, Q4KEvalAgreesWithLlamaCpp) {
  auto file = gguf::GgufFile::Open(Path("q4km.gguf"));
  ASSERT_TRUE(file.has_value());
  auto model = Model::Load(*file);
  ASSERT_TRUE(model.has_value()) << model.error().message();
  const test::Lgt2 f16 = test::ReadLgt2(Path("f16.lgt"));
  const Agreement a = JudgeAgainstLlamaCpp(*model, f16, test::ReadLgt2(Path("q4km.lgt")));
  EXPECT_EQ(a.failures, "");

  // The product's evaluation reports the same positions' statistics.
  auto base = BaseLogits::Open(Path("f16.lgt"));
  ASSERT_TRUE(base.has_value()) << base.error().message();
  EvalOptions o;
  o.bos_id = 1;
  auto r = EvaluateVsLogits(*model, *base, o);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_TRUE(r->kld.has_value());
  EXPECT_NEAR(r->nll_mean, Mean(a.ours.nll), 1e-5 * r->nll_mean);
  EXPECT_NEAR(r->kld->kld_mean, Mean(a.ours.kld), 1e-4 * r->kld->kld_mean);
  EXPECT_NEAR(r->kld->same_top, Mean(a.ours.same_top), 1e-9);
  // And llama.cpp's own statistics are the ones the test recomputes from its logits.
  const nlohmann::json& j = *q4_json_;
  EXPECT_NEAR(j["kld_mean"].get<double>(), Mean(a.llama.kld), 1e-4 * j["kld_mean"].get<double>());
  EXPECT_NEAR(j["same_top_p"].get<double>(), Mean(a.llama.same_top), 1e-9);
}

// The judgement has teeth: the same weights evaluated with a wrong RoPE base
// (the kind of slip a new architecture brings) must fail it.
TEST_F(OracleFixture, AgreementRejectsAWrongRopeBase) {
  auto file = gguf::GgufFile::Open(Path("q4km.gguf"));
  ASSERT_TRUE(file.has_value());
  std::vector<gguf::KeyValue> kv = file->metadata();
  const std::string key = *file->GetString("general.architecture") + ".rope.freq_base";
  gguf::SetValue(kv, key, gguf::Value::Float32(float(file->GetFloat(key).value_or(10000.0) * 100)));
  std::vector<gguf::TensorSpec> specs;
  for (const auto& t : file->tensors()) specs.push_back({t.name, t.ne, t.n_dims, t.format});
  auto writer = gguf::GgufWriter::Begin(Path("wrong-rope.gguf"), kv, specs);
  ASSERT_TRUE(writer.has_value()) << writer.error().message();
  for (const auto& t : file->tensors()) ASSERT_TRUE(writer->WriteTensor(file->TensorData(t)).ok());
  ASSERT_TRUE(writer->Finish().ok());

  auto wrong = gguf::GgufFile::Open(Path("wrong-rope.gguf"));
  ASSERT_TRUE(wrong.has_value());
  auto model = Model::Load(*wrong);
  ASSERT_TRUE(model.has_value()) << model.error().message();
  const Agreement a = JudgeAgainstLlamaCpp(*model, test::ReadLgt2(Path("f16.lgt")), test::ReadLgt2(Path("q4km.lgt")));
  std::printf("%s", a.failures.c_str());
  EXPECT_NE(a.failures.find("NLL"), std::string::npos);
  EXPECT_NE(a.failures.find("KLD"), std::string::npos);
}

// Judged against ggml's generic CPU backend (the oracle's `x64` variant,
// GGUF_ORACLE_BACKEND_DIR), not the variant this CPU would load: the SIMD
// variants sum and round differently from each other and from the generic
// one, and on Mixtral-shaped Q8_0 experts all the SIMD variants loadable on an
// AVX-512 EPYC (zen4, icelake, skylakex, haswell) differ from the generic
// backend by a relative RMS of 6.6e-3 (mixq agrees with the generic one to
// 5e-8), so a bound that holds on one machine failed on another. The generic
// backend runs the same everywhere.
//
// F32 weights leave only float summation order between us and ggml; F16 and
// Q8_0 weights add activation rounding, where those tiny differences flip
// single roundings, so their bound is looser. Routed experts are tested with
// F32 and Q8_0 weights: F16 leaves differences near 1e-3, enough to flip a
// near-tie between two experts now and then, which changes that token's
// output by far more than any bound on rounding (one such flip on mixtral
// with F16 weights gave a relative RMS of 0.03 from a single position). The
// Q8_0 models route every token to all their experts, so that no near-tie
// can flip (the F32 ones test the choice of experts). The top token may differ
// only at near-ties (LogitDiff::unexplained_flips), however many positions
// differ.
struct ArchCase {
  const char* name;
  test::RandomModelSpec spec;
  double max_rel_rms;
};

class ArchTest : public OracleFixture, public ::testing::WithParamInterface<ArchCase> {};

TEST_P(ArchTest, RandomModelLogitsMatchLlamaCpp) {
  const ArchCase& c = GetParam();
  const std::string model_path = Path(std::string(c.name) + ".gguf");
  test::WriteRandomModel(model_path, c.spec);
  const std::string lgt = Path(std::string(c.name) + ".lgt");
  const std::string generic_backend = Path("generic-cpu-backend");
  std::filesystem::create_directories(generic_backend);
  std::filesystem::copy_file(std::filesystem::path(testing::OraclePath()).parent_path() / "bins" / "libggml-cpu-x64.so",
                             generic_backend + "/libggml-cpu-x64.so",
                             std::filesystem::copy_options::overwrite_existing);
  test::RunOracle("eval " + model_path + " --text-file " + Path("val.txt") + " --ctx 128 --chunks 2 --out " + lgt,
                  "GGUF_ORACLE_BACKEND_DIR=" + generic_backend);
  auto file = gguf::GgufFile::Open(model_path);
  ASSERT_TRUE(file.has_value());
  auto model = Model::Load(*file);
  ASSERT_TRUE(model.has_value()) << model.error().message();
  test::LogitDiff d = test::CompareWithLgt2(*model, test::ReadLgt2(lgt), 1, RunOptions{});
  std::printf("%s vs llama.cpp: relative RMS %.3g, max abs %.5f, top-1 %.4f, unexplained flips %lld\n", c.name,
              d.rel_rms, d.max_abs, d.top1_agreement, static_cast<long long>(d.unexplained_flips));
  EXPECT_LT(d.rel_rms, c.max_rel_rms);
  EXPECT_EQ(d.unexplained_flips, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Archs, ArchTest,
    ::testing::Values(
        ArchCase{"llama_gqa", {.seed = 1}, 1e-4},
        ArchCase{"llama_tied_f16", {.n_ff = 160, .n_head_kv = 4, .tied = true, .type = "F16", .seed = 2}, 2e-3},
        ArchCase{"qwen2", {.arch = "qwen2", .seed = 3}, 1e-4},
        ArchCase{"qwen3", {.arch = "qwen3", .head_dim = 32, .seed = 4}, 1e-4},
        ArchCase{"llama_q8_0", {.type = "Q8_0", .seed = 5}, 2e-3},
        ArchCase{"qwen3moe", {.arch = "qwen3moe", .seed = 6, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32}, 1e-4},
        ArchCase{"qwen3moe_q8_0",
                 {.arch = "qwen3moe",
                  .tied = true,
                  .type = "Q8_0",
                  .seed = 7,
                  .n_expert = 4,
                  .n_expert_used = 4,
                  .n_ff_exp = 64},
                 2e-3},
        ArchCase{"mixtral", {.n_ff = 96, .seed = 8, .n_expert = 4, .n_expert_used = 2}, 1e-4},
        ArchCase{"qwen2moe",
                 {.arch = "qwen2moe", .seed = 10, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32, .n_ff_shexp = 96},
                 1e-4},
        ArchCase{"qwen2moe_q8_0",
                 {.arch = "qwen2moe",
                  .type = "Q8_0",
                  .seed = 13,
                  .n_expert = 4,
                  .n_expert_used = 4,
                  .n_ff_exp = 64,
                  .n_ff_shexp = 128},
                 2e-3},
        ArchCase{"mixtral_q8_0", {.n_ff = 96, .type = "Q8_0", .seed = 9, .n_expert = 4, .n_expert_used = 4}, 2e-3}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace mixq::engine
