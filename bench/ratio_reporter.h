// A console reporter for the benchmarks that race mixq against llama.cpp:
// the usual output, then a table of each workload's best rate per contender
// (best of the repetitions: on a shared machine the fastest run is the least
// disturbed) and each contender's ratio to llama.cpp's.
#ifndef MIXQ_BENCH_RATIO_REPORTER_H_
#define MIXQ_BENCH_RATIO_REPORTER_H_

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace mixq::bench {

// Benchmarks are named "<prefix><workload>/<contender>"; the anchor
// contender is "llama.cpp".
struct RatioTable {
  std::string counter;                   // the user counter holding the rate
  std::string prefix;                    // stripped from the workload column
  std::string title;                     // the workload column's header
  int title_width = 28;                  // its width
  const char* rate_format = "%14.0f";    // one rate
  std::vector<std::string> contenders;   // the other contenders, in column order
  std::vector<std::string> ratio_names;  // a header per contender's ratio column
};

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  explicit RatioReporter(RatioTable table) : table_(std::move(table)) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      const std::string name = run.run_name.function_name;  // without "/real_time"
      const size_t slash = name.rfind('/');
      auto it = run.counters.find(table_.counter);
      if (it == run.counters.end()) continue;
      double& rate = rates_[name.substr(0, slash)][name.substr(slash + 1)];
      rate = std::max(rate, it->second.value);
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n%-*s %14s", table_.title_width, table_.title.c_str(), "llama.cpp");
    for (const std::string& c : table_.contenders) std::printf(" %14s", c.c_str());
    for (const std::string& r : table_.ratio_names) std::printf(" %10s", r.c_str());
    std::printf("\n");
    for (const auto& [key, rates] : rates_) {
      auto get = [&](const std::string& c) {
        auto it = rates.find(c);
        return it == rates.end() ? 0.0 : it->second;
      };
      const double anchor = get("llama.cpp");
      std::printf("%-*s ", table_.title_width, key.c_str() + std::min(key.size(), table_.prefix.size()));
      std::printf(table_.rate_format, anchor);
      for (const std::string& c : table_.contenders) {
        std::printf(" ");
        std::printf(table_.rate_format, get(c));
      }
      for (const std::string& c : table_.contenders) {
        if (anchor > 0) {
          std::printf(" %9.2fx", get(c) / anchor);
        } else {
          std::printf(" %10s", "-");
        }
      }
      std::printf("\n");
    }
  }

 private:
  RatioTable table_;
  std::map<std::string, std::map<std::string, double>> rates_;
};

}  // namespace mixq::bench

#endif  // MIXQ_BENCH_RATIO_REPORTER_H_
