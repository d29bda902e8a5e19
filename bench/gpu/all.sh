#!/bin/bash
# One call on the GPU machine: agreement (engine_test), imatrix and measure on
# both devices for ref-dev and dev-deep, the 8B-shaped eval against PyTorch,
# and (BIG=1) a 70B-shaped eval streamed under --gpu-mem 24GiB. Run from the repository root with
# BIN (CUDA build: mixq, engine_test) and DEEP (dev-deep: *-f16.gguf,
# val.txt.gz); logs go to RESULTS.
set -u
here=$(dirname "$0")
export BIN=${BIN:-.devrun/gpu} RESULTS=${RESULTS:-/tmp/gpu-results}
mkdir -p "$RESULTS"
step() {  # step SECONDS NAME COMMAND...: the command's output in RESULTS/NAME.log, cut at SECONDS
  local limit=$1 name=$2
  shift 2
  local start=$(date +%s)
  timeout "$limit" "$@" >"$RESULTS/$name.log" 2>&1
  echo "== $name: exit $?, $(($(date +%s) - start)) s"
  tail -5 "$RESULTS/$name.log"
}
CUBLAS=$(python3 -c "import nvidia.cublas as m; print(list(m.__path__)[0] + '/lib')" 2>/dev/null)
export LD_LIBRARY_PATH=$BIN:/usr/local/cuda/lib64:${CUBLAS}:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step 60 agreement env MIXQ_GPU_TEST_MODELS="$DEEP" "$BIN"/engine_test --gtest_filter='Cuda*:Device*'
step 150 bench8b "$here"/run_device.sh bench 32 4 68 0
rm -f /tmp/llama8b-32.gguf
step 40 measure-ref-dev "$here"/run_device.sh measure models/ref-dev
step 80 measure-dev-deep "$here"/run_device.sh measure "$DEEP"
[ "${BIG:-0}" = 1 ] && step 200 big70b "$here"/run_device.sh big 16 24GiB
step 20 imatrix-ref-dev "$here"/run_device.sh imatrix models/ref-dev
