#!/usr/bin/env python3
"""The time `writ exec` adds to a command: `/bin/true` run directly and through
`writ exec -- /bin/true`, side by side in one run, in alternating rounds, against a live
`writ serve` on loopback (its own data directory, the starter bundle, which permits
`/bin/true`). A third side, `writ --version`, is the cost of starting the `writ` binary
at all, so that the rest (one decision, the writ keys, the writ's verification, the
outcome, recorded durably before `writ exec` exits) can be told apart.

Usage: tests/exec/bench.py <path to writ> [calls per side, default 1000]
Prints p50/p99/mean per side and the differences; standard library only.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WRIT = os.path.abspath(sys.argv[1])
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
ROUNDS = 10
TRUE = "/bin/true"


def timed(argv, env):
    started = time.perf_counter_ns()
    r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter_ns() - started
    if r.returncode != 0:
        raise SystemExit(f"{argv}: exit status {r.returncode}: {r.stderr.decode(errors='replace')}")
    return elapsed


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def main():
    data = tempfile.mkdtemp(prefix="writ-exec-bench-")
    server = subprocess.Popen([WRIT, "--data-dir", data, "serve", "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        url = "http://" + line.split("http://", 1)[1].split("/", 1)[0]
        cred = subprocess.run([WRIT, "--data-dir", data, "identity", "issue", "--spiffe-id",
                               "spiffe://demo.example/agent/bench", "--zone", "billing", "--ttl", "3600"],
                              capture_output=True, text=True, check=True)
        env = dict(os.environ, WRIT_AGENT_CREDENTIAL=cred.stdout.strip(),
                   WRIT_JWKS=os.path.join(data, "trust", "jwks.json"))
        env.pop("WRIT_PARENT_WRIT", None)
        sides = {
            "direct": [TRUE],
            "writ --version": [WRIT, "--version"],
            "writ exec": [WRIT, "exec", "--url", url, "--", TRUE],
        }
        samples = {name: [] for name in sides}
        for argv in sides.values():  # warm-up: page cache, connections, the server's caches
            for _ in range(20):
                timed(argv, env)
        per_round = max(1, CALLS // ROUNDS)
        for _ in range(ROUNDS):
            for name, argv in sides.items():
                samples[name].extend(timed(argv, env) for _ in range(per_round))
        us = lambda ns: ns / 1000
        print(f"{per_round * ROUNDS} runs per side, {ROUNDS} alternating rounds, control plane on loopback")
        print(f"{'side':<16} {'p50 µs':>10} {'p99 µs':>10} {'mean µs':>10}")
        for name, s in samples.items():
            print(f"{name:<16} {us(pct(s, 50)):>10.0f} {us(pct(s, 99)):>10.0f} {us(statistics.mean(s)):>10.0f}")
        d, w = samples["direct"], samples["writ exec"]
        print(f"{'added by writ exec':<16} p50 {us(pct(w, 50) - pct(d, 50)):.0f} µs, "
              f"p99 {us(pct(w, 99) - pct(d, 99)):.0f} µs, mean {us(statistics.mean(w) - statistics.mean(d)):.0f} µs")
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
