#!/usr/bin/env bash
# The test command: warning-free release build + all tests (llama.cpp oracle
# included), the sanitizer build of the tests, and a short fuzzing run.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${JOBS:-2}"
oracle="$(scripts/setup-oracle.sh)"
# The chart library `mixq report` inlines; the report's browser test needs it (and chromium).
scripts/setup-report.sh > /dev/null

echo "== clang-format"
git ls-files '*.cc' '*.h' | xargs clang-format --dry-run --Werror

# Unity builds (each library and test binary compiled as a few large units) take
# a third of the time of file-by-file builds on two cores: the headers (CLI11,
# nlohmann-json, GoogleTest) are parsed and their templates compiled once per
# unit. Names in anonymous namespaces must therefore be unique per library.
unity=-DCMAKE_UNITY_BUILD=ON

echo "== release build (-Werror) and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMIXQ_WERROR=ON -DMIXQ_ORACLE="$oracle" $unity > /dev/null
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure

echo "== address + undefined sanitizers (${SECONDS} s so far)"
# -g1 (line tables) is enough for sanitizer stack traces and compiles faster than full debug info.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DMIXQ_WERROR=ON -DMIXQ_SANITIZE=ON -DMIXQ_ORACLE="" $unity > /dev/null
cmake --build build-asan -j"$jobs"
# The report's browser tests judge the page in Chromium, not memory: the release build runs them.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -j"$jobs" --output-on-failure -E 'OracleCompat|Oracle|ReportInBrowser'

echo "== fuzzing (libFuzzer, clang) (${SECONDS} s so far)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1" \
  -DMIXQ_FUZZ=ON -DMIXQ_TESTS=ON $unity > /dev/null
fuzzers=$(cd tests/fuzz && ls *_fuzz.cc | sed 's/\.cc$//')
cmake --build build-fuzz -j"$jobs" --target $fuzzers
for f in $fuzzers; do
  corpus="build-fuzz/corpus-$f"
  mkdir -p "$corpus"
  cp -f tests/fuzz/seeds/"${f%_fuzz}"/* "$corpus"/ 2>/dev/null || true
  echo "-- $f"
  "build-fuzz/tests/$f" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -print_final_stats=1 "$corpus" 2>&1 | tail -n 3
done
echo "== all tests passed in ${SECONDS} s"
