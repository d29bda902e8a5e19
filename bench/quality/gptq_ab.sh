#!/usr/bin/env bash
# Paired A/B of two mixq builds' `--method gptq` on ref-dev (or MODEL), type for type
# (gptq_vs_best.sh's protocol: every 2-D tensor in one type, val.txt cut in
# halves, CALIB chunks of 512 of the first half calibrate the imatrix and
# gptq, llama.cpp judges on CHUNKS held-out chunks of the second half and on
# OTHER chunks of a text of another kind, README.md + docs/*.md). Prints each
# side's KLD and the paired difference B − A (paired_kld.mjs). A's files and
# logits are kept in WORK and reused, so that several B's can be compared
# with one A.
# Usage: bench/quality/gptq_ab.sh MIXQ_A MIXQ_B TAG types...
#   env: ORACLE (gguf-oracle, default scripts/setup-oracle.sh's), WORK (default bench/out/gptq-ab), CALIB (40),
#        CHUNKS (40), OTHER (20; 0: no other text), T (mixq threads, 2),
#        MODEL (an F16 GGUF, default ref-dev's) and TEXT (its text, default ref-dev's val.txt.gz)
set -euo pipefail
cd "$(dirname "$0")/../.."
a="$1"; b="$2"; tag="$3"; shift 3
oracle="${ORACLE:-$(scripts/setup-oracle.sh)}"
model="${MODEL:-models/ref-dev/ref-dev-f16.gguf}"; text="${TEXT:-models/ref-dev/val.txt.gz}"
w="${WORK:-bench/out/gptq-ab}"; calib="${CALIB:-40}"; chunks="${CHUNKS:-40}"; other="${OTHER:-20}"; T="${T:-2}"
mkdir -p "$w"
if [ ! -f "$w/calib.txt" ]; then
  zcat -f "$text" > "$w/all.txt"
  half=$(( $(wc -c < "$w/all.txt") / 2 ))
  head -c "$half" "$w/all.txt" > "$w/calib.txt"
  tail -c +"$((half + 1))" "$w/all.txt" > "$w/eval.txt"
  cat README.md docs/*.md > "$w/other.txt"
fi
[ -f "$w/f16-$chunks.lgt" ] || "$oracle" eval "$model" --text-file "$w/eval.txt" --ctx 512 --chunks "$chunks" \
  --threads 1 --out "$w/f16-$chunks.lgt" > /dev/null
[ "$other" = 0 ] || [ -f "$w/f16o-$other.lgt" ] || "$oracle" eval "$model" --text-file "$w/other.txt" --ctx 512 \
  --chunks "$other" --threads 1 --out "$w/f16o-$other.lgt" > /dev/null
im="$w/imatrix-$calib.gguf"
[ -f "$im" ] || "$a" imatrix "$model" --text "$w/calib.txt" -o "$im" --chunks "$calib" -t "$T" > /dev/null
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);
  console.log(process.argv.slice(1).map(k=>j[k]).join(" "))})' "$@"; }
ev() { "$oracle" eval "$1" --ref "$2" --threads 1 --out "$3" | field kld_mean kld_stderr; }
paired() { node bench/quality/paired_kld.mjs "$1" "$2" "$3" | field diff_mean diff_stderr; }
gptq() {
  "$1" quantize -q "$model" "$2" --type "$3" --output-tensor-type "$3" --token-embedding-type "$3" --imatrix "$im" \
    --method gptq --text "$w/calib.txt" --chunks "$calib" -t "$T"
}
for t in "$@"; do
  A="$w/A-$t-$calib"; B="$w/$tag-$t-$calib"
  if [ ! -f "$A.lgt" ]; then
    gptq "$a" "$A.gguf" "$t"
    echo "A $t: $(ev "$A.gguf" "$w/f16-$chunks.lgt" "$A.lgt")"
    [ "$other" = 0 ] || echo "A other $t: $(ev "$A.gguf" "$w/f16o-$other.lgt" "$A-o.lgt")"
  fi
  gptq "$b" "$B.gguf" "$t"
  echo "$tag $t: $(ev "$B.gguf" "$w/f16-$chunks.lgt" "$B.lgt")"
  echo "$tag − A $t (paired): $(paired "$w/f16-$chunks.lgt" "$A.lgt" "$B.lgt")"
  if [ "$other" != 0 ]; then
    echo "$tag other $t: $(ev "$B.gguf" "$w/f16o-$other.lgt" "$B-o.lgt")"
    echo "$tag − A other $t (paired): $(paired "$w/f16o-$other.lgt" "$A-o.lgt" "$B-o.lgt")"
  fi
  rm -f "$B.gguf"
done
