#!/usr/bin/env bash
# Quality benchmark: llama.cpp's presets (made by the real llama.cpp through
# gguf-oracle, with the same imatrix) vs `mixq auto` at the same file size,
# both judged by llama.cpp's own KLD against the F16 model on held-out text.
# Usage: [MODEL=f16.gguf TEXT=val.txt.gz WORK=dir CHUNKS=n] bench/quality/presets_vs_auto.sh [build-dir] [presets...]
# The text is split in halves: imatrix and mixq's calibration on the first, KLD on the second.
# With ROLES=1, a table per preset of the bits each tensor role got in both files.
#   env: AUTO_ARGS (extra arguments of mixq auto, e.g. "--method best" or "--imatrix-chunks -1")
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"; shift || true
presets="${*:-Q2_K Q3_K_M Q4_K_M IQ4_XS Q5_K_M Q6_K}"
oracle="$(scripts/setup-oracle.sh)"
model="${MODEL:-models/ref-dev/ref-dev-f16.gguf}"
text="${TEXT:-models/ref-dev/val.txt.gz}"
work="${WORK:-bench/out/quality}"
mkdir -p "$work"
zcat -f "$text" > "$work/all.txt"
half=$(( $(wc -c < "$work/all.txt") / 2 ))
head -c "$half" "$work/all.txt" > "$work/calib.txt"
tail -c +"$((half + 1))" "$work/all.txt" > "$work/eval.txt"
chunks="${CHUNKS:-40}"
"$oracle" eval "$model" --text-file "$work/eval.txt" --ctx 512 --chunks "$chunks" --out "$work/f16.lgt" > /dev/null
imatrix="$work/imatrix.gguf"
[ -f "$imatrix" ] || "$build/mixq" imatrix "$model" --text "$work/calib.txt" -o "$imatrix" --chunks 40 -q
printf "| preset | bytes | llama.cpp KLD | mixq auto bytes | mixq KLD | KLD change | mixq s |\n|---|---|---|---|---|---|---|\n"
for p in $presets; do
  "$oracle" quantize "$model" "$work/$p.gguf" "$p" --imatrix "$imatrix" > /dev/null
  size=$(stat -c %s "$work/$p.gguf")
  ref=$("$oracle" eval "$work/$p.gguf" --ref "$work/f16.lgt" | python3 -c 'import json, sys; print(json.load(sys.stdin)["kld_mean"])')
  t0=$(date +%s.%N)
  "$build/mixq" auto "$model" --text "$work/calib.txt" --imatrix "$imatrix" --target-size "$size" \
    -o "$work/mixq-$p.gguf" --cache-dir "$work/cache" --no-eval -q ${AUTO_ARGS:-}
  secs=$(awk "BEGIN {print $(date +%s.%N) - $t0}")
  ours_size=$(stat -c %s "$work/mixq-$p.gguf")
  ours=$("$oracle" eval "$work/mixq-$p.gguf" --ref "$work/f16.lgt" | python3 -c 'import json, sys; print(json.load(sys.stdin)["kld_mean"])')
  change=$(awk "BEGIN {printf \"%.1f\", 100 * ($ours - $ref) / $ref}")
  printf "| %s | %s | %.5f | %s | %.5f | %s%% | %.1f |\n" "$p" "$size" "$ref" "$ours_size" "$ours" "$change" "$secs"
done
if [ "${ROLES:-0}" = 1 ]; then
  for p in $presets; do
    printf "\nBits by role at the size of %s:\n\n" "$p"
    python3 bench/quality/bits_by_role.py "$build/mixq" "$work/mixq-$p.gguf" "$work/$p.gguf"
  done
fi
