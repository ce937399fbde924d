"""Independent verification of writ's formats with other implementations.

- Writs are verified with PyJWT (and the `cryptography` package for Ed25519) against the
  JWKS that `writ keys jwks` publishes: signature, issuer, audience, expiry.
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

with tempfile.TemporaryDirectory() as d:
    for args in (["keys", "generate"], ["policy", "activate", "--starter"]):
        code, out, err = writ(d, *args)
        if code != 0:
            sys.exit(f"writ {' '.join(args)} failed: {err}")
    code, jwks_text, err = writ(d, "keys", "jwks")
    jwks = jwt.PyJWKSet.from_dict(json.loads(jwks_text))
    code, token, err = writ(d, "identity", "issue", "--spiffe-id", "spiffe://demo.example/agent/billing-1", "--zone", "billing")
    token = token.strip()

    for action, resource, arguments in REQUESTS:
        body = {"credentials": {"workload": token}, "action": action, "resource": resource, "arguments": arguments}
        code, out, err = writ(d, "authorize", "--request", "-", stdin=json.dumps(body))
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

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
