#!/bin/sh
# Peak memory of `mixq convert` on a synthetic ~4 GB Flux-shaped checkpoint
# (hidden 3072 as Flux.1-dev, 3 double + 7 single blocks, BF16).
# Target (issue 5): peak RSS <= 2 x the largest tensor + 256 MB.
#
#   sh bench/diffusion/convert_rss.sh BUILD_DIR [WORK_DIR]
#
# BUILD_DIR holds mixq and make_flux_checkpoint; WORK_DIR (default
# /tmp/mixq-rss) receives the checkpoint and the outputs, and is removed at
# the end. Prints one markdown table row per run: wall seconds, peak RSS
# (from /usr/bin/time, in MiB) and the target.
set -eu
build=$1
work=${2:-/tmp/mixq-rss}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

ckpt=$work/flux-h3072.safetensors
"$build/make_flux_checkpoint" --out "$ckpt" --hidden 3072 --depth 3 --depth-single 7 --vec 768 --ctx 4096
# The largest tensor: single_blocks.*.linear1.weight, [7 x 3072, 3072] in BF16.
largest=$((7 * 3072 * 3072 * 2))
target_kib=$(( (2 * largest + 256 * 1000 * 1000) / 1024 ))
size=$(stat -c %s "$ckpt")
echo "checkpoint: $size bytes; largest tensor $largest bytes; target peak RSS $((target_kib / 1024)) MiB"
echo "| run | wall s | peak RSS MiB | target MiB | output bytes |"
echo "|---|---:|---:|---:|---:|"

run() {
  label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$build/mixq" --quiet convert "$ckpt" -o "$work/out.gguf" "$@"
  read -r secs kib < "$work/time"
  out=$(stat -c %s "$work/out.gguf" 2>/dev/null || echo 0)
  echo "| $label | $secs | $((kib / 1024)) | $((target_kib / 1024)) | $out |"
  rm -f "$work/out.gguf"
  [ "$kib" -le "$target_kib" ] || echo "  over target: $label"
}

run "BF16 (copy)" --type BF16
run "F32" --type F32
run "Q8_0" --type Q8_0 --method ggml
run "Q4_K" --type Q4_K --method ggml
run "plan 4.5 bpw (measure 32 rows/tensor)" --target 4.5bpw --measure-rows 32 --method ggml
