// The CUDA backend against the CPU reference (skipped where no GPU is usable,
// as in CI), and the choice of device, which runs everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "base/text_file.h"
#include "engine/engine.h"
#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::engine {
namespace {

TEST(Device, NamesAreCheckedAndAutoFallsBackToCpu) {
  EXPECT_EQ(ResolveDevice("bogus").status().kind(), StatusKind::kInvalidArgument);
  auto cpu = ResolveDevice("cpu");
  ASSERT_TRUE(cpu.has_value());
  EXPECT_EQ(*cpu, Device::kCpu);
  auto automatic = ResolveDevice("auto");
  ASSERT_TRUE(automatic.has_value());
  EXPECT_EQ(*automatic, CudaUsable() ? Device::kCuda : Device::kCpu);
  auto cuda = ResolveDevice("cuda");
  if (CudaUsable()) {
    ASSERT_TRUE(cuda.has_value());
    EXPECT_EQ(*cuda, Device::kCuda);
  } else {
    EXPECT_EQ(cuda.status().kind(), StatusKind::kNotSupported);
    EXPECT_NE(cuda.status().message().find("--device cuda"), std::string::npos);
  }
}

// The model folders to compare on: ref-dev, plus those in MIXQ_GPU_TEST_MODELS
// (colon-separated folders holding one *-f16.gguf and val.txt.gz, e.g. dev-deep).
std::vector<std::string> ModelDirs() {
  std::vector<std::string> dirs = {std::filesystem::path(testing::RefDevModel()).parent_path().string()};
  if (const char* extra = std::getenv("MIXQ_GPU_TEST_MODELS")) {
    std::stringstream in(extra);
    for (std::string d; std::getline(in, d, ':');) {
      if (!d.empty()) dirs.push_back(d);
    }
  }
  return dirs;
}

std::string F16Model(const std::string& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().string().ends_with("-f16.gguf")) return e.path().string();
  }
  return "";
}

struct Scores {
  double ppl = 0, base_ppl = 0, kld = 0;
};

Scores Evaluate(const gguf::GgufFile& quant, const gguf::GgufFile& base, std::span<const int32_t> tokens, Device device,
                Activations activations) {
  auto model = Model::Load(quant, {device});
  auto base_model = Model::Load(base, {device});
  EXPECT_TRUE(model.has_value() && base_model.has_value());
  if (!model || !base_model) return {};
  EvalOptions options;
  options.n_ctx = 512;
  options.n_chunks = 4;
  options.n_threads = 0;
  options.bos_id = 1;
  options.activations = activations;
  auto r = EvaluateVsModel(*model, *base_model, tokens, options);
  EXPECT_TRUE(r.has_value()) << r.status().message();
  if (!r) return {};
  return {r->ppl, r->kld->base_ppl, r->kld->kld_mean};
}

// A Q4_K model against its F16 base, on both devices. With exact (F32)
// activations the arithmetic is continuous and the devices must agree:
// perplexities within 0.1%, KLD within 1%. With ggml's activation rounding
// (Q8_K blocks for Q4_K) a last-bit difference before the rounding can move
// an activation by a whole step, and the CPU does not agree with itself
// there: on ref-dev, MIXQ_ISA=avx2 against avx512 moves the Q4_K PPL by
// 0.15% and the KLD by 0.73% (docs/gpu.md "Agreement"); that mode is held
// to 0.5% and 3%, which still catches a wrong rounding rule.
TEST(Cuda, AgreesWithCpuOnPerplexityAndKld) {
  if (!CudaUsable()) GTEST_SKIP() << CudaStatusMessage();
  for (const std::string& dir : ModelDirs()) {
    SCOPED_TRACE(dir);
    const std::string f16 = F16Model(dir);
    ASSERT_FALSE(f16.empty());
    auto base = gguf::GgufFile::Open(f16);
    ASSERT_TRUE(base.has_value());
    testing::TempDir tmp;
    quantize::QuantizeOptions qo;
    qo.rules.default_format = formats::FindFormatByName("Q4_K");
    ASSERT_TRUE(quantize::QuantizeModel(*base, tmp.File("q4k.gguf"), qo).has_value());
    auto quant = gguf::GgufFile::Open(tmp.File("q4k.gguf"));
    ASSERT_TRUE(quant.has_value());
    auto tok = tokenizer::Tokenizer::FromGguf(*base);
    ASSERT_TRUE(tok.has_value());
    auto text = ReadTextFile(dir + "/val.txt.gz");
    ASSERT_TRUE(text.has_value());
    const std::vector<int32_t> tokens = TokenizeForEval(*tok, *text);

    for (const Activations activations : {Activations::kF32, Activations::kGgml}) {
      const bool exact = activations == Activations::kF32;
      SCOPED_TRACE(exact ? "f32 activations" : "ggml activations");
      const Scores cpu = Evaluate(*quant, *base, tokens, Device::kCpu, activations);
      const Scores gpu = Evaluate(*quant, *base, tokens, Device::kCuda, activations);
      std::printf("%s, %s activations: PPL cpu %.6f cuda %.6f, base PPL cpu %.6f cuda %.6f, KLD cpu %.6f cuda %.6f\n",
                  dir.c_str(), exact ? "f32" : "ggml", cpu.ppl, gpu.ppl, cpu.base_ppl, gpu.base_ppl, cpu.kld, gpu.kld);
      EXPECT_NEAR(gpu.ppl / cpu.ppl, 1.0, exact ? 1e-3 : 5e-3);
      EXPECT_NEAR(gpu.base_ppl / cpu.base_ppl, 1.0, 1e-3);
      EXPECT_NEAR(gpu.kld / cpu.kld, 1.0, exact ? 1e-2 : 3e-2);
    }
  }
}

// gptq's input covariances summed on the GPU against the CPU's, pass by
// pass on ref-dev: every linear weight gets the H of its own input (on the
// GPU, attn_output and ffn_gate/up once got the attention input's: relative
// differences of order 1), equal up to the two forward passes' rounding,
// which grows with depth (3.7e-4 of the largest entry at most, measured).
TEST(Cuda, CovariancesAgreeWithCpu) {
  if (!CudaUsable()) GTEST_SKIP() << CudaStatusMessage();
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  auto tok = tokenizer::Tokenizer::FromGguf(*file);
  ASSERT_TRUE(tok.has_value());
  const std::vector<int32_t> tokens = TokenizeForEval(*tok, testing::RefDevTextStart(20000));
  CovarianceOptions options;
  options.n_ctx = 256;
  options.n_chunks = 4;
  options.n_threads = 0;
  options.bos_id = 1;
  auto cpu_model = Model::Load(*file, {Device::kCpu});
  auto gpu_model = Model::Load(*file, {Device::kCuda});
  ASSERT_TRUE(cpu_model.has_value() && gpu_model.has_value());
  auto cpu = LayerCovariances(*cpu_model, tokens, options);
  auto gpu = LayerCovariances(*gpu_model, tokens, options);
  ASSERT_TRUE(cpu.has_value() && gpu.has_value());
  const std::vector<std::string> weights = cpu_model->LinearWeights();
  double worst_ratio = 0;
  for (int64_t pass = 0; pass < (*cpu)->n_passes(); ++pass) {
    ASSERT_TRUE((*cpu)->Run(pass).ok());
    ASSERT_TRUE((*gpu)->Run(pass).ok());
    for (const std::string& w : weights) {
      if ((*cpu)->PassOf(w) != pass) continue;
      SCOPED_TRACE(w);
      const quantize::InputCovariance* a = (*cpu)->Find(w);
      const quantize::InputCovariance* b = (*gpu)->Find(w);
      ASSERT_TRUE(a != nullptr && b != nullptr);
      ASSERT_EQ(a->n_in, b->n_in);
      EXPECT_EQ(a->n_tokens, b->n_tokens);
      double largest = 0, worst = 0;
      for (size_t i = 0; i < a->sums.size(); ++i) {
        largest = std::max(largest, std::abs(a->sums[i]));
        worst = std::max(worst, std::abs(a->sums[i] - b->sums[i]));
      }
      EXPECT_LT(worst, 2e-3 * largest);
      worst_ratio = std::max(worst_ratio, worst / largest);
    }
  }
  std::printf("largest difference / largest entry: %.3g\n", worst_ratio);
}

// A pass on the GPU reads each weight from the file once, to upload it, and
// lets go of its pages (the embedding's after the lookup), as Load did after
// the finiteness check.
TEST(Cuda, LeavesTheModelFileUnmappedAfterAPass) {
  if (!CudaUsable()) GTEST_SKIP() << CudaStatusMessage();
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  auto model = Model::Load(*file, {Device::kCuda});
  ASSERT_TRUE(model.has_value());
  std::vector<int32_t> tokens(128);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % 4096);
  RunOptions options;
  options.seq_len = 64;
  std::vector<float> logits;
  ASSERT_TRUE(model->Forward(tokens, 32, &logits, options).ok());
  // Reading one tensor maps the cached pages next to it back in (the
  // kernel's fault-around), so only pages further inside are counted.
  int64_t checked = 0;
  for (const gguf::TensorInfo& t : file->tensors()) {
    const std::span<const uint8_t> inside = testing::BeyondFaultAround(file->TensorData(t));
    const int64_t present = testing::PresentPages(inside);
    if (present < 0) GTEST_SKIP() << "/proc/self/pagemap cannot be read here";
    EXPECT_EQ(present, 0) << t.name << ": " << testing::PresentPages(file->TensorData(t)) << " pages present in all";
    checked += static_cast<int64_t>(inside.size());
  }
  EXPECT_GT(checked, int64_t{8} << 20);  // most of the file
}

// --gpu-mem bounds the scratch too: logits of 40960 rows of ref-dev's 4096
// (640 MiB) fit 2 GiB but not 1 GiB (less the CUDA context's margin), which ends
// the process with exit 3 and one line.
TEST(Cuda, GpuMemBoundsScratch) {
  if (!CudaUsable()) GTEST_SKIP() << CudaStatusMessage();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value());
  const int64_t n_tokens = 40960;
  const auto run = [&](int64_t gpu_mem) -> Status {
    auto model = Model::Load(*file, {Device::kCuda, gpu_mem});
    if (!model) return model.status();
    std::vector<float> hidden(static_cast<size_t>(n_tokens * model->config().n_embd), 0.5f);
    std::vector<float> logits(static_cast<size_t>(n_tokens * model->config().n_vocab));
    return model->Logits(hidden.data(), n_tokens, logits.data(), {});
  };
  EXPECT_TRUE(run(int64_t{2} << 30).ok());
  EXPECT_EXIT(static_cast<void>(run(int64_t{1} << 30)), ::testing::ExitedWithCode(3),
              "mixq: error: --gpu-mem is too small: scratch needs");
}

}  // namespace
}  // namespace mixq::engine
