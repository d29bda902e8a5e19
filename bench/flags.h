// The benchmarks' own `--name=value` flags (the ones Google Benchmark does not
// parse).
#ifndef MIXQ_BENCH_FLAGS_H_
#define MIXQ_BENCH_FLAGS_H_

#include <string_view>

namespace mixq::bench {

// The value after `prefix` (e.g. "--rows=") when `arg` starts with it, else null.
inline const char* FlagValue(const char* arg, std::string_view prefix) {
  return std::string_view(arg).substr(0, prefix.size()) == prefix ? arg + prefix.size() : nullptr;
}

}  // namespace mixq::bench

#endif  // MIXQ_BENCH_FLAGS_H_
