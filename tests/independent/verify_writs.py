"""Independent verification of writ's formats with other implementations.

- A real `writ serve` on a fresh data directory and an ephemeral loopback port issues the
  writs over HTTP. They are verified with PyJWT (and the `cryptography` package for
  Ed25519) against the JWKS the server publishes at `/.well-known/jwks.json` (which must
  equal the data directory's `trust/jwks.json`): signature, issuer, audience, expiry.
- The `req` claim is recomputed with the `rfc8785` package (Trail of Bits' RFC 8785 JSON
  Canonicalization Scheme) and Python's hashlib, and must equal the writ's.
- A tampered writ must fail PyJWT's signature check.

Usage: WRIT_BIN=path/to/writ python3 verify_writs.py
Prints one line per check and a closing "N passed, M failed"; exits 1 on any failure.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

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


REQUESTS = [
    ("read", "fs:/zones/billing", {"path": "/zones/billing/ledger.csv"}),
    ("write", "fs:/zones/billing", {"path": "/zones/billing/ünïcødé €.csv", "bytes": 1024}),
    ("read", "fs:/zones/billing", {"path": "/tab\there/\u2028line\"quote\\"}),
    ("payment", "payments:stripe", {"amount": 999, "currency": "EUR"}),
    ("write", "fs:/zones/billing", {"bytes": 0, "path": "/z"}),
]


def run_checks(base, jwks, token):
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
        # Flip one character of the signature.
        head, payload, sig = w.split(".")
        bad = f"{head}.{payload}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}"
        try:
            jwt.decode(bad, key.key, algorithms=["EdDSA"], audience="writ-enforcement", issuer="writ")
            check(f"{name}: a tampered writ fails", False, "PyJWT accepted it")
        except jwt.InvalidSignatureError:
            check(f"{name}: a tampered writ fails", True)



def http(base, path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


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
        run_checks(base, jwks, token)
    finally:
        server.terminate()
        server.wait(timeout=20)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
