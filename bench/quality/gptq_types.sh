#!/usr/bin/env bash
# gptq vs best vs llama.cpp type for type on any model (gptq_vs_best.sh's
# protocol without its paired differences, python3 instead of node, so it runs
# where node is missing, e.g. the device machine). The text is cut in halves:
# the first calibrates (imatrix and gptq, CALIB chunks of 512), the second is
# held out (CHUNKS chunks); README.md + docs/*.md is the text of another kind
# (OTHER chunks). JUDGE=oracle: llama.cpp makes its files and judges all
# (gguf-oracle); JUDGE=mixq: llama.cpp's files are made by mixq --method ggml
# (byte-identical to ggml_quantize_chunk) and mixq eval --base judges (for a
# machine without the oracle).
# Usage: bench/quality/gptq_types.sh MODEL.gguf TEXT(.gz) WORKDIR [types...]
#   env: MIXQ (default build/mixq), ORACLE, JUDGE, CALIB (280), CHUNKS (40), OTHER (20), T (threads, 16)
set -euo pipefail
cd "$(dirname "$0")/../.."
mixq="${MIXQ:-build/mixq}"
model="$1"; text="$2"; work="$3"; shift 3
types="${*:-Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS Q4_0 Q8_0}"
calib="${CALIB:-280}"; chunks="${CHUNKS:-40}"; other="${OTHER:-20}"; judge="${JUDGE:-oracle}"; T="${T:-16}"
if [ "$judge" = oracle ]; then oracle="${ORACLE:-$(scripts/setup-oracle.sh)}"; fi
mkdir -p "$work"
zcat -f "$text" > "$work/all.txt"
half=$(( $(wc -c < "$work/all.txt") / 2 ))
head -c "$half" "$work/all.txt" > "$work/calib.txt"
tail -c +"$((half + 1))" "$work/all.txt" > "$work/eval.txt"
cat README.md docs/*.md > "$work/other.txt"
im="$work/imatrix.gguf"
"$mixq" imatrix "$model" --text "$work/calib.txt" -o "$im" --chunks "$calib" -q -t "$T"
js() { python3 -c '
import json,sys
s=sys.stdin.read().strip()
try: j=json.loads(s)
except ValueError: j=json.loads(s.splitlines()[-1])
j=j.get("data",j); print(" ".join(str(j[k]) for k in sys.argv[1:]))' "$@"; }
if [ "$judge" = oracle ]; then
  "$oracle" eval "$model" --text-file "$work/eval.txt" --ctx 512 --chunks "$chunks" --threads "$T" --out "$work/f16.lgt" >/dev/null
  "$oracle" eval "$model" --text-file "$work/other.txt" --ctx 512 --chunks "$other" --threads "$T" --out "$work/f16o.lgt" >/dev/null
  kld() { "$oracle" eval "$1" --ref "$2" --threads "$T" | js kld_mean kld_stderr; }
  K() { kld "$1" "$work/f16.lgt"; }; KO() { kld "$1" "$work/f16o.lgt"; }
else
  kld() { "$mixq" eval --json "$1" --base "$model" --text "$2" --chunks "$3" -t "$T" | js kld_mean kld_stderr; }
  K() { kld "$1" "$work/eval.txt" "$chunks"; }; KO() { kld "$1" "$work/other.txt" "$other"; }
fi
ftype() { case "$1" in Q3_K | Q4_K | Q5_K) echo "$1_M" ;; *) echo "$1" ;; esac; }
echo "| type | llama.cpp KLD | best KLD | gptq KLD | gptq / llama.cpp | gptq / best | other: best | other: gptq | other gptq/best | gptq s (cov s) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in $types; do
  lower=$(echo "$t" | tr 'A-Z' 'a-z' | sed 's/_k$/_K/')
  same=(--type "$t" --output-tensor-type "$t" --token-embedding-type "$t")
  if [ "$judge" = oracle ]; then
    "$oracle" quantize "$model" "$work/llama.gguf" "$(ftype "$t")" --pure --output-tensor-type "$lower" \
      --token-embedding-type "$lower" --imatrix "$im" --threads "$T" >/dev/null
  else
    "$mixq" quantize -q "$model" "$work/llama.gguf" "${same[@]}" --imatrix "$im" --method ggml -t "$T"
  fi
  "$mixq" quantize -q "$model" "$work/best.gguf" "${same[@]}" --imatrix "$im" -t "$T"
  read -r secs cov < <("$mixq" quantize --json "$model" "$work/gptq.gguf" "${same[@]}" --imatrix "$im" \
    --method gptq --text "$work/calib.txt" --chunks "$calib" -t "$T" | js seconds covariance_seconds)
  read -r lk ls < <(K "$work/llama.gguf"); read -r bk bs < <(K "$work/best.gguf"); read -r gk gs < <(K "$work/gptq.gguf")
  read -r obk obs < <(KO "$work/best.gguf"); read -r ogk ogs < <(KO "$work/gptq.gguf")
  python3 -c '
import sys
t,lk,ls,bk,bs,gk,gs,obk,obs,ogk,ogs,secs,cov=sys.argv[1:]
f=lambda m,s:"%.5g ± %.2g"%(float(m),float(s))
r=lambda a,b:"%.3f"%(float(a)/float(b))
print(f"| {t} | {f(lk,ls)} | {f(bk,bs)} | {f(gk,gs)} | {r(gk,lk)} | {r(gk,bk)} | {f(obk,obs)} | {f(ogk,ogs)} | {r(ogk,obk)} | {float(secs):.1f} ({float(cov):.1f}) |")
' "$t" "$lk" "$ls" "$bk" "$bs" "$gk" "$gs" "$obk" "$obs" "$ogk" "$ogs" "$secs" "$cov"
done
