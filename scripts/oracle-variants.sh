#!/usr/bin/env bash
# Runs the tests that compare mixq with llama.cpp once per CPU backend variant
# of the oracle that this CPU can load (llama.cpp picks the variant by CPU, and
# each rounds and sums differently), so that their bounds are known to hold on
# every machine, not only on this one. Usage: scripts/oracle-variants.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
bins="$(pwd)/.oracle/bins"
filter='OracleFixture*:Archs/*:*VsLlama*:*Oracle*'
pins="$(mktemp -d)"
trap 'rm -rf "$pins"' EXIT
for lib in "$bins"/libggml-cpu-*.so; do
  variant="$(basename "$lib" .so)"
  variant="${variant#libggml-cpu-}"
  mkdir -p "$pins/$variant"
  cp "$lib" "$pins/$variant/"
  if ! GGUF_ORACLE_BACKEND_DIR="$pins/$variant" .oracle/gguf-oracle types 2>/dev/null | grep -q '"system_info":"CPU'; then
    echo "$variant: not loadable on this CPU, skipped"
    continue
  fi
  for t in engine_test cli_test; do
    if GGUF_ORACLE_BACKEND_DIR="$pins/$variant" "$build/tests/$t" --gtest_filter="$filter" --gtest_brief=1 \
      > "$pins/$variant/$t.log" 2>&1; then
      result=passed
    else
      result=FAILED
    fi
    echo "$variant $t: $result"
    grep -E 'ours - llama.cpp' "$pins/$variant/$t.log" | head -1 | sed 's/^/    /' || true
    grep -E '^\[  FAILED  \]|Failure' "$pins/$variant/$t.log" | sed 's/^/    /' || true
  done
done
