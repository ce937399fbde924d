"""Key sets: the Ed25519 public keys of a JWKS document (RFC 7517 §5) in the OKP form of
RFC 8037 §2, each under its ``kid`` (writ's kids are RFC 7638 thumbprints), parsed strictly
and once, as writ-verify's ``keys`` module does: a member that is not OKP/Ed25519, carries a
private part (``d``), names another ``alg`` or ``use``, repeats a ``kid`` or does not decode
to 32 bytes refuses the whole document (a key set is trusted whole or not at all).

:class:`KeyCache` keeps a set fetched from a source (the control plane's
``/.well-known/jwks.json`` or ``/.well-known/writ-feed-keys.json``) with a maximum age, and
refreshes it for an unknown ``kid`` at most once per minimum interval (default 10 s), one
fetch at a time: a flood of tokens naming unknown kids cannot multiply the fetches. If a
fetch fails the cached set stays in use (writ keys are only ever added by a rotation).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._errors import WritError
from ._jws import MAX_KID, JwsError, b64url_decode, strict_json
from ._reasons import ReasonCode

# The largest JWKS document accepted, in bytes, and the most keys (writ-verify's bounds).
MAX_JWKS_LEN = 256 * 1024
MAX_KEYS = 256
# Defaults of the refresh bound and of the maximum age, in seconds.
DEFAULT_MIN_REFRESH_INTERVAL = 10.0
DEFAULT_KEY_MAX_AGE = 300.0


class KeyUse(str, enum.Enum):
    """What a key set's keys sign; a member's ``use``, when present, must say the same."""

    WRIT = "sig"
    """Writ signing keys (``/.well-known/jwks.json``)."""
    FEED = "writ-feed"
    """Revocation feed keys (``/.well-known/writ-feed-keys.json``)."""


def _jwks_error(why: str) -> WritError:
    return WritError(ReasonCode.INTERNAL.value, f"JWKS: {why}")


class KeySet:
    """Trusted Ed25519 keys by ``kid``. Build one with :meth:`from_jwks`."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = dict(keys or {})

    @classmethod
    def from_jwks(cls, document: bytes | str | Mapping[str, Any], usage: KeyUse = KeyUse.WRIT) -> KeySet:
        """The keys of a JWKS document (its text, or the parsed object). Raises
        :class:`~writ_client.WritError` (reason ``internal``) for a document that is not a
        set of Ed25519 public keys for ``usage``."""
        if isinstance(document, (bytes, str)):
            raw = document.encode() if isinstance(document, str) else document
            if len(raw) > MAX_JWKS_LEN:
                raise _jwks_error(f"{len(raw)} bytes, more than the {MAX_JWKS_LEN} accepted")
            try:
                value = strict_json(raw)
            except JwsError as e:
                raise _jwks_error(str(e)) from None
        else:
            value = document
        if not isinstance(value, Mapping):
            raise _jwks_error("not a JSON object")
        members = value.get("keys")
        if not isinstance(members, list):
            raise _jwks_error('no "keys" array')
        if len(members) > MAX_KEYS:
            raise _jwks_error(f"{len(members)} keys, more than the {MAX_KEYS} accepted")
        keys: dict[str, Ed25519PublicKey] = {}
        for i, member in enumerate(members):
            try:
                kid, key = _member(member, usage)
            except ValueError as e:
                raise _jwks_error(f"key {i}: {e}") from None
            if kid in keys:
                raise _jwks_error(f"kid {kid!r} appears twice")
            keys[kid] = key
        return cls(keys)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        """The key under ``kid``."""
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)


def _member(k: Any, usage: KeyUse) -> tuple[str, Ed25519PublicKey]:
    if not isinstance(k, Mapping):
        raise ValueError("not an object")

    def text(name: str) -> str | None:
        v = k.get(name)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{name!r} is not a string")
        return v

    if text("kty") != "OKP" or text("crv") != "Ed25519":
        raise ValueError("only OKP keys on Ed25519 are trusted (RFC 8037)")
    if "d" in k:
        raise ValueError("a private key in a public key set")
    alg = text("alg")
    if alg is not None and alg != "EdDSA":
        raise ValueError(f"alg {alg!r}, not EdDSA")
    use = text("use")
    if use is not None and use != usage.value:
        raise ValueError(f"use {use!r}, not {usage.value!r}")
    kid = text("kid")
    if not kid or len(kid.encode()) > MAX_KID:
        raise ValueError("no kid, or an empty or overlong one")
    x = text("x")
    public = b64url_decode(x) if x is not None else None
    if public is None or len(public) != 32:
        raise ValueError("x is not 32 bytes of base64url")
    return kid, Ed25519PublicKey.from_public_bytes(public)


KeySource = Callable[[], "bytes | str | Mapping[str, Any]"]
"""Where a JWKS document comes from: a callable giving its text or parsed object."""


class KeyCache:
    """A :class:`KeySet` fetched from ``source``, refreshed within bounds (thread-safe).

    ``max_age``: a set older than this is refetched at its next use; ``min_interval``: two
    fetches are at least this far apart, whatever asks for them. ``clock`` gives Unix
    seconds.
    """

    def __init__(
        self,
        source: KeySource,
        usage: KeyUse = KeyUse.WRIT,
        *,
        max_age: float = DEFAULT_KEY_MAX_AGE,
        min_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._usage = usage
        self.max_age = max_age
        self.min_interval = min_interval
        self._clock = clock
        self._current = KeySet()
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self.fetches = 0
        """How many fetches were attempted."""
        # Held for the duration of a fetch: the single flight.
        self._flight = threading.Lock()

    def current(self) -> KeySet:
        """The keys as last fetched (empty before the first fetch)."""
        return self._current

    def is_stale(self, now: float | None = None) -> bool:
        """True if never fetched, or older than ``max_age``."""
        now = self._clock() if now is None else now
        return self._fetched_at is None or now - self._fetched_at > self.max_age

    def load(self) -> KeySet:
        """Fetches now, whatever the interval (the first load). Raises what the source or
        the parse raises."""
        with self._flight:
            return self._fetch_locked(self._clock())

    def refresh_unless(self, wanted: Callable[[KeySet], bool], now: float | None = None) -> KeySet:
        """Refreshes the set unless ``wanted`` holds of it (say, it has a kid), within the
        bound; returns the set to use. Raises :class:`~writ_client.WritError` when a
        refresh is refused (too soon) or fails."""
        if wanted(self._current):
            return self._current
        with self._flight:
            now = self._clock() if now is None else now
            if wanted(self._current):  # another thread's fetch brought it meanwhile
                return self._current
            if self._last_attempt is not None and now - self._last_attempt < self.min_interval:
                raise WritError(
                    ReasonCode.INTERNAL.value,
                    f"key refresh refused: the last one was {now - self._last_attempt:.1f} s ago, "
                    f"the minimum interval is {self.min_interval} s",
                )
            return self._fetch_locked(now)

    def refresh_if_stale(self, now: float | None = None) -> KeySet:
        """Refetches a set older than its maximum age (within the bound); on a failure the
        cached set stays. Returns the set to use."""
        now = self._clock() if now is None else now
        if self.is_stale(now):
            try:
                self.refresh_unless(lambda _: not self.is_stale(now), now)
            except WritError:
                pass
        return self._current

    def _fetch_locked(self, now: float) -> KeySet:
        self._last_attempt = now
        self.fetches += 1
        try:
            document = self._source()
        except WritError:
            raise
        except Exception as e:  # a source is user code: any failure is a failed fetch
            raise WritError(ReasonCode.INTERNAL.value, f"fetching keys: {e}") from e
        keys = KeySet.from_jwks(document, self._usage)
        self._current = keys
        self._fetched_at = now
        return keys
