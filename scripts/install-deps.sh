#!/usr/bin/env bash
# Installs what mixq needs to build, test and benchmark on Debian 12.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  g++ cmake make pkg-config ca-certificates git \
  libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev libxxhash-dev \
  clang clang-format libclang-rt-14-dev gcc libc6-dev \
  chromium
# The oracle needs node and npm. Debian's npm package conflicts with NodeSource's nodejs (which bundles npm), so ask
# apt only when no npm is on the machine.
if ! command -v npm >/dev/null; then
  $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
