#!/usr/bin/env python3
"""Connection-limit figures for BENCHMARKS.md (issue 13): how long slow and idle connections
are held, and whether /readyz answers through a flood of silent connections under a low
`ulimit -n`. Usage: conns.py WRIT_BINARY SCENARIO [extra serve flags...]"""
import os, re, select, socket, subprocess, sys, tempfile, time

writ, scenario, flags = sys.argv[1], sys.argv[2], sys.argv[3:]

def start(nofile=None):
    d = tempfile.mkdtemp(prefix="wb-conn-")
    cmd = [writ, "--data-dir", d, "serve", "--listen", "127.0.0.1:0", *flags]
    if nofile:
        cmd = ["sh", "-c", f'ulimit -n {nofile} && exec "$0" "$@"', *cmd]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(d, "stderr.log"), "w"))
    line = p.stdout.readline().decode()
    host, port = re.search(r"http://([0-9.]+):(\d+)/", line).groups()
    return p, (host, int(port)), d

def get(addr, path, timeout=120):
    s = socket.create_connection(addr, timeout=timeout)
    t = time.monotonic()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n".encode())
    data = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    except socket.timeout:
        return None, time.monotonic() - t
    return data.split(b" ", 2)[1].decode() if data else "closed", time.monotonic() - t

def watch(socks, limit):
    """Seconds until each socket is closed by the server (None: still open at `limit`)."""
    t0 = time.monotonic()
    left = {s.fileno(): s for s in socks}
    closed = {}
    while left and time.monotonic() - t0 < limit:
        r, _, _ = select.select(list(left.values()), [], [], 0.5)
        for s in r:
            try:
                c = s.recv(4096)
            except OSError:
                c = b""
            if not c:
                closed[s.fileno()] = time.monotonic() - t0
                del left[s.fileno()]
    return [closed.get(s.fileno()) for s in socks]

def summary(name, held, limit):
    open_ = sum(1 for h in held if h is None)
    done = sorted(h for h in held if h is not None)
    if done:
        print(f"{name}: {len(held)} connections, closed by the server after min {done[0]:.2f} s, "
              f"median {done[len(done)//2]:.2f} s, max {done[-1]:.2f} s; still open at {limit} s: {open_}")
    else:
        print(f"{name}: {len(held)} connections, all still open at {limit} s")

if scenario == "held":
    limit = float(os.environ.get("LIMIT", "95"))
    p, addr, d = start()
    half, idle = [], []
    for _ in range(64):
        s = socket.create_connection(addr)
        s.sendall(b"POST /v1/authorize HTTP/1.1\r\nHost: w\r\nContent-Ty")
        half.append(s)
    for _ in range(64):
        s = socket.create_connection(addr)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: w\r\n\r\n")
        s.recv(4096)
        idle.append(s)
    held = watch(half + idle, limit)
    summary("half a header", held[:64], limit)
    summary("idle keep-alive", held[64:], limit)
    st, took = get(addr, "/metrics")
    p.terminate(); p.wait()
elif scenario == "flood":
    nofile = int(os.environ.get("NOFILE", "128"))
    n = int(os.environ.get("FLOOD", "1000"))
    p, addr, d = start(nofile)
    flood = []
    t = time.monotonic()
    for _ in range(n):
        try:
            flood.append(socket.create_connection(addr, timeout=2))
        except OSError as e:
            print("connect failed:", e); break
    print(f"flood: {len(flood)} silent connections opened in {time.monotonic()-t:.2f} s (server ulimit -n {nofile})")
    time.sleep(0.5)
    for i in range(5):
        st, took = get(addr, "/readyz", timeout=float(os.environ.get("READYZ_TIMEOUT", "30")))
        print(f"/readyz over a fresh connection: status {st} after {took*1000:.0f} ms")
    # An attacker who reconnects at once: keep the flood at n while probing.
    st, took = get(addr, "/metrics", timeout=30)
    print("server stderr:", open(os.path.join(d, "stderr.log")).read().strip().splitlines()[:3])
    p.terminate()
    try: p.wait(timeout=30)
    except Exception: p.kill()
print("machine:", os.cpu_count(), "cpus")
