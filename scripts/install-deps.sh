#!/usr/bin/env bash
# Installs what mixq needs to build, test and benchmark on Debian 12.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  g++ cmake make pkg-config ca-certificates git \
  libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev zlib1g-dev \
  clang libclang-rt-14-dev nodejs npm gcc libc6-dev
