#!/usr/bin/env bash
# writ mcp against real MCP servers from npm (tests/mcp/package.json, installed by
# `npm ci`; and tests/mcp/notes_server.py), driven by the Python MCP SDK
# (tests/mcp/requirements.txt), in both modes (stdio and Streamable HTTP), through a live
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

# The test bundle, a variant that also permits move_file (activated by the last stdio case),
# and a third that also permits the notes server's erase_notes (the last HTTP case).
cp -r "$here/bundle" b1
cp -r "$here/bundle" b2
sed -i 's/"version": "1.0.0"/"version": "1.0.1"/' b2/manifest.json
cat >>b2/policies.cedar <<'CEDAR'

@id("fs-move")
@reason("moving files (the second bundle only)")
permit (principal, action == Writ::Action::"mcp:fs/move_file", resource == Writ::Resource::"mcp:fs");
CEDAR
cp -r b2 b3
sed -i 's/"version": "1.0.1"/"version": "1.0.2"/' b3/manifest.json
cat >>b3/policies.cedar <<'CEDAR'

@id("notes-erase")
@reason("erasing notes (the third bundle only)")
permit (principal, action == Writ::Action::"mcp:notes/erase_notes", resource == Writ::Resource::"mcp:notes");
CEDAR
"$writ" --data-dir data policy sign b1 >/dev/null
"$writ" --data-dir data policy sign b2 >/dev/null
"$writ" --data-dir data policy sign b3 >/dev/null
"$writ" --data-dir data policy activate b1 --url "$base" >/dev/null 2>&1
"$writ" --data-dir data identity issue --spiffe-id spiffe://demo.example/agent/mcp-1 --zone tools --ttl 3600 >agent.jwt
mkdir -p root

# The stdio mode (test_gateway.py), then the Streamable HTTP mode (test_http.py); a case name
# as argument runs that case of either. The gateway trusts the server's published writ keys
# (WRIT_JWKS), as an agent's machine is given them.
export WRIT="$writ" WRIT_URL="$base" CRED="$work/agent.jwt" ROOT="$work/root" DATA="$work/data" BUNDLE2="$work/b2" \
  BUNDLE3="$work/b3" SERVERS="$here/node_modules/@modelcontextprotocol" WRIT_JWKS="$work/data/trust/jwks.json"
status=0
"$python" "$here/test_gateway.py" "$@" || status=1
"$python" "$here/test_http.py" "$@" || status=1
[[ $status == 0 ]] || exit 1

if [[ "${MCP_BENCH:-1}" != 0 ]]; then
  WRIT="$writ" WRIT_URL="$base" CRED="$work/agent.jwt" SERVERS="$here/node_modules/@modelcontextprotocol" \
    "$python" "$here/bench.py"
fi
