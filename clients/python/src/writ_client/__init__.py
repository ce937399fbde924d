"""writ's Python client: ask the control plane for decisions, verify writs offline, and
govern Python functions so that they run only under a writ.

- :class:`Client`: ``authorize`` (``POST /v1/authorize``), ``verify`` (``POST /v1/verify``),
  ``outcome`` (``POST /v1/outcomes``), ``approval`` / ``wait_for_approval``.
- :class:`Verifier`: a writ checked offline for the call about to run, as writ's Rust
  ``writ-verify`` library does (signature by a trusted key, time, audience, RFC 8785
  binding, revocation and quarantine through the signed :class:`Feed`, single use).
- :func:`governed`: a decorator that authorizes before, runs only on allow, records the
  outcome after, and raises :class:`Denied` with the reason code otherwise.

Every refusal carries writ's reason code (:class:`ReasonCode`, docs/reason-codes.md).
"""

from ._client import Approval, Client, Decision, Verification
from ._digest import canonical_json, request_digest
from ._errors import ApiError, ApprovalPending, Denied, Unavailable, WritError, WritRejected
from ._feed import DEFAULT_MAX_STALENESS, FEED_TYP, Feed, FeedDocument, FeedError, FeedVerifier, FeedView, Snapshot
from ._governed import current_decision, governed
from ._keys import KeyCache, KeySet, KeyUse
from ._reasons import ReasonCode
from ._replay import DEFAULT_REPLAY_CAPACITY
from ._verifier import LogRef, Scope, StandingCheck, Verifier, WritClaims

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "Approval",
    "ApprovalPending",
    "Client",
    "DEFAULT_MAX_STALENESS",
    "DEFAULT_REPLAY_CAPACITY",
    "Decision",
    "Denied",
    "FEED_TYP",
    "Feed",
    "FeedDocument",
    "FeedError",
    "FeedVerifier",
    "FeedView",
    "KeyCache",
    "KeySet",
    "KeyUse",
    "LogRef",
    "ReasonCode",
    "Scope",
    "Snapshot",
    "StandingCheck",
    "Unavailable",
    "Verification",
    "Verifier",
    "WritClaims",
    "WritError",
    "WritRejected",
    "canonical_json",
    "current_decision",
    "governed",
    "request_digest",
]
