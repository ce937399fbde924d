"""The request digest (the writ's ``req`` claim, docs/writ-format.md): ``sha256:`` and the
lowercase hex SHA-256 of the RFC 8785 (JSON Canonicalization Scheme) form of
``{"action": A, "resource": R, "arguments": G}``, computed with the ``rfc8785`` package.
RFC 8785 refuses what it cannot write exactly (integers beyond ±(2^53 − 1), NaN, keys that
are not strings), and so does writ: such a call has no digest (``request.malformed``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

from ._errors import WritError
from ._reasons import ReasonCode


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 form of ``value``; raises :class:`~writ_client.WritError`
    (``request.malformed``) for a value RFC 8785 cannot write."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
        raise WritError(ReasonCode.REQUEST_MALFORMED.value, f"not canonical JSON (RFC 8785): {e}") from None


def sha256_digest(data: bytes) -> str:
    """``sha256:<64 lowercase hex>``, the form writ writes digests in."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request_digest(action: str, resource: str, arguments: Mapping[str, Any] | None = None) -> str:
    """The ``req`` claim a writ must carry for this call (``arguments`` ``{}`` when none)."""
    if not isinstance(action, str) or not isinstance(resource, str):
        raise WritError(ReasonCode.REQUEST_MALFORMED.value, "action and resource must be strings")
    args: Any = {} if arguments is None else arguments
    if not isinstance(args, Mapping):
        raise WritError(ReasonCode.REQUEST_MALFORMED.value, "arguments must be a JSON object (a mapping)")
    return sha256_digest(canonical_json({"action": action, "resource": resource, "arguments": dict(args)}))
