"""Verifier and Feed: offline verification of live writs, refused exactly as writ-verify
refuses them (forgeries, replays, other calls, other audiences, expiry, revocation and
quarantine through the signed feed, a stale feed), and the published vectors."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import ControlPlane
from writ_client import (
    Client,
    Feed,
    FeedError,
    FeedVerifier,
    KeyCache,
    KeySet,
    KeyUse,
    Verifier,
    WritClaims,
    WritError,
    WritRejected,
    request_digest,
)

REPO = Path(__file__).resolve().parents[3]
CALL = ("tool:calc/add", "tool:calc", {"a": 1, "b": 2})


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(writ: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    h, p, s = writ.split(".")
    return json.loads(unb64(h)), json.loads(unb64(p)), s


def refused(verifier: Verifier, writ: str, call: tuple[str, str, dict[str, Any]] = CALL, **kw: Any) -> WritRejected:
    with pytest.raises(WritRejected) as e:
        verifier.verify(writ, *call, **kw)
    return e.value


def fresh(client: Client, call: tuple[str, str, dict[str, Any]] = CALL, **kw: Any) -> str:
    d = client.authorize(*call, **kw)
    assert d.writ is not None, d
    return d.writ


class Always:
    """A standing check that never refuses (for the vectors, which no feed covers)."""

    def check(self, claims: WritClaims, now: int) -> None:
        return None


def test_forged_writs_are_refused(client: Client, verifier: Verifier) -> None:
    writ = fresh(client)
    h, p, s = writ.split(".")
    header, claims, _ = parts(writ)

    sig = bytearray(unb64(s))
    sig[10] ^= 0x01
    flipped = f"{h}.{p}.{b64(bytes(sig))}"
    assert refused(verifier, flipped).reason == "writ.bad_signature"

    changed = dict(claims, act="tool:files/delete")
    payload_changed = f"{h}.{b64(json.dumps(changed).encode())}.{s}"
    assert refused(verifier, payload_changed).reason == "writ.bad_signature"

    none_header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": header["kid"]}).encode())
    assert refused(verifier, f"{none_header}.{p}.").reason == "writ.bad_signature"

    hs256 = jwt.encode(claims, "a shared secret of at least 32 bytes", algorithm="HS256", headers={"kid": header["kid"]})
    assert refused(verifier, hs256).reason == "writ.bad_signature"

    with_jwk = b64(json.dumps(dict(header, jwk={"kty": "OKP"})).encode())
    r = refused(verifier, f"{with_jwk}.{p}.{s}")
    assert r.reason == "writ.bad_signature" and "jwk" in r.detail
    with_crit = b64(json.dumps(dict(header, crit=["exp"])).encode())
    assert refused(verifier, f"{with_crit}.{p}.{s}").reason == "writ.bad_signature"
    padded = f"{h}.{p}.{s}=="
    assert refused(verifier, padded).reason == "writ.bad_signature"

    other_key = Ed25519PrivateKey.generate()
    unknown_kid = jwt.encode(claims, other_key, algorithm="EdDSA", headers={"kid": "not-a-writ-key", "typ": "JWT"})
    assert refused(verifier, unknown_kid).reason == "writ.bad_signature"
    same_kid = jwt.encode(claims, other_key, algorithm="EdDSA", headers={"kid": header["kid"], "typ": "JWT"})
    assert refused(verifier, same_kid).reason == "writ.bad_signature"

    # None of those used the writ up: the genuine one still verifies, once.
    assert verifier.verify(writ, *CALL).jti == claims["jti"]


def test_replayed_writ_is_refused(client: Client, verifier: Verifier) -> None:
    writ = fresh(client)
    verifier.verify(writ, *CALL)
    assert refused(verifier, writ).reason == "writ.replayed"


def test_binding_mismatch(client: Client, verifier: Verifier) -> None:
    writ = fresh(client)
    assert refused(verifier, writ, ("tool:calc/add", "tool:calc", {"a": 1, "b": 3})).reason == "writ.binding_mismatch"
    assert refused(verifier, writ, ("tool:calc/add", "tool:calc", {"a": 1, "b": 2, "c": 0})).reason == "writ.binding_mismatch"
    assert refused(verifier, writ, ("tool:calc/divide", "tool:calc", {"a": 1, "b": 2})).reason == "writ.binding_mismatch"
    assert refused(verifier, writ, ("tool:calc/add", "tool:calc", {"a": 2**53})).reason == "request.malformed"
    # Key order and number forms do not change the call (RFC 8785).
    assert verifier.verify(writ, "tool:calc/add", "tool:calc", {"b": 2.0, "a": 1}).jti == parts(writ)[1]["jti"]


def test_audience(client: Client, feed: Feed) -> None:
    writ = fresh(client, audience="tool:calc")
    keys = client.key_cache()
    assert refused(Verifier(keys, feed, audience="tool:echo"), writ).reason == "writ.audience"
    assert refused(Verifier(keys, feed), writ).reason == "writ.audience"
    assert Verifier(keys, feed, audience="tool:calc").verify(writ, *CALL).aud == "tool:calc"


def test_time_window(client: Client, verifier: Verifier) -> None:
    writ = fresh(client)
    claims = parts(writ)[1]
    assert refused(verifier, writ, now=claims["exp"] + 30).reason == "writ.expired"
    assert refused(verifier, writ, now=claims["nbf"] - 31).reason == "writ.expired"
    # The window's edges (the feed, fresh now, would be stale then: no standing check here).
    keys = client.key_cache()
    assert Verifier(keys, Always()).verify(writ, *CALL, now=claims["exp"] + 29).jti == claims["jti"]
    assert Verifier(keys, Always()).verify(writ, *CALL, now=claims["nbf"] - 30).jti == claims["jti"]


def test_full_replay_cache_refuses_rather_than_forgets(client: Client, feed: Feed) -> None:
    v = Verifier(client.key_cache(), feed, replay_capacity=1)
    first, second = fresh(client), fresh(client)
    v.verify(first, *CALL)
    r = refused(v, second)
    assert r.reason == "writ.replayed" and "capacity" in r.detail
    assert refused(v, first).reason == "writ.replayed"
    assert v.used_len() == 1


def test_replay_set_forgets_only_after_expiry() -> None:
    from writ_client._replay import Replay, ReplayFull

    r = Replay(capacity=1)
    r.insert("w-a", until=100, now=0)
    with pytest.raises(ReplayFull):
        r.insert("w-b", until=200, now=99)
    assert "w-a" in r
    r.insert("w-b", until=200, now=100)  # w-a cannot verify any more: its place is free
    assert "w-a" not in r and "w-b" in r


def test_restart_without_the_used_set(client: Client, feed: Feed) -> None:
    writ = fresh(client)
    keys = client.key_cache()
    before = Verifier(keys, feed)
    before.verify(writ, *CALL)
    after = Verifier(keys, feed)
    after.refuse_issued_before(int(time.time()) + 1)
    assert refused(after, writ).reason == "writ.replayed"
    restored = Verifier(keys, feed)
    restored.restore(before.used())
    assert refused(restored, writ).reason == "writ.replayed"


def test_unknown_kid_refreshes_keys_within_the_bound(cp: ControlPlane, client: Client, feed: Feed) -> None:
    fetches = []

    def source() -> bytes:
        fetches.append(1)
        return httpx.get(cp.url + "/.well-known/jwks.json").content

    clock = [1000.0]
    cache = KeyCache(source, KeyUse.WRIT, min_interval=60, max_age=3600, clock=lambda: clock[0])
    v = Verifier(cache, feed)
    writ = fresh(client)
    _, claims, _ = parts(writ)
    assert v.verify(writ, *CALL).jti == claims["jti"]
    assert len(fetches) == 1  # the first load
    other = Ed25519PrivateKey.generate()

    def forged(i: int) -> str:
        return jwt.encode(claims, other, algorithm="EdDSA", headers={"kid": f"unknown-{i}", "typ": "JWT"})

    clock[0] += 61
    for i in range(5):
        assert refused(v, forged(i)).reason == "writ.bad_signature"
        clock[0] += 1
    # One refresh for the first unknown kid; the next four, within the minimum interval of
    # it, were refused without a fetch.
    assert len(fetches) == 2
    clock[0] += 60
    assert refused(v, forged(5)).reason == "writ.bad_signature"
    assert len(fetches) == 3


def test_a_feed_document_is_not_a_writ(cp: ControlPlane, verifier: Verifier) -> None:
    snapshot = httpx.get(cp.url + "/v1/feed/snapshot").json()["snapshot"]
    assert refused(verifier, snapshot).reason == "writ.bad_signature"


def test_a_writ_is_not_a_feed_document(cp: ControlPlane, client: Client) -> None:
    writ = fresh(client)
    keys = KeySet.from_jwks(httpx.get(cp.url + "/.well-known/writ-feed-keys.json").content, KeyUse.FEED)
    with pytest.raises(FeedError):
        FeedVerifier("writ", keys).verify(writ)
    with pytest.raises(FeedError):
        FeedVerifier("writ", KeySet.from_jwks(client.jwks())).verify(writ)
    with pytest.raises(WritError):
        KeySet.from_jwks(client.jwks(), KeyUse.FEED)  # writ keys are not feed keys (use: sig)


def test_stale_feed_denies(cp: ControlPlane, client: Client) -> None:
    keys = client.key_cache()
    never_polled = Feed(cp.url, max_staleness=5)
    assert refused(Verifier(keys, never_polled), fresh(client)).reason == "writ.revoked"
    never_polled.close()

    polled = Feed(cp.url, max_staleness=5)
    assert polled.poll() == "snapshot"
    v = Verifier(keys, polled)
    writ = fresh(client)
    r = refused(v, writ, now=int(time.time()) + 7)
    assert r.reason == "writ.revoked" and "cannot be ruled out" in r.detail
    assert v.verify(writ, *CALL).act == "tool:calc/add"  # fresh again: not used by the refusal
    polled.close()


def test_revoked_writ_refused_through_the_feed(cp: ControlPlane, client: Client, feed: Feed, verifier: Verifier) -> None:
    d = client.authorize(*CALL)
    assert d.writ is not None and d.id is not None
    assert feed.status == "connected"  # following /v1/feed/stream, not polling
    before = feed.size()
    started = time.monotonic()
    r = cp.operator_call("POST", "/v1/revocations", {"jti": d.id, "reason": "pytest"})
    assert r.status_code == 200, r.text
    seen = feed.wait_for(lambda view: view.snapshot is not None and d.id in view.snapshot.revoked, timeout=5)
    elapsed = time.monotonic() - started
    assert seen, f"the revocation did not reach the feed within 5 s ({feed.status})"
    print(f"revocation seen through the feed after {elapsed * 1000:.0f} ms")
    assert feed.size() > before
    assert refused(verifier, d.writ).reason == "writ.revoked"
    # A writ issued under it (a lineage child) is refused too.
    child = client.authorize(*CALL, parent_writ=d.writ)
    assert child.outcome == "deny" and child.reason == "lineage.parent_revoked"


def test_quarantined_principal_refused_through_the_feed(cp: ControlPlane, feed: Feed, verifier: Verifier) -> None:
    rogue_id = "spiffe://demo.example/agent/py-rogue"
    with Client(cp.url, credential=cp.issue(rogue_id, "--zone", "tools")) as rogue:
        writ = fresh(rogue)
        assert cp.operator_call("POST", "/v1/quarantine/isolate", {"subject": rogue_id, "reason": "pytest"}).status_code == 200
        try:
            assert feed.wait_for(lambda v: v.snapshot is not None and rogue_id in v.snapshot.quarantined, timeout=5)
            assert refused(verifier, writ).reason == "quarantined"
        finally:
            cp.operator_call("POST", "/v1/quarantine/release", {"subject": rogue_id, "reason": "pytest done"})


def test_an_older_snapshot_never_rolls_back(cp: ControlPlane, client: Client) -> None:
    old = httpx.get(cp.url + "/v1/feed/snapshot").json()["snapshot"]
    d = client.authorize(*CALL)
    assert d.id is not None
    assert cp.operator_call("POST", "/v1/revocations", {"jti": d.id, "reason": "rollback test"}).status_code == 200
    new = httpx.get(cp.url + "/v1/feed/snapshot").json()["snapshot"]
    with Feed(cp.url) as f:
        f.stop()
        assert f.apply_document(new) == "snapshot"
        assert f.apply_document(old) == "ignored"
        assert f.wait_for(lambda v: v.snapshot is not None and d.id in v.snapshot.revoked, timeout=0)


def test_pinned_feed_keys_refuse_another_signer(cp: ControlPlane) -> None:
    other = Ed25519PrivateKey.generate()
    forged = jwt.encode(
        {"iss": "writ", "kind": "heartbeat", "size": 10**9, "iat": int(time.time()), "changed_at": None},
        other, algorithm="EdDSA", headers={"kid": "x", "typ": "writ-feed+jwt"},
    )
    keys = httpx.get(cp.url + "/.well-known/writ-feed-keys.json").json()
    f = Feed(cp.url, feed_keys=keys)
    try:
        assert f.poll() == "snapshot"
        with pytest.raises(FeedError):
            f.apply_document(forged)
        assert f.size() < 10**9
    finally:
        f.close()


def test_published_vectors() -> None:
    digests = json.loads((REPO / "docs/vectors/request-digests.json").read_text())["vectors"]
    for v in digests:
        req = json.loads(v["request"])
        assert request_digest(req["action"], req["resource"], req.get("arguments")) == v["digest"], v["name"]
    w = json.loads((REPO / "docs/vectors/writ.json").read_text())
    call = w["request"]
    args = (call["action"], call["resource"], call["arguments"])
    verifier = Verifier(w["jwks"], Always(), audience=w["audience"], issuer=w["issuer"], skew=0)
    claims = verifier.verify(w["writ"], *args, now=w["valid_from"])
    assert claims.jti == w["claims"]["jti"] and claims.req == w["digest"] and claims.log.leaf == w["claims"]["log"]["leaf"]
    assert refused(verifier, w["writ"], args, now=w["valid_from"]).reason == "writ.replayed"
    later = Verifier(w["jwks"], Always(), audience=w["audience"], issuer=w["issuer"], skew=0)
    assert refused(later, w["writ"], args, now=w["valid_until"]).reason == "writ.expired"


def test_a_feed_kept_off_the_stream_stays_fresh_from_snapshots(cp: ControlPlane, client: Client) -> None:
    """Found in review: ``/v1/feed/stream`` takes no credential and holds a bounded number
    of streams, so anybody could hold every slot; a feed then only retried the stream, its
    view went stale and every writ was refused. A refused stream now falls back to the
    snapshot route at each retry: the view stays fresh while the stream is refused."""
    real = httpx.HTTPTransport()

    def slots_taken(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/feed/stream":
            return httpx.Response(503, json={"error": "internal", "message": "too many feed streams are open"})
        return real.handle_request(request)

    feed = Feed(cp.url, max_staleness=2, backoff_max=0.4, transport=httpx.MockTransport(slots_taken)).start()
    try:
        assert feed.wait_for(lambda v: v.snapshot_size is not None, timeout=10), feed.status
        verifier = Verifier(client.key_cache(), feed)
        for _ in range(8):  # longer than the staleness bound
            time.sleep(0.5)
            age = feed.age()
            assert age is not None and age <= 2, f"stale while the stream was refused: {age} s ({feed.status})"
        assert feed.status.startswith("retrying"), feed.status
        assert verifier.verify(fresh(client), *CALL).act == "tool:calc/add"
    finally:
        feed.close()
        real.close()
