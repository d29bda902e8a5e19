// Judges the codecs against tests/data/refvectors: bytes and floats written by
// ggml itself (README there). Inputs are regenerated from their recipe and
// checked against the files before use.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "formats/formats.h"
#include "test_support.h"

namespace mixq::formats {
namespace {

using testing::ReadFileBytes;
using testing::RefVectorPath;

constexpr int kRows = 6;
constexpr int kCols = 256;

// The recipe of refvectors/README.md: LCG, Irwin-Hall sum of 12 uniforms in double.
std::vector<float> GenerateInput() {
  uint64_t state = 0x5EED;
  auto uniform = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (static_cast<double>(state >> 40) + 0.5) / 16777216.0;
  };
  const double sigma[5] = {0.02, 0.02, 0.1, 1.0, 0.02};
  const double mu[5] = {0, 0, 0.05, 0, 0};
  std::vector<float> x(kRows * kCols, 0.0f);
  for (int r = 0; r < 5; ++r) {
    for (int c = 0; c < kCols; ++c) {
      double g = 0;
      for (int k = 0; k < 12; ++k) g += uniform();
      g -= 6.0;
      double t = g * sigma[r];
      t = t + mu[r];
      x[r * kCols + c] = static_cast<float>(t);
    }
  }
  float* outliers = &x[4 * kCols];
  outliers[3] = 0.75f;
  outliers[77] = -1.5f;
  outliers[130] = 2.25f;
  outliers[200] = -3.0f;
  outliers[255] = 4.0f;
  return x;
}

std::vector<float> GenerateImatrix() {
  std::vector<float> v(kCols);
  for (int j = 0; j < kCols; ++j) {
    v[j] = static_cast<float>(1 + (j * 37) % 64) / 16.0f;
    if (j % 64 == 7) v[j] *= 16.0f;
  }
  return v;
}

std::vector<uint8_t> AsBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

struct ManifestRow {
  std::string type;
  uint32_t ggml_id;
  int block_elems;
  int block_bytes;
  int64_t row_bytes;
  std::string variant;
  std::string quant_file;
  std::string dequant_file;
};

std::vector<ManifestRow> ReadManifest() {
  std::ifstream in(RefVectorPath("manifest.tsv"));
  std::vector<ManifestRow> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    ManifestRow r;
    std::string bpw;
    fields >> r.type >> r.ggml_id >> r.block_elems >> r.block_bytes >> r.row_bytes >> bpw >> r.variant >>
        r.quant_file >> r.dequant_file;
    rows.push_back(r);
  }
  return rows;
}

TEST(RefVectorsTest, RegeneratedInputsEqualTheFiles) {
  std::vector<float> x = GenerateInput();
  uint32_t bits[2];
  std::memcpy(bits, &x[0], 8);
  EXPECT_EQ(bits[0], 0xbc0db02fu);  // sanity values quoted by the README
  EXPECT_EQ(bits[1], 0xbc30878eu);
  EXPECT_EQ(AsBytes(x), ReadFileBytes(RefVectorPath("input.f32")));
  EXPECT_EQ(AsBytes(GenerateImatrix()), ReadFileBytes(RefVectorPath("imatrix.f32")));
}

TEST(RefVectorsTest, ManifestAgreesWithTheTable) {
  std::vector<ManifestRow> rows = ReadManifest();
  ASSERT_GE(rows.size(), 50u);
  for (const ManifestRow& r : rows) {
    SCOPED_TRACE(r.quant_file);
    const Format* f = FindFormatByName(r.type);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->ggml_id, r.ggml_id);
    EXPECT_EQ(f->block_elems, r.block_elems);
    EXPECT_EQ(f->block_bytes, r.block_bytes);
    Result<int64_t> bytes = RowBytes(*f, kCols);
    ASSERT_TRUE(bytes.has_value());
    EXPECT_EQ(*bytes, r.row_bytes);
    EXPECT_EQ(static_cast<int64_t>(ReadFileBytes(RefVectorPath(r.quant_file)).size()), kRows * r.row_bytes);
  }
}

// Every type in the reference set, the IQ2/IQ3/IQ1 and FP4 ones included.
TEST(RefVectorsTest, DequantizeIsBitExact) {
  std::vector<ManifestRow> rows = ReadManifest();
  size_t checked = 0;
  for (const ManifestRow& r : rows) {
    SCOPED_TRACE(r.quant_file);
    const Format* f = FindFormatByName(r.type);
    ASSERT_NE(f, nullptr);
    ASSERT_TRUE(f->can_decode());
    std::vector<uint8_t> quant = ReadFileBytes(RefVectorPath(r.quant_file));
    std::vector<float> out(kRows * kCols);
    ASSERT_TRUE(DequantizeRows(*f, quant.data(), out.data(), kRows, kCols, 2).ok());
    EXPECT_EQ(AsBytes(out), ReadFileBytes(RefVectorPath(r.dequant_file)));
    ++checked;
  }
  EXPECT_EQ(checked, rows.size());
}

TEST(RefVectorsTest, GgmlQuantizeIsByteExact) {
  std::vector<float> x = GenerateInput();
  std::vector<float> imatrix = GenerateImatrix();
  int checked = 0;
  for (const ManifestRow& r : ReadManifest()) {
    const Format* f = FindFormatByName(r.type);
    ASSERT_NE(f, nullptr);
    if (!f->can_encode()) continue;
    SCOPED_TRACE(r.quant_file);
    const float* importance = r.variant == "imat" ? imatrix.data() : nullptr;
    std::vector<uint8_t> expected = ReadFileBytes(RefVectorPath(r.quant_file));
    // Pre-filled with a pattern so that an unwritten byte cannot pass by luck.
    std::vector<uint8_t> out(expected.size(), 0xA5);
    ASSERT_TRUE(QuantizeRows(*f, QuantMethod::kGgml, x.data(), out.data(), kRows, kCols, importance, 2).ok());
    for (int row = 0; row < kRows; ++row) {
      auto begin = static_cast<std::ptrdiff_t>(row * r.row_bytes);
      auto end = begin + static_cast<std::ptrdiff_t>(r.row_bytes);
      EXPECT_TRUE(std::equal(out.begin() + begin, out.begin() + end, expected.begin() + begin)) << "row " << row;
    }
    ++checked;
  }
  EXPECT_GE(checked, 30);
}

}  // namespace
}  // namespace mixq::formats
