"""The revocation feed, as an enforcement point sees it (docs/http-api.md, "The revocation
feed"; writ-verify's ``feed`` and ``subscriber`` modules): signed feed documents, the view
they build, and :class:`Feed`, which keeps a view up to date from the control plane.

A feed document is a JWS compact (RFC 7515) signed with EdDSA (RFC 8037) by a feed key
(``/.well-known/writ-feed-keys.json``, never a writ key), header ``typ`` ``writ-feed+jwt``.
The view's rules:

- its age is now minus the ``iat`` of the newest verified document (an ``iat`` ahead of
  this clock counts as now); older than the maximum staleness (default 30 s), and before the
  first snapshot, every writ is refused ``writ.revoked``: a revocation cannot be ruled out;
- a snapshot below the size of the snapshot in force is ignored (no rollback), and so is a
  heartbeat below it (it does not refresh the view's age);
- a heartbeat names the newest change (``changed_at``); one at or above the size of the
  snapshot in force says the view lacks a change: it refreshes nothing (``"behind"``), so an
  old snapshot replayed, or snapshot events dropped while heartbeats pass, cannot keep a view
  from before a revocation fresh; after three in a row the stream is resumed for the
  snapshot;
- the writ's ``jti``, ``par`` or ``root`` revoked → ``writ.revoked``; its ``sub`` isolated or
  its ``jti`` in an isolated lineage → ``quarantined``.

:class:`Feed` follows ``GET /v1/feed/stream`` (server-sent events, WHATWG HTML "Server-sent
events") in a background thread (:meth:`Feed.start`), or takes ``GET /v1/feed/snapshot``
when asked (:meth:`Feed.poll`). The stream resumes with ``Last-Event-ID`` set to the size of
the snapshot in force; a stream silent longer than the idle timeout (heartbeats come every
second) is dropped, and every break is followed by a reconnection after a backoff that
doubles from 0.1 s to 5 s. A refused stream (every slot taken) falls back to the snapshot
route at each retry, so the view stays fresh meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._errors import Unavailable, WritError, WritRejected
from ._jws import JwsError, parse, strict_json, verify
from ._keys import DEFAULT_MIN_REFRESH_INTERVAL, KeyCache, KeySet, KeyUse
from ._reasons import ReasonCode
from ._verifier import WritClaims

# The largest feed document accepted, in bytes (writ-verify's MAX_FEED_DOCUMENT_LEN).
MAX_FEED_DOCUMENT_LEN = 32 * 1024 * 1024
DEFAULT_MAX_STALENESS = 30
FEED_TYP = "writ-feed+jwt"
_MAX_LINE = MAX_FEED_DOCUMENT_LEN + 64
# Heartbeats in a row naming a change the view lacks before the stream is resumed.
_MAX_BEHIND = 3
_U64 = (1 << 64) - 1


class FeedError(WritError):
    """A feed document that does not verify or does not follow the feed format (reason
    ``internal``: no view is built from it)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ReasonCode.INTERNAL.value, f"feed document: {detail}")


@dataclass(frozen=True)
class Snapshot:
    """What a snapshot lists."""

    bundle: str | None
    revoked: Mapping[str, int]
    quarantined: frozenset[str]
    isolated_lineage: Mapping[str, int]
    changed_at: int | None


@dataclass(frozen=True)
class FeedDocument:
    """A verified feed document: ``snapshot`` is ``None`` for a heartbeat."""

    iss: str
    size: int
    iat: int
    changed_at: int | None
    snapshot: Snapshot | None


def _uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _U64


def _expiring(v: Any, name: str) -> dict[str, int]:
    if not isinstance(v, list):
        raise FeedError(f"{name} is not a list")
    out: dict[str, int] = {}
    for e in v:
        if not isinstance(e, dict) or set(e) != {"jti", "exp"} or not isinstance(e["jti"], str) or not _uint(e["exp"]):
            raise FeedError(f"an entry of {name} is not {{jti, exp}}")
        out[e["jti"]] = e["exp"]
    return out


class FeedVerifier:
    """Verifies feed documents of the control plane ``issuer`` with its feed keys."""

    def __init__(self, issuer: str, keys: KeySet) -> None:
        self.issuer = issuer
        self.keys = keys

    def unknown_kid(self, document: str) -> str | None:
        """The kid of a well-formed document whose key is not trusted (a refresh may help)."""
        try:
            kid = parse(document, MAX_FEED_DOCUMENT_LEN).kid
        except JwsError:
            return None
        return None if kid in self.keys else kid

    def verify(self, document: str) -> FeedDocument:
        """The document, once its signature by a trusted feed key, its ``typ``, its issuer
        and the shape of its kind hold; raises :class:`FeedError`."""
        try:
            parsed = parse(document, MAX_FEED_DOCUMENT_LEN)
        except JwsError as e:
            raise FeedError(str(e)) from None
        if parsed.typ != FEED_TYP:
            raise FeedError(f"typ must be {FEED_TYP!r}")
        key = self.keys.get(parsed.kid)
        if key is None:
            raise FeedError("kid is not a trusted feed key")
        try:
            p = strict_json(verify(parsed, key))
        except JwsError as e:
            raise FeedError(str(e)) from None
        if not isinstance(p, dict):
            raise FeedError("the payload is not a JSON object")
        kind = p.get("kind")
        base = {"iss", "kind", "size", "iat", "changed_at"}
        if kind == "heartbeat":
            if set(p) != base:
                raise FeedError("a heartbeat with the wrong members")
        elif kind == "snapshot":
            if set(p) != base | {"bundle", "revoked", "quarantined", "isolated_lineage"}:
                raise FeedError("a snapshot with the wrong members")
        else:
            raise FeedError(f"unknown kind {kind!r}")
        if not isinstance(p["iss"], str) or not _uint(p["size"]) or not _uint(p["iat"]):
            raise FeedError("iss, size or iat of the wrong type")
        if p["iss"] != self.issuer:
            raise FeedError("a document of another control plane")
        changed_at = p["changed_at"]
        if changed_at is not None and not _uint(changed_at):
            raise FeedError("changed_at is not an integer")
        snapshot = None
        if kind == "snapshot":
            bundle, quarantined = p["bundle"], p["quarantined"]
            if bundle is not None and not isinstance(bundle, str):
                raise FeedError("bundle is not a string")
            if not isinstance(quarantined, list) or not all(isinstance(q, str) for q in quarantined):
                raise FeedError("quarantined is not a list of strings")
            snapshot = Snapshot(
                bundle=bundle,
                revoked=_expiring(p["revoked"], "revoked"),
                quarantined=frozenset(quarantined),
                isolated_lineage=_expiring(p["isolated_lineage"], "isolated_lineage"),
                changed_at=changed_at,
            )
        return FeedDocument(iss=p["iss"], size=p["size"], iat=p["iat"], changed_at=changed_at, snapshot=snapshot)


@dataclass
class FeedView:
    """An enforcement point's view of the revocation feed (not thread-safe on its own;
    :class:`Feed` holds a lock around it)."""

    max_staleness: int = DEFAULT_MAX_STALENESS
    # INVARIANT: `snapshot_size` is the size of the snapshot the sets come from; `fresh_at`
    # the newest `iat` of a document at or above it. Both only grow.
    snapshot_size: int | None = None
    size: int = 0
    fresh_at: int = 0
    snapshot: Snapshot | None = field(default=None, repr=False)

    def apply(self, doc: FeedDocument, now: int) -> str:
        """Applies a verified document at ``now`` (this clock: a document made later counts
        as made now): ``"snapshot"``, ``"heartbeat"``, ``"behind"`` (a heartbeat naming a
        change the snapshot in force lacks: nothing refreshed) or ``"ignored"`` (older than
        the snapshot in force)."""
        floor = self.snapshot_size
        made = min(doc.iat, now)
        if doc.snapshot is not None:
            if floor is not None and doc.size < floor:
                return "ignored"
            self.snapshot_size = doc.size
            self.size = max(self.size, doc.size)
            self.fresh_at = max(self.fresh_at, made)
            self.snapshot = doc.snapshot
            return "snapshot"
        if floor is not None and doc.size >= floor:
            if doc.changed_at is not None and doc.changed_at >= floor:
                return "behind"
            self.size = max(self.size, doc.size)
            self.fresh_at = max(self.fresh_at, made)
            return "heartbeat"
        return "ignored"

    def age(self, now: int) -> int | None:
        """The view's age at ``now``, ``None`` before its first snapshot."""
        return None if self.snapshot_size is None else max(0, now - self.fresh_at)

    def check(self, claims: WritClaims, now: int) -> None:
        """Raises :class:`~writ_client.WritRejected` unless the writ may still be used."""
        age = self.age(now)
        if age is None or self.snapshot is None:
            raise WritRejected(
                ReasonCode.WRIT_REVOKED.value, "revocation cannot be ruled out: no revocation feed snapshot yet"
            )
        if age > self.max_staleness:
            raise WritRejected(
                ReasonCode.WRIT_REVOKED.value,
                f"revocation cannot be ruled out: the revocation feed view is {age} s old (at most {self.max_staleness} s)",
            )
        s = self.snapshot
        if claims.jti in s.revoked:
            raise WritRejected(ReasonCode.WRIT_REVOKED.value, "the writ was revoked")
        for above in (claims.par, claims.root):
            if above is not None and above in s.revoked:
                raise WritRejected(ReasonCode.WRIT_REVOKED.value, f"writ {above} above it was revoked")
        if claims.sub in s.quarantined:
            raise WritRejected(ReasonCode.QUARANTINED.value, f"{claims.sub} is quarantined")
        if claims.jti in s.isolated_lineage:
            raise WritRejected(
                ReasonCode.QUARANTINED.value, "a principal above this writ in its lineage is quarantined"
            )


@dataclass
class _SseParser:
    """An incremental ``text/event-stream`` parser, bounded in line length."""

    line: bytearray = field(default_factory=bytearray)
    event: str = ""
    id: str | None = None
    data: str | None = None

    def push(self, chunk: bytes) -> Iterator[tuple[str, str | None, str]]:
        """Feeds bytes; yields the (event, id, data) they complete."""
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                self.line += chunk[start:]
                if len(self.line) > _MAX_LINE:
                    raise FeedError("an event stream line too long")
                return
            self.line += chunk[start:nl]
            start = nl + 1
            if len(self.line) > _MAX_LINE:
                raise FeedError("an event stream line too long")
            raw = bytes(self.line)
            self.line.clear()
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FeedError("an event stream line that is not UTF-8") from None
            done = self._line(text)
            if done is not None:
                yield done

    def _line(self, line: str) -> tuple[str, str | None, str] | None:
        if not line:
            if self.data is None:
                return None
            data, self.data = self.data, None
            event, self.event = self.event or "message", ""
            return (event, self.id, data)
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.event = value
        elif name == "data":
            # Each line is bounded, and so is the event they make (``data:`` lines with no
            # blank line between them would grow one event without end).
            if self.data is not None and len(self.data) + len(value) >= _MAX_LINE:
                raise FeedError("an event stream event too long")
            self.data = value if self.data is None else self.data + "\n" + value
        elif name == "id" and "\0" not in value:
            self.id = value
        return None


class Feed:
    """A view of the control plane's revocation feed, kept fresh (thread-safe).

    Use it as a :class:`~writ_client.Verifier`'s standing check. ``base_url``: the control
    plane (``http://host:port``). ``feed_keys``: the feed keys pinned (a JWKS mapping, ``use``
    ``writ-feed``); when given they are never fetched, so a party that can answer for the
    control plane over plain HTTP still cannot sign feed documents. Otherwise they are
    fetched from ``/.well-known/writ-feed-keys.json`` and refreshed once for an unknown
    kid, at most once per ``key_min_interval`` seconds. ``max_staleness``: how old (seconds)
    the view may be before every writ is refused.
    """

    def __init__(
        self,
        base_url: str,
        *,
        issuer: str = "writ",
        max_staleness: int = DEFAULT_MAX_STALENESS,
        feed_keys: Mapping[str, Any] | None = None,
        timeout: float = 5.0,
        idle_timeout: float = 10.0,
        key_min_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
        backoff_min: float = 0.1,
        backoff_max: float = 5.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.issuer = issuer
        self._clock = clock
        self._timeout = timeout
        self._idle_timeout = idle_timeout
        self._backoff = (backoff_min, backoff_max)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        if feed_keys is not None:
            pinned = dict(feed_keys)
            self._keys = KeyCache(lambda: pinned, KeyUse.FEED, min_interval=float("inf"), clock=clock)
        else:
            self._keys = KeyCache(self._fetch_keys, KeyUse.FEED, min_interval=key_min_interval, clock=clock)
        self._view = FeedView(max_staleness=max_staleness)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: httpx.Response | None = None
        self.status = "starting"
        """``starting``, ``connected``, or ``retrying: <why>`` (for health reporting)."""
        self.updated = threading.Condition(self._lock)
        """Notified each time a document is applied (wait on it to see a change land)."""

    # -- fetching -----------------------------------------------------------------------

    def _get(self, path: str) -> httpx.Response:
        try:
            r = self._http.get(path)
        except httpx.HTTPError as e:
            raise Unavailable(ReasonCode.LOG_UNAVAILABLE.value, f"fetching {path}: {e}") from None
        if r.status_code != 200:
            raise Unavailable(ReasonCode.LOG_UNAVAILABLE.value, f"fetching {path}: status {r.status_code}")
        return r

    def _fetch_keys(self) -> bytes:
        return self._get("/.well-known/writ-feed-keys.json").content

    def _verify(self, document: str) -> FeedDocument:
        """Verifies a document, refreshing the feed keys once (within the bound) for an
        unknown kid."""
        if len(self._keys.current()) == 0:
            self._keys.load()
        verifier = FeedVerifier(self.issuer, self._keys.current())
        kid = verifier.unknown_kid(document)
        if kid is not None:
            try:
                verifier = FeedVerifier(self.issuer, self._keys.refresh_unless(lambda k: kid in k))
            except WritError:
                pass  # refused (too soon, pinned keys) or failed: the kid stays unknown
        return verifier.verify(document)

    def _apply(self, doc: FeedDocument) -> str:
        with self._lock:
            applied = self._view.apply(doc, int(self._clock()))
            self.updated.notify_all()
            return applied

    def apply_document(self, document: str) -> str:
        """Verifies and applies one feed document (a JWS); ``"snapshot"``,
        ``"heartbeat"``, ``"behind"`` or ``"ignored"``. Raises :class:`FeedError` if it does
        not verify."""
        return self._apply(self._verify(document))

    def poll(self) -> str:
        """Takes the current snapshot (``GET /v1/feed/snapshot``) into the view. Raises
        :class:`~writ_client.Unavailable` or :class:`FeedError`; the view is then
        unchanged (and ages)."""
        r = self._get("/v1/feed/snapshot")
        try:
            answer = strict_json(r.content)
        except JwsError as e:
            raise Unavailable(ReasonCode.LOG_UNAVAILABLE.value, f"/v1/feed/snapshot: {e}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("snapshot"), str):
            raise Unavailable(ReasonCode.LOG_UNAVAILABLE.value, "/v1/feed/snapshot: no snapshot in the answer")
        return self.apply_document(answer["snapshot"])

    # -- following the stream -----------------------------------------------------------

    def start(self) -> Feed:
        """Follows the stream in a daemon thread until :meth:`stop`; returns ``self``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="writ-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stops following the stream (the view stays, and ages)."""
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # closing from another thread: best effort, the thread ends anyway
                pass
        if self._thread is not None:
            self._thread.join(timeout=self._idle_timeout + 1)
            self._thread = None

    def close(self) -> None:
        """Stops and closes the HTTP client."""
        self.stop()
        self._http.close()

    def __enter__(self) -> Feed:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _follow(self) -> None:
        backoff = self._backoff[0]
        while not self._stop.is_set():
            progressed = [False]
            try:
                self._session(progressed)
                why = "the stream ended"
            except Exception as e:  # every failure is a reconnection; the view just ages
                why = str(e) or type(e).__name__
            if progressed[0]:
                backoff = self._backoff[0]
            self.status = f"retrying: {why}"
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._backoff[1])

    def _session(self, progressed: list[bool]) -> None:
        if self.snapshot_size() is None:
            self.poll()
            progressed[0] = True
        resume = str(self.snapshot_size() or 0)
        timeout = httpx.Timeout(self._timeout, read=self._idle_timeout)
        headers = {"accept": "text/event-stream", "last-event-id": resume}
        with self._http.stream("GET", "/v1/feed/stream", headers=headers, timeout=timeout) as response:
            self._response = response
            try:
                if response.status_code != 200:
                    # The stream is refused (every slot taken, perhaps by clients holding
                    # them on purpose): the view is kept fresh from the snapshot route, which
                    # holds no slot, at each retry (at most ``backoff_max`` apart), so that a
                    # full stream route never makes every writ refused as stale.
                    refused = Unavailable(ReasonCode.LOG_UNAVAILABLE.value, f"/v1/feed/stream: status {response.status_code}")
                    self.poll()
                    raise refused
                self.status = "connected"
                parser = _SseParser()
                behind = 0
                for chunk in response.iter_bytes():
                    if self._stop.is_set():
                        return
                    for event, _id, data in parser.push(chunk):
                        if not data or event not in ("snapshot", "heartbeat"):
                            continue
                        if self.apply_document(data) == "behind":
                            # A change's snapshot may trail its first heartbeat by a moment;
                            # one that never comes is asked for again by resuming (the view
                            # ages meanwhile: fail closed).
                            behind += 1
                            if behind >= _MAX_BEHIND:
                                raise FeedError(f"{behind} heartbeats named a change whose snapshot never came")
                            continue
                        behind = 0
                        progressed[0] = True
            finally:
                self._response = None

    # -- the view -----------------------------------------------------------------------

    def check(self, claims: WritClaims, now: int) -> None:
        """The writ's standing per the view at ``now`` (a :class:`~writ_client.Verifier`'s
        standing check)."""
        with self._lock:
            self._view.check(claims, now)

    def age(self, now: int | None = None) -> int | None:
        """The view's age in seconds, ``None`` before the first snapshot."""
        with self._lock:
            return self._view.age(int(self._clock()) if now is None else now)

    def snapshot_size(self) -> int | None:
        """The size of the snapshot in force (what a resumed stream starts from)."""
        with self._lock:
            return self._view.snapshot_size

    def size(self) -> int:
        """The log size the view reflects (heartbeats included)."""
        with self._lock:
            return self._view.size

    def wait_for(self, predicate: Callable[[FeedView], bool], timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for ``predicate(view)`` to hold (checked after
        each document applied); True if it does."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self._view):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.updated.wait(left)
            return True
