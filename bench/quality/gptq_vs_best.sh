#!/usr/bin/env bash
# Quality benchmark of `--method gptq` (error feedback through the input
# covariance), type for type on ref-dev: every 2-D tensor in one type
# (--pure on llama.cpp's side). llama.cpp and mixq's `best` use one imatrix
# (mixq's, from CALIB chunks of the first half of val.txt); gptq uses the same
# chunks of the same text as its calibration. All are judged by llama.cpp's
# KLD against the F16 model on the second half of val.txt (CHUNKS chunks),
# never the calibration text, and on a text of another kind (the repo's docs,
# OTHER chunks) so that a gain on text like the calibration's is not taken
# for a general one. gptq's quantize time, covariance-pass time and peak RSS
# are printed per type.
# Usage: bench/quality/gptq_vs_best.sh [build-dir] [types...]
#   env: WORK (scratch folder, default bench/out/gptq), CHUNKS (default 40),
#        CALIB (calibration chunks, default 40), OTHER (default 20),
#        THREADS (oracle eval threads, default 1: ggml spins on busy cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"; shift || true
types="${*:-Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS Q4_0 Q8_0}"
work="${WORK:-bench/out/gptq}"
chunks="${CHUNKS:-40}"
calib_chunks="${CALIB:-40}"
other_chunks="${OTHER:-20}"
threads="${THREADS:-1}"
source bench/quality/common.sh
cat README.md docs/*.md > "$work/other.txt"
"$oracle" eval "$model" --text-file "$work/other.txt" --ctx 512 --chunks "$other_chunks" --threads "$threads" \
  --out "$work/f16-other.lgt" > /dev/null
imatrix="$work/imatrix-$calib_chunks.gguf"
make_imatrix "$imatrix" "$calib_chunks"

kld() { "$oracle" eval "$1" --ref "$2" --threads "$threads" --out "$3" | field kld_mean kld_stderr; }
paired() { node bench/quality/paired_kld.mjs "$1" "$2" "$3" | field diff_mean diff_stderr; }

printf "| type | llama.cpp KLD | best KLD | gptq KLD | gptq / llama.cpp | gptq / best | gptq − best (paired) |"
printf " other text: best | gptq | gptq / best | gptq s (covariance s) | gptq peak RSS |\n"
printf "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
for t in $types; do
  lower=$(llama_name "$t")
  same=(--type "$t" --output-tensor-type "$t" --token-embedding-type "$t")
  "$oracle" quantize "$model" "$work/llama.gguf" "$(ftype "$t")" --pure --output-tensor-type "$lower" \
    --token-embedding-type "$lower" --imatrix "$imatrix" > /dev/null
  "$build/mixq" quantize -q "$model" "$work/best.gguf" "${same[@]}" --imatrix "$imatrix"
  /usr/bin/time -f "%M" -o "$work/rss" "$build/mixq" quantize --json "$model" "$work/gptq.gguf" "${same[@]}" \
    --method gptq --text "$work/calib.txt" --chunks "$calib_chunks" | tail -n 1 > "$work/gptq-summary.json"
  read -r secs cov_secs < <(node -e 'const j=require(process.argv[1]).data;console.log(j.seconds,j.covariance_seconds)' \
    "$(realpath "$work/gptq-summary.json")")
  read -r l_kld l_se < <(kld "$work/llama.gguf" "$work/f16.lgt" "$work/llama.lgt")
  read -r b_kld b_se < <(kld "$work/best.gguf" "$work/f16.lgt" "$work/best.lgt")
  read -r g_kld g_se < <(kld "$work/gptq.gguf" "$work/f16.lgt" "$work/gptq.lgt")
  read -r d d_se < <(paired "$work/f16.lgt" "$work/best.lgt" "$work/gptq.lgt")
  read -r ob_kld ob_se < <(kld "$work/best.gguf" "$work/f16-other.lgt" "$work/best-other.lgt")
  read -r og_kld og_se < <(kld "$work/gptq.gguf" "$work/f16-other.lgt" "$work/gptq-other.lgt")
  node -e '
    const [t, lk, ls, bk, bs, gk, gs, d, dse, obk, obs, ogk, ogs, secs, cov, rss] = process.argv.slice(1);
    // Fixed point, with the decimals that give the standard error two significant digits.
    const pm = (m, se) => {
      const dec = se > 0 ? Math.max(0, 1 - Math.floor(Math.log10(se))) : 5;
      return `${Number(m).toFixed(dec)} ± ${Number(se).toFixed(dec)}`;
    };
    const ratio = (a, b) => (Number(a) / Number(b)).toFixed(3);
    console.log(`| ${t} | ${pm(lk, ls)} | ${pm(bk, bs)} | ${pm(gk, gs)} | ${ratio(gk, lk)} | ${ratio(gk, bk)} | ` +
      `${pm(d, dse)} | ${pm(obk, obs)} | ${pm(ogk, ogs)} | ${ratio(ogk, obk)} | ` +
      `${Number(secs).toFixed(1)} (${Number(cov).toFixed(1)}) | ${(rss / 1024).toFixed(0)} MiB |`);
  ' "$t" "$l_kld" "$l_se" "$b_kld" "$b_se" "$g_kld" "$g_se" "$d" "$d_se" "$ob_kld" "$ob_se" "$og_kld" "$og_se" \
    "$secs" "$cov_secs" "$(cat "$work/rss")"
done
rm -f "$work"/{llama,best,gptq}.{gguf,lgt} "$work"/{best,gptq}-other.lgt "$work/gptq-summary.json" "$work/rss"
