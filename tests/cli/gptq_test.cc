// `mixq quantize --method gptq` as users meet it: it needs calibration text,
// it lowers each tensor's output error tr(ΔW H ΔWᵀ) on that text below
// best's (H measured independently here), and llama.cpp loads its files and
// decodes every tensor exactly as mixq does, for every type that has it.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/workflow.h"
#include "engine/engine.h"
#include "engine/engine_test_util.h"
#include "gguf/gguf.h"
#include "pipeline/pipeline.h"
#include "quantize/quantize.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace mixq::cli {
namespace {

using testing::Oracle;
using testing::Q;
using testing::RunMixq;
using testing::TempDir;

constexpr int64_t kCtx = 128;
constexpr int64_t kChunks = 4;
const std::string kCalibration = " --ctx " + std::to_string(kCtx) + " --chunks " + std::to_string(kChunks);

// The first 12 kB of ref-dev's text: enough for kChunks chunks of kCtx tokens.
std::string WriteCalibration(const TempDir& dir) {
  const std::string slice = testing::RefDevTextStart(12000);
  const std::string path = dir.File("calib.txt");
  testing::WriteFileBytes(path, std::vector<uint8_t>(slice.begin(), slice.end()));
  return path;
}

TEST(Gptq, NeedsCalibrationTextAndOnlyUsesItWithGptq) {
  TempDir dir;
  const std::string out = dir.File("o.gguf");
  auto r = RunMixq("quantize " + Q(testing::RefDevModel()) + " " + Q(out) + " --type Q4_K --method gptq");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--method gptq needs calibration text (--text FILE)"), std::string::npos) << r.err;
  const std::string text = WriteCalibration(dir);
  r = RunMixq("quantize " + Q(testing::RefDevModel()) + " " + Q(out) + " --type Q4_K --text " + Q(text));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--text is the calibration text of --method gptq only"), std::string::npos) << r.err;
  r = RunMixq("quantize " + Q(testing::RefDevModel()) + " " + Q(out) +
              " --type Q4_K --method gptq --ctx 100000 --text " + Q(text));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("fewer than one chunk of 100000"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  // The calibration text is an input: the output may not replace it.
  const auto size = std::filesystem::file_size(text);
  r = RunMixq("quantize " + Q(testing::RefDevModel()) + " " + Q(text) + " --type Q4_K --method gptq --text " + Q(text));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is the same file as the input"), std::string::npos) << r.err;
  EXPECT_EQ(std::filesystem::file_size(text), size);
}

// Σ over rows of Δwᵀ H Δw for one tensor of `quantized` against the F16
// original; of one expert's rows only when `expert` >= 0.
double OutputError(const gguf::GgufFile& original, const gguf::GgufFile& quantized, const std::string& name,
                   const quantize::InputCovariance& h, int64_t expert = -1) {
  std::vector<float> w, y;
  const gguf::TensorInfo& t = *original.FindTensor(name);
  EXPECT_TRUE(quantize::TensorToF32(original, t, &w, 2).ok());
  EXPECT_TRUE(quantize::TensorToF32(quantized, *quantized.FindTensor(name), &y, 2).ok());
  const int64_t n = h.n_in;
  const size_t first = expert >= 0 ? static_cast<size_t>(expert * t.ne[1]) : 0;
  const size_t last = expert >= 0 ? first + static_cast<size_t>(t.ne[1]) : w.size() / n;
  std::vector<double> d(n);
  double total = 0;
  for (size_t r = first; r < last; ++r) {
    for (int64_t j = 0; j < n; ++j) d[j] = static_cast<double>(y[r * n + j]) - w[r * n + j];
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += h.sums[i * n + j] * d[j];
      total += d[i] * s;
    }
  }
  return total;
}

TEST(Gptq, LowerOutputErrorThanBestOnTheCalibrationText) {
  TempDir dir;
  const std::string text = WriteCalibration(dir);
  const std::string model = testing::RefDevModel();
  auto r = RunMixq("imatrix -q " + Q(model) + " --text " + Q(text) + " -o " + Q(dir.File("im.gguf")) + kCalibration);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunMixq("quantize -q " + Q(model) + " " + Q(dir.File("best.gguf")) + " --type Q3_K --imatrix " +
              Q(dir.File("im.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunMixq("quantize --json " + Q(model) + " " + Q(dir.File("gptq.gguf")) + " --type Q3_K --method gptq --text " +
              Q(text) + kCalibration);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto summary = nlohmann::json::parse(r.out.substr(r.out.rfind("{\"data\"")))["data"];
  EXPECT_EQ(summary["method"], "gptq");
  EXPECT_GT(summary["covariance_seconds"].get<double>(), 0.0);

  auto f16 = gguf::GgufFile::Open(model);
  auto best = gguf::GgufFile::Open(dir.File("best.gguf"));
  auto gptq = gguf::GgufFile::Open(dir.File("gptq.gguf"));
  ASSERT_TRUE(f16.has_value() && best.has_value() && gptq.has_value());
  const gguf::Value* method = gptq->Find("mixq.method");
  ASSERT_NE(method, nullptr);
  EXPECT_EQ(*method, gguf::Value::String("gptq"));
  // The tensors are written pass by pass, but all of them are there.
  EXPECT_EQ(gptq->tensors().size(), f16->tensors().size());

  auto engine_model = engine::Model::Load(*f16);
  ASSERT_TRUE(engine_model.has_value());
  auto tokens = pipeline::TokenizeTextFile(*f16, text);
  ASSERT_TRUE(tokens.has_value());
  engine::CovarianceOptions co;
  co.n_ctx = kCtx;
  co.n_chunks = kChunks;
  co.bos_id = tokens->bos_id;
  auto source = engine::LayerCovariances(*engine_model, tokens->tokens, co);
  ASSERT_TRUE(source.has_value());
  int compared = 0;
  for (int64_t pass = 0; pass < (*source)->n_passes(); ++pass) {
    ASSERT_TRUE((*source)->Run(pass).ok());
    if (pass != 1 && pass != 5 && pass != 6) continue;  // enough to judge, quick to compute
    for (const std::string& name : engine_model->LinearWeights()) {
      if ((*source)->PassOf(name) != pass) continue;
      const quantize::InputCovariance* h = (*source)->Find(name);
      ASSERT_NE(h, nullptr);
      const double e_best = OutputError(*f16, *best, name, *h);
      const double e_gptq = OutputError(*f16, *gptq, name, *h);
      EXPECT_LT(e_gptq, 0.95 * e_best) << name;
      std::printf("%-26s tr(dW H dW^T) gptq / best = %.3f\n", name.c_str(), e_gptq / e_best);
      ++compared;
    }
  }
  EXPECT_EQ(compared, 15);
}

// Routed experts get one H each, from the tokens routed to them: every
// expert's slice that tokens reached ends with a lower tr(ΔW H_e ΔWᵀ) than
// best's, H_e collected independently here, as the attention's does.
TEST(Gptq, MoeExpertsGetTheirOwnCovariance) {
  TempDir dir;
  const std::string model = dir.File("moe.gguf");
  engine::test::WriteRandomModel(model,
                                 {.arch = "qwen3moe", .seed = 5, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32});
  const std::string text = WriteCalibration(dir);
  const std::string same = " --type Q4_0 --output-tensor-type Q4_0 --token-embedding-type Q4_0";
  auto r = RunMixq("imatrix -q " + Q(model) + " --text " + Q(text) + " -o " + Q(dir.File("im.gguf")) + kCalibration);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunMixq("quantize -q " + Q(model) + " " + Q(dir.File("best.gguf")) + same + " --imatrix " +
              Q(dir.File("im.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunMixq("quantize -q " + Q(model) + " " + Q(dir.File("gptq.gguf")) + same + " --method gptq --text " + Q(text) +
              kCalibration);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f16 = gguf::GgufFile::Open(model);
  auto best = gguf::GgufFile::Open(dir.File("best.gguf"));
  auto gptq = gguf::GgufFile::Open(dir.File("gptq.gguf"));
  ASSERT_TRUE(f16.has_value() && best.has_value() && gptq.has_value());

  auto engine_model = engine::Model::Load(*f16);
  ASSERT_TRUE(engine_model.has_value());
  auto tokens = pipeline::TokenizeTextFile(*f16, text);
  ASSERT_TRUE(tokens.has_value());
  engine::CovarianceOptions co;
  co.n_ctx = kCtx;
  co.n_chunks = kChunks;
  co.bos_id = tokens->bos_id;
  auto source = engine::LayerCovariances(*engine_model, tokens->tokens, co);
  ASSERT_TRUE(source.has_value());
  int slices = 0, dense = 0;
  for (int64_t pass = 0; pass < (*source)->n_passes(); ++pass) {
    ASSERT_TRUE((*source)->Run(pass).ok());
    for (const std::string& name : engine_model->LinearWeights()) {
      if ((*source)->PassOf(name) != pass) continue;
      const gguf::TensorInfo& t = *f16->FindTensor(name);
      if (gptq->FindTensor(name)->format == t.format) continue;  // kept as it is (the router)
      const bool experts = t.ne[2] > 1;
      EXPECT_EQ((*source)->Find(name) == nullptr, experts) << name;
      for (int64_t e = experts ? 0 : -1; e < (experts ? t.ne[2] : 0); ++e) {
        const quantize::InputCovariance* h = (*source)->Find(name, e);
        if (h == nullptr) continue;  // no token was routed to this expert
        const double e_best = OutputError(*f16, *best, name, *h, e);
        const double e_gptq = OutputError(*f16, *gptq, name, *h, e);
        EXPECT_LT(e_gptq, 0.95 * e_best) << name << " expert " << e;
        ++(experts ? slices : dense);
      }
    }
  }
  EXPECT_GE(slices, 3 * 2 * 4 * 3 / 4);  // most of 4 experts x 3 tensors x 2 layers had tokens
  EXPECT_GT(dense, 0);
}

// auto has calibration text, so its final quantization is gptq unless
// --method best asks for the plain search; the file says which it got.
TEST(Gptq, AutoQuantizesWithGptqByDefault) {
  TempDir dir;
  const std::string text = WriteCalibration(dir);
  auto method_of = [&](const std::string& extra) {
    auto r = RunMixq("auto -q " + Q(testing::RefDevModel()) + " --text " + Q(text) + " --target 5.0bpw -o " +
                     Q(dir.File("a.gguf")) + " --cache-dir " + Q(dir.File("cache")) +
                     " --types Q4_K,Q8_0 --measure-chunks 1 --imatrix-chunks 2 --no-eval --ctx 128" + extra);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto f = gguf::GgufFile::Open(dir.File("a.gguf"));
    EXPECT_TRUE(f.has_value());
    const gguf::Value* method = f.has_value() ? f->Find("mixq.method") : nullptr;
    return method != nullptr ? *method : gguf::Value::String("(none)");
  };
  EXPECT_EQ(method_of(""), gguf::Value::String("gptq"));
  EXPECT_EQ(method_of(" --method best"), gguf::Value::String("best"));
  auto r = RunMixq("auto " + Q(testing::RefDevModel()) + " --text " + Q(text) + " --target 5.0bpw -o " +
                   Q(dir.File("b.gguf")) + " --method gptx");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("b.gguf")));
}

// One file holding every type that has a feedback encoder, each on tensors
// the covariance passes see; llama.cpp's decoding of it must equal mixq's
// (the F32 file mixq decodes it to), value for value.
TEST(Gptq, LlamaCppDecodesEveryTypeAsMixqDoes) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "no gguf-oracle configured (MIXQ_ORACLE)";
  TempDir dir;
  const std::string text = WriteCalibration(dir);
  const std::string types =
      " --tensor-type attn_v=Q8_0 --tensor-type 'blk\\.0\\.=Q2_K' --tensor-type 'blk\\.1\\.=Q3_K'"
      " --tensor-type 'blk\\.2\\.=Q4_K' --tensor-type 'blk\\.3\\.=Q5_K'"
      " --tensor-type 'blk\\.4\\.=Q6_K' --tensor-type 'blk\\.5\\.=IQ4_XS'"
      " --output-tensor-type Q4_0 --token-embedding-type Q4_K";
  const std::string gptq = dir.File("gptq.gguf"), decoded = dir.File("f32.gguf");
  auto r = RunMixq("quantize -q " + Q(testing::RefDevModel()) + " " + Q(gptq) + types + " --method gptq --text " +
                   Q(text) + kCalibration);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunMixq("quantize -q " + Q(gptq) + " " + Q(decoded) +
              " --type F32 --output-tensor-type F32 --token-embedding-type F32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = Oracle("info " + Q(gptq));
  EXPECT_EQ(info["load_ok"], true) << info.dump();
  std::set<std::string> seen;
  for (const auto& [type, n] : info["type_counts"].items()) seen.insert(type);
  for (const char* t : {"q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_xs", "q4_0"}) {
    EXPECT_TRUE(seen.count(t)) << t << " missing from " << info["type_counts"].dump();
  }
  auto cmp = Oracle("tensors " + Q(gptq) + " --ref " + Q(decoded));
  EXPECT_EQ(cmp["all_valid"], true);
  ASSERT_EQ(cmp["tensors"].size(), 57u);
  for (const auto& t : cmp["tensors"]) {
    EXPECT_EQ(t["max_abs_err"].get<double>(), 0.0) << t["name"] << " " << t["type"];
  }
}

}  // namespace
}  // namespace mixq::cli
