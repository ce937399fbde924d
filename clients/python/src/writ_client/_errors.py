"""The package's one exception hierarchy. Every refusal carries writ's reason code
(docs/reason-codes.md) in ``reason``, so that callers match on the same strings as the
control plane, the Rust ``writ-verify`` library and the MCP gateway.

::

    WritError                 anything this package refuses or cannot do
    ├── Denied                the call must not run (catch this one to fail closed)
    │   ├── WritRejected      a writ that does not authorize the call (Verifier)
    │   ├── Unavailable       no decision could be had (transport failure, 5xx): a deny
    │   └── ApprovalPending   an operator has not approved it (yet)
    └── ApiError              a route answered an error (4xx) outside a decision
"""

from __future__ import annotations


class WritError(Exception):
    """Base of every error of this package. ``reason`` is a reason code (a string)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = str(reason)
        self.detail = detail


class Denied(WritError):
    """The call must not run. ``reason`` is the primary reason code, ``reasons`` all of them
    (primary first); ``decision_id`` and ``log_index`` say where the control plane recorded
    the decision, when it made one (``None`` for a refusal decided here)."""

    def __init__(
        self,
        reason: str,
        detail: str = "",
        decision_id: str | None = None,
        log_index: int | None = None,
        reasons: list[str] | None = None,
    ) -> None:
        super().__init__(reason, detail)
        self.decision_id = decision_id
        self.log_index = log_index
        self.reasons: list[str] = list(reasons) if reasons else [str(reason)]


class WritRejected(Denied):
    """A writ that does not authorize the call, with the reason code writ's own verifier
    gives (``writ.bad_signature``, ``writ.expired``, ``writ.audience``,
    ``writ.binding_mismatch``, ``writ.revoked``, ``quarantined``, ``writ.replayed``,
    ``request.malformed`` for a call that has no digest, ``internal``)."""


class Unavailable(Denied):
    """No answer could be had from the control plane: unreachable, too slow, a ``5xx``, or
    an answer that is not what the route promises. Treat it as a deny (it is a
    :class:`Denied`, reason ``log.unavailable`` unless the server named another code)."""


class ApprovalPending(Denied):
    """A policy requires an operator's approval and none was given within the wait.
    ``reason`` is ``"pending"`` (the MCP gateway's word for it) and ``decision_id`` the id an
    operator approves (``POST /v1/approvals/{id}/approve``)."""


class ApiError(WritError):
    """A route answered an error outside a decision: ``status`` (HTTP), ``reason`` the
    answer's ``error`` code (a reason code, or ``not_found``), ``detail`` its ``message``."""

    def __init__(self, status: int, reason: str, detail: str = "", error_id: str | None = None) -> None:
        super().__init__(reason, detail)
        self.status = status
        self.error_id = error_id
