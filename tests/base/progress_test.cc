// The progress facility: JSON Lines events, the bar with its ETA, silence.
#include "base/progress.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "test_support.h"

namespace mixq {
namespace {

// What a Progress wrote to a temporary FILE*.
std::string Contents(std::FILE* f) {
  std::string text;
  std::rewind(f);
  for (int c; (c = std::fgetc(f)) != EOF;) text += static_cast<char>(c);
  return text;
}

TEST(Progress, JsonEventsCarryStepItemAndEtaAndEndOnce) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    Progress p(ProgressStyle::kJsonLines, "quantize", 3, f);
    p.Update(0, "token_embd.weight");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    p.Update(1, "blk.0.attn_q.weight");
    p.Update(2, "blk.0.attn_k.weight");  // within 250 ms of the last: not emitted
    p.Update(3, "say \"hi\"\n");         // the last one always is, escaped
    p.Finish();
  }  // the destructor does not end it twice
  const auto events = testing::JsonLines(Contents(f));
  std::fclose(f);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0]["type"], "progress");
  EXPECT_EQ(events[0]["data"]["step"], "quantize");
  EXPECT_EQ(events[0]["data"]["item"], "token_embd.weight");
  EXPECT_TRUE(events[0]["data"]["eta_s"].is_null()) << "nothing done: no ETA";
  EXPECT_EQ(events[1]["data"]["done"], 1);
  EXPECT_EQ(events[1]["data"]["total"], 3);
  // One of three done after about 0.3 s: about 0.6 s left.
  EXPECT_NEAR(events[1]["data"]["eta_s"].get<double>(), 2 * events[1]["data"]["elapsed_s"].get<double>(), 0.01);
  EXPECT_GE(events[1]["data"]["eta_s"].get<double>(), 0.5);
  EXPECT_EQ(events[2]["data"]["item"], "say \"hi\"\n");
  EXPECT_EQ(events[2]["data"]["eta_s"], 0.0);
  EXPECT_EQ(events[3]["type"], "progress_end");
  EXPECT_EQ(events[3]["data"]["done"], 3);
}

TEST(Progress, BarShowsCountsEtaAndItemThenClears) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    Progress p(ProgressStyle::kBar, "measure", 4, f);
    p.Update(0, "blk.0.ffn_up.weight");
  }
  const std::string text = Contents(f);
  std::fclose(f);
  EXPECT_NE(text.find("measure [..."), std::string::npos) << text;
  EXPECT_NE(text.find("0/4"), std::string::npos) << text;
  EXPECT_NE(text.find("ETA --"), std::string::npos) << text;
  EXPECT_NE(text.find("blk.0.ffn_up.weight"), std::string::npos) << text;
  EXPECT_EQ(text.substr(text.size() - 4), "\r\033[K") << "cleared at the end";
}

TEST(Progress, SilentWritesNothing) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    Progress p(ProgressStyle::kSilent, "eval", 2, f);
    p.Update(1, "chunk 1");
    p.Update(2, "chunk 2");
  }
  EXPECT_EQ(Contents(f), "");
  std::fclose(f);
  EXPECT_EQ(ChooseProgressStyle(/*quiet=*/true, /*json=*/true), ProgressStyle::kSilent);
  EXPECT_EQ(ChooseProgressStyle(/*quiet=*/false, /*json=*/true), ProgressStyle::kJsonLines);
}

TEST(Progress, EtaAndDurations) {
  EXPECT_LT(EtaSeconds(5.0, 0, 10), 0.0);
  EXPECT_LT(EtaSeconds(5.0, 3, 0), 0.0);
  EXPECT_DOUBLE_EQ(EtaSeconds(5.0, 1, 10), 45.0);
  EXPECT_DOUBLE_EQ(EtaSeconds(5.0, 10, 10), 0.0);
  EXPECT_EQ(FormatDuration(7.4), "7s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(7440), "2h04m");
}

}  // namespace
}  // namespace mixq
