#!/usr/bin/env bash
# writ mcp against real MCP servers from npm (tests/mcp/package.json, installed by
# `npm ci`), driven by the Python MCP SDK (tests/mcp/requirements.txt), through a live
# `writ serve` with the test bundle tests/mcp/bundle. Usage: tests/mcp/run.sh path/to/writ
# Then the gateway's latency benchmark (tests/mcp/bench.py) unless MCP_BENCH=0.
set -euo pipefail
writ=$(realpath "${1:?usage: tests/mcp/run.sh path/to/writ}")
shift
here=$(cd "$(dirname "$0")" && pwd)
python=python3
[[ -x "$here/.venv/bin/python" ]] && python="$here/.venv/bin/python"
[[ -d "$here/node_modules/@modelcontextprotocol" ]] || { echo "mcp: run npm ci in $here first"; exit 1; }

work=$(mktemp -d)
cleanup() {
  [[ -n "${server_pid:-}" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
"$writ" --data-dir data serve --listen 127.0.0.1:0 >serve.out 2>serve.err &
server_pid=$!
for _ in $(seq 1 200); do
  grep -q "http://" serve.out 2>/dev/null && break
  sleep 0.1
done
base=$(grep -o 'http://[0-9.:]*' serve.out | head -1)
[[ -n "$base" ]] || { echo "mcp: the server did not start"; cat serve.err; exit 1; }

# The test bundle, and a variant that also permits move_file (activated by the last case).
cp -r "$here/bundle" b1
cp -r "$here/bundle" b2
sed -i 's/"version": "1.0.0"/"version": "1.0.1"/' b2/manifest.json
cat >>b2/policies.cedar <<'CEDAR'

@id("fs-move")
@reason("moving files (the second bundle only)")
permit (principal, action == Writ::Action::"mcp:fs/move_file", resource == Writ::Resource::"mcp:fs");
CEDAR
"$writ" --data-dir data policy sign b1 >/dev/null
"$writ" --data-dir data policy sign b2 >/dev/null
"$writ" --data-dir data policy activate b1 --url "$base" >/dev/null 2>&1
"$writ" --data-dir data identity issue --spiffe-id spiffe://demo.example/agent/mcp-1 --zone tools --ttl 3600 >agent.jwt
mkdir -p root

WRIT="$writ" WRIT_URL="$base" CRED="$work/agent.jwt" ROOT="$work/root" DATA="$work/data" BUNDLE2="$work/b2" \
  SERVERS="$here/node_modules/@modelcontextprotocol" "$python" "$here/test_gateway.py" "$@"

if [[ "${MCP_BENCH:-1}" != 0 ]]; then
  WRIT="$writ" WRIT_URL="$base" CRED="$work/agent.jwt" SERVERS="$here/node_modules/@modelcontextprotocol" \
    "$python" "$here/bench.py"
fi
