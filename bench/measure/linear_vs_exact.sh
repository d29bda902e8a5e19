#!/usr/bin/env bash
# Linear vs exact calibration on one model: per-option cost agreement on the
# layers the linear scheme predicts, the --validate check of each, and layer
# passes. Calibrates on the first half of the text (as `mixq auto` does).
# Usage: bench/measure/linear_vs_exact.sh MIXQ MODEL.gguf TEXT[.gz] OUTDIR [THREADS] [PROBES]
# PROBES: comma-separated --probe-layers values to try (default 4).
set -euo pipefail
mixq=$1 model=$2 text=$3 out=$4 threads=${5:-0} probes=${6:-4}
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
if [[ $text == *.gz ]]; then zcat "$text" > "$out/all.txt"; else cp "$text" "$out/all.txt"; fi
half=$(($(wc -c < "$out/all.txt") / 2))
head -c "$half" "$out/all.txt" > "$out/calib.txt"
common=(--text "$out/calib.txt" --imatrix "$out/imatrix.gguf" --chunks 4 --ctx 512 -t "$threads")
"$mixq" imatrix -q "$model" --text "$out/calib.txt" --chunks 40 --ctx 512 -o "$out/imatrix.gguf" -t "$threads"
"$mixq" measure -q --json "$model" "${common[@]}" --calibration exact --validate 12 -o "$out/exact.json" \
  > "$out/exact.jsonl"
n_layer=$("$mixq" inspect --json "$model" | grep -o "block_count\",\"type\":\"u32\",\"value\":\"[0-9]*" | grep -o "[0-9]*$")
for k in ${probes//,/ }; do
  "$mixq" measure -q --json "$model" "${common[@]}" --calibration linear --probe-layers "$k" --validate 12 \
    -o "$out/linear-k$k.json" > "$out/linear-k$k.jsonl"
  layers=$(python3 -c "
import sys
n, k = int(sys.argv[1]), int(sys.argv[2])
out = []
if k >= n: out = list(range(n))
elif k <= 1: out = [n // 2]
else:
    for i in range(k):
        l = int(i * (n - 1) / (k - 1) + 0.5)
        if not out or out[-1] != l: out.append(l)
print(','.join(map(str, out)))" "${n_layer:-0}" "$k")
  echo "K=$k probes=$layers $(python3 "$here/compare_schemes.py" "$out/linear-k$k.json" "$out/exact.json" "$layers")"
  grep '"summary"' "$out/linear-k$k.jsonl" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read())['data']
v = d['validation']
print('  linear: layer passes', d['forward_layer_passes'], 'seconds', round(d['seconds'], 1),
      'validate spearman', round(v['spearman'], 3), 'median real/predicted', round(v['median_ratio'], 3))"
done
grep '"summary"' "$out/exact.jsonl" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read())['data']
v = d['validation']
print('exact: layer passes', d['forward_layer_passes'], 'seconds', round(d['seconds'], 1),
      'validate spearman', round(v['spearman'], 3), 'median real/predicted', round(v['median_ratio'], 3))"
