#include "measure/weight_errors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace mixq::measure {
namespace {

gguf::TensorInfo Shape(int64_t n, int64_t rows, int64_t matrices) {
  gguf::TensorInfo t;
  t.name = "blk.0.ffn_up.weight";
  t.n_dims = matrices > 1 ? 3 : 2;
  t.ne = {n, rows, matrices, 1};
  return t;
}

// Rows of normal values, row r scaled by `row_scale(r)`.
template <typename Scale>
std::vector<float> Values(const gguf::TensorInfo& t, Scale row_scale) {
  std::vector<float> w(static_cast<size_t>(t.n_elems()));
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    for (int64_t j = 0; j < t.ne[0]; ++j) w[static_cast<size_t>(r * t.ne[0] + j)] = row_scale(r) * normal(rng);
  }
  return w;
}

std::vector<float> Importance(int64_t n) {
  std::vector<float> imp(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) imp[static_cast<size_t>(j)] = 0.25f + static_cast<float>((j * 37) % 101) / 50.0f;
  return imp;
}

// The error of every row of one matrix's encoding, summed row after row.
double DirectError(const gguf::TensorInfo& t, const std::vector<float>& w, const std::vector<float>& imp,
                   const formats::Format& f, std::vector<uint8_t>* bytes) {
  const int64_t n = t.ne[0];
  const int64_t row_bytes = formats::RowBytes(f, n).value();
  bytes->assign(static_cast<size_t>(row_bytes * t.n_rows()), 0);
  std::vector<float> y(static_cast<size_t>(n));
  double total = 0;
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    const float* m_imp = imp.data() + (r / t.ne[1]) * n;
    uint8_t* code = bytes->data() + r * row_bytes;
    EXPECT_TRUE(formats::QuantizeRows(f, formats::QuantMethod::kBest, w.data() + r * n, code, 1, n, m_imp, 1).ok());
    EXPECT_TRUE(formats::DequantizeRows(f, code, y.data(), 1, n, 1).ok());
    double e = 0;
    for (int64_t j = 0; j < n; ++j) {
      const double d = static_cast<double>(w[static_cast<size_t>(r * n + j)]) - y[static_cast<size_t>(j)];
      e += m_imp[j] * d * d;
    }
    total += e;
  }
  return total;
}

// Types asked for in full: the bytes QuantizeRows writes, the exact size, and
// the error of every row with each matrix's own importance, whatever the
// thread count.
TEST(WeightErrorsTest, FullTypesGiveTheEncodingAndItsErrorForAnyThreadCount) {
  const gguf::TensorInfo t = Shape(256, 24, 3);  // three experts of 24 rows
  const std::vector<float> w = Values(t, [](int64_t r) { return 1.0f + static_cast<float>(r % 5); });
  std::vector<float> imp;
  for (int m = 0; m < 3; ++m) {
    std::vector<float> part = Importance(256);
    for (float& v : part) v *= static_cast<float>(m + 1);
    imp.insert(imp.end(), part.begin(), part.end());
  }
  const std::vector<const formats::Format*> types = {
      formats::FindFormatByName("Q4_K"), formats::FindFormatByName("IQ3_S"), formats::FindFormatByName("Q8_0")};
  const bool full[] = {true, true, true};
  for (int n_threads : {1, 2, 5}) {
    SCOPED_TRACE(n_threads);
    WeightErrorOptions o;
    o.n_threads = n_threads;
    o.error_rows = 6;  // not used: every type is in full
    auto r = WeightErrors(t, w, &imp, types, full, o);
    ASSERT_TRUE(r.has_value()) << r.error().message();
    ASSERT_EQ(r->size(), types.size());
    for (size_t i = 0; i < types.size(); ++i) {
      SCOPED_TRACE(std::string(types[i]->name));
      std::vector<uint8_t> bytes;
      const double error = DirectError(t, w, imp, *types[i], &bytes);
      EXPECT_EQ((*r)[i].format, types[i]);
      EXPECT_FALSE((*r)[i].estimated);
      EXPECT_EQ((*r)[i].bytes, bytes);
      EXPECT_EQ((*r)[i].n_bytes, static_cast<int64_t>(bytes.size()));
      EXPECT_EQ((*r)[i].error, error);
    }
  }
}

TEST(WeightErrorsTest, SampledRowsAreSpreadOverEachMatrix) {
  EXPECT_EQ(SampledRows(Shape(32, 8, 1), 2), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(SampledRows(Shape(32, 8, 2), 4), (std::vector<int64_t>{2, 6, 10, 14}));
  EXPECT_EQ(SampledRows(Shape(32, 3, 1), 0), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(SampledRows(Shape(32, 3, 1), 100), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(SampledRows(Shape(32, 4, 4), 2), (std::vector<int64_t>{2, 6, 10, 14}));  // at least a row per matrix
}

// A sampled type's bytes are not kept, its size is the whole tensor's, and
// its estimate is near the error of every row; a sample of every row is exact.
TEST(WeightErrorsTest, SampledTypesEstimateTheErrorOfEveryRow) {
  const gguf::TensorInfo t = Shape(256, 64, 1);
  const std::vector<float> w = Values(t, [](int64_t r) { return 1.0f + 0.01f * static_cast<float>(r); });
  const std::vector<float> imp = Importance(256);
  const std::vector<const formats::Format*> types = {
      formats::FindFormatByName("Q4_K"), formats::FindFormatByName("Q3_K"), formats::FindFormatByName("IQ2_XS")};
  const bool full[] = {true, false, false};
  WeightErrorOptions o;
  o.error_rows = 0;
  auto all = WeightErrors(t, w, &imp, types, full, o);
  ASSERT_TRUE(all.has_value()) << all.error().message();
  o.error_rows = 16;
  auto sampled = WeightErrors(t, w, &imp, types, full, o);
  ASSERT_TRUE(sampled.has_value()) << sampled.error().message();
  for (size_t i = 1; i < types.size(); ++i) {
    SCOPED_TRACE(std::string(types[i]->name));
    std::vector<uint8_t> bytes;
    EXPECT_EQ((*all)[i].error, DirectError(t, w, imp, *types[i], &bytes));
    EXPECT_FALSE((*all)[i].estimated);
    EXPECT_TRUE((*sampled)[i].estimated);
    EXPECT_TRUE((*sampled)[i].bytes.empty());
    EXPECT_EQ((*sampled)[i].n_bytes, static_cast<int64_t>(bytes.size()));
    EXPECT_NE((*sampled)[i].error, (*all)[i].error);
    EXPECT_NEAR((*sampled)[i].error / (*all)[i].error, 1.0, 0.05);
  }
  EXPECT_EQ((*sampled)[0].error, (*all)[0].error);
}

// Rows of two scales, 10x apart, and evenly spread rows that are all small
// ones: scaled by the rows kept, their sum misses the large rows' error (about
// 50x too low); drawn by the error of the full type nearest in bpw, and
// weighted by the ratio to it, the estimate stays near the error of every row.
TEST(WeightErrorsTest, SampledErrorFollowsTheNearestFullType) {
  const gguf::TensorInfo t = Shape(256, 64, 1);
  const std::vector<float> w = Values(t, [](int64_t r) { return r % 2 == 1 ? 10.0f : 1.0f; });
  ASSERT_EQ(SampledRows(t, 16)[1] % 2, 0);
  const std::vector<float> imp = Importance(256);
  const std::vector<const formats::Format*> types = {
      formats::FindFormatByName("Q2_K"), formats::FindFormatByName("Q4_K"), formats::FindFormatByName("IQ2_XS"),
      formats::FindFormatByName("Q6_K")};
  const bool none[] = {false, false, false, false};
  const bool calibrated[] = {true, true, false, false};
  WeightErrorOptions o;
  o.error_rows = 0;
  auto all = WeightErrors(t, w, &imp, types, none, o);
  ASSERT_TRUE(all.has_value()) << all.error().message();
  o.error_rows = 16;
  auto scaled = WeightErrors(t, w, &imp, types, none, o);
  auto ratio = WeightErrors(t, w, &imp, types, calibrated, o);
  ASSERT_TRUE(scaled.has_value() && ratio.has_value());
  for (size_t i = 2; i < types.size(); ++i) {
    SCOPED_TRACE(std::string(types[i]->name));
    EXPECT_LT((*scaled)[i].error, (*all)[i].error / 10);
    EXPECT_NEAR((*ratio)[i].error / (*all)[i].error, 1.0, 0.05);
  }
}

// The error of each row in type f, from a direct encoding.
std::vector<double> RowErrors(const gguf::TensorInfo& t, const std::vector<float>& w, const std::vector<float>& imp,
                              const formats::Format& f) {
  std::vector<double> out;
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    gguf::TensorInfo row = Shape(t.ne[0], 1, 1);
    std::vector<float> x(w.begin() + r * t.ne[0], w.begin() + (r + 1) * t.ne[0]);
    std::vector<uint8_t> bytes;
    out.push_back(DirectError(row, x, imp, f, &bytes));
  }
  return out;
}

// One row is 100x larger and has an outlier, which the types handle
// differently: it holds most of the error, and its ratio between types is not
// the other rows'. Evenly spread rows miss it, so a ratio over them is far
// off; rows drawn by the control's error cannot miss it.
TEST(WeightErrorsTest, ARowWithMostOfTheErrorIsAlwaysDrawn) {
  const gguf::TensorInfo t = Shape(256, 64, 1);
  std::vector<float> w = Values(t, [](int64_t r) { return r == 37 ? 100.0f : 1.0f; });
  w[37 * 256 + 5] = 8000;
  const std::vector<float> imp = Importance(256);
  const std::vector<const formats::Format*> types = {
      formats::FindFormatByName("Q4_K"), formats::FindFormatByName("Q8_0"), formats::FindFormatByName("Q6_K")};
  const bool none[] = {false, false, false};
  const bool calibrated[] = {true, false, false};
  WeightErrorOptions o;
  o.error_rows = 0;
  auto all = WeightErrors(t, w, &imp, types, none, o);
  o.error_rows = 4;
  auto drawn = WeightErrors(t, w, &imp, types, calibrated, o);
  ASSERT_TRUE(all.has_value() && drawn.has_value());
  const std::vector<double> control = RowErrors(t, w, imp, *types[0]);
  double control_all = 0, control_even = 0;
  for (double e : control) control_all += e;
  for (int64_t r : SampledRows(t, 4)) control_even += control[static_cast<size_t>(r)];
  for (size_t i = 1; i < types.size(); ++i) {
    SCOPED_TRACE(std::string(types[i]->name));
    const std::vector<double> e = RowErrors(t, w, imp, *types[i]);
    double even = 0;
    for (int64_t r : SampledRows(t, 4)) even += e[static_cast<size_t>(r)];
    EXPECT_GT(std::abs(control_all * even / control_even / (*all)[i].error - 1), 0.2);  // the case is hard
    EXPECT_NEAR((*drawn)[i].error / (*all)[i].error, 1.0, 0.02);
  }
}

TEST(WeightErrorsTest, WithoutImportanceEveryWeightCountsOnce) {
  const gguf::TensorInfo t = Shape(64, 4, 1);
  const std::vector<float> w = Values(t, [](int64_t) { return 1.0f; });
  const std::vector<const formats::Format*> types = {formats::FindFormatByName("Q8_0")};
  const bool full[] = {true};
  auto r = WeightErrors(t, w, nullptr, types, full, WeightErrorOptions{});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  std::vector<uint8_t> bytes;
  EXPECT_EQ((*r)[0].error, DirectError(t, w, std::vector<float>(64, 1.0f), *types[0], &bytes));
}

TEST(WeightErrorsTest, NonFiniteWeightIsCorruptionNamingTheTensor) {
  const gguf::TensorInfo t = Shape(64, 4, 1);
  std::vector<float> w = Values(t, [](int64_t) { return 1.0f; });
  w[2 * 64 + 5] = NAN;
  const std::vector<const formats::Format*> types = {formats::FindFormatByName("Q8_0")};
  const bool full[] = {true};
  auto r = WeightErrors(t, w, nullptr, types, full, WeightErrorOptions{});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(r.error().message().find("blk.0.ffn_up.weight"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace mixq::measure
