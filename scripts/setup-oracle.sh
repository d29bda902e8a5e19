#!/usr/bin/env bash
# Builds the test oracle (tools/oracle: the real llama.cpp, judging our files)
# into .oracle/ and prints the path of its executable. llama.cpp comes from npm
# at a pinned version, as prebuilt shared libraries (@node-llama-cpp/linux-x64)
# and the headers of the source they were built from (the git bundle inside
# node-llama-cpp); each tarball must match the registry's integrity hash pinned
# here. Reruns reuse the tarballs and rebuild only when the sources changed.
# Needs npm, node, git and g++ (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

version=3.22.1
# `npm view <package>@<version> dist.integrity`
declare -A integrity=(
  ["node-llama-cpp"]="sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw=="
  ["@node-llama-cpp/linux-x64"]="sha512-5uCCDNqWCNfaAm8aR/Uzxbo4HBpKgNF91kCHPepKhgMgV2OAmatoefbOlMihsqCiH2Od35E/eUHQCFbfRBJuOg=="
)
dir=.oracle
exe="$dir/gguf-oracle"

# npm pack's file name for a package: scope dropped, '/' -> '-'.
tarball() { local n="${1#@}"; echo "$dir/${n//\//-}-$version.tgz"; }

sri_of() { node -e 'const c = require("crypto"), fs = require("fs");
  console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$1"; }

fetch() {
  local pkg="$1" tgz
  tgz="$(tarball "$pkg")"
  if [ ! -f "$tgz" ] || [ "$(sri_of "$tgz")" != "${integrity[$pkg]}" ]; then
    rm -f "$tgz"
    if ! (cd "$dir" && npm pack --loglevel=error --cache npm-cache "$pkg@$version" > /dev/null); then
      echo "setup-oracle: npm pack $pkg@$version failed (see npm's message above)" >&2
      exit 1
    fi
  fi
  local got
  got="$(sri_of "$tgz")"
  if [ "$got" != "${integrity[$pkg]}" ]; then
    echo "setup-oracle: $tgz has integrity $got, expected ${integrity[$pkg]}" >&2
    rm -f "$tgz"
    exit 1
  fi
}

# Everything the build depends on: a change in any of these rebuilds the oracle.
stamp="$(cat scripts/setup-oracle.sh tools/oracle/*.cc tools/oracle/*.h | sha256sum | cut -d' ' -f1)"
if [ -x "$exe" ] && [ "$(cat "$dir/build.stamp" 2> /dev/null)" = "$stamp" ]; then
  echo "$(pwd)/$exe"
  exit 0
fi

mkdir -p "$dir"
for pkg in "${!integrity[@]}"; do fetch "$pkg"; done
work="$(mktemp -d "$dir/setup.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The shared libraries: libllama, libggml, libggml-base and one libggml-cpu-<variant>.so per x86-64 CPU level.
rm -rf "$dir/bins" && mkdir -p "$dir/bins"
tar xzf "$(tarball @node-llama-cpp/linux-x64)" -C "$work" package/bins/linux-x64
cp -p "$work"/package/bins/linux-x64/*.so "$work/package/bins/linux-x64/_nlcBuildMetadata.json" "$dir/bins/"

# The headers, from the llama.cpp source those libraries were built from.
tar xzf "$(tarball node-llama-cpp)" -C "$work" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
git clone -q --no-checkout "$work/package/llama/gitRelease.bundle" "$work/src"
rm -rf "$dir/include" && mkdir -p "$dir/include"
mkdir "$work/hdr"
git -C "$work/src" archive HEAD include/llama.h ggml/include | tar x -C "$work/hdr"
cp "$work/hdr/include/llama.h" "$work"/hdr/ggml/include/*.h "$dir/include/"
commit="$(git -C "$work/src" rev-parse HEAD)"

lib() { (cd "$dir/bins" && ls "$1".v*.so 2> /dev/null || ls "$1.so"); }
${CXX:-g++} -std=c++20 -O2 -Wall -Wextra -Werror -I"$dir/include" tools/oracle/*.cc -o "$exe.tmp" \
  -L"$dir/bins" "-l:$(lib libllama)" "-l:$(lib libggml)" -l:libggml-base.so -Wl,-rpath,'$ORIGIN/bins'
mv "$exe.tmp" "$exe"
printf '{"node_llama_cpp":"%s","llama_cpp":%s,"bundle_commit":"%s","libraries":%s}\n' "$version" \
  "$(tr -d ' \n' < "$work/package/llama/llama.cpp.info.json")" "$commit" \
  "$(tr -d ' \n' < "$dir/bins/_nlcBuildMetadata.json")" > "$dir/oracle-version.json"
echo "$stamp" > "$dir/build.stamp"
echo "$(pwd)/$exe"
