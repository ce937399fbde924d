#!/usr/bin/env python3
"""Writes the seed corpora, fuzz/corpus/<target>/, from the tests' fixtures: the starter
bundle's files, the README's requests, and tokens, writs, notes and receipts signed with the
fixed keys the targets trust (see each target's module documentation). Deterministic: run
it again and `git diff` shows nothing. Needs python3 with `cryptography`.

    python3 fuzz/seeds.py
"""

import base64
import hashlib
import json
import pathlib
import shutil

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FUZZ = pathlib.Path(__file__).resolve().parent
STARTER = FUZZ.parent / "crates" / "writ-policy" / "starter"
NOW = 1_800_000_000


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def compact(v) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def ed_key(seed_byte: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed_byte] * 32))


def ed_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


ED = ed_key(7)  # jose: kid fuzz-ed
EC = ec.derive_private_key(int.from_bytes(bytes([9] * 32), "big"), ec.SECP256R1())  # jose: kid fuzz-ec
WRIT = ed_key(5)  # writ: the writ signing key
LOG = ed_key(3)  # receipt, signed_note, checkpoint: the log key "fuzz.test/log"


def ec_xy() -> tuple[bytes, bytes]:
    n = EC.public_key().public_numbers()
    return n.x.to_bytes(32, "big"), n.y.to_bytes(32, "big")


def jws(header: bytes, payload: bytes, key) -> str:
    signing_input = f"{b64url(header)}.{b64url(payload)}".encode()
    if isinstance(key, Ed25519PrivateKey):
        sig = key.sign(signing_input)
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{b64url(sig)}"


def thumbprint(public: bytes) -> str:
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{b64url(public)}"}}'
    return b64url(hashlib.sha256(canonical.encode()).digest())


# Signed notes (C2SP signed-note): key ID = SHA-256(name || "\n" || 0x01 || key)[:4].
def note_key_id(name: str, key: Ed25519PrivateKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + ed_public(key)).digest()[:4]


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    sig = note_key_id(name, key) + key.sign(text.encode())
    return f"{text}\n\u2014 {name} {b64(sig)}\n"


def vkey(name: str, key: Ed25519PrivateKey) -> str:
    encoded = b64(b"\x01" + ed_public(key))
    return f"{name}+{note_key_id(name, key).hex()}+{encoded}"


# RFC 6962 / RFC 9162 Merkle tree.
def leaf(e: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + e).digest()


def node(l: bytes, r: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + l + r).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def consistency(m: int, leaves: list[bytes], whole: bool = True) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = split(n)
    if m <= k:
        return consistency(m, leaves[:k], whole) + [mth(leaves[k:])]
    return consistency(m - k, leaves[k:], False) + [mth(leaves[:k])]


def write(target: str, name: str, data: bytes) -> None:
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main() -> None:
    corpus = FUZZ / "corpus"
    if corpus.exists():
        shutil.rmtree(corpus)

    # request: the README's and the tests' requests (crates/writ-engine/tests/it, README tour).
    token = jws(compact({"alg": "EdDSA", "kid": "fuzz-ed", "typ": "JWT"}),
                compact({"iss": "https://issuer.fuzz.example", "sub": "spiffe://fuzz.example/agent/billing-1",
                         "aud": "writ-fuzz", "iat": NOW - 60, "exp": NOW + 540, "zone": "billing"}), ED)
    requests = {
        "write": {"credentials": {"workload": token}, "action": "write", "resource": "fs:/zones/billing",
                  "arguments": {"path": "/zones/billing/out.csv", "bytes": 120}},
        "payment": {"credentials": {"workload": token}, "action": "payment", "resource": "payments:stripe",
                    "arguments": {"amount": 2500, "currency": "EUR"}, "request_id": "r-1"},
        "spawn-child": {"credentials": {"workload": token, "operator": token}, "action": "spawn",
                        "resource": "agents:pool", "arguments": {"agent": "worker"},
                        "parent": "w-00000000000000000000000000000000", "audience": "mcp:filesystem"},
        "nested": {"action": "read", "resource": "fs:/zones/billing",
                   "arguments": {"path": "/tab\there/\u2028line\"quote\\", "n": [1, -2, 3.5, 1e21, None, True],
                                 "o": {"a": {"b": {"c": "ünïcødé €"}}}}},
        "no-credentials": {"action": "read", "resource": "fs:/zones/billing", "arguments": {}},
    }
    for name, r in requests.items():
        write("request", name, compact(r))

    # jose: a valid credential as is (mode 0), and header/payload pairs signed by the target
    # (modes 1: Ed25519, 2: P-256).
    write("jose", "ed-token", b"\x00" + token.encode())
    write("jose", "ec-token", b"\x00" + jws(compact({"alg": "ES256", "kid": "fuzz-ec"}),
                                             compact({"iss": "https://issuer.fuzz.example",
                                                      "sub": "spiffe://fuzz.example/agent/a", "aud": ["writ-fuzz", "x"],
                                                      "iat": NOW, "nbf": NOW, "exp": NOW + 60, "jti": "j1"}),
                                             EC).encode())
    claims = compact({"iss": "https://issuer.fuzz.example", "sub": "spiffe://fuzz.example/agent/billing-1",
                      "aud": "writ-fuzz", "iat": NOW - 60, "exp": NOW + 540, "zone": "billing",
                      "scope": ["read", "write"]})
    write("jose", "ed-claims", b"\x01" + compact({"alg": "EdDSA", "kid": "fuzz-ed", "typ": "JWT"}) + b"\n" + claims)
    write("jose", "ec-claims", b"\x02" + compact({"alg": "ES256", "kid": "fuzz-ec", "typ": "JOSE"}) + b"\n" + claims)
    write("jose", "alg-none", b"\x01" + compact({"alg": "none", "kid": "fuzz-ed"}) + b"\n" + claims)
    write("jose", "embedded-jwk", b"\x01" + compact({"alg": "EdDSA", "kid": "fuzz-ed",
                                                     "jwk": {"kty": "OKP", "crv": "Ed25519",
                                                             "x": b64url(ed_public(ED))}}) + b"\n" + claims)

    # writ: a writ of the fixed key for the fixed call (mode 0) and header/payload (mode 1).
    arguments = {"path": "/zones/billing/out.csv"}
    canonical = compact({"action": "write", "arguments": arguments, "resource": "fs:/zones/billing"})
    digest = "sha256:" + hashlib.sha256(canonical).hexdigest()
    kid = thumbprint(ed_public(WRIT))
    writ_claims = {"iss": "https://writ.fuzz.example", "sub": "spiffe://fuzz.example/agent/billing-1",
                   "aud": "writ-fuzz", "jti": "w-0123456789abcdef0123456789abcdef", "iat": NOW - 10,
                   "nbf": NOW - 10, "exp": NOW + 290, "act": "write", "res": "fs:/zones/billing", "req": digest,
                   "pol": "sha256:" + "ab" * 32, "root": "w-0123456789abcdef0123456789abcdef", "dep": 0,
                   "scp": {"actions": ["*"], "zone": "billing"}, "log": {"index": 7, "leaf": "sha256:" + "cd" * 32}}
    writ_header = compact({"alg": "EdDSA", "typ": "JWT", "kid": kid})
    write("writ", "writ", b"\x00" + jws(writ_header, compact(writ_claims), WRIT).encode())
    write("writ", "claims", b"\x01" + writ_header + b"\n" + compact(writ_claims))
    child = dict(writ_claims, par="w-ffffffffffffffffffffffffffffffff", dep=1,
                 scp={"actions": ["read", "write"], "zone": "billing"})
    write("writ", "child-claims", b"\x01" + writ_header + b"\n" + compact(child))

    # jwks and trust_bundle: the fixed keys as the tests' bundles hold them
    # (crates/writ-identity/tests/it/bundle.rs).
    x, y = ec_xy()
    ed_jwk = {"kty": "OKP", "crv": "Ed25519", "kid": "fuzz-ed", "x": b64url(ed_public(ED))}
    ec_jwk = {"kty": "EC", "crv": "P-256", "kid": "fuzz-ec", "x": b64url(x), "y": b64url(y),
              "alg": "ES256", "use": "sig", "key_ops": ["verify"]}
    writ_jwk = {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(ed_public(WRIT)), "alg": "EdDSA", "use": "sig"}
    write("jwks", "ed-and-ec", compact({"keys": [ed_jwk, ec_jwk]}))
    write("jwks", "writ-keys", compact({"keys": [writ_jwk]}))
    write("jwks", "private-member", compact({"keys": [dict(ed_jwk, d=b64url(bytes([7] * 32)))]}))
    bundle = {"trust_domains": {
        "fuzz.example": {"issuers": [
            {"issuer": "https://issuer.fuzz.example", "roles": ["workload", "attestor"], "jwks": {"keys": [ed_jwk]}},
            {"issuer": "https://operators.fuzz.example", "roles": ["operator"], "jwks": {"keys": [ec_jwk]}}]},
        "other.example": {"issuers": [
            {"issuer": "https://idp.other.example", "roles": ["workload", "operator", "orchestrator", "machine",
                                                               "runtime", "attestor"],
             "jwks": {"keys": [writ_jwk]}}]}}}
    write("trust_bundle", "two-domains", json.dumps(bundle, indent=2).encode())
    write("trust_bundle", "one-issuer", compact({"trust_domains": {"fuzz.example": {"issuers": [
        {"issuer": "https://issuer.fuzz.example", "roles": ["workload"], "jwks": {"keys": [ed_jwk, ec_jwk]}}]}}}))

    # bundle: the starter bundle as an upload body (mode 0) and as NUL-separated parts (mode 1).
    parts = [(STARTER / f).read_text() for f in
             ["manifest.json", "policies.cedar", "schema.cedarschema", "entities.json", "tests.json"]]
    policy_note = sign_note("writ-policy-bundle\nwrit-starter\n1.2.0\nsha256:" + "00" * 32 + "\n",
                            "fuzz.example/policy", ed_key(11))
    upload = {"bundle": dict(zip(["manifest", "policies", "schema", "entities", "tests"], parts)),
              "signature": policy_note, "activate": True}
    write("bundle", "starter-upload", b"\x00" + compact(upload))
    write("bundle", "starter-parts", b"\x01" + "\0".join(parts).encode())
    write("bundle", "starter-no-tests", b"\x01" + "\0".join(parts[:4]).encode())
    minimal = ['{"name": "m", "version": "1"}',
               '@id("p") permit (principal, action == Writ::Action::"read", resource);',
               parts[2]]
    write("bundle", "minimal-parts", b"\x01" + "\0".join(minimal).encode())

    # receipt: a receipt of entry 6 in a tree of 13, signed by the fixed log key; after a
    # NUL, the entry (crates/writ-log/src/receipt.rs's fixture).
    entries = [bytes([i]) * 5 for i in range(13)]
    leaves = [leaf(e) for e in entries]
    origin = "fuzz.test/log"
    checkpoint = f"{origin}\n13\n{b64(mth(leaves))}\n"
    note = sign_note(checkpoint, origin, LOG)
    proof = "".join(b64(h) + "\n" for h in path(6, leaves))
    receipt = f"c2sp.org/tlog-proof@v1\nextra aGk=\nindex 6\n{proof}\n{note}"
    write("receipt", "entry-6", receipt.encode() + b"\0" + entries[6])
    proof0 = "".join(b64(h) + "\n" for h in path(0, leaves))
    receipt0 = f"c2sp.org/tlog-proof@v1\nindex 0\n{proof0}\n{note}"
    write("receipt", "entry-0", receipt0.encode() + b"\0" + entries[0])
    one = f"{origin}\n1\n{b64(leaves[0])}\n"
    write("receipt", "tree-of-one", f"c2sp.org/tlog-proof@v1\nindex 0\n\n{sign_note(one, origin, LOG)}".encode()
          + b"\0" + entries[0])

    # signed_note and checkpoint: the same checkpoint, a cosigned one, and the log's vkey.
    write("signed_note", "checkpoint", note.encode())
    write("signed_note", "vkey", vkey(origin, LOG).encode())
    witness = sign_note(checkpoint, "witness.fuzz.test", ed_key(13))
    cosigned = note + witness.split("\n\n", 1)[1]
    write("signed_note", "cosigned", cosigned.encode())
    write("checkpoint", "body", checkpoint.encode())
    write("checkpoint", "signed", note.encode())
    write("checkpoint", "extension", f"{origin}\n13\n{b64(mth(leaves))}\nextension line\n".encode())

    # proofs: [a u64 LE][b u64 LE][hashes...]: an inclusion (index, size, leaf, root, path)
    # and a consistency (from, to, old root, new root, path) of the same tree.
    incl = (6).to_bytes(8, "little") + (13).to_bytes(8, "little") + leaves[6] + mth(leaves) + b"".join(path(6, leaves))
    write("proofs", "inclusion", incl)
    cons = (5).to_bytes(8, "little") + (13).to_bytes(8, "little") + mth(leaves[:5]) + mth(leaves) + \
        b"".join(consistency(5, leaves))
    write("proofs", "consistency", cons)

    # approval_body and outcome_body: the README's and the server tests' bodies.
    write("approval_body", "reason", compact({"reason": "invoice checked"}))
    write("approval_body", "empty-reason", compact({"reason": ""}))
    write("outcome_body", "succeeded", compact({"jti": "w-0123456789abcdef0123456789abcdef", "status": "succeeded",
                                                "exit_code": 0, "detail": "wrote 120 bytes"}))
    write("outcome_body", "not-run", compact({"jti": "w-0123456789abcdef0123456789abcdef", "status": "not_run"}))
    write("outcome_body", "failed", compact({"jti": "w-1", "status": "failed", "exit_code": -1, "detail": None}))


if __name__ == "__main__":
    main()
