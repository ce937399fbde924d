"""A live control plane for the tests: `writ serve` (the binary named by WRIT_BIN) on a
temporary data directory and an ephemeral loopback port, with the test bundle of
tests/bundle signed and activated, an agent credential and an operator credential, the way
tests/mcp/run.sh sets one up from the shell."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from writ_client import Client, Feed, Verifier

HERE = Path(__file__).resolve().parent


@dataclass
class ControlPlane:
    url: str
    bin: str
    data: Path
    agent: str
    operator: str

    def writ(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([self.bin, "--data-dir", str(self.data), *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"writ {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}")
        return out

    def issue(self, spiffe_id: str, *extra: str) -> str:
        return self.writ("identity", "issue", "--spiffe-id", spiffe_id, "--ttl", "3600", *extra).stdout.strip()

    def operator_call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method, self.url + path, json=body, headers={"authorization": f"Bearer {self.operator}"}, timeout=10
        )

    def entries(self, start: int, most: int = 200) -> list[dict[str, Any]]:
        """Log entries from `start` to the end of the log (one at a time: the signed
        checkpoint, which says the size, is published once a second and may lag)."""
        out = []
        with httpx.Client(base_url=self.url, timeout=10) as http:
            for index in range(start, start + most):
                r = http.get("/v1/log/entries", params={"start": index, "end": index + 1})
                if r.status_code == 400:  # beyond the end of the log
                    break
                r.raise_for_status()
                out.extend(e["entry"] for e in r.json()["entries"])
        return out


@pytest.fixture(scope="session")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    writ_bin = os.environ.get("WRIT_BIN")
    if not writ_bin:
        pytest.fail("set WRIT_BIN to the writ binary (clients/python/run-tests.sh does)")
    work = tmp_path_factory.mktemp("writ")
    data = work / "data"
    out = open(work / "serve.out", "w+")
    err = open(work / "serve.err", "w+")
    proc = subprocess.Popen(
        [writ_bin, "--data-dir", str(data), "serve", "--listen", "127.0.0.1:0"], stdout=out, stderr=err
    )
    try:
        url = None
        for _ in range(300):
            m = re.search(r"http://[0-9.:]+", (work / "serve.out").read_text())
            if m:
                url = m.group(0)
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if url is None:
            pytest.fail("writ serve did not start: " + (work / "serve.err").read_text())
        cp = ControlPlane(url=url, bin=writ_bin, data=data, agent="", operator="")
        shutil.copytree(HERE / "bundle", work / "bundle")
        cp.writ("policy", "sign", str(work / "bundle"))
        cp.writ("policy", "activate", str(work / "bundle"), "--url", url)
        cp.agent = cp.issue("spiffe://demo.example/agent/py-1", "--zone", "tools")
        cp.operator = cp.issue("spiffe://demo.example/operator/pytest", "--operator")
        yield cp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()
        err.close()


@pytest.fixture
def client(cp: ControlPlane) -> Iterator[Client]:
    with Client(cp.url, credential=cp.agent) as c:
        yield c


@pytest.fixture(scope="session")
def feed(cp: ControlPlane) -> Iterator[Feed]:
    """The revocation feed, followed in a background thread for the whole session."""
    f = Feed(cp.url).start()
    assert f.wait_for(lambda v: v.snapshot_size is not None, timeout=10), f.status
    deadline = time.monotonic() + 10
    while f.status != "connected" and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f
    f.close()


@pytest.fixture
def verifier(cp: ControlPlane, client: Client, feed: Feed) -> Verifier:
    return Verifier(client.key_cache(), feed)


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
