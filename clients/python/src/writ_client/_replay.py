"""Single use: the bounded set of writ ids used at this enforcement point (writ-verify's
``replay`` module). A ``jti`` is forgotten only once its writ can no longer verify anyway
(its ``exp`` plus the skew has passed). When the set is full of writs that could still
verify, a new writ is refused (``writ.replayed``) instead of evicting one: forgetting a live
``jti`` would let it be replayed, so the bound fails closed."""

from __future__ import annotations

import heapq

# The default bound: writs still inside their window at one time.
DEFAULT_REPLAY_CAPACITY = 1 << 20


class ReplayFull(Exception):
    """The set holds ``capacity`` writs that could still verify."""


class Replay:
    """Writ ids used here, each until the time after which its writ cannot verify. Not
    thread-safe on its own (the verifier holds a lock around it)."""

    def __init__(self, capacity: int = DEFAULT_REPLAY_CAPACITY) -> None:
        # INVARIANT: every key of `_used` has a pair (until, jti) in `_expiry` with the same
        # `until`; `_expiry` may also hold stale pairs, skipped when popped.
        self._used: dict[str, int] = {}
        self._expiry: list[tuple[int, str]] = []
        self.capacity = capacity

    def __contains__(self, jti: object) -> bool:
        return jti in self._used

    def __len__(self) -> int:
        return len(self._used)

    def _forget_expired(self, now: int) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            until, jti = heapq.heappop(self._expiry)
            if self._used.get(jti) == until:
                del self._used[jti]

    def insert(self, jti: str, until: int, now: int) -> None:
        """Records ``jti`` as used until ``until``; raises :class:`ReplayFull` when the set
        is full of ids that could still verify at ``now``."""
        self._forget_expired(now)
        if len(self._used) >= self.capacity:
            raise ReplayFull(
                f"the replay cache holds {len(self._used)} writs that could still verify (its capacity): "
                "refusing a new one rather than forgetting one that could be replayed (retry once some expire)"
            )
        self._put(jti, until)

    def _put(self, jti: str, until: int) -> None:
        known = self._used.get(jti)
        if known is not None and known >= until:
            return
        self._used[jti] = until
        heapq.heappush(self._expiry, (until, jti))

    def restore(self, kept: list[tuple[str, int]]) -> None:
        """Takes back ids an earlier run kept, beyond the capacity if need be."""
        for jti, until in kept:
            self._put(jti, until)

    def live(self, now: int) -> list[tuple[str, int]]:
        """The ids that could still verify at ``now``, with their time."""
        return [(j, u) for j, u in self._used.items() if u > now]
