#!/usr/bin/env bash
# The README's tour, run as written: the block under "## A tour" is taken from README.md,
# `$W` pointed at a built `writ` and the API at a fresh `writ serve` on a free loopback port,
# and run with `set -eu` (no pipefail: the tour pipes into `head`, as a reader would) in an
# empty directory (the tour's `writ-data` is made by that server). Then its output must show every behaviour the tour promises. CI runs it twice
# under libfaketime, inside and outside business hours, because the tour must work at any
# hour.
#
# Usage: tests/tour/run.sh [path/to/writ]   (default target/release/writ)
#        TZ=UTC faketime -f "@2026-12-03 03:00:00" tests/tour/run.sh target/release/writ
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
writ=$(realpath "${1:-$repo/target/release/writ}")
work=$(mktemp -d)
cleanup() {
  [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# The tour's block, verbatim.
awk '/^## A tour/ {on=1; next} on && /^```sh/ {code=1; next} code && /^```/ {exit} code {print}' \
  "$repo/README.md" >tour.sh
[[ $(wc -l <tour.sh) -gt 20 ]] || { echo "tour: no tour block found in README.md"; exit 1; }

"$writ" serve --listen 127.0.0.1:0 >serve.out 2>serve.err &
pid=$!
for _ in $(seq 1 100); do
  grep -q "http://" serve.out && break
  sleep 0.1
done
base=$(grep -o 'http://[0-9.:]*' serve.out | head -1)
[[ -n "$base" ]] || { echo "tour: the server did not start"; cat serve.err; exit 1; }
echo "tour: server at $base, $(date -u +%H:%M) UTC"

# Only the two things a reader's machine differs in: how writ is run, and the port.
sed -e "s|^W=.*|W=\"$writ\"|" -e "s|http://127.0.0.1:7070|$base|g" tour.sh >tour.run.sh
if ! bash -eu tour.run.sh >tour.out 2>tour.err; then
  echo "tour: a command of the tour failed"; cat tour.out tour.err; exit 1
fi

fail=0
expect() { # expect DESCRIPTION PATTERN FILE
  if ! grep -Eq -- "$2" "$3"; then echo "tour: no $1 (/$2/ in $3)"; fail=1; fi
}
expect "ready answer" '"ready": *true' tour.out
expect "allowed decision with a writ" '"outcome": *"allow".*"writ": *"ey' tour.out
expect "replayed writ refused" 'writ\.replayed' tour.out
expect "quarantine deny" '"quarantined"' tour.out
expect "pending payment" '^[0-9A-Za-z_-]+ pending$' tour.err
expect "approval answered" '"status": *"approved"' tour.out
expect "collected writ" '"writ": *"ey' tour.out
expect "anonymous refusal" 'identity\.' tour.out
expect "decision metrics" '^writ_decisions' tour.out
expect "OpenAPI document" '"openapi"' tour.out
if [[ $fail -ne 0 ]]; then
  echo "--- output"; cat tour.out; echo "--- stderr"; cat tour.err; exit 1
fi
echo "tour: every step answered as the README says ($(grep -c . tour.run.sh) lines)"
