"""The hostile-input matrices, offline (no server): the strict JWS parse, JWKS documents,
writ claims, feed documents and the feed view's rules, the event-stream parser, and the
client's answers to a control plane that misbehaves (httpx.MockTransport)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from writ_client import (
    Client,
    Denied,
    FeedDocument,
    FeedError,
    FeedVerifier,
    FeedView,
    KeySet,
    KeyUse,
    Unavailable,
    Verifier,
    WritClaims,
    WritError,
    WritRejected,
    governed,
    request_digest,
)
from writ_client._feed import _SseParser
from writ_client._jws import JwsError, parse

NOW = 1_800_000_000
CALL = ("tool:calc/add", "tool:calc", {"a": 1, "b": 2})


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: Ed25519PrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    x = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(x), "kid": kid, **extra}


KEY = Ed25519PrivateKey.generate()
JWKS = {"keys": [public_jwk(KEY, "k1", use="sig", alg="EdDSA")]}


def claims(**change: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "iss": "writ", "sub": "spiffe://demo.example/agent/a", "aud": "writ-enforcement",
        "jti": "w-0123456789abcdef0123456789abcdef", "iat": NOW, "nbf": NOW, "exp": NOW + 300,
        "act": CALL[0], "res": CALL[1], "req": request_digest(*CALL),
        "pol": "sha256:" + "0" * 64, "root": "w-0123456789abcdef0123456789abcdef", "dep": 0,
        "scp": {"actions": ["*"], "zone": "tools"}, "log": {"index": 3, "leaf": "sha256:" + "1" * 64},
    }
    c.update(change)
    return {k: v for k, v in c.items() if v is not None}


def sign(payload: Any, headers: dict[str, Any] | None = None, key: Ed25519PrivateKey = KEY) -> str:
    header = {"alg": "EdDSA", "typ": "JWT", "kid": "k1", **(headers or {})}
    h = b64(json.dumps(header).encode())
    p = b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    sig = key.sign(f"{h}.{p}".encode())
    return f"{h}.{p}.{b64(sig)}"


class Standing:
    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.asked: list[str] = []

    def check(self, c: WritClaims, now: int) -> None:
        self.asked.append(c.jti)
        if self.refuse:
            raise WritRejected(self.refuse, "test")


def verifier(standing: Standing | None = None, **kw: Any) -> Verifier:
    return Verifier(JWKS, standing or Standing(), **kw)


def reason(v: Verifier, token: str, call: tuple[str, str, Any] = CALL, now: int = NOW) -> str:
    with pytest.raises(WritRejected) as e:
        v.verify(token, *call, now=now)
    return e.value.reason


def test_a_well_formed_writ_verifies() -> None:
    c = verifier().verify(sign(claims()), *CALL, now=NOW)
    assert c.jti == claims()["jti"] and c.scp.actions == ("*",) and c.log.index == 3


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        ".e30.",
        "e30..",
        b64(b'{"alg":"EdDSA","kid":"k1"}') + "=.e30." + "A" * 86,
        b64(b"[]") + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":"k1","kid":"k1"}') + ".e30." + "A" * 86,
        b64(b'{"kid":"k1"}') + ".e30." + "A" * 86,
        b64(b'{"alg":["EdDSA"],"kid":"k1"}') + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":""}') + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":7}') + ".e30." + "A" * 86,
        b64(json.dumps({"alg": "EdDSA", "kid": "k" * 257}).encode()) + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":"k1","typ":1}') + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":"k1","zip":"DEF"}') + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":"k1","x5c":[]}') + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":"k1","b64":false}') + ".e30." + "A" * 86,
        b64(b'{"alg":"ES256","kid":"k1"}') + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":"k1"}') + ".e30." + "A" * 85,
        b64(b'{"alg":"EdDSA","kid":"k1"}') + ".e30." + "A" * 87,
        b64(b'{"alg":"EdDSA","kid":"k1"}') + ".e31." + "A" * 86,  # trailing bits: not canonical
        b64(b'{"alg":"EdDSA","kid":"k1"}') + ".e30." + "A" * 85 + "B",  # the same in the signature
        b64(b'{"alg":"EdDSA","kid":"k1"}') + ".e30+." + "A" * 86,
        "é" + b64(b'{"alg":"EdDSA","kid":"k1"}') + ".e30." + "A" * 86,
        b64(b'{"alg":"EdDSA","kid":"k1"}') + "." + "A" * 20000 + "." + "A" * 86,
        "x" * (1025 * 4 // 3) + ".e30." + "A" * 86,
    ],
)
def test_malformed_tokens_are_bad_signatures(token: str) -> None:
    with pytest.raises(JwsError):
        parse(token, 16 * 1024)
    assert reason(verifier(), token) == "writ.bad_signature"


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"jti": None},
        {"iat": "1800000000"},
        {"exp": True},
        {"exp": float(NOW + 300)},
        {"nbf": -1},
        {"iat": 2**64},
        {"dep": 2**32},
        {"scp": {"actions": ["*"], "zone": "tools", "more": 1}},
        {"scp": {"actions": "*", "zone": "tools"}},
        {"log": {"index": 3}},
        {"par": 5},
        {"aud": ["writ-enforcement"]},
        {"iss": "another-control-plane"},
    ],
)
def test_claims_are_exactly_the_writs(change: dict[str, Any]) -> None:
    assert reason(verifier(), sign(claims(**change))) == "writ.bad_signature"


def test_claims_payload_forms() -> None:
    v = verifier()
    assert reason(v, sign(b"[]")) == "writ.bad_signature"
    dup = json.dumps(claims())[:-1] + ', "iss": "writ"}'
    assert reason(v, sign(dup.encode())) == "writ.bad_signature"
    nan = json.dumps(claims())[:-1] + ', "par": NaN}'
    assert reason(v, sign(nan.encode())) == "writ.bad_signature"
    assert reason(v, sign(json.dumps(claims()).encode("utf-16"))) == "writ.bad_signature"
    assert reason(v, sign(claims(), {"typ": "writ-feed+jwt"})) == "writ.bad_signature"
    assert reason(v, sign(claims(), {"kid": "k2"})) == "writ.bad_signature"
    assert reason(v, sign(claims(), key=Ed25519PrivateKey.generate())) == "writ.bad_signature"
    assert v.verify(sign(claims(), {"typ": None}), *CALL, now=NOW).jti  # typ is optional


def test_check_order_and_no_use_on_refusal() -> None:
    standing = Standing(refuse="writ.revoked")
    v = verifier(standing)
    token = sign(claims())
    # An expired writ for another audience and another call is reported expired first.
    assert reason(v, sign(claims(aud="x", req="sha256:" + "2" * 64)), now=NOW + 400) == "writ.expired"
    assert reason(v, sign(claims(aud="x", req="sha256:" + "2" * 64))) == "writ.audience"
    assert reason(v, token, ("tool:calc/add", "tool:calc", {"a": 1})) == "writ.binding_mismatch"
    assert standing.asked == []  # standing is asked only once signature, time, audience, binding hold
    assert reason(v, token) == "writ.revoked" and standing.asked == [claims()["jti"]]
    standing.refuse = None
    assert v.verify(token, *CALL, now=NOW).jti and reason(v, token) == "writ.replayed"


def test_a_failing_standing_check_refuses() -> None:
    class Broken:
        def check(self, c: WritClaims, now: int) -> None:
            raise RuntimeError("lost")

    v = Verifier(JWKS, Broken())
    assert reason(v, sign(claims())) == "internal"


@pytest.mark.parametrize(
    "member",
    [
        {"kty": "RSA", "kid": "r"},
        {"kty": "OKP", "crv": "X25519", "x": b64(b"\0" * 32), "kid": "x"},
        {**public_jwk(KEY, "p"), "d": b64(b"\0" * 32)},
        public_jwk(KEY, "a", alg="ES256"),
        public_jwk(KEY, "u", use="enc"),
        public_jwk(KEY, ""),
        {**public_jwk(KEY, "s"), "x": b64(b"\0" * 31)},
        {**public_jwk(KEY, "s"), "x": b64(b"\0" * 32) + "="},
        {**public_jwk(KEY, "s"), "kid": 3},
        "not an object",
    ],
)
def test_a_bad_jwks_member_refuses_the_whole_set(member: Any) -> None:
    with pytest.raises(WritError):
        KeySet.from_jwks({"keys": [public_jwk(KEY, "good"), member]})


def test_jwks_documents() -> None:
    assert "k1" in KeySet.from_jwks(json.dumps(JWKS))
    for doc in ("[]", '{"keys": {}}', '{"keys": [], "keys": []}', "{", b"\xff"):
        with pytest.raises(WritError):
            KeySet.from_jwks(doc)
    with pytest.raises(WritError):
        KeySet.from_jwks({"keys": [public_jwk(KEY, "k1"), public_jwk(Ed25519PrivateKey.generate(), "k1")]})
    with pytest.raises(WritError):
        KeySet.from_jwks({"keys": [public_jwk(KEY, f"k{i}") for i in range(257)]})
    with pytest.raises(WritError):
        KeySet.from_jwks(JWKS, KeyUse.FEED)  # use "sig" is not a feed key


# -- the feed -------------------------------------------------------------------------------

FEED_KEY = Ed25519PrivateKey.generate()
FEED_KEYS = KeySet.from_jwks({"keys": [public_jwk(FEED_KEY, "f1", use="writ-feed")]}, KeyUse.FEED)


def snapshot(**change: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "iss": "writ", "kind": "snapshot", "size": 10, "iat": NOW, "bundle": "sha256:" + "a" * 64,
        "changed_at": 9, "revoked": [], "quarantined": [], "isolated_lineage": [],
    }
    s.update(change)
    return s


def feed_doc(payload: Any, typ: str = "writ-feed+jwt", kid: str = "f1", key: Ed25519PrivateKey = FEED_KEY) -> str:
    return sign(payload, {"typ": typ, "kid": kid}, key=key)


@pytest.mark.parametrize(
    "doc",
    [
        feed_doc(snapshot(), typ="JWT"),
        feed_doc(snapshot(), kid="k1", key=KEY),
        feed_doc(snapshot(iss="other")),
        feed_doc(snapshot(kind="delta")),
        feed_doc(snapshot(extra=1)),
        feed_doc({k: v for k, v in snapshot().items() if k != "revoked"}),
        feed_doc(snapshot(revoked=[{"jti": "w-1"}])),
        feed_doc(snapshot(revoked=[{"jti": "w-1", "exp": "1"}])),
        feed_doc(snapshot(quarantined=[1])),
        feed_doc(snapshot(size=-1)),
        feed_doc(snapshot(bundle=3)),
        feed_doc({"iss": "writ", "kind": "heartbeat", "size": 10, "iat": NOW, "changed_at": 9, "revoked": []}),
        # A heartbeat must name the newest change it vouches for.
        feed_doc({"iss": "writ", "kind": "heartbeat", "size": 10, "iat": NOW}),
        feed_doc({"iss": "writ", "kind": "heartbeat", "size": 10, "iat": NOW, "changed_at": "9"}),
        sign(claims()),
    ],
)
def test_feed_documents_that_do_not_verify(doc: str) -> None:
    with pytest.raises(FeedError):
        FeedVerifier("writ", FEED_KEYS).verify(doc)


def test_feed_view_rules() -> None:
    fv = FeedVerifier("writ", FEED_KEYS)
    view = FeedView(max_staleness=30)
    c = verifier().verify(sign(claims(par="w-parent")), *CALL, now=NOW)
    with pytest.raises(WritRejected) as e:
        view.check(c, NOW)
    assert e.value.reason == "writ.revoked"  # no snapshot yet
    def beat(size: int, iat: int, changed_at: int | None = None) -> FeedDocument:
        return fv.verify(feed_doc({"iss": "writ", "kind": "heartbeat", "size": size, "iat": iat, "changed_at": changed_at}))

    at = NOW + 100  # when the view applies them: after every iat used here
    assert view.apply(beat(11, NOW), at) == "ignored"  # before any snapshot
    assert view.apply(fv.verify(feed_doc(snapshot())), at) == "snapshot"
    view.check(c, NOW + 30)  # as old as allowed
    with pytest.raises(WritRejected) as e:
        view.check(c, NOW + 31)
    assert e.value.reason == "writ.revoked" and "cannot be ruled out" in e.value.detail
    assert view.apply(beat(9, NOW + 20), at) == "ignored"
    assert view.apply(beat(12, NOW + 20), at) == "heartbeat"
    view.check(c, NOW + 50)
    # Found in review: a heartbeat naming a change the snapshot in force lacks (its snapshot
    # dropped on the way, or an old one replayed) refreshes nothing: the view ages.
    assert view.apply(beat(13, NOW + 45, changed_at=10), at) == "behind"
    with pytest.raises(WritRejected):
        view.check(c, NOW + 51)
    assert view.apply(beat(13, NOW + 45, changed_at=9), at) == "heartbeat"
    view.check(c, NOW + 75)
    # A document made after this clock counts as made now.
    assert view.apply(beat(13, NOW + 10_000), NOW + 80) == "heartbeat"
    view.check(c, NOW + 110)
    with pytest.raises(WritRejected):
        view.check(c, NOW + 111)
    cases = [
        (snapshot(size=20, revoked=[{"jti": c.jti, "exp": NOW + 300}]), "writ.revoked"),
        (snapshot(size=21, revoked=[{"jti": "w-parent", "exp": NOW + 300}]), "writ.revoked"),
        (snapshot(size=22, quarantined=[c.sub]), "quarantined"),
        (snapshot(size=23, isolated_lineage=[{"jti": c.jti, "exp": NOW + 300}]), "quarantined"),
    ]
    for payload, expected in cases:
        assert view.apply(fv.verify(feed_doc(payload)), at) == "snapshot"
        with pytest.raises(WritRejected) as e:
            view.check(c, NOW)
        assert e.value.reason == expected
    assert view.apply(fv.verify(feed_doc(snapshot(size=5))), at) == "ignored"  # no rollback
    assert view.apply(fv.verify(feed_doc(snapshot(size=24))), at) == "snapshot"
    view.check(c, NOW)


def test_event_stream_parser() -> None:
    p = _SseParser()
    stream = b": comment\r\nevent: snapshot\r\nid: 10\r\ndata: a\r\ndata: b\r\n\r\nevent: heartbeat\ndata:c\n\nevent: x\n\n"
    events = [e for i in range(len(stream)) for e in p.push(stream[i : i + 1])]
    assert events == [("snapshot", "10", "a\nb"), ("heartbeat", "10", "c")]
    with pytest.raises(FeedError):
        list(_SseParser().push(b"data: \xff\n"))
    # Found in review: data lines with no blank line between them grew one event without
    # bound; the event is bounded as each line is.
    big = _SseParser()
    line = b"data: " + b"x" * (1 << 20) + b"\n"
    with pytest.raises(FeedError, match="event too long"):
        for _ in range(40):
            list(big.push(line))


def test_a_stale_view_with_no_snapshot_refuses_through_the_verifier() -> None:
    assert reason(Verifier(JWKS, FeedView()), sign(claims())) == "writ.revoked"


# -- a control plane that misbehaves --------------------------------------------------------


def mock(handler: Any) -> Client:
    return Client("http://cp.test", credential="jwt", transport=httpx.MockTransport(handler))


def test_answers_that_are_not_decisions_are_unavailable() -> None:
    answers = [
        httpx.Response(503, json={"error": "log.unavailable", "message": "the log is unavailable", "error_id": "1"}),
        httpx.Response(500, text="boom"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json=[]),
        httpx.Response(200, json={"outcome": "maybe", "id": "w-1"}),
        httpx.Response(200, json={"outcome": "allow", "id": "w-1"}),
    ]
    for answer in answers:
        with mock(lambda _req, a=answer: a) as c, pytest.raises(Unavailable) as e:
            c.authorize(*CALL)
        assert isinstance(e.value, Denied) and e.value.reason in ("log.unavailable", "internal")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with mock(slow) as c, pytest.raises(Unavailable) as e:
        c.authorize(*CALL)
    assert "did not answer" in e.value.detail


def test_an_expired_credential_is_renewed_once() -> None:
    sent: list[str] = []
    tokens = iter(["old", "new", "newer"])

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body["credentials"]["workload"])
        return httpx.Response(200, json={"id": "w-1", "outcome": "deny", "reasons": ["identity.expired"]})

    with Client("http://cp.test", credential=lambda: next(tokens), transport=httpx.MockTransport(handler)) as c:
        assert c.authorize(*CALL).reason == "identity.expired"
    assert sent == ["old", "new"]


def test_an_outcome_that_cannot_be_recorded_keeps_the_result(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/authorize":
            return httpx.Response(200, json={"id": "w-1", "outcome": "allow", "log_index": 4, "writ": "a.b.c"})
        return httpx.Response(503, json={"error": "log.unavailable", "message": "the log is unavailable"})

    with mock(handler) as c:

        @governed(c, action="tool:calc/add", resource="tool:calc")
        def add(a: int, b: int) -> int:
            return a + b

        with caplog.at_level(logging.WARNING, logger="writ_client"):
            assert add(1, 2) == 3
    assert "was not recorded" in caplog.text
