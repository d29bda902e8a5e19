#!/usr/bin/env bash
# The data of the report in docs/report.md: mixq auto at three budgets and
# llama.cpp's presets (made by the real llama.cpp through gguf-oracle, same
# imatrix), all evaluated against the F16 model on the same held-out text,
# a validation of the measurement on random mixes, then `mixq report`.
# Usage: [BUDGETS='4.5 3.5'] [PRESETS='Q4_K_M'] [VALIDATE=N|0] bench/report/demo.sh [build-dir] [model.gguf] [text.gz]
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"
model="${2:-models/ref-dev/ref-dev-f16.gguf}"
text="${3:-models/ref-dev/val.txt.gz}"
oracle="$(scripts/setup-oracle.sh)"
name="$(basename "$model" .gguf)"
work="${WORK:-bench/out/report-$name}"
mkdir -p "$work"
zcat "$text" > "$work/all.txt"
half=$(( $(wc -c < "$work/all.txt") / 2 ))
head -c "$half" "$work/all.txt" > "$work/calib.txt"
tail -c +"$((half + 1))" "$work/all.txt" > "$work/eval.txt"
mixq=("$build/mixq")
for bpw in ${BUDGETS:-4.5 3.5 5.5}; do
  "${mixq[@]}" --json -q auto "$model" --text "$work/calib.txt" --eval-text "$work/eval.txt" --target "${bpw}bpw" \
    -o "$work/mixq-${bpw}bpw.gguf" --cache-dir "$work/cache" > "$work/auto-${bpw}bpw.jsonl"
  cp "$work/cache/plan.json" "$work/plan-${bpw}bpw.json"
done
evals=()
for p in ${PRESETS:-Q3_K_M Q4_K_M Q5_K_M Q6_K}; do
  "$oracle" quantize "$model" "$work/$name-$p.gguf" "$p" --imatrix "$work/cache/imatrix.gguf" > /dev/null
  "${mixq[@]}" --json -q eval "$work/$name-$p.gguf" --base "$model" --text "$work/eval.txt" --chunks 20 \
    > "$work/eval-$p.jsonl"
  evals+=(--eval "$work/eval-$p.jsonl")
done
validate=()
if [ "${VALIDATE:-8}" != 0 ]; then  # a second measurement, then N random mixes evaluated
  "${mixq[@]}" --json -q measure "$model" --text "$work/calib.txt" --imatrix "$work/cache/imatrix.gguf" \
    -o "$work/measurement-validated.json" --validate "${VALIDATE:-8}" > "$work/validate.jsonl"
  validate=(--validate "$work/validate.jsonl")
fi
plans=() autos=()
for bpw in ${BUDGETS:-4.5 3.5 5.5}; do
  plans+=(--plan "$work/plan-${bpw}bpw.json")
  autos+=(--eval "$work/auto-${bpw}bpw.jsonl")
done
"${mixq[@]}" report --measurement "$work/cache/measurement.json" "${plans[@]}" "${autos[@]}" "${evals[@]}" \
  "${validate[@]}" -o "$work/report.html"
echo "$work/report.html"
