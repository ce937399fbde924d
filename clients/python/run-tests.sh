#!/usr/bin/env bash
# The Python client's tests: a virtual environment (clients/python/.venv) with the pinned
# test requirements and the package installed from this directory as a user would
# (pip install ./clients/python), mypy --strict over the package, then pytest against a
# live `writ serve` (the binary given as the first argument).
# Usage: clients/python/run-tests.sh path/to/writ [pytest arguments]
set -euo pipefail
writ=$(realpath "${1:?usage: clients/python/run-tests.sh path/to/writ}")
shift
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-test.txt"
rm -rf "$here/build"  # setuptools' build tree: never install a stale copy
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$here"
rm -rf "$here/build"
# Type-check the installed package (the py.typed marker makes it a typed package).
(cd "$here" && "$venv/bin/mypy" --strict --no-incremental src/writ_client)
# Run from the tests directory against the installed package, not the source tree.
cd "$here/tests"
WRIT_BIN="$writ" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
