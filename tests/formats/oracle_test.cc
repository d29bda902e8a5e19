// quantize_row_ggml against the real llama.cpp on real weights: gguf-oracle
// quantizes the ref-dev model with one type per tensor (cycling through every
// type mixq encodes), and each tensor's bytes must equal ours. Two runs: one
// without an imatrix, one with an imatrix file whose entries are uneven (with
// zeros, the way real ones look) or all ones, and none for the two heads.
// Each run pays llama.cpp's start-up of the grids it uses (IQ1: ~8 s).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
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

enum class Importance { kNone, kFile };

// Types llama.cpp's quantizer refuses without an imatrix for any tensor but
// token_embd and output (its tensor_requires_imatrix), beyond those ggml
// itself cannot encode without one (the table's needs_imatrix).
bool LlamaWantsImatrix(const Format& f) {
  for (const char* name : {"IQ3_XXS", "IQ2_S", "IQ1_M"}) {
    if (f.name == name) return true;
  }
  return f.needs_imatrix;
}

std::string ExactPattern(const std::string& name) {
  std::string escaped;
  for (char c : name) {
    if (c == '.') escaped += '\\';
    escaped += c;
  }
  return "^" + escaped + "$";
}

bool IsHead(const std::string& name) { return name == "output.weight" || name == "token_embd.weight"; }

// Per-column importance: spread over four decades, every 37th column zero and
// one whole 32-column group zero (features an imatrix never saw active); or
// all ones for every third tensor.
std::vector<float> TestImportance(int64_t n, int salt) {
  std::vector<float> v(n, 1.0f);
  if (salt % 3 == 0) return v;
  for (int64_t j = 0; j < n; ++j) {
    int64_t h = (j * 2654435761 + salt * 40503) % 1000;
    v[j] = static_cast<float>(h + 1) * static_cast<float>(h % 7 == 0 ? 10.0 : 0.01);
    if (j % 37 == 5 || (j >= 64 && j < 96)) v[j] = 0;
  }
  return v;
}

// llama-imatrix's legacy .dat format (ggml-formats.md §3.3) with ncall 1, so
// the values are the importance itself.
void WriteLegacyImatrix(const std::string& path, const std::map<std::string, std::vector<float>>& entries) {
  std::vector<uint8_t> bytes;
  auto put = [&bytes](const void* p, size_t n) {
    bytes.insert(bytes.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  };
  auto put_i32 = [&put](int32_t v) { put(&v, 4); };
  put_i32(static_cast<int32_t>(entries.size()));
  for (const auto& [name, values] : entries) {
    put_i32(static_cast<int32_t>(name.size()));
    put(name.data(), name.size());
    put_i32(1);
    put_i32(static_cast<int32_t>(values.size()));
    put(values.data(), values.size() * sizeof(float));
  }
  mixq::testing::WriteFileBytes(path, bytes);
}

// Which type each matrix gets: every type the run can take, cycled over the
// layers' tensors; the heads get `head_types` (llama.cpp lets them go without
// an imatrix), Q8_0 when empty.
std::map<std::string, const Format*> AssignTypes(const GgufTensors& in, Importance importance,
                                                 const std::vector<std::string>& head_types) {
  std::vector<const Format*> types;
  for (const Format& f : AllFormats()) {
    if (!f.can_encode() || f.ggml_id == 0) continue;
    if (importance == Importance::kNone && LlamaWantsImatrix(f)) continue;
    types.push_back(&f);
  }
  std::map<std::string, const Format*> out;
  size_t next = 0;
  size_t head = 0;
  for (const GgufTensor& t : in.tensors()) {
    if (!IsMatrixWeight(t)) continue;
    if (IsHead(t.name)) {
      out[t.name] = FindFormatByName(head < head_types.size() ? head_types[head++] : "Q8_0");
    } else {
      out[t.name] = types[next++ % types.size()];
    }
  }
  return out;
}

void OracleQuantize(const std::map<std::string, const Format*>& types, Importance importance,
                    const std::string& imatrix_path, const std::string& out) {
  std::string cmd = OraclePath() + " quantize " + RefDevModel() + " " + out + " Q8_0 --pure --threads 2";
  if (importance == Importance::kFile) cmd += " --imatrix " + imatrix_path;
  for (const auto& [name, f] : types) {
    cmd += " --tensor-type '" + ExactPattern(name) + "=" + std::string(f->name) + "'";
    if (name == "output.weight") cmd += " --output-tensor-type " + std::string(f->name);
    if (name == "token_embd.weight") cmd += " --token-embedding-type " + std::string(f->name);
  }
  mixq::testing::CommandResult r = RunCommand(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
}

// Returns the types compared.
std::vector<bool> CompareWithOracle(Importance importance, const std::vector<std::string>& head_types) {
  std::vector<bool> seen(kGgmlTypeCount, false);
  GgufTensors in(RefDevModel());
  TempDir dir;
  std::map<std::string, std::vector<float>> imatrix;
  int salt = 0;
  for (const GgufTensor& t : in.tensors()) {
    if (IsMatrixWeight(t) && !IsHead(t.name)) imatrix[t.name] = TestImportance(t.row_length(), ++salt);
  }
  if (importance == Importance::kFile) WriteLegacyImatrix(dir.File("imatrix.dat"), imatrix);
  std::map<std::string, const Format*> types = AssignTypes(in, importance, head_types);
  std::string out_path = dir.File("oracle.gguf");
  OracleQuantize(types, importance, dir.File("imatrix.dat"), out_path);
  if (::testing::Test::HasFatalFailure()) return seen;
  GgufTensors out(out_path);
  int compared = 0;
  for (const GgufTensor& t : out.tensors()) {
    const GgufTensor* src = in.Find(t.name);
    if (src == nullptr || !IsMatrixWeight(*src) || !t.format->can_encode()) continue;
    SCOPED_TRACE(t.name + " as " + std::string(t.format->name));
    EXPECT_EQ(t.format, types[t.name]) << "the oracle chose another type";
    std::vector<float> x = ToFloat(*src);
    const float* weights = nullptr;
    if (importance == Importance::kFile && imatrix.count(t.name) != 0) weights = imatrix[t.name].data();
    std::vector<uint8_t> ours(t.data.size());
    EXPECT_TRUE(
        QuantizeRows(*t.format, QuantMethod::kGgml, x.data(), ours.data(), t.n_rows(), t.row_length(), weights, 2)
            .ok());
    EXPECT_TRUE(std::equal(ours.begin(), ours.end(), t.data.begin()));
    seen[t.format->ggml_id] = true;
    ++compared;
  }
  EXPECT_EQ(compared, std::count_if(types.begin(), types.end(), [](auto& e) { return e.second->can_encode(); }));
  return seen;
}

bool HaveOracle() { return !OraclePath().empty() && std::filesystem::exists(OraclePath()); }

// The slow grids (IQ2_S, IQ1) are left to the run with an imatrix, where the
// heads take them without one.
TEST(OracleTest, GgmlQuantizeMatchesLlamaCppWithoutImatrix) {
  if (!HaveOracle()) GTEST_SKIP() << "no gguf-oracle configured";
  const Format& head = *FindFormatByName("IQ3_XXS");
  std::vector<bool> seen = CompareWithOracle(Importance::kNone, {std::string(head.name)});
  for (const Format& f : AllFormats()) {
    if (f.can_encode() && f.ggml_id != 0 && (!LlamaWantsImatrix(f) || &f == &head)) {
      EXPECT_TRUE(seen[f.ggml_id]) << f.name << " was not compared";
    }
  }
}

TEST(OracleTest, GgmlQuantizeMatchesLlamaCppWithImatrix) {
  if (!HaveOracle()) GTEST_SKIP() << "no gguf-oracle configured";
  std::vector<bool> seen = CompareWithOracle(Importance::kFile, {"IQ1_M", "IQ2_S"});
  for (const Format& f : AllFormats()) {
    if (f.can_encode() && f.ggml_id != 0) {
      EXPECT_TRUE(seen[f.ggml_id]) << f.name << " was not compared";
    }
  }
}

}  // namespace
}  // namespace mixq::formats
