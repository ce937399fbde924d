#!/usr/bin/env bash
# Reproduces the console's vendored libraries from the npm registry: installs the versions
# package-lock.json pins (integrity-checked by npm ci, no install scripts run) in a
# temporary directory, then copies each library's browser build and its licence into
# vendor/<lib>/. The copies are committed, so a build needs no network; run this after
# changing a version in package.json (then `npm install --package-lock-only` first) and
# commit the result. CI runs it with --check: the committed copies must be what the lock
# file gives.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp package.json package-lock.json "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --silent)
m="$work/node_modules"
out="$work/out"

# lib/file <- node_modules path
copy() {
  mkdir -p "$out/$(dirname "$1")"
  cp "$m/$2" "$out/$1"
}
copy highlight.js/highlight.min.js @highlightjs/cdn-assets/highlight.min.js
copy highlight.js/github-dark.min.css @highlightjs/cdn-assets/styles/github-dark.min.css
copy highlight.js/LICENSE @highlightjs/cdn-assets/LICENSE
copy diff/diff.min.js diff/dist/diff.min.js
copy diff/LICENSE diff/LICENSE
# The proof viewer's RFC 8785 canonical JSON, the health dashboard's charts, the lineage
# explorer's graph layout (dagre's ES module bundles @dagrejs/graphlib, whose licence is
# LICENSE.graphlib).
copy canonicalize/canonicalize.js canonicalize/lib/canonicalize.js
copy canonicalize/LICENSE canonicalize/LICENSE
copy uplot/uPlot.esm.js uplot/dist/uPlot.esm.js
copy uplot/uPlot.min.css uplot/dist/uPlot.min.css
copy uplot/LICENSE uplot/LICENSE
copy dagre/dagre.esm.js @dagrejs/dagre/dist/dagre.esm.js
copy dagre/dagre.esm.js.LEGAL.txt @dagrejs/dagre/dist/dagre.esm.js.LEGAL.txt
copy dagre/LICENSE @dagrejs/dagre/LICENSE
copy dagre/LICENSE.graphlib @dagrejs/graphlib/LICENSE
libs="highlight.js diff canonicalize uplot dagre"
package() {
  case "$1" in
    highlight.js) echo @highlightjs/cdn-assets ;;
    dagre) echo @dagrejs/dagre ;;
    *) echo "$1" ;;
  esac
}
for lib in $libs; do
  v=$(node -p "require('$m/$(package "$lib")/package.json').version")
  echo "$v" > "$out/$lib/VERSION.txt"
done

if [ "${1:-}" = "--check" ]; then
  for lib in $libs; do
    diff -r "$out/$lib" "$here/$lib" || { echo "vendor/$lib differs from what package-lock.json gives: run update.sh" >&2; exit 1; }
  done
  echo "vendored libraries match package-lock.json"
else
  for lib in $libs; do
    rm -rf "${here:?}/$lib"
    cp -r "$out/$lib" "$here/$lib"
  done
  for lib in $libs; do echo "vendored: $lib $(cat "$here/$lib/VERSION.txt")"; done
fi
