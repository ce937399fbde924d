"""writ mcp in its Streamable HTTP mode (`--upstream URL --listen ADDR`) against real servers:
@modelcontextprotocol/server-everything from npm (`streamableHttp`: answers in event streams,
sessions, resumable event ids) and tests/mcp/notes_server.py (the Python SDK's MCPServer,
JSON answers, a tool that writes a file), driven by the Python MCP SDK's streamable HTTP
client and by raw HTTP where the test needs the wire.

Run by tests/mcp/run.sh after test_gateway.py, with the same environment plus BUNDLE3 (a
signed variant of the bundle that also permits the notes server's erase_notes).
Prints one line per case and a closing `N passed, M failed`; exits 1 on any failure.
"""
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import traceback
import urllib.parse

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

WRIT, URL, CRED, ROOT = os.environ["WRIT"], os.environ["WRIT_URL"], os.environ["CRED"], os.environ["ROOT"]
SERVERS, DATA, BUNDLE3 = os.environ["SERVERS"], os.environ["DATA"], os.environ["BUNDLE3"]
HERE = os.path.dirname(os.path.abspath(__file__))
PROCS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


def start_upstreams():
    """server-everything and the notes server; their endpoints."""
    p1, p2 = free_port(), free_port()
    env = dict(os.environ, PORT=str(p1))
    PROCS.append(subprocess.Popen(["node", f"{SERVERS}/server-everything/dist/index.js", "streamableHttp"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    PROCS.append(subprocess.Popen([sys.executable, os.path.join(HERE, "notes_server.py"), str(p2)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_port(p1)
    wait_port(p2)
    return f"http://127.0.0.1:{p1}/mcp", f"http://127.0.0.1:{p2}/mcp"


EVERYTHING, NOTES = None, None


class Gateway:
    """`writ mcp --upstream … --listen 127.0.0.1:0`; its URL from the line it prints."""

    def __init__(self, name, upstream, url=URL, extra=()):
        argv = [WRIT, "mcp", "--url", url, "--name", name, "--credential-file", CRED, "--upstream", upstream,
                "--listen", "127.0.0.1:0", *extra]
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("writ mcp: serving http://"), line
        self.url = line.split()[3]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.p.terminate()
        self.p.wait(timeout=20)


async def with_session(url, body, **kw):
    async with streamable_http_client(url) as (r, w):
        async with ClientSession(r, w, **kw) as s:
            await s.initialize()
            return await body(s)


def text(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


class Raw:
    """One raw HTTP connection to a gateway."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.path = u.path
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
        self.session = None

    def request(self, method, body=None, headers=()):
        h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
             "MCP-Protocol-Version": "2025-06-18"}
        if self.session:
            h["Mcp-Session-Id"] = self.session
        h.update(headers)
        self.conn.request(method, self.path, body=body, headers=h)
        return self.conn.getresponse()

    def post(self, msg, raw=None):
        """Status, headers and the JSON-RPC messages of the answer (JSON or a whole event stream)."""
        r = self.request("POST", raw if raw is not None else json.dumps(msg))
        body = r.read()
        if r.getheader("Content-Type", "").startswith("text/event-stream"):
            return r.status, r, [m for _, m in events(body)]
        return r.status, r, ([json.loads(body)] if body else [])


def events(body):
    """(id, message) of every event with data in a whole event stream."""
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        ident = next((line[3:].strip() for line in lines if line.startswith("id:")), None)
        data = "\n".join(line[5:].lstrip(" ") if line.startswith("data:") else "" for line in lines
                         if line.startswith("data:"))
        if data.strip():
            out.append((ident, json.loads(data)))
    return out


def read_event(resp, pred, timeout=20):
    """Reads a held-open event stream until an event whose message satisfies `pred`."""
    deadline = time.monotonic() + timeout
    block, seen = [], []
    while time.monotonic() < deadline:
        line = resp.fp.readline()
        if not line:
            raise AssertionError(f"the stream ended; seen {seen}")
        line = line.decode().rstrip("\r\n")
        if line:
            block.append(line)
            continue
        for ident, msg in events("\n".join(block).encode() + b"\n\n"):
            if pred(ident, msg):
                return ident, msg
            seen.append((ident, msg))
        block = []
    raise AssertionError(f"nothing matched within {timeout} s; seen {seen}")


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def raw_session(url):
    raw = Raw(url)
    status, r, msgs = raw.post(INIT)
    assert status == 200, (status, msgs)
    raw.session = r.getheader("Mcp-Session-Id")
    assert raw.session, "the upstream's session id did not come through"
    assert msgs[0]["result"]["capabilities"]["tools"]["listChanged"] is True, msgs
    status, _, _ = raw.post(INITIALIZED)
    assert status == 202, status
    return raw


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


# --- the cases -------------------------------------------------------------------------

async def http_allowed_call_returns_the_servers_real_result():
    async def everything(s):
        r = await s.call_tool("get-sum", {"a": 2, "b": 3})
        assert not r.is_error and "5" in text(r), r
        r = await s.call_tool("echo", {"message": "through the HTTP gateway"})
        assert not r.is_error and "through the HTTP gateway" in text(r), r
    with Gateway("everything", EVERYTHING) as gw:
        await with_session(gw.url, everything)
    target = os.path.join(ROOT, "allowed", "note.txt")

    async def notes(s):
        r = await s.call_tool("write_note", {"path": target, "text": "governed note"})
        assert not r.is_error, r
        assert "wrote 13 characters" in text(r), text(r)
    with Gateway("notes", NOTES) as gw:
        await with_session(gw.url, notes)
    assert open(target).read() == "governed note"


async def http_denied_call_never_reaches_the_server():
    target = os.path.join(ROOT, "denied", "note.txt")

    async def body(s):
        r = await s.call_tool("write_note", {"path": target, "text": "x"})
        assert r.is_error, r
        writ = r.structured_content["writ"]
        assert writ["outcome"] == "deny" and writ["reason"] == "policy.denied", writ
        assert writ["decision"].startswith("w-") and isinstance(writ["log_index"], int), writ
        assert text(r).startswith("writ denied this call: policy.denied: "), text(r)
        r = await s.call_tool("write_note", {"path": f"{ROOT}/allowed/../denied/note.txt", "text": "x"})
        assert r.is_error and r.structured_content["writ"]["outcome"] == "deny", r
    with Gateway("notes", NOTES) as gw:
        await with_session(gw.url, body)
    assert not os.path.exists(target)


async def http_tools_list_matches_the_bundle():
    async def names(s):
        return sorted(t.name for t in (await s.list_tools()).tools)

    async def sampling(context, p):
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="-"),
                                         model="test-model", stop_reason="endTurn")

    async def roots(context):
        return types.ListRootsResult(roots=[])
    # server-everything lists its sampling and roots tools to clients that can answer them.
    with Gateway("everything", EVERYTHING) as gw:
        got = await with_session(gw.url, names, sampling_callback=sampling, list_roots_callback=roots)
    assert got == ["echo", "get-roots-list", "get-sum", "trigger-sampling-request"], got
    with Gateway("notes", NOTES) as gw:
        got = await with_session(gw.url, names)
    assert got == ["write_note"], got


async def http_pass_through_with_server_to_client_requests():
    sampled, rooted = [], []

    async def sampling(context, p):
        sampled.append(p)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled by the test"),
                                         model="test-model", stop_reason="endTurn")

    async def roots(context):
        rooted.append(1)
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/test-root", name="test-root")])

    async def body(s):
        # The sampling request comes on the call's event stream; the client POSTs its answer.
        r = await s.call_tool("trigger-sampling-request", {"prompt": "hello", "maxTokens": 10})
        assert not r.is_error, r
        assert "sampled by the test" in text(r), text(r)
        assert sampled, "the sampling request never reached the client"
        r = await s.call_tool("get-roots-list", {})
        assert not r.is_error, r
        assert "test-root" in text(r), text(r)
        assert rooted
        assert (await s.list_resources()).resources
        assert (await s.list_prompts()).prompts
        await s.send_ping()
        names = sorted(t.name for t in (await s.list_tools()).tools)
        assert names == ["echo", "get-roots-list", "get-sum", "trigger-sampling-request"], names
    with Gateway("everything", EVERYTHING) as gw:
        await with_session(gw.url, body, sampling_callback=sampling, list_roots_callback=roots)


async def http_control_plane_down_denies():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def body(s):
        r = await s.call_tool("get-sum", {"a": 1, "b": 1})
        assert r.is_error, r
        assert r.structured_content["writ"]["reason"] == "log.unavailable", r.structured_content
        assert len((await s.list_tools()).tools) > 4
    with Gateway("everything", EVERYTHING, url=closed) as gw:
        await with_session(gw.url, body)


async def http_malformed_json_from_the_client():
    with Gateway("everything", EVERYTHING) as gw:
        raw = Raw(gw.url)
        status, _, msgs = raw.post(None, raw="this is not json")
        assert status == 400, status
        assert msgs[0]["error"]["code"] == -32700 and msgs[0]["id"] is None, msgs
        status, _, msgs = raw.post([{"jsonrpc": "2.0", "id": 9, "method": "ping"}])
        assert status == 400 and msgs[0][0]["error"]["code"] == -32600, (status, msgs)
        # A foreign Origin: 403.
        r = raw.request("POST", json.dumps(INIT), {"Origin": "https://evil.example"})
        assert r.status == 403, r.status
        r.read()
        # The gateway goes on serving.

        async def body(s):
            assert (await s.list_tools()).tools
        await with_session(gw.url, body)


async def http_sessions_and_resumption_pass_through():
    with Gateway("everything", EVERYTHING) as gw:
        raw = raw_session(gw.url)

        def call(i, message):
            r = raw.request("POST", json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                                "params": {"name": "echo", "arguments": {"message": message}}}))
            assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream"), r.status
            evs = events(r.read())
            assert evs and evs[-1][1]["id"] == i and evs[-1][0], evs
            return evs
        first = call(2, "one")
        second = call(3, "two")
        # Resume after the first call's last event: the upstream replays what followed, with
        # its own event ids, through the gateway.
        resumed = Raw(gw.url)
        resumed.session = raw.session
        r = resumed.request("GET", headers={"Accept": "text/event-stream", "Last-Event-ID": first[-1][0]})
        assert r.status == 200, r.status
        ident, msg = read_event(r, lambda i, m: m.get("id") == 3)
        assert ident == second[-1][0], (ident, second)
        assert msg == second[-1][1], (msg, second)
        resumed.conn.close()
        # DELETE ends the session at the upstream; the session id is then refused.
        r = raw.request("DELETE")
        r.read()
        assert r.status == 200, r.status
        status, _, _ = raw.post({"jsonrpc": "2.0", "id": 4, "method": "ping"})
        assert status in (400, 404), status


async def http_bundle_activation_sends_list_changed():
    with Gateway("notes", NOTES, extra=["--bundle-poll", "200ms"]) as gw:
        raw = raw_session(gw.url)
        _, _, msgs = raw.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert [t["name"] for t in msgs[0]["result"]["tools"]] == ["write_note"], msgs
        stream = Raw(gw.url)
        stream.session = raw.session
        r = stream.request("GET", headers={"Accept": "text/event-stream"})
        assert r.status == 200, r.status
        out = subprocess.run([WRIT, "--data-dir", DATA, "policy", "activate", BUNDLE3, "--url", URL],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        read_event(r, lambda i, m: m.get("method") == "notifications/tools/list_changed")
        _, _, msgs = raw.post({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert sorted(t["name"] for t in msgs[0]["result"]["tools"]) == ["erase_notes", "write_note"], msgs
        stream.conn.close()


async def main():
    global EVERYTHING, NOTES
    os.makedirs(os.path.join(ROOT, "allowed"), exist_ok=True)
    os.makedirs(os.path.join(ROOT, "denied"), exist_ok=True)
    cases = [
        http_allowed_call_returns_the_servers_real_result,
        http_denied_call_never_reaches_the_server,
        http_tools_list_matches_the_bundle,
        http_pass_through_with_server_to_client_requests,
        http_control_plane_down_denies,
        http_malformed_json_from_the_client,
        http_sessions_and_resumption_pass_through,
        http_bundle_activation_sends_list_changed,  # last: it changes the active bundle
    ]
    only = sys.argv[1:]
    chosen = [c for c in cases if not only or c.__name__ in only]
    if chosen:
        EVERYTHING, NOTES = start_upstreams()
    try:
        for case in chosen:
            await run_case(case.__name__, case)
    finally:
        for p in PROCS:
            p.terminate()
            p.wait(timeout=20)
    print(f"mcp http: {Case.passed} passed, {Case.failed} failed")
    sys.exit(1 if Case.failed else 0)


asyncio.run(main())
