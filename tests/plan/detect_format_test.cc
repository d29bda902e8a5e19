// Telling measurement formats apart by content, on the real seed files and on
// mixq's own documents; what the errors say the input is instead.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "plan/plan.h"
#include "test_support.h"

namespace mixq::plan {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Measurement OneUnit() {
  Measurement m;
  m.units.push_back({"blk.0.attn_q.weight", {}, 4096, {{"Q4_K", 2304, 0.5}, {"Q8_0", 4352, 0.1}}});
  return m;
}

// The message of a detection that must fail.
std::string DetectError(std::string_view text) {
  auto f = DetectMeasurementFormat(text);
  EXPECT_FALSE(f.has_value());
  if (f.has_value()) return "";
  EXPECT_EQ(f.error().kind(), StatusKind::kCorruption);
  return f.error().message();
}

TEST(DetectMeasurementFormat, SeedFilesAndMixqMeasurements) {
  const std::string exl2 = ReadFile(testing::SeedPath("002_68e96ba8af961ce5.txt"));
  const std::string table = ReadFile(testing::SeedPath("000_b622eb4ec4e2b348.txt"));
  ASSERT_FALSE(exl2.empty());
  ASSERT_FALSE(table.empty());
  EXPECT_EQ(*DetectMeasurementFormat(exl2), MeasurementFormat::kExl2);
  EXPECT_EQ(*DetectMeasurementFormat(table), MeasurementFormat::kCostTable);
  EXPECT_EQ(*DetectMeasurementFormat(MeasurementToJson(OneUnit())), MeasurementFormat::kMixq);
  EXPECT_EQ(*DetectMeasurementFormat(" \n" + MeasurementToJson(OneUnit())), MeasurementFormat::kMixq);
  EXPECT_TRUE(IsCostTable(table));
  EXPECT_FALSE(IsCostTable("| bits | 4 |\n"));  // a bits row, but no table header above it
}

TEST(DetectMeasurementFormat, ErrorsSayWhatTheInputIs) {
  Plan p;
  p.units.push_back({"blk.0.attn_q.weight", {}, "Q4_K", 4096, 2304, 0.5});
  EXPECT_NE(DetectError(PlanToJson(p)).find("schema 'mixq.plan'"), std::string::npos);
  const std::vector<uint8_t> gguf = testing::ReadFileBytes(testing::RefDevModel());
  EXPECT_NE(DetectError(std::string_view(reinterpret_cast<const char*>(gguf.data()), 4096)).find("a GGUF file"),
            std::string::npos);
  EXPECT_NE(DetectError(R"({"layers": [], "model": "x"})").find("keys 'layers', 'model'"), std::string::npos);
  EXPECT_NE(DetectError(R"({"measurement": [)").find("does not parse"), std::string::npos);
  EXPECT_NE(DetectError("[1, 2]").find("not an object"), std::string::npos);
  EXPECT_NE(DetectError("# notes\n\nno table here\n").find("without a markdown table"), std::string::npos);
  EXPECT_NE(DetectError("").find("empty"), std::string::npos);
  EXPECT_NE(DetectError(std::string("ab\0cd", 5)).find("binary"), std::string::npos);
}

TEST(MeasurementFormatName, RoundTripsAndRejectsOthers) {
  for (auto f : {MeasurementFormat::kMixq, MeasurementFormat::kExl2, MeasurementFormat::kCostTable}) {
    EXPECT_EQ(*ParseMeasurementFormatName(MeasurementFormatName(f)), f);
  }
  auto bad = ParseMeasurementFormatName("gguf");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().kind(), StatusKind::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("mixq, exl2, flux-table"), std::string::npos) << bad.error().message();
}

}  // namespace
}  // namespace mixq::plan
