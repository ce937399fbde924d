"""Independent verification of writ's formats with other implementations.

- A real `writ serve` on a fresh data directory and an ephemeral loopback port issues the
  writs over HTTP. They are verified with PyJWT (and the `cryptography` package for
  Ed25519) against the JWKS the server publishes at `/.well-known/jwks.json` (which must
  equal the data directory's `trust/jwks.json`): signature, issuer, audience, expiry.
- The `req` claim is recomputed with the `rfc8785` package (Trail of Bits' RFC 8785 JSON
  Canonicalization Scheme) and Python's hashlib, and must equal the writ's.
- A tampered writ must fail PyJWT's signature check.
- The documentation's test vectors (docs/vectors/*.json) are checked offline: request
  digests with `rfc8785`, the writ with PyJWT, the log's leaf hashes, proofs, signed
  checkpoint and receipt with hashlib and `cryptography`. The checks use the Python
  snippets of docs/writ-format.md and docs/log-format.md, extracted from the pages as they
  are, so the documented code is the code that runs; the live writs are verified with the
  documented `verify_writ` too.

Usage: WRIT_BIN=path/to/writ python3 verify_writs.py
Prints one line per check and a closing "N passed, M failed"; exits 1 on any failure.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from pathlib import Path

import jwt
import rfc8785

WRIT = os.environ.get("WRIT_BIN", "writ")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def writ(data_dir, *args, stdin=None):
    out = subprocess.run([WRIT, "--data-dir", data_dir, *args], input=stdin, capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr


DOCS = Path(__file__).resolve().parents[2] / "docs"


def snippet(page, name, namespace=None):
    """The Python code block that follows `<!-- snippet: NAME -->` on a docs page, run as
    it is written there (after the snippets whose names `namespace` holds); its functions
    are returned by name."""
    text = (DOCS / page).read_text(encoding="utf-8")
    marker = f"<!-- snippet: {name} -->\n```python\n"
    start = text.index(marker) + len(marker)
    namespace = dict(namespace or {})
    exec(compile(text[start:text.index("```\n", start)], f"docs/{page} ({name})", "exec"), namespace)
    return namespace


DOC_WRIT = snippet("writ-format.md", "verify_writ.py")
DOC_LOG = snippet("log-format.md", "verify_log.py")
DOC_FEED = snippet("writ-format.md", "feed.py", DOC_WRIT)


def rejected(reason, f, *args, **kwargs):
    """Whether f(*args, **kwargs) raises the documented WritRejected with `reason`."""
    try:
        f(*args, **kwargs)
    except DOC_WRIT["WritRejected"] as e:
        return e.args[0] == reason
    return False


def check_docs_vectors():
    vectors = DOCS / "vectors"
    digests = json.loads((vectors / "request-digests.json").read_text(encoding="utf-8"))["vectors"]
    check("docs: at least five request digest vectors", len(digests) >= 5)
    for v in digests:
        body = json.loads(v["request"])
        obj = {"action": body["action"], "resource": body["resource"], "arguments": body.get("arguments", {})}
        canonical = rfc8785.dumps(obj)
        check(f"docs digest {v['name']}: rfc8785 gives the documented canonical bytes",
              canonical == v["canonical"].encode("utf-8"), f"{canonical!r} != {v['canonical']!r}")
        got = DOC_WRIT["request_digest"](obj["action"], obj["resource"], obj["arguments"])
        check(f"docs digest {v['name']}: the documented request_digest gives the digest", got == v["digest"],
              f"{got} != {v['digest']}")

    w = json.loads((vectors / "writ.json").read_text(encoding="utf-8"))
    verify = DOC_WRIT["verify_writ"]
    call = w["request"]
    args = (w["jwks"], call["action"], call["resource"], call["arguments"])
    start, end = w["valid_from"], w["valid_until"]
    key = w["jwks"]["keys"][0]
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(
        json.dumps({"crv": key["crv"], "kty": key["kty"], "x": key["x"]}, separators=(",", ":")).encode()
    ).digest()).rstrip(b"=").decode()
    check("docs writ: the kid is the key's RFC 7638 thumbprint (RFC 8037 A.3's)",
          key["kid"] == thumbprint == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
    check("docs writ: the digest is the documented request's", w["digest"] in {v["digest"] for v in digests})
    used = set()
    try:
        claims = verify(w["writ"], *args, used, now=start, skew=0)
        check("docs writ: verifies at valid_from with the documented verify_writ", claims == w["claims"])
    except DOC_WRIT["WritRejected"] as e:
        check("docs writ: verifies at valid_from", False, repr(e))
    check("docs writ: a second use is writ.replayed", rejected("writ.replayed", verify, w["writ"], *args, used,
                                                              now=start, skew=0))
    check("docs writ: at valid_until it is writ.expired",
          rejected("writ.expired", verify, w["writ"], *args, set(), now=end, skew=0))
    check("docs writ: before valid_from it is writ.expired",
          rejected("writ.expired", verify, w["writ"], *args, set(), now=start - 1, skew=0))
    check("docs writ: another call is writ.binding_mismatch",
          rejected("writ.binding_mismatch", verify, w["writ"], w["jwks"], call["action"], call["resource"],
                   {**call["arguments"], "path": "/etc/passwd"}, set(), now=start, skew=0))
    check("docs writ: another audience is writ.audience",
          rejected("writ.audience", verify, w["writ"], *args, set(), now=start, skew=0, audience="elsewhere"))
    head, payload, sig = w["writ"].split(".")
    flipped = f"{head}.{payload}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}"
    check("docs writ: a flipped signature is writ.bad_signature",
          rejected("writ.bad_signature", verify, flipped, *args, set(), now=start, skew=0))
    check("docs writ: a key outside the JWKS is writ.bad_signature",
          rejected("writ.bad_signature", verify, w["writ"], {"keys": []}, *args[1:], set(), now=start, skew=0))
    # PyJWT alone, as any JWT user would call it, at the writ's own time.
    pyjwk = jwt.PyJWKSet.from_dict(w["jwks"]).keys[0]
    plain = jwt.decode(w["writ"], pyjwk.key, algorithms=["EdDSA"], audience=w["audience"], issuer=w["issuer"],
                       options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    check("docs writ: PyJWT's decode gives the documented claims", plain == w["claims"])

    log = json.loads((vectors / "log.json").read_text(encoding="utf-8"))
    entries = [e["entry"].encode("utf-8") for e in log["entries"]]
    leaves = [DOC_LOG["leaf_hash"](e) for e in entries]
    check("docs log: every leaf hash is SHA-256(0x00 || entry)",
          [base64.b64encode(h).decode() for h in leaves] == [e["leaf_hash"] for e in log["entries"]])
    root = base64.b64decode(log["root"])
    origin, size, cp_root = DOC_LOG["open_checkpoint"](log["checkpoint"], log["vkey"])
    check("docs log: the checkpoint verifies with the vkey and names the root",
          (size, cp_root) == (log["tree_size"], root) and size == len(entries))
    inc = log["inclusion"]
    proof = [base64.b64decode(h) for h in inc["proof"]]
    check("docs log: the inclusion proof leads to the root",
          DOC_LOG["root_from_inclusion"](inc["index"], inc["tree_size"], leaves[inc["index"]], proof) == root)
    check("docs log: the inclusion proof fails for another leaf",
          DOC_LOG["root_from_inclusion"](inc["index"], inc["tree_size"], leaves[0], proof) != root)
    con = log["consistency"]
    cproof = [base64.b64decode(h) for h in con["proof"]]
    old_root = base64.b64decode(con["from_root"])
    check("docs log: the consistency proof holds",
          DOC_LOG["consistent"](con["from"], con["to"], old_root, root, cproof))
    check("docs log: the consistency proof fails for another old root",
          not DOC_LOG["consistent"](con["from"], con["to"], leaves[0], root, cproof))
    try:
        DOC_LOG["verify_receipt"](log["receipt"], entries[inc["index"]], log["vkey"])
        check("docs log: the receipt proves its entry", True)
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        check("docs log: the receipt proves its entry", False, repr(e))
    try:
        DOC_LOG["verify_receipt"](log["receipt"], entries[inc["index"]] + b" ", log["vkey"])
        check("docs log: the receipt fails for a changed entry", False, "accepted")
    except Exception:  # noqa: BLE001 - a refusal is what is checked
        check("docs log: the receipt fails for a changed entry", True)
    try:
        bad = log["checkpoint"].replace(f"\n{log['tree_size']}\n", f"\n{log['tree_size'] + 1}\n", 1)
        DOC_LOG["open_checkpoint"](bad, log["vkey"])
        check("docs log: a changed checkpoint fails its signature", False, "accepted")
    except Exception:  # noqa: BLE001 - a refusal is what is checked
        check("docs log: a changed checkpoint fails its signature", True)


REQUESTS = [
    ("read", "fs:/zones/billing", {"path": "/zones/billing/ledger.csv"}),
    ("write", "fs:/zones/billing", {"path": "/zones/billing/ünïcødé €.csv", "bytes": 1024}),
    ("read", "fs:/zones/billing", {"path": "/tab\there/\u2028line\"quote\\"}),
    ("payment", "payments:stripe", {"amount": 999, "currency": "EUR"}),
    ("write", "fs:/zones/billing", {"bytes": 0, "path": "/z"}),
]


def run_checks(base, jwks, token, served):
    for action, resource, arguments in REQUESTS:
        body = {"credentials": {"workload": token}, "action": action, "resource": resource, "arguments": arguments}
        status, out = http(base, "/v1/authorize", body)
        decision = json.loads(out)
        name = f"{action} {json.dumps(arguments, ensure_ascii=False)}"
        if decision.get("outcome") != "allow":
            # Payments are time-windowed: outside 09:00-17:00 UTC the starter bundle denies.
            check(f"{name}: denied as policy says", decision.get("reasons") == ["policy.denied"], out)
            continue
        w = decision["writ"]
        kid = jwt.get_unverified_header(w)["kid"]
        key = next(k for k in jwks.keys if k.key_id == kid)
        try:
            claims = jwt.decode(w, key.key, algorithms=["EdDSA"], audience="writ-enforcement", issuer="writ",
                                options={"require": ["exp", "iat", "nbf", "jti", "sub"]})
            check(f"{name}: PyJWT verifies the signature, issuer, audience and time", True)
        except jwt.PyJWTError as e:
            check(f"{name}: PyJWT verifies", False, repr(e))
            continue
        canonical = rfc8785.dumps({"action": action, "resource": resource, "arguments": arguments})
        want = "sha256:" + hashlib.sha256(canonical).hexdigest()
        check(f"{name}: req equals the independent RFC 8785 digest", claims["req"] == want, f"{claims['req']} != {want}")
        check(f"{name}: claims name the request", claims["act"] == action and claims["res"] == resource
              and claims["sub"] == "spiffe://demo.example/agent/billing-1" and claims["log"]["index"] == decision["log_index"])
        try:
            documented = DOC_WRIT["verify_writ"](w, served, action, resource, arguments, set())
            check(f"{name}: the documented verify_writ accepts it", documented == claims)
        except DOC_WRIT["WritRejected"] as e:
            check(f"{name}: the documented verify_writ accepts it", False, repr(e))
        # Flip one character of the signature.
        head, payload, sig = w.split(".")
        bad = f"{head}.{payload}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}"
        try:
            jwt.decode(bad, key.key, algorithms=["EdDSA"], audience="writ-enforcement", issuer="writ")
            check(f"{name}: a tampered writ fails", False, "PyJWT accepted it")
        except jwt.InvalidSignatureError:
            check(f"{name}: a tampered writ fails", True)


def run_feed_checks(d, base, token, served):
    """The revocation feed, with the documented feed.py: the feed key is published beside
    the JWKS and in the data directory; a snapshot verifies; a revocation reaches the stream
    and the documented check refuses the writ; a stale view refuses; a writ is no feed
    document."""
    status, keys = http(base, "/.well-known/writ-feed-keys.json")
    feed_jwks = json.loads(keys)
    with open(os.path.join(d, "trust", "feed-keys.json")) as f:
        check("the feed key is the one the data directory publishes", json.load(f) == feed_jwks)
    check("the feed key is not a writ key",
          not {k["kid"] for k in feed_jwks["keys"]} & {k["kid"] for k in served["keys"]})
    verify, view = DOC_FEED["verify_feed_document"], DOC_FEED["FeedView"](max_staleness=30)
    status, out = http(base, "/v1/feed/snapshot")
    first = verify(json.loads(out)["snapshot"], feed_jwks)
    view.apply(first)
    check("a snapshot verifies with the feed key", first["kind"] == "snapshot" and first["revoked"] == [], first)
    body = {"credentials": {"workload": token}, "action": "read", "resource": "fs:/docs", "arguments": {}}
    decision = json.loads(http(base, "/v1/authorize", body)[1])
    w = decision["writ"]
    claims = DOC_WRIT["verify_writ"](w, served, "read", "fs:/docs", {}, set())
    view.check(claims)
    check("a writ in good standing passes the documented feed check", True)
    try:
        verify(w, feed_jwks)
        check("a writ is refused as a feed document", False, "accepted")
    except jwt.PyJWTError:
        check("a writ is refused as a feed document", True)
    stream = urllib.request.urlopen(base + "/v1/feed/stream", timeout=10)

    def next_event():
        kind = data = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and kind:
                return kind, verify(data, feed_jwks)
        raise EOFError("the stream ended")

    kind, payload = next_event()
    check("the stream opens with a snapshot", kind == "snapshot", kind)
    code, operator, err = writ(d, "identity", "issue", "--operator", "--spiffe-id",
                               "spiffe://demo.example/operator/auditor")
    req = urllib.request.Request(base + "/v1/revocations", method="POST",
                                 data=json.dumps({"jti": claims["jti"], "reason": "feed test"}).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer " + operator.strip()})
    started = time.monotonic()
    urllib.request.urlopen(req, timeout=10).read()
    while True:
        kind, payload = next_event()
        view.apply(payload)
        if kind == "snapshot":
            break
    delay = time.monotonic() - started
    check(f"a revocation reaches the stream ({delay * 1000:.1f} ms from the request)", delay < 2, delay)
    try:
        view.check(claims)
        check("the documented feed check refuses the revoked writ", False, "accepted")
    except DOC_WRIT["WritRejected"] as e:
        check("the documented feed check refuses the revoked writ", e.args[0] == "writ.revoked", e.args)
    fresh = DOC_FEED["FeedView"](max_staleness=30)
    fresh.apply(first)
    try:
        fresh.check({**claims, "jti": "w-other", "root": "w-other"}, now=first["iat"] + 31)
        check("a stale view refuses", False, "accepted")
    except DOC_WRIT["WritRejected"] as e:
        check("a stale view refuses", e.args[0] == "writ.revoked", e.args)
    # A live heartbeat names the revocation: it does not vouch for the snapshot from before it
    # (an old snapshot replayed, or the new one dropped on the way, cannot be kept fresh).
    while True:
        kind, beat = next_event()
        if kind == "heartbeat":
            break
    check("a heartbeat names the newest change", beat["changed_at"] is not None and beat["changed_at"] >= first["size"], beat)
    fresh.apply(beat, now=beat["iat"])
    try:
        fresh.check({**claims, "jti": "w-other", "root": "w-other"}, now=first["iat"] + 31)
        check("a heartbeat does not refresh a snapshot that lacks a change", False, "accepted")
    except DOC_WRIT["WritRejected"] as e:
        check("a heartbeat does not refresh a snapshot that lacks a change", e.args[0] == "writ.revoked", e.args)
    view.apply(first)
    try:
        view.check(claims)
        check("an older snapshot does not undo a revocation", False, "accepted")
    except DOC_WRIT["WritRejected"]:
        check("an older snapshot does not undo a revocation", True)
    stream.close()


def http(base, path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


check_docs_vectors()

with tempfile.TemporaryDirectory() as d:
    server = subprocess.Popen([WRIT, "--data-dir", d, "serve", "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        if "http://" not in line:
            sys.exit(f"writ serve did not start: {line!r}")
        base = "http://" + line.split("http://")[1].split("/")[0]
        status, jwks_bytes = http(base, "/.well-known/jwks.json")
        served = json.loads(jwks_bytes)
        with open(os.path.join(d, "trust", "jwks.json")) as f:
            check("the served JWKS is the one the data directory publishes", json.load(f) == served)
        jwks = jwt.PyJWKSet.from_dict(served)
        code, token, err = writ(d, "identity", "issue", "--spiffe-id", "spiffe://demo.example/agent/billing-1",
                                "--zone", "billing")
        token = token.strip()
        run_checks(base, jwks, token, served)
        run_feed_checks(d, base, token, served)
    finally:
        server.terminate()
        server.wait(timeout=20)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
