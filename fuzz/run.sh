#!/usr/bin/env bash
# Runs the fuzz targets on the pinned stable toolchain (see README.md): builds them all
# once, then runs each for SECONDS (default 20) from its committed seeds, one process at a
# time. Exits non-zero at the first finding (libFuzzer writes the input to artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
shift || true
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sanitizer coverage); the pinned
# stable compiler accepts them when told it is bootstrapping itself.
export RUSTC_BOOTSTRAP=1
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
# -a: debug assertions and overflow checks on, as in the tests. FUZZ_SANITIZER picks the
# sanitizer (address by default; CI uses none to bound its build time).
sanitizer=${FUZZ_SANITIZER:-address}
cargo fuzz build -O -a -s "$sanitizer"
for t in "${targets[@]}"; do
  # New inputs go to a scratch corpus under target/ (git-ignored); corpus/<target> holds the
  # committed seeds and is only read.
  mkdir -p "target/corpus/$t"
  echo "== fuzz $t (${seconds}s)"
  log="target/fuzz-$t.log"
  status=0
  cargo fuzz run -O -a -s "$sanitizer" "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t failed (exit $status); the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
