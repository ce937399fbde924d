"""writ mcp against real MCP servers from npm, driven by the real Python MCP SDK.

Run by tests/mcp/run.sh, which starts `writ serve`, activates tests/mcp/bundle and sets:
WRIT (the binary), WRIT_URL, CRED (the agent's credential file), ROOT (the filesystem
server's directory), SERVERS (node_modules/@modelcontextprotocol), DATA (writ serve's data
directory) and BUNDLE2 (a signed variant of the bundle that also permits move_file).
Prints one line per case and a closing `N passed, M failed`; exits 1 on any failure.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import traceback

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

WRIT, URL, CRED, ROOT = os.environ["WRIT"], os.environ["WRIT_URL"], os.environ["CRED"], os.environ["ROOT"]
SERVERS, DATA, BUNDLE2 = os.environ["SERVERS"], os.environ["DATA"], os.environ["BUNDLE2"]
FS = ["node", f"{SERVERS}/server-filesystem/dist/index.js", ROOT]
EVERYTHING = ["node", f"{SERVERS}/server-everything/dist/index.js", "stdio"]


def gateway(name, server, url=URL, extra=()):
    return [WRIT, "mcp", "--url", url, "--name", name, "--credential-file", CRED, *extra, "--", *server]


def params(argv):
    env = dict(os.environ)
    return StdioServerParameters(command=argv[0], args=argv[1:], env=env)


async def session(argv, **kw):
    """An initialised SDK session through the gateway (an async context manager pair)."""
    return stdio_client(params(argv)), kw


def text(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


class Case:
    passed, failed = 0, 0


async def run_case(name, coro):
    started = time.monotonic()
    try:
        await asyncio.wait_for(coro(), timeout=60)
        Case.passed += 1
        print(f"ok    {name} ({time.monotonic() - started:.1f} s)", flush=True)
    except BaseException:  # noqa: BLE001 - every failure is reported, the run goes on
        Case.failed += 1
        print(f"FAIL  {name}", flush=True)
        traceback.print_exc()


async def with_session(argv, body, **kw):
    async with stdio_client(params(argv)) as (r, w):
        async with ClientSession(r, w, **kw) as s:
            await s.initialize()
            return await body(s)


# --- the cases -------------------------------------------------------------------------

async def allowed_call_returns_the_servers_real_result():
    path = os.path.join(ROOT, "allowed", "hello.txt")
    with open(path, "w") as f:
        f.write("hello from the real filesystem server\n")

    async def body(s):
        r = await s.call_tool("read_text_file", {"path": path})
        assert not r.is_error, r
        assert "hello from the real filesystem server" in text(r), r
        # An allowed write under allowed/: the file is written.
        target = os.path.join(ROOT, "allowed", "written.txt")
        r = await s.call_tool("write_file", {"path": target, "content": "governed write"})
        assert not r.is_error, r
        assert open(target).read() == "governed write"
    await with_session(gateway("fs", FS), body)


async def denied_write_never_writes_the_file():
    target = os.path.join(ROOT, "denied", "must-not-exist.txt")

    async def body(s):
        r = await s.call_tool("write_file", {"path": target, "content": "x"})
        assert r.is_error, r
        writ = r.structured_content["writ"]
        assert writ["outcome"] == "deny" and writ["reason"] == "policy.denied", writ
        assert writ["decision"].startswith("w-") and isinstance(writ["log_index"], int), writ
        assert text(r).startswith("writ denied this call: policy.denied: "), text(r)
        # A traversal out of allowed/ is denied too (forbid), and a tool never permitted.
        r = await s.call_tool("write_file", {"path": f"{ROOT}/allowed/../denied/x.txt", "content": "x"})
        assert r.is_error and r.structured_content["writ"]["outcome"] == "deny", r
        r = await s.call_tool("move_file", {"source": f"{ROOT}/allowed/hello.txt", "destination": f"{ROOT}/moved.txt"})
        assert r.is_error and r.structured_content["writ"]["outcome"] == "deny", r
    await with_session(gateway("fs", FS), body)
    assert not os.path.exists(target)
    assert not os.path.exists(os.path.join(ROOT, "denied", "x.txt"))
    assert not os.path.exists(os.path.join(ROOT, "moved.txt"))


async def tools_list_matches_the_bundle():
    async def body(s):
        return sorted(t.name for t in (await s.list_tools()).tools)
    names = await with_session(gateway("fs", FS), body)
    # Permitted (write_file conditionally); read_file and move_file declared without a
    # permit, every other tool undeclared: hidden.
    assert names == ["list_allowed_directories", "list_directory", "read_text_file", "write_file"], names


async def pass_through_with_server_to_client_requests():
    sampled, rooted = [], []

    async def sampling(context, p):
        sampled.append(p)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled by the test"),
                                         model="test-model", stop_reason="endTurn")

    async def roots(context):
        rooted.append(1)
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/test-root", name="test-root")])

    async def body(s):
        r = await s.call_tool("trigger-sampling-request", {"prompt": "hello", "maxTokens": 10})
        assert not r.is_error, r
        assert "sampled by the test" in text(r), text(r)
        assert sampled, "the sampling request never reached the client"
        r = await s.call_tool("get-roots-list", {})
        assert not r.is_error, r
        assert "test-root" in text(r), text(r)
        assert rooted
        r = await s.call_tool("get-sum", {"a": 2, "b": 3})
        assert "5" in text(r), text(r)
        # Resources, prompts and ping pass through untouched.
        assert (await s.list_resources()).resources
        assert (await s.list_prompts()).prompts
        await s.send_ping()
        names = sorted(t.name for t in (await s.list_tools()).tools)
        assert names == ["echo", "get-roots-list", "get-sum", "trigger-sampling-request"], names
    await with_session(gateway("everything", EVERYTHING), body, sampling_callback=sampling, list_roots_callback=roots)


async def control_plane_down_denies():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    path = os.path.join(ROOT, "allowed", "hello.txt")

    async def body(s):
        r = await s.call_tool("read_text_file", {"path": path})
        assert r.is_error, r
        assert r.structured_content["writ"]["reason"] == "log.unavailable", r.structured_content
        # The list cannot be filtered: every tool is shown (calls stay governed).
        assert len((await s.list_tools()).tools) > 4
    await with_session(gateway("fs", FS, url=closed), body)


def raw_gateway(server):
    return subprocess.Popen(gateway("fs", server), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)


def read_until(p, pred, timeout=20):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"the gateway closed its output; seen {seen}")
        m = json.loads(line)
        if pred(m):
            return m
        seen.append(m)
    raise AssertionError(f"nothing matched within {timeout} s; seen {seen}")


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}


async def malformed_json_rpc_from_either_side():
    # From the client: a line that is not JSON gets a parse error (id null); the session goes on.
    p = raw_gateway(FS)
    try:
        p.stdin.write("this is not json\n")
        p.stdin.write(json.dumps(INIT) + "\n")
        err = read_until(p, lambda m: "error" in m)
        assert err["error"]["code"] == -32700 and err["id"] is None, err
        init = read_until(p, lambda m: m.get("id") == 1)
        assert init["result"]["serverInfo"], init
    finally:
        p.stdin.close()
        assert p.wait(timeout=20) == 0
    # From the server: a line that is not JSON is dropped; the SDK's session is unaffected.
    noisy = ["sh", "-c", 'echo "not json from the server"; exec "$@"', "sh", *FS]

    async def body(s):
        assert (await s.list_tools()).tools
    await with_session(gateway("fs", noisy), body)


async def bundle_activation_sends_list_changed():
    p = raw_gateway(FS)
    try:
        p.stdin.write(json.dumps(INIT) + "\n")
        read_until(p, lambda m: m.get("id") == 1)
        p.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}) + "\n")
        first = read_until(p, lambda m: m.get("id") == 2)
        assert "move_file" not in [t["name"] for t in first["result"]["tools"]]
        out = subprocess.run([WRIT, "--data-dir", DATA, "policy", "activate", BUNDLE2, "--url", URL],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        read_until(p, lambda m: m.get("method") == "notifications/tools/list_changed")
        p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}) + "\n")
        second = read_until(p, lambda m: m.get("id") == 3)
        assert "move_file" in [t["name"] for t in second["result"]["tools"]], second
    finally:
        p.stdin.close()
        p.wait(timeout=20)


async def main():
    os.makedirs(os.path.join(ROOT, "allowed"), exist_ok=True)
    os.makedirs(os.path.join(ROOT, "denied"), exist_ok=True)
    cases = [
        allowed_call_returns_the_servers_real_result,
        denied_write_never_writes_the_file,
        tools_list_matches_the_bundle,
        pass_through_with_server_to_client_requests,
        control_plane_down_denies,
        malformed_json_rpc_from_either_side,
        bundle_activation_sends_list_changed,  # last: it changes the active bundle
    ]
    only = sys.argv[1:]
    for case in cases:
        if not only or case.__name__ in only:
            await run_case(case.__name__, case)
    print(f"mcp: {Case.passed} passed, {Case.failed} failed")
    sys.exit(1 if Case.failed else 0)


asyncio.run(main())
