#!/usr/bin/env bash
# Quality benchmark, type for type: every type mixq encodes, quantized by
# llama.cpp (gguf-oracle, --pure: every tensor in that one type) and by mixq
# with the same per-tensor types, without and with one imatrix (mixq's, from
# the first half of the text); both judged by llama.cpp's KLD against the F16
# model on the second half. `--method ggml` is the control: its tensors must be
# byte-identical to llama.cpp's. The verdict compares mixq's default `best`
# with llama.cpp on the paired per-position difference (paired_kld.mjs).
# Exit status 1 when a ggml control differs from llama.cpp or best loses beyond
# noise. Usage: bench/quality/types_vs_llama.sh [build-dir] [types...]
#   env: WORK (scratch folder, default bench/out/types), CHUNKS (default 40),
#        THREADS (oracle eval threads, default 1: ggml spins on busy cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"; shift || true
types="${*:-F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS IQ3_S IQ3_XXS IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S TQ1_0 TQ2_0 MXFP4 NVFP4 Q1_0 Q2_0}"
work="${WORK:-bench/out/types}"
chunks="${CHUNKS:-40}"
threads="${THREADS:-1}"
source bench/quality/common.sh
imatrix="$work/imatrix.gguf"
make_imatrix "$imatrix" 40

# token_embd's type: the imatrix has no entry for it, and IQ2_XXS, IQ2_XS and
# IQ1_S cannot be encoded without one (llama.cpp's own presets use Q2_K there).
embd_type() { case "$1" in IQ2_XXS | IQ2_XS | IQ1_S) echo Q2_K ;; *) echo "$1" ;; esac; }
# Types llama.cpp's quantizer refuses without an imatrix (its tensor_requires_imatrix).
wants_imatrix() { case "$1" in IQ3_XXS | IQ2_XXS | IQ2_XS | IQ2_S | IQ1_S | IQ1_M) return 0 ;; *) return 1 ;; esac; }

printf "| type | imatrix | llama.cpp KLD | mixq best KLD | change | best − llama.cpp (paired) | best ≤ llama.cpp + 2σ | ggml bytes = llama.cpp |\n"
printf "|---|---|---|---|---|---|---|---|\n"
failed=0
for t in $types; do
  lower=$(llama_name "$t")
  for imat in no yes; do
    case "$t" in F16 | BF16) [ "$imat" = yes ] && continue ;; esac  # no importance in a float conversion
    if [ "$imat" = no ] && wants_imatrix "$t"; then continue; fi
    imat_flag=()
    [ "$imat" = yes ] && imat_flag=(--imatrix "$imatrix")
    embd=$(embd_type "$t")
    "$oracle" quantize "$model" "$work/llama.gguf" "$(ftype "$t")" --pure --output-tensor-type "$lower" \
      --token-embedding-type "$(llama_name "$embd")" "${imat_flag[@]}" > /dev/null
    for method in ggml best; do
      "$build/mixq" quantize -q --method "$method" "$model" "$work/$method.gguf" --type "$t" \
        --output-tensor-type "$t" --token-embedding-type "$embd" "${imat_flag[@]}"
    done
    equal=$("$oracle" tensors "$work/ggml.gguf" --ref "$work/llama.gguf" | node -e 'let s="";
      process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);
      console.log(j.tensors.every(x=>x.bytes_equal&&x.type===x.ref_type)?"yes":"NO")})')
    for side in llama best; do
      "$oracle" eval "$work/$side.gguf" --ref "$work/f16.lgt" --threads "$threads" --out "$work/$side.lgt" \
        > "$work/$side.json"
    done
    read -r l_kld l_se < <(field kld_mean kld_stderr < "$work/llama.json")
    read -r b_kld b_se < <(field kld_mean kld_stderr < "$work/best.json")
    read -r d d_se < <(node bench/quality/paired_kld.mjs "$work/f16.lgt" "$work/llama.lgt" "$work/best.lgt" |
      field diff_mean diff_stderr)
    node -e '
      const [t, imat, lk, ls, bk, bs, d, dse, eq] = process.argv.slice(1);
      // Fixed point, with the decimals that give the standard error two significant digits.
      const pm = (m, se) => {
        const dec = se > 0 ? Math.max(0, 1 - Math.floor(Math.log10(se))) : 5;
        return `${Number(m).toFixed(dec)} ± ${Number(se).toFixed(dec)}`;
      };
      const change = lk > 0 ? (100 * (bk - lk) / lk).toFixed(1) + "%" : "0%";
      const ok = Number(d) <= 2 * Number(dse) ? "yes" : "**NO**";
      console.log(`| ${t} | ${imat} | ${pm(lk, ls)} | ${pm(bk, bs)} | ${change} | ${pm(d, dse)} | ${ok} | ${eq} |`);
      process.exitCode = ok === "yes" && eq === "yes" ? 0 : 1;
    ' "$t" "$imat" "$l_kld" "$l_se" "$b_kld" "$b_se" "$d" "$d_se" "$equal" || failed=1
  done
done
rm -f "$work"/{llama,ggml,best}.{gguf,lgt,json}
exit "$failed"
