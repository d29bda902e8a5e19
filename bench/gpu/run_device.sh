#!/bin/bash
# The GPU bench and agreement checks, run on the GPU machine from the
# repository root. BIN holds mixq built with -DMIXQ_CUDA=ON; RESULTS receives the
# logs. Steps: agree MODEL_DIR | measure MODEL_DIR [ARGS] | imatrix MODEL_DIR |
# bench LAYERS SHORT_CHUNKS LONG_CHUNKS CPU_CHUNKS (0: no CPU run) | measure8b LAYERS [MEASURE ARGS] |
# big LAYERS GPU_MEM | moe LAYERS [MEASURE ARGS] | auto8b LAYERS [AUTO ARGS] | gptq MODEL_DIR CHUNKS |
# gptq8b LAYERS CHUNKS | growth LAYERS [SECONDS] | build DIR (the CUDA build of mixq and engine_test, made on the GPU machine)
set -u
BIN=${BIN:-.devrun/gpu}
RESULTS=${RESULTS:-/tmp/gpu-results}
mkdir -p "$RESULTS"
# cuBLAS from the CUDA toolkit or PyTorch's wheel, whichever is there.
CUBLAS=$(python3 -c "import nvidia.cublas as m; print(list(m.__path__)[0] + '/lib')" 2>/dev/null)
export LD_LIBRARY_PATH=$BIN:/usr/local/cuda/lib64:${CUBLAS}:${LD_LIBRARY_PATH:-}

# Peak GPU memory in use (MiB) while a command runs, sampled every 0.2 s.
with_gpu_peak() {
  local log=$1
  shift
  (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.2; done) >"$log.gpumem" &
  local sampler=$!
  /usr/bin/time -v "$@" 2>"$log.time" >"$log"
  local rc=$?
  kill $sampler
  echo "peak GPU MiB: $(sort -n "$log.gpumem" | tail -1), peak host RSS KiB: $(grep 'Maximum resident' "$log.time" | awk '{print $6}'), exit $rc"
}

case "$1" in
  growth)  # llama shapes of LAYERS layers (GROWTH_SHAPES "d ff heads kv_heads;...", default d 2048, 4096, 8192): the wall time of eval, imatrix, measure
    # and gptq Q4_K on the GPU (16 threads for the CPU parts), each cut at SECONDS; one JSON line per stage in
    # RESULTS/growth.jsonl, summarized against the H200's limits by growth_table.py
    layers=$2 limit=${3:-150}
    text=models/ref-dev/val.txt.gz
    IFS=';' read -r -a shapes <<<"${GROWTH_SHAPES:-2048 8192 16 8;4096 14336 32 8;8192 28672 64 8}"
    for shape in "${shapes[@]}"; do
      read -r d ff heads kv <<<"$shape"
      model=/tmp/growth-$d.gguf
      python3 "$(dirname "$0")"/llama8b.py "$model" --layers "$layers" --d "$d" --ff "$ff" --heads "$heads" \
        --kv-heads "$kv" --chunks 8 >"$RESULTS/growth-$d-torch.json"
      stage() {  # stage NAME COMMAND...
        local name=$1 start rc
        shift
        start=$(date +%s.%N)
        timeout "$limit" "$@" >"$RESULTS/growth-$d-$name.log" 2>&1
        rc=$?
        printf '{"d": %s, "ff": %s, "heads": %s, "kv_heads": %s, "layers": %s, "stage": "%s", "seconds": %s, "rc": %s}\n' \
          "$d" "$ff" "$heads" "$kv" "$layers" "$name" "$(awk "BEGIN {print $(date +%s.%N) - $start}")" "$rc" |
          tee -a "$RESULTS/growth.jsonl"
      }
      stage eval "$BIN"/mixq --json eval "$model" --text $text --chunks 8 --device cuda
      stage imatrix "$BIN"/mixq -q imatrix "$model" --text $text --chunks 8 -o /tmp/growth-im.gguf --device cuda
      stage measure "$BIN"/mixq -q measure "$model" --text $text --chunks 1 -o /tmp/growth-m.json \
        --cache /tmp/growth-m.partial --device cuda -t 16
      stage gptq "$BIN"/mixq -q quantize "$model" /tmp/growth-q.gguf --type Q4_K --method gptq --text $text \
        --chunks 8 --device cuda -t 16
      rm -f "$model" /tmp/growth-*
    done
    python3 "$(dirname "$0")"/growth_table.py "$RESULTS/growth.jsonl" | tee "$RESULTS/growth.md"
    ;;
  build)  # configure and build with CUDA into DIR; xxhash.h from XXHASH_INCLUDE where the machine lacks it
    dir=$2
    extra=()
    [ -n "${XXHASH_INCLUDE:-}" ] && extra=(-DXXHASH_INCLUDE_DIR="$XXHASH_INCLUDE"
      -DXXHASH_LIBRARY="$(ls /usr/lib/x86_64-linux-gnu/libxxhash.so* | head -1)")
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMIXQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" "${extra[@]}" >"$RESULTS/build.log" &&
      cmake --build "$dir" -j"$(nproc)" --target mixq engine_test >>"$RESULTS/build.log" 2>&1
    rc=$?
    tail -3 "$RESULTS/build.log"
    exit $rc
    ;;
  agree)  # PPL and KLD of a Q4_K quant against its F16 base, CPU (16 threads) and CUDA
    dir=$2
    for xz in "$dir"/*.gguf.xz; do [ -e "$xz" ] && python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3], 'wb'))" "$xz"; done
    f16=$(ls "$dir"/*-f16.gguf)
    q=$RESULTS/$(basename "$dir")-q4k.gguf
    "$BIN"/mixq --quiet quantize "$f16" "$q" --type Q4_K >/dev/null
    for dev in cpu cuda; do
      echo "== $(basename "$dir") $dev"
      "$BIN"/mixq --json eval "$q" --base "$f16" --text "$dir"/val.txt.gz --chunks 8 --device $dev -t 16 | tail -1 |
        tee "$RESULTS/$(basename "$dir")-$dev.json"
    done
    ;;
  measure)  # mixq measure on both devices (16 CPU threads each), wall times and the costs compared
    dir=$2
    shift 2
    name=$(basename "$dir")
    for dev in cpu cuda; do
      echo "== measure $name --device $dev $*"
      start=$(date +%s.%N)
      with_gpu_peak "$RESULTS/measure-$name-$dev.log" "$BIN"/mixq --quiet measure "$dir"/*-f16.gguf \
        --text "$dir"/val.txt.gz -o "$RESULTS/measure-$name-$dev.json" --cache "$RESULTS/measure-$name-$dev.partial" \
        --device $dev -t 16 "$@"
      echo "wall seconds: $(awk "BEGIN {print $(date +%s.%N) - $start}")"
    done
    python3 "$(dirname "$0")"/compare_measure.py "$RESULTS/measure-$name-cpu.json" "$RESULTS/measure-$name-cuda.json" |
      tee "$RESULTS/measure-$name-compare.json"
    ;;
  imatrix)  # mixq imatrix on both devices, 8 chunks, compared value by value
    dir=$2
    name=$(basename "$dir")
    for dev in cpu cuda; do
      echo "== imatrix $name --device $dev"
      start=$(date +%s.%N)
      "$BIN"/mixq --quiet imatrix "$dir"/*-f16.gguf --text "$dir"/val.txt.gz --chunks 8 \
        -o "$RESULTS/imatrix-$name-$dev.gguf" --device $dev -t 16
      echo "exit $?, wall seconds: $(awk "BEGIN {print $(date +%s.%N) - $start}")"
    done
    python3 "$(dirname "$0")"/../engine/compare_imatrix.py "$RESULTS/imatrix-$name-cpu.gguf" \
      "$RESULTS/imatrix-$name-cuda.gguf" | tee "$RESULTS/imatrix-$name-compare.json"
    ;;
  measure8b)  # the 8B shapes with LAYERS layers: measure on both devices (default: one chunk, two types)
    layers=$2
    shift 2
    dir=/tmp/llama8b-$layers
    mkdir -p "$dir"
    cp models/ref-dev/val.txt.gz "$dir"/
    python3 "$(dirname "$0")"/llama8b.py "$dir"/llama8b-f16.gguf --layers "$layers" --chunks 4 >/dev/null
    if [ $# -eq 0 ]; then set -- --chunks 1 --types Q4_K,Q8_0 --calibration-types Q4_K; fi
    "$0" measure "$dir" "$@"
    ;;
  big)  # a 70B-shaped llama (d 8192, 64/8 heads, FFN 28672) of LAYERS layers: eval under --gpu-mem GPU_MEM
    layers=$2 mem=$3
    model=/tmp/llama70b-$layers.gguf
    python3 "$(dirname "$0")"/llama8b.py "$model" --layers "$layers" --d 8192 --ff 28672 --heads 64 --kv-heads 8 \
      --chunks 4 | tee "$RESULTS/torch-70b-$layers.json"
    ls -l "$model"
    for chunks in 4 16; do  # one pass (the first uploads every weight), then four (the steady rate)
      echo "== mixq eval --device cuda --gpu-mem $mem, $chunks chunks"
      with_gpu_peak "$RESULTS/cuda-70b-$layers-$chunks.json" "$BIN"/mixq --json eval "$model" \
        --text models/ref-dev/val.txt.gz --chunks $chunks --device cuda --gpu-mem "$mem"
      tail -1 "$RESULTS/cuda-70b-$layers-$chunks.json"
    done
    rm -f "$model"
    ;;
  gptq)  # gptq Q4_K with its covariance passes on each device (16 CPU threads): times, and the two files' KLD
    dir=$2 chunks=$3
    name=$(basename "$dir")
    f16=$(ls "$dir"/*-f16.gguf)
    zcat -f "$dir"/val.txt.gz >"$RESULTS/$name-all.txt"
    head -c $(($(wc -c <"$RESULTS/$name-all.txt") / 2)) "$RESULTS/$name-all.txt" >"$RESULTS/$name-calib.txt"
    tail -c +$(($(wc -c <"$RESULTS/$name-all.txt") / 2 + 1)) "$RESULTS/$name-all.txt" >"$RESULTS/$name-eval.txt"
    for dev in cpu cuda; do
      echo "== quantize --method gptq --chunks $chunks --device $dev"
      with_gpu_peak "$RESULTS/gptq-$name-$dev.json" "$BIN"/mixq --json quantize "$f16" "$RESULTS/gptq-$name-$dev.gguf" \
        --type Q4_K --method gptq --text "$RESULTS/$name-calib.txt" --chunks "$chunks" --device $dev -t 16
      tail -1 "$RESULTS/gptq-$name-$dev.json"
      "$BIN"/mixq --json eval "$RESULTS/gptq-$name-$dev.gguf" --base "$f16" --text "$RESULTS/$name-eval.txt" \
        --chunks 20 --device cuda | tail -1
    done
    cmp "$RESULTS/gptq-$name-cpu.gguf" "$RESULTS/gptq-$name-cuda.gguf" && echo "files identical"
    rm -f "$RESULTS"/gptq-"$name"-*.gguf "$RESULTS/$name"-*.txt
    ;;
  gptq8b)  # the 8B-shaped llama of LAYERS layers: gptq Q4_K with the covariance passes on the GPU, time per tensor
    layers=$2 chunks=$3
    model=/tmp/llama8b-$layers.gguf
    python3 "$(dirname "$0")"/llama8b.py "$model" --layers "$layers" --chunks 4 >/dev/null
    echo "== quantize --method gptq --chunks $chunks --device cuda"
    with_gpu_peak "$RESULTS/gptq8b-$layers.json" "$BIN"/mixq --json quantize "$model" /tmp/gptq8b.gguf --type Q4_K \
      --method gptq --text models/ref-dev/val.txt.gz --chunks "$chunks" --device cuda -t 16
    grep '"tensor"' "$RESULTS/gptq8b-$layers.json" | grep 'blk.0\.' | cut -c1-160
    tail -1 "$RESULTS/gptq8b-$layers.json"
    rm -f "$model" /tmp/gptq8b.gguf
    ;;
  moe)  # a 30B-A3B-shaped qwen3moe (128 experts, top 8) of LAYERS layers: mixq measure on the GPU
    layers=$2
    shift 2
    dir=/tmp/moe30b-$layers
    mkdir -p "$dir"
    cp models/ref-dev/val.txt.gz "$dir"/
    start=$(date +%s.%N)
    python3 "$(dirname "$0")"/synth_moe.py "$dir"/moe30b-f16.gguf --layers "$layers"
    echo "written in $(awk "BEGIN {print $(date +%s.%N) - $start}") s: $(ls -l "$dir"/moe30b-f16.gguf)"
    echo "== mixq measure --device cuda $*"
    start=$(date +%s.%N)
    with_gpu_peak "$RESULTS/measure-moe30b-$layers.log" "$BIN"/mixq --json measure "$dir"/moe30b-f16.gguf \
      --text "$dir"/val.txt.gz -o "$RESULTS/measure-moe30b-$layers.json" --device cuda -t 16 "$@"
    echo "wall seconds: $(awk "BEGIN {print $(date +%s.%N) - $start}")"
    tail -1 "$RESULTS/measure-moe30b-$layers.log"
    rm -rf "$dir"
    ;;
  auto8b)  # the 8B-shaped llama of LAYERS layers: mixq auto --target 4.5bpw on the GPU, time of each stage
    layers=$2
    shift 2
    model=/tmp/llama8b-$layers.gguf
    python3 "$(dirname "$0")"/llama8b.py "$model" --layers "$layers" --chunks 4 >/dev/null
    echo "== mixq auto --target 4.5bpw --device cuda $*"
    with_gpu_peak "$RESULTS/auto8b-$layers.log" "$BIN"/mixq --json auto "$model" --text models/ref-dev/val.txt.gz \
      -o /tmp/auto8b-$layers.gguf --target 4.5bpw --device cuda -t 16 "$@"
    tail -1 "$RESULTS/auto8b-$layers.log"
    rm -rf "$model" /tmp/auto8b-"$layers".gguf*
    ;;
  bench)  # the 8B-shaped llama: PyTorch bf16, mixq cuda (two lengths: the difference is the
    # steady rate, without the one-time weight upload), mixq cpu (16 threads)
    layers=$2 short=$3 long=$4 cpu_chunks=$5
    model=/tmp/llama8b-$layers.gguf
    text=models/ref-dev/val.txt.gz
    PYTHONUNBUFFERED=1 python3 "$(dirname "$0")"/llama8b.py "$model" --layers "$layers" --chunks "$((long - short))" |
      tee "$RESULTS/torch-$layers.json"
    for n in "$short" "$long"; do
      echo "== mixq eval --device cuda, $n chunks"
      with_gpu_peak "$RESULTS/cuda-$layers-$n.json" "$BIN"/mixq --json eval "$model" --text $text --chunks "$n" \
        --device cuda
      tail -1 "$RESULTS/cuda-$layers-$n.json"
    done
    [ "$cpu_chunks" = 0 ] && exit 0
    echo "== mixq eval --device cpu -t 16, $cpu_chunks chunks"
    with_gpu_peak "$RESULTS/cpu-$layers.json" "$BIN"/mixq --json eval "$model" --text $text --chunks "$cpu_chunks" \
      --device cpu -t 16
    tail -1 "$RESULTS/cpu-$layers.json"
    ;;
esac
