// The quality claim of the default `--method best`: a model quantized by mixq
// to one type is at least as close to the F16 original (KLD on held-out text,
// measured by llama.cpp through gguf-oracle) as llama.cpp's own quantization
// to the same per-tensor types with the same imatrix. This is the cheap CI
// version of bench/quality/types_vs_llama.sh: fewer chunks and a few types,
// and since it sees only each model's mean and standard error, not the paired
// per-position difference that the benchmark judges, its tolerance is the
// conservative unpaired bound.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "plan/plan.h"
#include "test_support.h"

namespace mixq::cli {
namespace {

using testing::Oracle;
using testing::Q;
using testing::TempDir;

struct Case {
  const char* type;
  const char* ftype;  // the llama_ftype whose base type is `type`
  bool imatrix;
  // token_embd's type: the imatrix has no entry for it, and IQ1_S cannot be
  // encoded without one (llama.cpp's IQ1_S preset uses Q2_K there).
  const char* embd = nullptr;
};

TEST(TypesVsLlama, BestKldIsNoWorseThanLlamaCpp) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "no gguf-oracle configured (MIXQ_ORACLE)";
  TempDir dir;
  const std::string model = testing::RefDevModel();
  // Held-out text as in the benchmark: imatrix on the first half, eval on the
  // second; only the start of each half is needed for a few chunks.
  auto split = testing::RunCommand("zcat " + Q(testing::RefDevText()) + " > " + Q(dir.File("all.txt")));
  ASSERT_EQ(split.exit_code, 0) << split.err;
  std::vector<uint8_t> all = testing::ReadFileBytes(dir.File("all.txt"));
  const size_t half = all.size() / 2;
  constexpr size_t kTextBytes = 64 << 10;  // ~16K tokens: 8 chunks of imatrix, 6 of eval
  ASSERT_GT(half, kTextBytes);
  testing::WriteFileBytes(dir.File("calib.txt"), {all.begin(), all.begin() + kTextBytes});
  testing::WriteFileBytes(dir.File("eval.txt"), {all.begin() + half, all.begin() + half + kTextBytes});

  const std::string imatrix = dir.File("imatrix.gguf");
  auto im = testing::RunMixq("imatrix -q " + Q(model) + " --text " + Q(dir.File("calib.txt")) + " -o " + Q(imatrix) +
                             " --chunks 8");
  ASSERT_EQ(im.exit_code, 0) << im.err;
  const std::string f16_lgt = dir.File("f16.lgt");
  auto ref = Oracle("eval " + Q(model) + " --text-file " + Q(dir.File("eval.txt")) +
                    " --ctx 512 --chunks 4 --threads 1 --out " + Q(f16_lgt));
  ASSERT_EQ(ref["out_ok"], true) << ref.dump();

  constexpr Case kCases[] = {{"Q4_0", "Q4_0", false},         {"Q4_0", "Q4_0", true},     {"Q2_K", "Q2_K", true},
                             {"Q4_K", "Q4_K_M", true},        {"IQ4_XS", "IQ4_XS", true}, {"IQ3_S", "IQ3_S", false},
                             {"IQ1_S", "IQ1_S", true, "Q2_K"}};
  for (const Case& c : kCases) {
    SCOPED_TRACE(std::string(c.type) + (c.imatrix ? " with imatrix" : " without imatrix"));
    const std::string lower = plan::LlamaTypeName(c.type);
    const std::string embd = c.embd != nullptr ? c.embd : c.type;
    const std::string imat_flag = c.imatrix ? " --imatrix " + Q(imatrix) : "";
    const std::string theirs = dir.File("llama.gguf"), ours = dir.File("best.gguf");
    auto q = Oracle("quantize " + Q(model) + " " + Q(theirs) + " " + c.ftype + " --pure --output-tensor-type " + lower +
                    " --token-embedding-type " + plan::LlamaTypeName(embd) + imat_flag);
    ASSERT_EQ(q["ok"], true) << q.dump();
    auto r = testing::RunMixq("quantize -q " + Q(model) + " " + Q(ours) + " --type " + c.type +
                              " --output-tensor-type " + c.type + " --token-embedding-type " + embd + imat_flag);
    ASSERT_EQ(r.exit_code, 0) << r.err;

    auto l = Oracle("eval " + Q(theirs) + " --threads 1 --ref " + Q(f16_lgt));
    auto b = Oracle("eval " + Q(ours) + " --threads 1 --ref " + Q(f16_lgt));
    ASSERT_EQ(l["ref_ok"], true) << l.dump();
    ASSERT_EQ(b["ref_ok"], true) << b.dump();
    const double l_kld = l["kld_mean"], l_se = l["kld_stderr"];
    const double b_kld = b["kld_mean"], b_se = b["kld_stderr"];
    // Two standard errors of the difference as if the two means were
    // independent; they are strongly correlated, so this is loose, and being
    // deterministic the check cannot flake on one machine.
    const double tol = 2 * std::hypot(l_se, b_se) / l_kld;
    EXPECT_LE(b_kld, l_kld * (1 + tol)) << "llama.cpp " << l_kld << " ± " << l_se << ", mixq best " << b_kld << " ± "
                                        << b_se;
  }
}

}  // namespace
}  // namespace mixq::cli
