"""The latency writ mcp adds to a tools/call: the same server (server-everything's `echo`)
called directly and through the gateway, side by side in one run, in alternating rounds,
with a live `writ serve` on loopback deciding every call (and recording its outcome).

Then the same for the Streamable HTTP mode: server-everything `streamableHttp` called
directly over HTTP (keep-alive, its answers in event streams) and through
`writ mcp --upstream`, side by side in one run.

Run by tests/mcp/run.sh (environment as for test_gateway.py); BENCH_CALLS sets the number
of calls per side (default 2000). Prints p50/p99/mean per side and the difference.
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import time
import urllib.parse

WRIT, URL, CRED = os.environ["WRIT"], os.environ["WRIT_URL"], os.environ["CRED"]
SERVERS = os.environ["SERVERS"]
SERVER = ["node", f"{SERVERS}/server-everything/dist/index.js", "stdio"]
CALLS = int(os.environ.get("BENCH_CALLS", "2000"))
ROUNDS = 10


class Peer:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  bufsize=0)
        self.next_id = 1
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})
        self.p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

    def request(self, method, params):
        i = self.next_id
        self.next_id += 1
        self.p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode() + b"\n")
        while True:
            m = json.loads(self.p.stdout.readline())
            if m.get("id") == i and "method" not in m:
                return m

    def call(self):
        started = time.perf_counter_ns()
        m = self.request("tools/call", {"name": "echo", "arguments": {"message": "benchmark"}})
        elapsed = time.perf_counter_ns() - started
        assert "result" in m and not m["result"].get("isError"), m
        return elapsed

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=20)


class Authorize:
    """`POST /v1/authorize` alone for the same call, over one keep-alive connection: the
    control plane's share of the added latency."""

    def __init__(self):
        host, port = URL.removeprefix("http://").rstrip("/").split(":")
        self.conn = http.client.HTTPConnection(host, int(port))
        token = open(CRED).read().strip()
        self.body = json.dumps({"credentials": {"workload": token}, "action": "mcp:everything/echo",
                                "resource": "mcp:everything", "arguments": {"message": "benchmark"},
                                "audience": "mcp:everything"})

    def call(self):
        started = time.perf_counter_ns()
        self.conn.request("POST", "/v1/authorize", self.body, {"Content-Type": "application/json"})
        answer = json.loads(self.conn.getresponse().read())
        elapsed = time.perf_counter_ns() - started
        assert answer["outcome"] == "allow", answer
        return elapsed


class HttpPeer:
    """An MCP session over Streamable HTTP on one keep-alive connection."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.path = u.path
        self.conn = http.client.HTTPConnection(u.hostname, u.port)
        self.session = None
        self.next_id = 1
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, msg):
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                   "MCP-Protocol-Version": "2025-06-18"}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        self.conn.request("POST", self.path, json.dumps(msg), headers)
        r = self.conn.getresponse()
        body = r.read()
        self.session = self.session or r.getheader("Mcp-Session-Id")
        return r, body

    def request(self, method, params):
        i = self.next_id
        self.next_id += 1
        r, body = self.post({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
        if r.getheader("Content-Type", "").startswith("text/event-stream"):
            for line in body.decode().splitlines():
                if line.startswith("data:"):
                    m = json.loads(line[5:])
                    if m.get("id") == i and "method" not in m:
                        return m
            raise AssertionError(f"no answer in {body!r}")
        return json.loads(body)

    def call(self):
        started = time.perf_counter_ns()
        m = self.request("tools/call", {"name": "echo", "arguments": {"message": "benchmark"}})
        elapsed = time.perf_counter_ns() - started
        assert "result" in m and not m["result"].get("isError"), m
        return elapsed

    def close(self):
        self.conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def report(title, d, g, a):
    us = lambda ns: ns / 1000  # noqa: E731
    print(title)
    print(f"{'':18}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    for name, xs in (("direct", d), ("through writ mcp", g)):
        print(f"{name:18}{us(pct(xs, 0.5)):10.0f}{us(pct(xs, 0.99)):10.0f}{us(statistics.mean(xs)):10.0f}")
    print(f"{'added':18}{us(pct(g, 0.5) - pct(d, 0.5)):10.0f}{us(pct(g, 0.99) - pct(d, 0.99)):10.0f}"
          f"{us(statistics.mean(g) - statistics.mean(d)):10.0f}")
    print(f"{'authorize alone':18}{us(pct(a, 0.5)):10.0f}{us(pct(a, 0.99)):10.0f}{us(statistics.mean(a)):10.0f}"
          "   (POST /v1/authorize of the same call, no gateway: the decision and its durable record)")


def side_by_side(direct, gated, alone):
    for _ in range(200):  # warm up (JIT, connections, caches)
        direct.call()
        gated.call()
        alone.call()
    d, g, a = [], [], []
    for _ in range(ROUNDS):
        d += [direct.call() for _ in range(CALLS // ROUNDS)]
        g += [gated.call() for _ in range(CALLS // ROUNDS)]
        a += [alone.call() for _ in range(CALLS // ROUNDS)]
    return d, g, a


def http_mode(alone):
    port = free_port()
    upstream = subprocess.Popen(["node", f"{SERVERS}/server-everything/dist/index.js", "streamableHttp"],
                                env=dict(os.environ, PORT=str(port)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    gateway = None
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/mcp"
        gateway = subprocess.Popen([WRIT, "mcp", "--url", URL, "--name", "everything", "--credential-file", CRED,
                                    "--upstream", url, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        gated_url = gateway.stdout.readline().split()[3]
        direct, gated = HttpPeer(url), HttpPeer(gated_url)
        d, g, a = side_by_side(direct, gated, alone)
        direct.close()
        gated.close()
        report(f"mcp bench (Streamable HTTP): {len(d)} sequential tools/call per side, server-everything "
               f"streamableHttp echo (event-stream answers), control plane {URL}", d, g, a)
    finally:
        if gateway:
            gateway.terminate()
            gateway.wait(timeout=20)
        upstream.terminate()
        upstream.wait(timeout=20)


def main():
    direct = Peer(SERVER)
    gated = Peer([WRIT, "mcp", "--url", URL, "--name", "everything", "--credential-file", CRED, "--", *SERVER])
    alone = Authorize()
    d, g, a = side_by_side(direct, gated, alone)
    direct.close()
    gated.close()
    report(f"mcp bench: {len(d)} sequential tools/call per side, server-everything echo, control plane {URL}",
           d, g, a)
    if os.environ.get("MCP_BENCH_HTTP", "1") != "0":
        http_mode(alone)


main()
