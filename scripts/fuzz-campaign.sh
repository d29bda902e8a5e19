#!/usr/bin/env bash
# A long fuzzing campaign on another machine (docs/reliability.md).
#   scripts/fuzz-campaign.sh pack DIR   here, after building build-fuzz (scripts/test.sh's fuzzing step): puts the
#                                       fuzzers, the shared libraries they need, the seeds and the vocabulary into
#                                       DIR/fuzzers.tar.xz beside a copy of this script (no compiler needed there)
#   DIR/fuzz-campaign.sh run            there: every target at once, WORKERS (2) processes each (WORKERS_<target>
#                                       for one) sharing one corpus, for SECONDS_EACH (300) s; prints executions,
#                                       time and crash files per target and leaves logs, crashes and the grown
#                                       corpora in $OUT/fuzz-results.tar.gz
set -euo pipefail
case "${1:-}" in
pack)
  root="$(cd "$(dirname "$0")/.." && pwd)"
  dir="$2"
  stage="$(mktemp -d)"
  mkdir -p "$stage/bin" "$stage/lib" "$stage/data" "$dir"
  cp "$root"/build-fuzz/tests/*_fuzz "$stage/bin/"
  cp -r "$root/tests/fuzz/seeds" "$stage/"
  cp "$root/tests/fuzz/data/ref-dev-vocab.gguf" "$stage/data/"
  # Every shared library but the C library's own, in case the other machine lacks them.
  ldd "$stage"/bin/*_fuzz | awk '$3 ~ /^\// {print $3}' | sort -u | grep -v -E '/(libc|libm|ld-linux[^/]*)\.so' |
    xargs -I{} cp -L {} "$stage/lib/"
  tar -C "$stage" -cf - . | xz -T2 -6 > "$dir/fuzzers.tar.xz"
  cp "$0" "$dir/fuzz-campaign.sh"
  rm -rf "$stage"
  ;;
run)
  here="$(cd "$(dirname "$0")" && pwd)"
  work=/tmp/mixq-fuzz-campaign
  rm -rf "$work" && mkdir -p "$work"
  tar -C "$work" -xJf "$here/fuzzers.tar.xz"
  export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export MIXQ_FUZZ_VOCAB="$work/data/ref-dev-vocab.gguf" ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
  # Scratch files of the harnesses that read a path: in memory where there is /dev/shm.
  export TMPDIR="$work/tmp"
  [ -w /dev/shm ] && TMPDIR=/dev/shm/mixq-fuzz
  mkdir -p "$TMPDIR"
  if ldd "$work"/bin/*_fuzz | grep "not found"; then exit 1; fi
  for f in "$work"/bin/*_fuzz; do
    t=$(basename "$f")
    mkdir -p "$work/corpus/$t" "$work/crashes/$t" "$work/logs/$t"
    cp "$work/seeds/${t%_fuzz}"/* "$work/corpus/$t/" 2>/dev/null || true  # safetensors_fuzz has none
    workers="WORKERS_$t"  # e.g. WORKERS_plan_inputs_fuzz=4; else WORKERS
    for i in $(seq 1 "${!workers:-${WORKERS:-2}}"); do
      "$f" -max_total_time="${SECONDS_EACH:-300}" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 -close_fd_mask=3 \
        -seed="$i" -artifact_prefix="$work/crashes/$t/" "$work/corpus/$t" > "$work/logs/$t/worker$i.log" 2>&1 &
    done
  done
  wait || true
  echo "target | processes | executions | seconds | crash files"
  for d in "$work"/logs/*_fuzz; do
    t=$(basename "$d")
    execs=$(grep -h "stat::number_of_executed_units" "$d"/*.log | awk '{s += $2} END {print s + 0}')
    secs=$(grep -h "^Done [0-9]* runs in" "$d"/*.log | awk '{print $(NF-1)}' | sort -n | tail -1)
    echo "$t | $(ls "$d" | wc -l) | $execs | ${secs:-?} | $(ls "$work/crashes/$t" | wc -l)"
  done
  grep -h -A3 -E "==ERROR|runtime error|deadly signal" "$work"/logs/*/*.log | head -60 || true
  out="${OUT:-$work}/fuzz-results.tar.gz"
  tar -C "$work" -czf "$out" logs crashes corpus
  # Where files come back only up to 16 MiB: without the corpora when they are larger.
  [ "$(stat -c %s "$out")" -lt 15000000 ] || tar -C "$work" -czf "$out" logs crashes
  ;;
*)
  sed -n 2,10p "$0"
  exit 2
  ;;
esac
