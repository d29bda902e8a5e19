// Input covariances, layer by layer, on ref-dev: shared inputs share one
// matrix, the diagonal is the imatrix of the same tokens, off-diagonal sums
// match the hook's inputs multiplied out directly, and each pass drops the
// one before.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_test_util.h"
#include "quantize/quantize.h"
#include "test_support.h"

namespace mixq::engine {
namespace {

class Covariances : public test::RefDevModelTest {
 protected:
  void SetUp() override {
    RefDevModelTest::SetUp();
    tokens_ = TextTokens(8000);
    options_.n_ctx = 128;
    options_.n_chunks = 3;
    options_.bos_id = 1;
  }
  // Σ x xᵀ of `target`'s inputs, summed from the hook in a forward pass over
  // the first n_chunks chunks of 128 tokens (each starting with BOS).
  std::vector<double> HookSums(const std::string& target, int64_t n_chunks) {
    std::vector<double> direct;
    ActivationHook hook = [&](const std::string& w, int64_t, const float* x, int64_t n, int64_t n_in) {
      if (w != target) return;
      direct.resize(static_cast<size_t>(n_in * n_in), 0.0);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < n_in; ++i) {
          for (int64_t j = 0; j < n_in; ++j) direct[i * n_in + j] += double(x[t * n_in + i]) * x[t * n_in + j];
        }
      }
    };
    RunOptions run;
    run.hook = &hook;
    run.seq_len = 128;
    std::vector<int32_t> input(tokens_.begin(), tokens_.begin() + n_chunks * 128);
    for (int64_t c = 0; c < n_chunks; ++c) input[c * 128] = 1;
    std::vector<float> logits;
    EXPECT_TRUE(model_->Forward(input, 127, &logits, run).ok());
    return direct;
  }
  // h's sums equal `direct` at every (i, j) on the strided grid, to 1e-5 of
  // the largest diagonal entry.
  static void ExpectSumsNear(const quantize::InputCovariance& h, const std::vector<double>& direct, int64_t step_i,
                             int64_t step_j) {
    const int64_t n = h.n_in;
    ASSERT_EQ(direct.size(), static_cast<size_t>(n * n));
    double scale = 0;
    for (int64_t j = 0; j < n; ++j) scale = std::max(scale, direct[j * n + j]);
    for (int64_t i = 0; i < n; i += step_i) {
      for (int64_t j = 0; j < n; j += step_j) {
        EXPECT_NEAR(h.sums[i * n + j], direct[i * n + j], 1e-5 * scale) << i << "," << j;
      }
    }
  }
  std::vector<int32_t> tokens_;
  CovarianceOptions options_;
};

TEST_F(Covariances, LayerByLayerWithSharedInputs) {
  auto source = LayerCovariances(*model_, tokens_, options_);
  ASSERT_TRUE(source.has_value()) << source.error().message();
  quantize::CovarianceSource& s = **source;
  EXPECT_EQ(s.n_passes(), 7);
  EXPECT_EQ(s.PassOf("blk.3.ffn_down.weight"), 3);
  EXPECT_EQ(s.PassOf("output.weight"), 6);
  EXPECT_EQ(s.PassOf("token_embd.weight"), -1);
  EXPECT_EQ(s.PassOf("blk.0.attn_norm.weight"), -1);
  EXPECT_FALSE(s.Run(1).ok());  // out of order

  ImatrixOptions io;
  io.n_ctx = options_.n_ctx;
  io.n_chunks = options_.n_chunks;
  io.bos_id = options_.bos_id;
  auto im = CollectImatrix(*model_, tokens_, io);
  ASSERT_TRUE(im.has_value());

  for (int64_t pass = 0; pass < s.n_passes(); ++pass) {
    ASSERT_TRUE(s.Run(pass).ok());
    const std::string p = "blk." + std::to_string(pass) + ".";
    if (pass < 6) {
      const quantize::InputCovariance* q = s.Find(p + "attn_q.weight");
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(q, s.Find(p + "attn_k.weight"));
      EXPECT_EQ(q, s.Find(p + "attn_v.weight"));
      EXPECT_EQ(s.Find(p + "ffn_gate.weight"), s.Find(p + "ffn_up.weight"));
      EXPECT_NE(q, s.Find(p + "ffn_gate.weight"));
      EXPECT_NE(q, s.Find(p + "attn_output.weight"));
      EXPECT_EQ(s.Find(p + "ffn_down.weight")->n_in, 768);
      EXPECT_EQ(s.Find("output.weight"), nullptr);
      if (pass > 0) {
        EXPECT_EQ(s.Find("blk." + std::to_string(pass - 1) + ".attn_q.weight"), nullptr);
      }
    }
    for (const std::string& name : model_->LinearWeights()) {
      if (s.PassOf(name) != pass) continue;
      const quantize::InputCovariance* h = s.Find(name);
      ASSERT_NE(h, nullptr) << name;
      EXPECT_EQ(h->n_tokens, 3 * 128) << name;
      EXPECT_EQ(h->effective_tokens, 3 * 128) << name;  // one batch: no spread to measure
      std::vector<float> diag = h->MeanDiagonal();
      auto want = im->Importance(name, h->n_in);
      ASSERT_TRUE(want.has_value() && want->has_value()) << name;
      for (int64_t j = 0; j < h->n_in; ++j) {
        EXPECT_NEAR(diag[j], (**want)[j], 1e-4 * (**want)[j] + 1e-9) << name << " " << j;
        EXPECT_EQ(h->sums[j * h->n_in + (j + 5) % h->n_in], h->sums[((j + 5) % h->n_in) * h->n_in + j]) << name;
      }
    }
  }
}

TEST_F(Covariances, OffDiagonalSumsMatchTheHookInputs) {
  const std::string target = "blk.2.ffn_down.weight";
  const std::vector<double> direct = HookSums(target, 3);

  auto source = LayerCovariances(*model_, tokens_, options_);
  ASSERT_TRUE(source.has_value());
  for (int64_t pass = 0; pass <= 2; ++pass) ASSERT_TRUE((*source)->Run(pass).ok());
  const quantize::InputCovariance* h = (*source)->Find(target);
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(h->n_in, 768);
  ExpectSumsNear(*h, direct, 37, 11);
}

// 20 chunks of 128 are two batches (16 chunks and 4): their sums add up to
// the whole, and their spread makes H worth fewer independent tokens than it
// holds (neighbouring tokens are alike).
TEST_F(Covariances, BatchesAddUpAndGiveTheEffectiveTokens) {
  const std::string target = "blk.1.attn_q.weight";
  constexpr int64_t kChunks = 20;
  const std::vector<double> direct = HookSums(target, kChunks);

  options_.n_chunks = kChunks;
  auto source = LayerCovariances(*model_, tokens_, options_);
  ASSERT_TRUE(source.has_value());
  for (int64_t pass = 0; pass <= 1; ++pass) ASSERT_TRUE((*source)->Run(pass).ok());
  const quantize::InputCovariance* h = (*source)->Find(target);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->n_tokens, kChunks * 128);
  EXPECT_GE(h->effective_tokens, 1.0);
  EXPECT_LT(h->effective_tokens, static_cast<double>(h->n_tokens));
  ASSERT_EQ(h->n_in, 256);
  ExpectSumsNear(*h, direct, 7, 5);
}

TEST_F(Covariances, RejectsTooFewTokens) {
  options_.n_ctx = static_cast<int64_t>(tokens_.size()) + 1;
  auto source = LayerCovariances(*model_, tokens_, options_);
  ASSERT_FALSE(source.has_value());
  EXPECT_EQ(source.error().kind(), StatusKind::kInvalidArgument);
  // No chunks would mean no covariances, and silently no feedback.
  options_.n_ctx = 128;
  for (int64_t chunks : {0, -2}) {
    options_.n_chunks = chunks;
    source = LayerCovariances(*model_, tokens_, options_);
    ASSERT_FALSE(source.has_value());
    EXPECT_EQ(source.error().message(), "--chunks must be at least 1, or -1 for all, not " + std::to_string(chunks));
  }
}

}  // namespace
}  // namespace mixq::engine
