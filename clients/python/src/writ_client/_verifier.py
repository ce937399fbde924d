"""Offline writ verification at an enforcement point, mirroring writ-verify's
``WritVerifier`` and ``EnforcementPoint`` check for check and reason code for reason code
(docs/writ-format.md, "Verifying a writ"):

=====  ==========================================================================  ==========================
step   check                                                                       refusal
=====  ==========================================================================  ==========================
0      the call has a request digest (RFC 8785)                                    ``request.malformed``
1      strict JWS, ``alg`` EdDSA, ``typ`` JWT if any, trusted ``kid``, signature,  ``writ.bad_signature``
       claims exactly the writ's, ``iss``
2      ``nbf - skew <= now < exp + skew``                                           ``writ.expired``
3      ``aud`` is this enforcement point                                           ``writ.audience``
4      ``req`` is the digest of the call about to run                              ``writ.binding_mismatch``
5      standing: the feed is fresh, not revoked (nor its parent or root), its      ``writ.revoked``,
       principal not isolated                                                      ``quarantined``
6      single use: ``jti`` not used here, the replay cache has room                ``writ.replayed``
=====  ==========================================================================  ==========================

A writ refused at any step is not marked used. Keys come from a :class:`~writ_client.KeySet`
(pinned) or a :class:`~writ_client.KeyCache` (fetched, refreshed once for an unknown kid
within its bound); the token never supplies its key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ._digest import request_digest
from ._errors import WritError, WritRejected
from ._jws import JwsError, parse, strict_json, verify
from ._keys import KeyCache, KeySet, KeyUse
from ._reasons import ReasonCode
from ._replay import DEFAULT_REPLAY_CAPACITY, Replay, ReplayFull

# The longest writ accepted, in bytes (writ-verify's MAX_WRIT_LEN).
MAX_WRIT_LEN = 16 * 1024
DEFAULT_AUDIENCE = "writ-enforcement"
DEFAULT_SKEW = 30
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


@dataclass(frozen=True)
class Scope:
    """What a writ lets its children do: their trust zone and actions (``*``: any)."""

    actions: tuple[str, ...]
    zone: str


@dataclass(frozen=True)
class LogRef:
    """Where a writ's decision is in the log: the entry index and its RFC 6962 leaf hash."""

    index: int
    leaf: str


@dataclass(frozen=True)
class WritClaims:
    """The claims of a writ that verified (docs/writ-format.md, "Claims")."""

    iss: str
    sub: str
    aud: str
    jti: str
    iat: int
    nbf: int
    exp: int
    act: str
    res: str
    req: str
    pol: str
    root: str
    dep: int
    scp: Scope
    log: LogRef
    par: str | None = None


_STRINGS = ("iss", "sub", "aud", "jti", "act", "res", "req", "pol", "root")
_INTS = ("iat", "nbf", "exp")
_REQUIRED = (*_STRINGS, *_INTS, "dep", "scp", "log")


def _int(v: Any, bound: int) -> bool:
    return type(v) is int and 0 <= v <= bound


def parse_claims(payload: bytes) -> WritClaims:
    """The claims of a writ payload, exactly as writ-verify's ``WritClaims`` accepts them
    (every member present and of its type, no unknown member, no repeated name); raises
    :class:`ValueError`."""
    c = strict_json(payload)
    if not isinstance(c, dict):
        raise ValueError("the claims are not a JSON object")
    for name in c:
        if name not in _REQUIRED and name != "par":
            raise ValueError(f"unknown claim {name!r}")
    for name in _REQUIRED:
        if name not in c:
            raise ValueError(f"missing claim {name!r}")
    for name in _STRINGS:
        if not isinstance(c[name], str):
            raise ValueError(f"claim {name!r} is not a string")
    for name in _INTS:
        if not _int(c[name], _U64):
            raise ValueError(f"claim {name!r} is not an unsigned integer")
    if not _int(c["dep"], _U32):
        raise ValueError("claim 'dep' is not an unsigned integer")
    par = c.get("par")
    if par is not None and not isinstance(par, str):
        raise ValueError("claim 'par' is not a string")
    scp, log = c["scp"], c["log"]
    if (
        not isinstance(scp, dict)
        or set(scp) != {"actions", "zone"}
        or not isinstance(scp["zone"], str)
        or not isinstance(scp["actions"], list)
        or not all(isinstance(a, str) for a in scp["actions"])
    ):
        raise ValueError("claim 'scp' is not {actions: [string], zone: string}")
    if (
        not isinstance(log, dict)
        or set(log) != {"index", "leaf"}
        or not _int(log["index"], _U64)
        or not isinstance(log["leaf"], str)
    ):
        raise ValueError("claim 'log' is not {index: integer, leaf: string}")
    return WritClaims(
        iss=c["iss"], sub=c["sub"], aud=c["aud"], jti=c["jti"], iat=c["iat"], nbf=c["nbf"], exp=c["exp"],
        act=c["act"], res=c["res"], req=c["req"], pol=c["pol"], root=c["root"], dep=c["dep"],
        scp=Scope(actions=tuple(scp["actions"]), zone=scp["zone"]),
        log=LogRef(index=log["index"], leaf=log["leaf"]), par=par,
    )


class StandingCheck(Protocol):
    """Decides whether a writ whose signature, time, audience and binding hold may still be
    used (revocation, quarantine): raises :class:`~writ_client.WritRejected` otherwise. A
    :class:`~writ_client.Feed` and a :class:`~writ_client.FeedView` are ones."""

    def check(self, claims: WritClaims, now: int) -> None: ...


def _reject(reason: ReasonCode, detail: str) -> WritRejected:
    return WritRejected(reason.value, detail)


class Verifier:
    """Verifies writs for the calls about to run (thread-safe).

    ``keys``: a :class:`KeySet`, a :class:`KeyCache`, or a JWKS document (a mapping).
    ``standing``: what says whether a writ is revoked or its principal isolated, usually a
    :class:`~writ_client.Feed` (there is no default: a verifier that cannot rule out a
    revocation must not pretend to). ``audience``: this enforcement point's name, what a
    writ's ``aud`` must be. ``skew``: the clock-skew allowance in seconds.
    ``replay_capacity``: the most writs still inside their window remembered at once.
    """

    def __init__(
        self,
        keys: KeySet | KeyCache | Mapping[str, Any],
        standing: StandingCheck,
        *,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str = "writ",
        skew: int = DEFAULT_SKEW,
        replay_capacity: int = DEFAULT_REPLAY_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(keys, Mapping):
            keys = KeySet.from_jwks(keys, KeyUse.WRIT)
        self._keys = keys
        self._standing = standing
        self.audience = audience
        self.issuer = issuer
        self.skew = skew
        self._clock = clock
        self._seen = Replay(replay_capacity)
        self._horizon = 0
        self._lock = threading.Lock()

    def _key_set(self, kid: str | None) -> KeySet:
        if isinstance(self._keys, KeySet):
            return self._keys
        # The cache keeps time with its own clock: key freshness is about real time, even
        # when a verification is asked for another `now`.
        cache = self._keys
        keys = cache.refresh_if_stale()
        if kid is not None and kid not in keys:
            try:
                # Bounded: at most one fetch per the cache's minimum interval.
                keys = cache.refresh_unless(lambda k: kid in k)
            except WritError:
                pass  # the kid stays unknown: writ.bad_signature below
        return keys

    def verify(
        self,
        writ: str,
        action: str,
        resource: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        now: int | None = None,
    ) -> WritClaims:
        """The claims of ``writ`` if it authorizes the call ``(action, resource,
        arguments)`` now, marking it used; raises :class:`~writ_client.WritRejected` with
        writ's reason code otherwise."""
        now = int(self._clock()) if now is None else now
        try:
            digest = request_digest(action, resource, arguments)
        except WritError as e:
            raise WritRejected(e.reason, e.detail) from None
        c = self._signed_claims(writ)
        if now + self.skew < c.nbf or now >= c.exp + self.skew:
            raise _reject(ReasonCode.WRIT_EXPIRED, f"valid from {c.nbf} to {c.exp}, now {now}")
        if c.aud != self.audience:
            raise _reject(ReasonCode.WRIT_AUDIENCE, f"writ is for {c.aud!r}")
        if c.req != digest:
            raise _reject(ReasonCode.WRIT_BINDING_MISMATCH, "the writ authorizes another call")
        try:
            self._standing.check(c, now)
        except WritRejected:
            raise
        except Exception as e:  # a standing check that fails cannot rule a revocation out
            raise _reject(ReasonCode.INTERNAL, f"standing check failed: {e}") from e
        self._mark_used(c, now)
        return c

    def _signed_claims(self, writ: str) -> WritClaims:
        try:
            parsed = parse(writ, MAX_WRIT_LEN)
        except JwsError as e:
            raise _reject(ReasonCode.WRIT_BAD_SIGNATURE, str(e)) from None
        if parsed.typ is not None and parsed.typ != "JWT":
            raise _reject(ReasonCode.WRIT_BAD_SIGNATURE, "typ is not JWT")
        key = self._key_set(parsed.kid).get(parsed.kid)
        if key is None:
            raise _reject(ReasonCode.WRIT_BAD_SIGNATURE, "kid is not a trusted writ key")
        try:
            payload = verify(parsed, key)
        except JwsError as e:
            raise _reject(ReasonCode.WRIT_BAD_SIGNATURE, str(e)) from None
        try:
            claims = parse_claims(payload)
        except ValueError as e:
            raise _reject(ReasonCode.WRIT_BAD_SIGNATURE, f"claims: {e}") from None
        if claims.iss != self.issuer:
            raise _reject(ReasonCode.WRIT_BAD_SIGNATURE, "writ from another control plane")
        return claims

    def _mark_used(self, c: WritClaims, now: int) -> None:
        with self._lock:
            if c.jti in self._seen:
                raise _reject(ReasonCode.WRIT_REPLAYED, "this writ was already used here")
            if c.iat < self._horizon:
                raise _reject(
                    ReasonCode.WRIT_REPLAYED,
                    f"issued at {c.iat} before this enforcement point restarted at {self._horizon} without its record "
                    "of used writs: a use before the restart cannot be ruled out (ask for a new writ)",
                )
            try:
                self._seen.insert(c.jti, c.exp + self.skew, now)
            except ReplayFull as e:
                raise _reject(ReasonCode.WRIT_REPLAYED, str(e)) from None

    def refuse_issued_before(self, time_: int) -> None:
        """Refuses, as ``writ.replayed``, every writ issued before ``time_`` (Unix seconds):
        for a process that restarted without its record of used writs, a writ from before
        the restart may have been used already. Call it at start with the start time unless
        you restored the set with :meth:`restore`."""
        with self._lock:
            self._horizon = max(self._horizon, time_)

    def used(self, now: int | None = None) -> list[tuple[str, int]]:
        """The writ ids used here that could still verify, each with the time after which it
        cannot: what a stopping process keeps for :meth:`restore`."""
        now = int(self._clock()) if now is None else now
        with self._lock:
            return self._seen.live(now)

    def restore(self, used: list[tuple[str, int]]) -> None:
        """Takes back what :meth:`used` gave an earlier run."""
        with self._lock:
            self._seen.restore([(str(j), int(u)) for j, u in used])

    def used_len(self) -> int:
        """How many writ ids the replay cache holds."""
        with self._lock:
            return len(self._seen)
