// llama.cpp (through gguf-oracle) is the judge of compatibility: it must load
// what `mixq quantize` writes, and with --method ggml our bytes must equal
// llama.cpp's own quantization, with and without an importance matrix.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/engine_test_util.h"
#include "formats/formats.h"
#include "gguf/gguf.h"
#include "plan/plan.h"
#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::cli {
namespace {

using testing::Oracle;
using testing::Q;
using testing::TempDir;

// An llama_ftype preset whose base type is the given type; with --pure every
// quantizable tensor gets that type.
struct Preset {
  const char* type;
  const char* ftype;
};
constexpr Preset kPresets[] = {{"F16", "F16"},       {"BF16", "BF16"},    {"Q8_0", "Q8_0"},   {"Q4_0", "Q4_0"},
                               {"Q4_1", "Q4_1"},     {"Q5_0", "Q5_0"},    {"Q5_1", "Q5_1"},   {"Q2_K", "Q2_K"},
                               {"Q3_K", "Q3_K_M"},   {"Q4_K", "Q4_K_M"},  {"Q5_K", "Q5_K_M"}, {"Q6_K", "Q6_K"},
                               {"IQ4_NL", "IQ4_NL"}, {"IQ4_XS", "IQ4_XS"}};

// A deterministic imatrix over the blk.* weights of `model` that `include`
// accepts: gamma-distributed sums, count(tensor, matrix) tokens for each
// matrix (each expert of a 3-D tensor has its own), saved at `path`.
template <typename Include, typename Count>
std::string SaveSyntheticImatrix(const std::string& model, uint32_t seed, Include include, Count count,
                                 const std::string& path) {
  auto file = gguf::GgufFile::Open(model);
  EXPECT_TRUE(file.has_value());
  quantize::Imatrix im;
  im.datasets = {"synthetic"};
  im.chunk_count = 1;
  im.chunk_size = 512;
  std::mt19937 rng(seed);
  std::gamma_distribution<float> dist(0.7f, 1.0f);
  for (const auto& t : file->tensors()) {
    if (t.name.rfind("blk.", 0) != 0 || !include(t)) continue;
    quantize::ImatrixEntry e;
    for (int64_t m = 0; m < t.ne[2]; ++m) {
      const float n = count(t, m);
      for (int64_t j = 0; j < t.ne[0]; ++j) e.in_sum2.push_back(n * dist(rng));
      e.counts.push_back(n);
    }
    im.entries[t.name] = std::move(e);
  }
  EXPECT_TRUE(quantize::SaveImatrix(im, path).ok());
  return path;
}

// Every blk.* linear weight of ref-dev, 512 tokens each.
std::string WriteImatrix(const TempDir& dir) {
  return SaveSyntheticImatrix(
      testing::RefDevModel(), 7, [](const gguf::TensorInfo& t) { return quantize::IsQuantizable(t); },
      [](const gguf::TensorInfo&, int64_t) { return 512.0f; }, dir.File("imatrix.gguf"));
}

// `model` quantized by `mixq quantize --method ggml` to `p.type` in every
// tensor, and by llama.cpp's --pure preset: llama.cpp must load ours, and every
// tensor must be byte-identical. Returns the oracle's quantize report.
nlohmann::json CheckBytesEqual(const TempDir& dir, const Preset& p, const std::string& model,
                               const std::string& imatrix) {
  const std::string lower = plan::LlamaTypeName(p.type);
  const std::string imat_flag = imatrix.empty() ? "" : " --imatrix " + Q(imatrix);
  const std::string ours = dir.File("ours.gguf"), theirs = dir.File("theirs.gguf");
  auto r = testing::RunMixq("quantize -q --method ggml " + Q(model) + " " + Q(ours) + " --type " + p.type +
                            " --output-tensor-type " + p.type + " --token-embedding-type " + p.type + imat_flag);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto q = Oracle("quantize " + Q(model) + " " + Q(theirs) + " " + p.ftype + " --pure --output-tensor-type " + lower +
                  " --token-embedding-type " + lower + imat_flag);
  EXPECT_EQ(q["ok"], true) << q.dump();
  auto info = Oracle("info " + Q(ours));
  EXPECT_EQ(info["load_ok"], true) << info.dump();
  auto cmp = Oracle("tensors " + Q(ours) + " --ref " + Q(theirs));
  EXPECT_EQ(cmp["all_valid"], true);
  EXPECT_FALSE(cmp["tensors"].empty());
  for (const auto& t : cmp["tensors"]) {
    EXPECT_EQ(t["type"], t["ref_type"]) << t["name"];
    EXPECT_EQ(t["bytes_equal"], true) << p.type << imat_flag << " " << t["name"];
  }
  return q;
}

class OracleCompat : public ::testing::TestWithParam<Preset> {
 protected:
  void SetUp() override {
    if (testing::OraclePath().empty()) GTEST_SKIP() << "no gguf-oracle configured (MIXQ_ORACLE)";
  }
  void CheckRefDevBytesEqual(bool with_imatrix) {
    TempDir dir;
    CheckBytesEqual(dir, GetParam(), testing::RefDevModel(), with_imatrix ? WriteImatrix(dir) : "");
  }
};

TEST_P(OracleCompat, GgmlMethodIsByteIdenticalWithoutImatrix) { CheckRefDevBytesEqual(false); }
TEST_P(OracleCompat, GgmlMethodIsByteIdenticalWithImatrix) { CheckRefDevBytesEqual(true); }

// Our own search writes different bytes; llama.cpp must load them and decode
// them to the same numbers our dequantizer gives.
TEST_P(OracleCompat, BestMethodLoadsAndDecodesAsOurs) {
  TempDir dir;
  const Preset& p = GetParam();
  std::string ours = dir.File("best.gguf");
  std::string imatrix = WriteImatrix(dir);
  auto r = testing::RunMixq("quantize -q " + Q(testing::RefDevModel()) + " " + Q(ours) + " --type " + p.type +
                            " --imatrix " + Q(imatrix));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = Oracle("info " + Q(ours));
  EXPECT_EQ(info["load_ok"], true) << info.dump();
  auto decoded = Oracle("tensors " + Q(ours));
  EXPECT_EQ(decoded["all_valid"], true);
  auto file = gguf::GgufFile::Open(ours);
  ASSERT_TRUE(file.has_value());
  for (const auto& t : decoded["tensors"]) {
    const gguf::TensorInfo* info_t = file->FindTensor(t["name"].get<std::string>());
    ASSERT_NE(info_t, nullptr);
    std::vector<float> values;
    ASSERT_TRUE(quantize::TensorToF32(*file, *info_t, &values, 2).ok());
    double sum = 0, sum2 = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (float v : values) {
      sum += v;
      sum2 += static_cast<double>(v) * v;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    double n = static_cast<double>(values.size());
    // The oracle prints %.9g, which round-trips a float exactly.
    EXPECT_EQ(static_cast<float>(t["min"].get<double>()), lo) << t["name"];
    EXPECT_EQ(static_cast<float>(t["max"].get<double>()), hi) << t["name"];
    EXPECT_NEAR(t["mean"].get<double>(), sum / n, 1e-6 + 1e-6 * std::abs(sum / n)) << t["name"];
    EXPECT_NEAR(t["rms"].get<double>(), std::sqrt(sum2 / n), 1e-6 * std::sqrt(sum2 / n)) << t["name"];
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, OracleCompat, ::testing::ValuesIn(kPresets),
                         [](const auto& info) { return std::string(info.param.type); });

// A qwen3moe with 4 experts and its imatrix: per expert sums and counts for
// the 3-D expert tensors (one expert that no token reached), as llama-imatrix
// writes them.
void WriteMoe(const TempDir& dir, std::string* model, std::string* imatrix) {
  *model = dir.File("moe.gguf");
  engine::test::WriteRandomModel(*model, {.arch = "qwen3moe",
                                          .n_embd = 256,
                                          .n_head = 4,
                                          .head_dim = 64,
                                          .type = "F16",
                                          .seed = 21,
                                          .n_expert = 4,
                                          .n_expert_used = 2,
                                          .n_ff_exp = 256});
  *imatrix = SaveSyntheticImatrix(
      *model, 8, [](const gguf::TensorInfo& t) { return t.n_dims >= 2; },
      [](const gguf::TensorInfo& t, int64_t m) {
        return t.ne[2] == 1 ? 512.0f : m == 2 ? 0.0f : 100.0f * static_cast<float>(m + 1);
      },
      dir.File("moe-imatrix.gguf"));
}

class OracleCompatMoe : public OracleCompat {};

// Each expert's matrix is quantized with its own slice of the imatrix; the
// router stays F32 as in llama.cpp.
TEST_P(OracleCompatMoe, ExpertTensorsAreByteIdentical) {
  TempDir dir;
  std::string model, imatrix;
  WriteMoe(dir, &model, &imatrix);
  for (const std::string& with : {std::string(), imatrix}) {
    const nlohmann::json q = CheckBytesEqual(dir, GetParam(), model, with);
    EXPECT_EQ(q["tensor_types"]["blk.1.ffn_gate_inp.weight"], "f32");
    EXPECT_EQ(q["tensor_types"]["blk.1.ffn_down_exps.weight"], plan::LlamaTypeName(GetParam().type));
  }
}

// qwen2moe's shared expert is quantized like any matrix and its gate, a
// vector, stays F32, as llama-quantize does.
TEST_P(OracleCompatMoe, SharedExpertTensorsAreByteIdentical) {
  TempDir dir;
  const std::string model = dir.File("qwen2moe.gguf");
  engine::test::WriteRandomModel(model, {.arch = "qwen2moe",
                                         .n_embd = 256,
                                         .n_layer = 1,
                                         .n_head = 4,
                                         .head_dim = 64,
                                         .type = "F16",
                                         .seed = 22,
                                         .n_expert = 4,
                                         .n_expert_used = 2,
                                         .n_ff_exp = 256,
                                         .n_ff_shexp = 512});
  const nlohmann::json q = CheckBytesEqual(dir, GetParam(), model, "");
  EXPECT_EQ(q["tensor_types"]["blk.0.ffn_gate_inp_shexp.weight"], "f32");
  EXPECT_EQ(q["tensor_types"]["blk.0.ffn_down_shexp.weight"], plan::LlamaTypeName(GetParam().type));
}

constexpr Preset kMoePresets[] = {{"Q8_0", "Q8_0"}, {"Q4_K", "Q4_K_M"}, {"Q6_K", "Q6_K"}, {"IQ4_XS", "IQ4_XS"}};
INSTANTIATE_TEST_SUITE_P(SomeTypes, OracleCompatMoe, ::testing::ValuesIn(kMoePresets),
                         [](const auto& info) { return std::string(info.param.type); });

}  // namespace
}  // namespace mixq::cli
