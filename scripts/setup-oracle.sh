#!/usr/bin/env bash
# Builds gguf-oracle (the real llama.cpp, from npm) into .oracle/ unless present.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${MIXQ_SHARED_DIR:-$(cd .. && pwd)/shared}"
if [ ! -x .oracle/gguf-oracle ]; then
  sh "$shared/tools/llama-oracle/setup-oracle.sh" .oracle >&2
fi
echo "$(pwd)/.oracle/gguf-oracle"
