#!/usr/bin/env bash
# Fetches the charting library `mixq report` inlines into its HTML (Vega,
# Vega-Lite and vega-embed, their browser builds) from npm at pinned versions
# into .report-assets/ and prints that folder's path. Each tarball must match
# the registry's integrity hash pinned here (as scripts/setup-oracle.sh does for
# the oracle). Reruns reuse what is there. Needs npm and node.
set -euo pipefail
cd "$(dirname "$0")/.."

# `npm view <package>@<version> dist.integrity`
declare -A version=(["vega"]="5.33.1" ["vega-lite"]="5.23.0" ["vega-embed"]="6.29.0")
declare -A integrity=(
  ["vega"]="sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="
  ["vega-lite"]="sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="
  ["vega-embed"]="sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="
)
dir=.report-assets

sri_of() { node -e 'const c = require("crypto"), fs = require("fs");
  console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$1"; }

# The stamp names every pinned tarball: a change of version or hash refetches.
stamp="$(declare -p version integrity | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$dir/assets.stamp" 2> /dev/null)" = "$stamp" ] && [ -f "$dir/vega.min.js" ] &&
  [ -f "$dir/vega-lite.min.js" ] && [ -f "$dir/vega-embed.min.js" ]; then
  echo "$(pwd)/$dir"
  exit 0
fi

mkdir -p "$dir"
work="$(mktemp -d "$dir/setup.XXXXXX")"
trap 'rm -rf "$work"' EXIT
for pkg in vega vega-lite vega-embed; do
  tgz="$dir/$pkg-${version[$pkg]}.tgz"
  if [ ! -f "$tgz" ] || [ "$(sri_of "$tgz")" != "${integrity[$pkg]}" ]; then
    rm -f "$tgz"
    if ! (cd "$dir" && npm pack --loglevel=error --cache npm-cache "$pkg@${version[$pkg]}" > /dev/null); then
      echo "setup-report: npm pack $pkg@${version[$pkg]} failed (see npm's message above)" >&2
      exit 1
    fi
  fi
  got="$(sri_of "$tgz")"
  if [ "$got" != "${integrity[$pkg]}" ]; then
    echo "setup-report: $tgz has integrity $got, expected ${integrity[$pkg]}" >&2
    rm -f "$tgz"
    exit 1
  fi
  tar xzf "$tgz" -C "$work" "package/build/$pkg.min.js"
  mv "$work/package/build/$pkg.min.js" "$dir/$pkg.min.js"
done
printf '{"vega":"%s","vega-lite":"%s","vega-embed":"%s"}\n' "${version[vega]}" "${version[vega-lite]}" \
  "${version[vega-embed]}" > "$dir/versions.json"
echo "$stamp" > "$dir/assets.stamp"
echo "$(pwd)/$dir"
