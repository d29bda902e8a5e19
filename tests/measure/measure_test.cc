#include "measure/measure.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "base/file_lock.h"
#include "engine/engine.h"
#include "engine/engine_test_util.h"
#include "measure/cache.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace mixq::measure {
namespace {

const formats::Format* Type(const char* name) { return formats::FindFormatByName(name); }

// A small random llama and byte tokens: cheap enough to measure at several depths.
struct SmallModel {
  SmallModel(const testing::TempDir& dir, int64_t n_layer) {
    engine::test::RandomModelSpec spec;
    spec.n_layer = n_layer;
    path = dir.File(std::to_string(n_layer) + "-layers.gguf");
    engine::test::WriteRandomModel(path, spec);
    auto f = gguf::GgufFile::Open(path);
    EXPECT_TRUE(f.has_value());
    file = std::make_unique<gguf::GgufFile>(std::move(f).value());
    std::mt19937 rng(3);
    for (int i = 0; i < 64; ++i) tokens.push_back(static_cast<int32_t>(3 + rng() % 256));
  }
  std::string path;
  std::unique_ptr<gguf::GgufFile> file;
  std::vector<int32_t> tokens;
};

// A random llama 256 wide (so that every block size fits its rows) and 64
// byte tokens; `adjust` changes its spec.
struct WideModel {
  explicit WideModel(const testing::TempDir& dir, const std::function<void(engine::test::RandomModelSpec&)>& adjust) {
    engine::test::RandomModelSpec spec;
    spec.n_embd = 256;
    spec.n_ff = 256;
    spec.head_dim = 64;
    adjust(spec);
    const std::string path = dir.File("wide.gguf");
    engine::test::WriteRandomModel(path, spec);
    auto f = gguf::GgufFile::Open(path);
    EXPECT_TRUE(f.has_value());
    file = std::make_unique<gguf::GgufFile>(std::move(f).value());
    for (int i = 0; i < 64; ++i) tokens.push_back(static_cast<int32_t>(3 + (i * 37) % 256));
  }
  std::unique_ptr<gguf::GgufFile> file;
  std::vector<int32_t> tokens;
};

MeasureOptions SmallOptions(CalibrationScheme scheme) {
  MeasureOptions o;
  o.types = {Type("Q4_0"), Type("Q8_0")};
  o.calibration_types = {Type("Q4_0")};
  o.scheme = scheme;
  o.n_ctx = 32;
  o.n_chunks = 2;
  o.bos_id = 1;
  return o;
}

MeasureResult Measure(const gguf::GgufFile& file, std::span<const int32_t> tokens, const MeasureOptions& o) {
  auto r = MeasureModel(file, tokens, o);
  EXPECT_TRUE(r.has_value()) << r.error().message();
  return r.has_value() ? std::move(r).value() : MeasureResult{};
}

std::map<std::string, double> CostsOf(const MeasureResult& r, const std::string& type) {
  std::map<std::string, double> out;
  for (const auto& u : r.measurement.units) {
    for (const auto& o : u.options) {
      if (o.type == type) out[u.name] = o.cost;
    }
  }
  return out;
}

// 7 matrices per layer: each is rerun alone, those of probe layers onwards to
// the output; token_embd always runs every layer, the output head none.
int64_t ExpectedLinearPasses(int64_t n_layer, const std::vector<int64_t>& probes) {
  int64_t passes = n_layer + 7 * (n_layer - static_cast<int64_t>(probes.size()));
  for (int64_t c : probes) passes += 7 * (n_layer - c);
  return passes;
}

TEST(MeasureTest, LinearLayerPassesGrowLinearlyWithDepth) {
  testing::TempDir dir;
  const std::map<int64_t, std::vector<int64_t>> probes = {{4, {0, 1, 2, 3}}, {8, {0, 2, 5, 7}}, {16, {0, 5, 10, 15}}};
  std::map<int64_t, int64_t> passes;
  for (const auto& [n_layer, p] : probes) {
    SmallModel m(dir, n_layer);
    passes[n_layer] = Measure(*m.file, m.tokens, SmallOptions(CalibrationScheme::kLinear)).n_forward_layers;
    EXPECT_EQ(passes[n_layer], ExpectedLinearPasses(n_layer, p)) << n_layer << " layers";
  }
  // Per layer, doubling the depth costs at most a few percent more (the exact
  // scheme's per-layer cost doubles).
  EXPECT_LT(passes[16] / 16.0, 1.1 * passes[8] / 8.0);
  SmallModel m8(dir, 8);
  EXPECT_EQ(Measure(*m8.file, m8.tokens, SmallOptions(CalibrationScheme::kExact)).n_forward_layers, 8 + 7 * 36);
}

TEST(MeasureTest, LinearWithEveryLayerProbedIsExact) {
  testing::TempDir dir;
  SmallModel m(dir, 4);
  const auto exact = CostsOf(Measure(*m.file, m.tokens, SmallOptions(CalibrationScheme::kExact)), "Q4_0");
  const auto linear = CostsOf(Measure(*m.file, m.tokens, SmallOptions(CalibrationScheme::kLinear)), "Q4_0");
  ASSERT_EQ(exact.size(), 30u);
  EXPECT_EQ(exact, linear);
}

TEST(MeasureTest, CacheResumesAndIsKeyedByTheSchemeAndSampling) {
  testing::TempDir dir;
  SmallModel m(dir, 8);
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.cache_path = dir.File("cache");
  const MeasureResult first = Measure(*m.file, m.tokens, o);
  const MeasureResult again = Measure(*m.file, m.tokens, o);
  EXPECT_GT(first.n_forward_layers, 0);
  EXPECT_EQ(again.n_forward_layers, 0);
  EXPECT_EQ(CostsOf(first, "Q4_0"), CostsOf(again, "Q4_0"));
  EXPECT_EQ(CostsOf(first, "Q8_0"), CostsOf(again, "Q8_0"));
  o.probe_layers = 3;
  EXPECT_GT(Measure(*m.file, m.tokens, o).n_forward_layers, 0);
  o.error_rows = 16;
  EXPECT_GT(Measure(*m.file, m.tokens, o).n_forward_layers, 0);
  o.scheme = CalibrationScheme::kExact;
  EXPECT_EQ(Measure(*m.file, m.tokens, o).n_forward_layers, 8 + 7 * 36);
}

// Where the time went: the weight-space errors are part of the run's time,
// every candidate type has its CPU seconds, and a run that reads every tensor
// from the cache measured none.
TEST(MeasureTest, ReportsTheTimeOfTheWeightSpaceErrorsByType) {
  testing::TempDir dir;
  SmallModel m(dir, 2);
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.cache_path = dir.File("cache");
  const MeasureResult first = Measure(*m.file, m.tokens, o);
  EXPECT_GT(first.weight_seconds, 0);
  EXPECT_LE(first.weight_seconds + first.forward_seconds, first.seconds);
  ASSERT_EQ(first.type_cpu_seconds.size(), 2u);
  for (const char* type : {"Q4_0", "Q8_0"}) {
    ASSERT_TRUE(first.type_cpu_seconds.contains(type)) << type;
    EXPECT_GT(first.type_cpu_seconds.at(type), 0) << type;
  }
  const MeasureResult again = Measure(*m.file, m.tokens, o);
  EXPECT_EQ(again.weight_seconds, 0);
  EXPECT_TRUE(again.type_cpu_seconds.empty());
}

// The cache stands for its inputs' content, not their sizes: other tokens, a
// same-size model with other weights, or an imatrix with the same entry count
// and sum, each make the run measure afresh and say why.
// The devices' forward passes agree to rounding only: a cache made on one is
// stale on the other.
TEST(MeasureTest, CacheIsKeyedByTheDevice) {
  testing::TempDir dir;
  SmallModel m(dir, 2);
  const MeasureOptions cpu = SmallOptions(CalibrationScheme::kLinear);
  MeasureOptions cuda = cpu;
  cuda.load.device = engine::Device::kCuda;
  const std::vector<const formats::Format*> types = {formats::FindFormatByName("Q4_K")};
  const CacheKey on_cpu = MeasureCacheKey(*m.file, m.tokens, cpu, types, types);
  const CacheKey on_cuda = MeasureCacheKey(*m.file, m.tokens, cuda, types, types);
  EXPECT_NE(on_cpu, on_cuda);
  EXPECT_EQ(on_cuda.at("device"), "cuda");
}

TEST(MeasureTest, CacheIsKeyedByTheContentOfItsInputs) {
  testing::TempDir dir;
  SmallModel m(dir, 2);
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.cache_path = dir.File("cache");
  std::vector<std::string> notes;
  o.on_note = [&](const std::string& note) { notes.push_back(note); };
  auto measured_afresh = [&](const gguf::GgufFile& file, std::span<const int32_t> tokens, const char* why) {
    notes.clear();
    const bool fresh = Measure(file, tokens, o).n_forward_layers > 0;
    EXPECT_TRUE(notes.empty() || notes[0].find(why) != std::string::npos) << notes[0];
    return fresh && !notes.empty();
  };
  EXPECT_GT(Measure(*m.file, m.tokens, o).n_forward_layers, 0);
  EXPECT_EQ(Measure(*m.file, m.tokens, o).n_forward_layers, 0);

  std::vector<int32_t> other_tokens = m.tokens;
  std::swap(other_tokens[5], other_tokens[40]);
  EXPECT_TRUE(measured_afresh(*m.file, other_tokens, "calibration tokens changed"));

  engine::test::RandomModelSpec spec;
  spec.seed = 2;
  engine::test::WriteRandomModel(dir.File("fine-tune.gguf"), spec);
  auto tuned = gguf::GgufFile::Open(dir.File("fine-tune.gguf"));
  ASSERT_TRUE(tuned.has_value());
  ASSERT_EQ(tuned->file_size(), m.file->file_size());
  EXPECT_TRUE(measured_afresh(*tuned, other_tokens, "model changed"));

  quantize::Imatrix imatrix;
  std::vector<float> sums(64);
  std::iota(sums.begin(), sums.end(), 1.0f);
  imatrix.entries["blk.0.attn_q.weight"] = {sums, {1.0f}};
  o.imatrix = &imatrix;
  EXPECT_TRUE(measured_afresh(*tuned, other_tokens, "imatrix changed"));
  quantize::Imatrix reordered = imatrix;
  std::reverse(reordered.entries["blk.0.attn_q.weight"].in_sum2.begin(),
               reordered.entries["blk.0.attn_q.weight"].in_sum2.end());
  o.imatrix = &reordered;
  EXPECT_TRUE(measured_afresh(*tuned, other_tokens, "imatrix changed"));
  EXPECT_EQ(Measure(*tuned, other_tokens, o).n_forward_layers, 0);
}

// A second run on a cache another process holds waits for it (saying so),
// instead of truncating the file under it or appending to another key's
// records; afterwards each run's result holds only its own types.
TEST(MeasureTest, CacheWaitsWhileAnotherRunHoldsIt) {
  testing::TempDir dir;
  SmallModel m(dir, 2);
  auto acquired = FileLock::Acquire(dir.File("cache"), nullptr);  // as another process would hold it
  ASSERT_TRUE(acquired.has_value());
  std::optional<FileLock> held(std::move(acquired).value());
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.types = {Type("Q4_0")};
  o.cache_path = dir.File("cache");
  std::promise<std::string> waiting;
  o.on_note = [&](const std::string& note) { waiting.set_value(note); };
  std::optional<MeasureResult> result;
  std::thread run([&] { result = Measure(*m.file, m.tokens, o); });
  auto note = waiting.get_future();
  const bool waited = note.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  held.reset();
  run.join();
  ASSERT_TRUE(waited) << "the run did not wait for the lock";
  EXPECT_EQ(note.get(), "measure: waiting for cache '" + dir.File("cache") + "', locked by another mixq run");
  EXPECT_GT(result->n_forward_layers, 0);
  for (const auto& u : result->measurement.units) {
    for (const auto& option : u.options) EXPECT_TRUE(option.type == "Q4_0" || option.type == "F32") << option.type;
  }
}

std::vector<double> Ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size(); ++i) r[idx[i]] = static_cast<double>(i);
  return r;
}

double Spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const auto ra = Ranks(a), rb = Ranks(b);
  const double n = static_cast<double>(a.size());
  double d2 = 0;
  for (size_t i = 0; i < ra.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  return 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
}

// Two probe layers of six (a harder case than the default four): the four
// layers in between are predicted, not propagated.
TEST(MeasureTest, LinearRanksRefDevTensorsLikeExact) {
  auto file = gguf::GgufFile::Open(testing::RefDevModel());
  ASSERT_TRUE(file.has_value()) << file.error().message();
  auto tok = tokenizer::Tokenizer::FromGguf(*file);
  ASSERT_TRUE(tok.has_value());
  const auto tokens = engine::TokenizeForEval(*tok, testing::RefDevTextStart(20000));
  MeasureOptions o;
  o.types = {Type("Q2_K"), Type("Q4_K")};
  o.method = formats::QuantMethod::kGgml;  // the search of kBest would dominate the test's time
  o.n_ctx = 256;
  o.n_chunks = 2;
  o.bos_id = 1;
  o.scheme = CalibrationScheme::kExact;
  const MeasureResult exact = Measure(*file, tokens, o);
  o.scheme = CalibrationScheme::kLinear;
  o.probe_layers = 2;
  const MeasureResult linear = Measure(*file, tokens, o);
  EXPECT_LT(linear.n_forward_layers, exact.n_forward_layers * 2 / 3);
  for (const char* type : {"Q2_K", "Q4_K"}) {
    const auto e = CostsOf(exact, type), l = CostsOf(linear, type);
    ASSERT_EQ(e.size(), 44u);
    std::vector<double> ev, lv, ratios;
    for (const auto& [name, cost] : e) {
      ev.push_back(cost);
      lv.push_back(l.at(name));
      ratios.push_back(l.at(name) / cost);
    }
    EXPECT_GT(Spearman(ev, lv), 0.9) << type;
    std::nth_element(ratios.begin(), ratios.begin() + 22, ratios.end());
    EXPECT_GT(ratios[22], 0.5) << type;
    EXPECT_LT(ratios[22], 2.0) << type;
  }
}

// A cache line of valid JSON but the wrong shape (a hand edit, another
// version) is bad data in a named file, not an internal error.
TEST(MeasureTest, GarbledCacheLineIsCorruptionNamingTheFile) {
  testing::TempDir dir;
  SmallModel m(dir, 2);
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.cache_path = dir.File("cache");
  Measure(*m.file, m.tokens, o);
  auto bytes = testing::ReadFileBytes(o.cache_path);
  std::string text(bytes.begin(), bytes.end());
  const size_t at = text.find("\"tensor\":\"");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 10, "\"tensor\":[1],\"x\":\"");
  testing::WriteFileBytes(o.cache_path, std::vector<uint8_t>(text.begin(), text.end()));

  auto r = MeasureModel(*m.file, m.tokens, o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), StatusKind::kCorruption);
  EXPECT_NE(r.error().message().find(o.cache_path), std::string::npos) << r.error().message();
}

// IQ2_XS cannot be encoded without importance: asked for without an imatrix
// it is refused, and with one it is a candidate only for the tensors the
// imatrix covers.
TEST(MeasureTest, TypesThatNeedAnImatrixAreCandidatesOnlyWhereItCovers) {
  testing::TempDir dir;
  const WideModel m(dir, [](engine::test::RandomModelSpec&) {});
  ASSERT_TRUE(m.file != nullptr);
  const gguf::GgufFile* file = m.file.get();
  const std::vector<int32_t>& tokens = m.tokens;
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.types = {Type("Q4_0"), Type("IQ2_XS")};
  auto refused = MeasureModel(*file, tokens, o);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind(), StatusKind::kInvalidArgument);
  EXPECT_NE(refused.error().message().find("IQ2_XS needs an importance matrix"), std::string::npos);

  quantize::Imatrix im;
  im.entries["blk.1.attn_q.weight"] = {std::vector<float>(256, 2.0f), {1.0f}};
  o.imatrix = &im;
  MeasureResult r = Measure(*file, tokens, o);
  std::map<std::string, double> iq2 = CostsOf(r, "IQ2_XS");
  EXPECT_EQ(iq2.size(), 1u);
  EXPECT_EQ(iq2.count("blk.1.attn_q.weight"), 1u);
  EXPECT_GT(CostsOf(r, "Q4_0").size(), 10u);
}

// The bytes measure promises for each option are the bytes quantize writes:
// for every type mixq can encode, the measured data bytes of an all-T mix
// (kept tensors included) are the written file's data section, and the
// measured header bound holds the written header.
TEST(MeasureTest, MeasuredBytesAreTheBytesQuantizeWritesForEveryType) {
  testing::TempDir dir;
  const WideModel m(dir, [](engine::test::RandomModelSpec& spec) {
    spec.n_layer = 1;
    spec.type = "F16";
  });
  ASSERT_TRUE(m.file != nullptr);
  const gguf::GgufFile* file = m.file.get();
  const std::vector<int32_t>& tokens = m.tokens;
  quantize::Imatrix im;  // covering every weight, so that every type is a candidate
  for (const auto& t : file->tensors()) im.entries[t.name] = {std::vector<float>(t.ne[0], 1.0f), {1.0f}};
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.types.clear();  // every encodable type
  o.imatrix = &im;
  o.n_chunks = 1;
  MeasureResult r = Measure(*file, tokens, o);
  quantize::QuantizeOptions qo;
  qo.imatrix = &im;
  auto header_bound = quantize::MaxHeaderBytes(*file, qo);
  ASSERT_TRUE(header_bound.has_value());
  int n_types = 0;
  for (const formats::Format& f : formats::AllFormats()) {
    if (!f.quantized || !f.can_encode()) continue;
    SCOPED_TRACE(std::string(f.name));
    ++n_types;
    int64_t predicted = r.measurement.fixed_n_bytes;
    qo.rules = {};
    for (const auto& u : r.measurement.units) {
      auto option = std::find_if(u.options.begin(), u.options.end(), [&](const auto& x) { return x.type == f.name; });
      ASSERT_NE(option, u.options.end()) << u.name;
      predicted += option->n_bytes;
      qo.rules.exact[u.name] = &f;
    }
    const std::string out = dir.File("all.gguf");
    auto report = quantize::QuantizeModel(*file, out, qo);
    ASSERT_TRUE(report.has_value()) << report.error().message();
    auto written = gguf::GgufFile::Open(out);
    ASSERT_TRUE(written.has_value());
    const int64_t size = static_cast<int64_t>(std::filesystem::file_size(out));
    EXPECT_EQ(size, static_cast<int64_t>(report->file_bytes));
    EXPECT_EQ(predicted - static_cast<int64_t>(*header_bound), size - static_cast<int64_t>(written->data_offset()));
    EXPECT_LE(written->data_offset(), *header_bound);
  }
  EXPECT_GE(n_types, 25);  // every quantized type of the table mixq encodes
}

// A type that is not calibrated gets its error from a spread sample of rows:
// same bytes, the calibrated type's costs untouched, the others near the costs
// from every row, and a sample as large as the tensor is no sample.
TEST(MeasureTest, ErrorsFromSampledRowsEstimateTheErrorsOfAllRows) {
  testing::TempDir dir;
  const WideModel m(dir, [](engine::test::RandomModelSpec& spec) {
    spec.n_ff = 512;
    spec.n_layer = 1;
  });
  ASSERT_TRUE(m.file != nullptr);
  const gguf::GgufFile* file = m.file.get();
  const std::vector<int32_t>& tokens = m.tokens;
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.types = {Type("Q4_0"), Type("Q3_K"), Type("Q8_0")};
  o.n_chunks = 1;
  o.error_rows = 0;
  const MeasureResult all = Measure(*file, tokens, o);
  o.error_rows = 64;
  const MeasureResult sampled = Measure(*file, tokens, o);
  o.error_rows = 1 << 20;
  const MeasureResult whole = Measure(*file, tokens, o);
  ASSERT_EQ(all.measurement.units.size(), sampled.measurement.units.size());
  int differing = 0;
  for (size_t i = 0; i < all.measurement.units.size(); ++i) {
    const plan::Unit& a = all.measurement.units[i];
    const plan::Unit& s = sampled.measurement.units[i];
    ASSERT_EQ(a.options.size(), s.options.size()) << a.name;
    for (size_t k = 0; k < a.options.size(); ++k) {
      SCOPED_TRACE(a.name + " " + a.options[k].type);
      EXPECT_EQ(a.options[k].n_bytes, s.options[k].n_bytes);
      EXPECT_EQ(a.options[k].cost, whole.measurement.units[i].options[k].cost);
      if (a.options[k].type == "Q4_0" || a.options[k].cost == 0) {
        EXPECT_EQ(a.options[k].cost, s.options[k].cost);
        continue;
      }
      EXPECT_NEAR(s.options[k].cost / a.options[k].cost, 1.0, 0.1);
      differing += s.options[k].cost != a.options[k].cost;
    }
  }
  EXPECT_GT(differing, 0);  // tensors have more than 64 rows: some costs are estimates
}

// Small tensors have their uncalibrated types encoded side by side, one
// thread each, large ones their rows spread over the threads: the records
// (and so every cost) must be the same for any thread count.
TEST(MeasureTest, RecordsDoNotDependOnTheThreadCount) {
  testing::TempDir dir;
  // ffn matrices of 128K weights: encoded row-parallel from 2 threads on when
  // not sampled; the attention matrices and samples side by side.
  const WideModel m(dir, [](engine::test::RandomModelSpec& spec) {
    spec.n_layer = 1;
    spec.n_ff = 512;
  });
  ASSERT_TRUE(m.file != nullptr);
  MeasureOptions o = SmallOptions(CalibrationScheme::kLinear);
  o.types = {Type("Q4_0"), Type("Q3_K"), Type("IQ4_XS"), Type("Q8_0")};
  o.n_chunks = 1;
  for (int64_t error_rows : {0, 128}) {
    o.error_rows = error_rows;
    o.n_threads = 1;
    const MeasureResult one = Measure(*m.file, m.tokens, o);
    for (int n_threads : {2, 5}) {
      o.n_threads = n_threads;
      const MeasureResult many = Measure(*m.file, m.tokens, o);
      ASSERT_EQ(one.measurement.units.size(), many.measurement.units.size());
      for (size_t i = 0; i < one.measurement.units.size(); ++i) {
        const plan::Unit& a = one.measurement.units[i];
        const plan::Unit& b = many.measurement.units[i];
        ASSERT_EQ(a.options.size(), b.options.size()) << a.name;
        for (size_t k = 0; k < a.options.size(); ++k) {
          SCOPED_TRACE(a.name + " " + a.options[k].type + " threads " + std::to_string(n_threads) + " error rows " +
                       std::to_string(error_rows));
          EXPECT_EQ(a.options[k].type, b.options[k].type);
          EXPECT_EQ(a.options[k].n_bytes, b.options[k].n_bytes);
          EXPECT_EQ(a.options[k].cost, b.options[k].cost);
        }
      }
    }
  }
}

}  // namespace
}  // namespace mixq::measure
