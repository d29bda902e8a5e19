// quantize_row_ggml against the real llama.cpp on real weights: gguf-oracle
// quantizes the ref-dev model with one type per tensor (cycling through every
// type mixq encodes), and each tensor's bytes must equal ours.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "formats/formats.h"
#include "formats/gguf_tensors.h"
#include "test_support.h"

namespace mixq::formats {
namespace {

using mixq::testing::OraclePath;
using mixq::testing::RefDevModel;
using mixq::testing::RunCommand;
using mixq::testing::TempDir;
using testing::GgufTensor;
using testing::GgufTensors;

std::string ExactPattern(const std::string& name) {
  std::string escaped;
  for (char c : name) {
    if (c == '.') escaped += '\\';
    escaped += c;
  }
  return "^" + escaped + "$";
}

// Quantizes with the oracle, one override per matrix.
void OracleQuantize(const GgufTensors& in, const std::string& out, bool imatrix_ones) {
  std::vector<const Format*> types;
  for (const Format& f : AllFormats()) {
    if (f.can_encode() && f.ggml_id != 0) types.push_back(&f);
  }
  std::string cmd = OraclePath() + " quantize " + RefDevModel() + " " + out + " Q8_0 --pure --threads 2";
  if (imatrix_ones) cmd += " --imatrix-ones";
  size_t next = imatrix_ones ? 5 : 0;  // the two runs pair tensors with different types
  for (const GgufTensor& t : in.tensors()) {
    if (!IsMatrixWeight(t)) continue;
    const Format* f = types[next++ % types.size()];
    cmd += " --tensor-type '" + ExactPattern(t.name) + "=" + std::string(f->name) + "'";
    if (t.name == "output.weight") cmd += " --output-tensor-type " + std::string(f->name);
    if (t.name == "token_embd.weight") cmd += " --token-embedding-type " + std::string(f->name);
  }
  mixq::testing::CommandResult r = RunCommand(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
}

void CompareWithOracle(bool imatrix_ones) {
  if (OraclePath().empty() || !std::filesystem::exists(OraclePath())) GTEST_SKIP() << "no gguf-oracle configured";
  GgufTensors in(RefDevModel());
  TempDir dir;
  std::string out_path = dir.File("oracle.gguf");
  ASSERT_NO_FATAL_FAILURE(OracleQuantize(in, out_path, imatrix_ones));
  GgufTensors out(out_path);
  int compared = 0;
  std::vector<bool> type_seen(kGgmlTypeCount, false);
  for (const GgufTensor& t : out.tensors()) {
    const GgufTensor* src = in.Find(t.name);
    ASSERT_NE(src, nullptr) << t.name;
    if (!IsMatrixWeight(*src) || !t.format->can_encode()) continue;
    SCOPED_TRACE(t.name + " as " + std::string(t.format->name));
    std::vector<float> x = ToFloat(*src);
    // --imatrix-ones gives every tensor, token_embd and output included, all-one weights.
    std::vector<float> ones(src->row_length(), 1.0f);
    const float* importance = imatrix_ones ? ones.data() : nullptr;
    std::vector<uint8_t> ours(t.data.size());
    ASSERT_TRUE(
        QuantizeRows(*t.format, QuantMethod::kGgml, x.data(), ours.data(), t.n_rows(), t.row_length(), importance, 2)
            .ok());
    EXPECT_TRUE(std::equal(ours.begin(), ours.end(), t.data.begin()));
    type_seen[t.format->ggml_id] = true;
    ++compared;
  }
  EXPECT_GE(compared, 40);
  for (const Format& f : AllFormats()) {
    if (f.can_encode() && f.ggml_id != 0) {
      EXPECT_TRUE(type_seen[f.ggml_id]) << f.name << " was not compared";
    }
  }
}

TEST(OracleTest, GgmlQuantizeMatchesLlamaCppWithoutImatrix) { CompareWithOracle(false); }
TEST(OracleTest, GgmlQuantizeMatchesLlamaCppWithUniformImatrix) { CompareWithOracle(true); }

}  // namespace
}  // namespace mixq::formats
