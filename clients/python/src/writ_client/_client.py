"""The control plane over its HTTP API (docs/http-api.md), with httpx: one decision
(``POST /v1/authorize``), the renewal of a writ before it expires (``POST /v1/renew``), the
server-side verification of a writ (``POST /v1/verify``), an
execution's outcome (``POST /v1/outcomes``), a human approval (``GET /v1/approvals/{id}``),
and the public keys (``/.well-known/jwks.json``, ``/.well-known/writ-feed-keys.json``).

Fail closed: a control plane that cannot be reached, does not answer within the timeout,
answers ``5xx`` or answers something that is not what the route promises raises
:class:`~writ_client.Unavailable`, a :class:`~writ_client.Denied` (``log.unavailable``, as
the MCP gateway answers), never a silent pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ._digest import request_digest
from ._errors import ApiError, ApprovalPending, Denied, Unavailable, WritError
from ._keys import KeyCache, KeyUse
from ._reasons import ReasonCode

Credential = "str | Callable[[], str]"

_REASONS = {r.value for r in ReasonCode}

@dataclass(frozen=True)
class Decision:
    """The control plane's answer to one execution request.

    ``outcome`` is ``allow`` (with ``writ``), ``deny`` (with ``reasons``, primary first) or
    ``pending`` (an operator must approve decision ``id``).
    """

    outcome: str
    id: str | None
    reasons: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    detail: str = ""
    log_index: int | None = None
    writ: str | None = None
    explanation: dict[str, Any] | None = None
    request_id: str | None = None

    @property
    def allowed(self) -> bool:
        """True for an allow that carries its writ."""
        return self.outcome == "allow" and self.writ is not None

    @property
    def reason(self) -> str | None:
        """The primary reason code of a deny, ``"pending"`` for a pending decision, ``None``
        for an allow."""
        if self.outcome == "pending":
            return "pending"
        return self.reasons[0] if self.reasons else (None if self.outcome == "allow" else ReasonCode.INTERNAL.value)

    def raise_for_deny(self) -> str:
        """The writ of an allow; raises :class:`~writ_client.Denied` (or
        :class:`~writ_client.ApprovalPending`) otherwise."""
        if self.allowed and self.writ is not None:
            return self.writ
        if self.outcome == "pending":
            raise ApprovalPending("pending", self.detail or "an operator must approve it", self.id, self.log_index)
        reason = self.reason or ReasonCode.INTERNAL.value
        raise Denied(reason, self.detail, self.id, self.log_index, self.reasons or [reason])

@dataclass(frozen=True)
class Verification:
    """The answer of ``POST /v1/verify``: ``ok`` with the writ's ``claims``, or the
    ``reason`` code and ``detail``."""

    ok: bool
    claims: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None

@dataclass(frozen=True)
class Approval:
    """Where one approval stands (``GET /v1/approvals/{id}``): ``status`` is ``pending``,
    ``approved`` (with ``writ``, for the workload that asked), ``rejected`` or ``expired``;
    ``raw`` is the whole answer."""

    id: str
    status: str
    writ: str | None
    log_index: int | None
    raw: dict[str, Any]

def _opt_int(v: Any) -> int | None:
    return v if type(v) is int else None

def _str_list(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []

class Client:
    """The control plane at ``base_url`` (``http://127.0.0.1:7070``).

    ``credential``: the workload credential (a JWT) the agent acts with, or a callable that
    returns the current one (asked before each request; after an ``identity.expired`` deny
    it is asked once more and the request retried). ``timeout``: seconds one request may
    take (connect, send, answer). ``transport``: an httpx transport, for tests.
    """

    def __init__(
        self,
        base_url: str,
        credential: str | Callable[[], str] | None = None,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credential = credential
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------

    def _token(self) -> str | None:
        c = self._credential
        if c is None or isinstance(c, str):
            return c.strip() if c is not None else None  # a JWT has no whitespace: a file's newline goes
        try:
            token = c()
        except Exception as e:  # a credential source is user code
            raise Denied(ReasonCode.IDENTITY_MISSING.value, f"the credential source failed: {e}") from e
        if not isinstance(token, str):
            raise Denied(ReasonCode.IDENTITY_MISSING.value, "the credential source gave no string")
        return token.strip()

    def _send(self, method: str, path: str, *, body: Any = None, bearer: str | None = None) -> httpx.Response:
        headers = {"accept": "application/json"}
        if bearer is not None:
            headers["authorization"] = f"Bearer {bearer}"
        try:
            r = self._http.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException:
            raise Unavailable(
                ReasonCode.LOG_UNAVAILABLE.value, f"the control plane did not answer {path} within {self.timeout} s"
            ) from None
        except httpx.HTTPError as e:
            raise Unavailable(ReasonCode.LOG_UNAVAILABLE.value, f"the control plane is unreachable ({e})") from None
        if r.status_code >= 500:
            err = self._error_body(r)
            code = err.get("error")
            raise Unavailable(
                code if isinstance(code, str) and code in _REASONS else ReasonCode.LOG_UNAVAILABLE.value,
                f"the control plane answered {r.status_code}: {err.get('message') or 'no decision'}",
            )
        return r

    @staticmethod
    def _error_body(r: httpx.Response) -> dict[str, Any]:
        try:
            v = r.json()
        except ValueError:
            return {}
        return v if isinstance(v, dict) else {}

    def _json(self, r: httpx.Response, what: str) -> dict[str, Any]:
        if r.status_code >= 400:
            err = self._error_body(r)
            code = err.get("error")
            raise ApiError(
                r.status_code,
                code if isinstance(code, str) else ReasonCode.INTERNAL.value,
                str(err.get("message") or f"{what} answered {r.status_code}"),
                err.get("error_id") if isinstance(err.get("error_id"), str) else None,
            )
        try:
            v = r.json()
        except ValueError:
            raise Unavailable(ReasonCode.INTERNAL.value, f"{what}: the answer is not JSON") from None
        if not isinstance(v, dict):
            raise Unavailable(ReasonCode.INTERNAL.value, f"{what}: the answer is not a JSON object")
        return v

    # -- decisions ----------------------------------------------------------------------

    def authorize(
        self,
        action: str,
        resource: str,
        arguments: Mapping[str, Any] | None = None,
        audience: str | None = None,
        parent_writ: str | None = None,
        attestation: str | None = None,
        *,
        delegation: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """Asks for one decision (``POST /v1/authorize``) and returns it, whatever it is.

        Raises :class:`~writ_client.Unavailable` when no decision could be had,
        :class:`~writ_client.ApiError` for a request the control plane refused
        (``request.malformed``), and :class:`~writ_client.WritError`
        (``request.malformed``) for arguments that are not canonical JSON, before sending.
        """
        args = dict(arguments) if arguments is not None else {}
        request_digest(action, resource, args)  # refuses what has no canonical form
        renewed = False
        while True:
            body: dict[str, Any] = {"action": action, "resource": resource, "arguments": args}
            token = self._token()
            creds: dict[str, str] = {}
            if token is not None:
                creds["workload"] = token
            if delegation is not None:
                creds["delegation"] = delegation
            if creds:
                body["credentials"] = creds
            for name, value in (
                ("audience", audience),
                ("parent_writ", parent_writ),
                ("attestation", attestation),
                ("request_id", request_id),
            ):
                if value is not None:
                    body[name] = value
            d = self._decision(self._json(self._send("POST", "/v1/authorize", body=body), "/v1/authorize"))
            if (
                d.outcome == "deny"
                and d.reason == ReasonCode.IDENTITY_EXPIRED.value
                and callable(self._credential)
                and not renewed
            ):
                renewed = True
                continue
            return d

    def renew(
        self,
        writ: str,
        attestation: str | None = None,
        *,
        delegation: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """Renews ``writ`` before it expires (``POST /v1/renew``) and returns the decision,
        whatever it is: the writ's recorded request decided again under the bundle active
        now, for the client's own credential (the writ's ``sub``). On allow, ``writ`` is the
        new writ (new ``jti``, same ``req``, ``par`` and ``root``, a later ``exp``). A deny is
        a refusal (``policy.denied``, ``writ.expired``, ``writ.revoked``, ``writ.replayed``
        for a writ already renewed, ``writ.binding_mismatch`` for another principal's writ,
        ``quarantined``, …): the execution's authority ends with the writ's ``exp``.

        Raises :class:`~writ_client.Unavailable` when no decision could be had.
        """
        renewed = False
        while True:
            body: dict[str, Any] = {"writ": writ}
            token = self._token()
            creds: dict[str, str] = {}
            if token is not None:
                creds["workload"] = token
            if delegation is not None:
                creds["delegation"] = delegation
            if creds:
                body["credentials"] = creds
            for name, value in (("attestation", attestation), ("request_id", request_id)):
                if value is not None:
                    body[name] = value
            d = self._decision(self._json(self._send("POST", "/v1/renew", body=body), "/v1/renew"))
            if (
                d.outcome == "deny"
                and d.reason == ReasonCode.IDENTITY_EXPIRED.value
                and callable(self._credential)
                and not renewed
            ):
                renewed = True
                continue
            return d

    @staticmethod
    def _decision(v: dict[str, Any]) -> Decision:
        outcome, id_ = v.get("outcome"), v.get("id")
        writ = v.get("writ")
        if outcome not in ("allow", "deny", "pending") or (outcome != "deny" and not isinstance(id_, str)):
            raise Unavailable(ReasonCode.INTERNAL.value, "a decision without a known outcome and id")
        if outcome == "allow" and not isinstance(writ, str):
            raise Unavailable(ReasonCode.INTERNAL.value, "a decision allow without a writ")
        explanation, detail, request_id = v.get("explanation"), v.get("detail"), v.get("request_id")
        return Decision(
            outcome=outcome,
            id=id_ if isinstance(id_, str) else None,
            reasons=_str_list(v.get("reasons")),
            policies=_str_list(v.get("policies")),
            detail=detail if isinstance(detail, str) else "",
            log_index=_opt_int(v.get("log_index")),
            writ=writ if outcome == "allow" else None,
            explanation=explanation if isinstance(explanation, dict) else None,
            request_id=request_id if isinstance(request_id, str) else None,
        )

    def verify(self, writ: str, action: str, resource: str, arguments: Mapping[str, Any] | None = None) -> Verification:
        """Asks the control plane whether ``writ`` authorizes the call (``POST /v1/verify``:
        all six checks, single use at that control plane)."""
        body = {"writ": writ, "request": {"action": action, "resource": resource, "arguments": dict(arguments or {})}}
        v = self._json(self._send("POST", "/v1/verify", body=body), "/v1/verify")
        ok = v.get("ok")
        if not isinstance(ok, bool):
            raise Unavailable(ReasonCode.INTERNAL.value, "/v1/verify: an answer without ok")
        claims = v.get("claims")
        return Verification(
            ok=ok,
            claims=claims if isinstance(claims, dict) else None,
            reason=v.get("reason") if isinstance(v.get("reason"), str) else None,
            detail=v.get("detail") if isinstance(v.get("detail"), str) else None,
        )

    def outcome(self, jti: str, status: str, *, exit_code: int | None = None, detail: str = "") -> int:
        """Records how the execution under writ ``jti`` ended (``succeeded``, ``failed``,
        ``not_run``, or ``stopped`` when its authority ended while it ran; once per writ) with
        the client's credential; returns the log index of the entry. A second report for the
        same writ is :class:`~writ_client.ApiError` ``409``."""
        if status not in ("succeeded", "failed", "not_run", "stopped"):
            raise WritError(
                ReasonCode.REQUEST_MALFORMED.value, f"status {status!r}: succeeded, failed, not_run or stopped"
            )
        body: dict[str, Any] = {"jti": jti, "status": status, "detail": detail}
        if exit_code is not None:
            body["exit_code"] = exit_code
        v = self._json(self._send("POST", "/v1/outcomes", body=body, bearer=self._token()), "/v1/outcomes")
        index = _opt_int(v.get("log_index"))
        if index is None:
            raise Unavailable(ReasonCode.INTERNAL.value, "/v1/outcomes: an answer without log_index")
        return index

    # -- approvals ----------------------------------------------------------------------

    def approval(self, decision_id: str) -> Approval:
        """Where the approval of pending decision ``decision_id`` stands (its writ once
        approved). Raises :class:`~writ_client.ApiError` (``404`` unknown, ``403`` another
        workload's, ``409`` approved but revoked or quarantined since)."""
        path = f"/v1/approvals/{quote(decision_id, safe='')}"
        v = self._json(self._send("GET", path, bearer=self._token()), path)
        status = v.get("status")
        if status not in ("pending", "approved", "rejected", "expired"):
            raise Unavailable(ReasonCode.INTERNAL.value, f"{path}: an approval without a known status")
        writ = v.get("writ")
        return Approval(
            id=decision_id,
            status=status,
            writ=writ if isinstance(writ, str) else None,
            log_index=_opt_int(v.get("log_index")),
            raw=v,
        )

    def wait_for_approval(self, decision_id: str, timeout: float = 60.0, poll_interval: float = 0.5) -> Decision:
        """Waits up to ``timeout`` seconds for an operator's answer: an allow with the writ
        once approved, a deny (``policy.denied``) once rejected or expired or when the
        approval can no longer be had (``409``), a ``pending`` decision when the wait ran
        out. Transport failures while waiting are retried until the end of the wait."""
        deadline = time.monotonic() + timeout
        detail = "waiting for an operator's approval"
        log_index: int | None = None
        while True:
            try:
                a = self.approval(decision_id)
            except Unavailable as e:
                detail = f"waiting for an operator's approval (last poll: {e.detail})"
            except ApiError as e:
                reason = e.reason if e.reason in _REASONS else ReasonCode.POLICY_DENIED.value
                return Decision("deny", decision_id, [reason], detail=e.detail, log_index=log_index)
            else:
                log_index = a.log_index
                if a.status == "approved":
                    if a.writ is None:
                        raise Unavailable(ReasonCode.INTERNAL.value, "an approved decision without its writ")
                    return Decision("allow", decision_id, [], detail="approved", log_index=a.log_index, writ=a.writ)
                if a.status in ("rejected", "expired"):
                    why = a.raw.get("resolution", {}) if isinstance(a.raw.get("resolution"), dict) else {}
                    text = (
                        f"an operator rejected the approval{': ' + why['reason'] if isinstance(why.get('reason'), str) else ''}"
                        if a.status == "rejected"
                        else "no operator approved it before its deadline"
                    )
                    return Decision("deny", decision_id, [ReasonCode.POLICY_DENIED.value], detail=text, log_index=a.log_index)
            if time.monotonic() + poll_interval >= deadline:
                return Decision("pending", decision_id, [], detail=detail, log_index=log_index)
            time.sleep(poll_interval)

    # -- keys ---------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The writ signing keys (``GET /.well-known/jwks.json``)."""
        return self._json(self._send("GET", "/.well-known/jwks.json"), "/.well-known/jwks.json")

    def feed_keys(self) -> dict[str, Any]:
        """The revocation feed's keys (``GET /.well-known/writ-feed-keys.json``)."""
        return self._json(self._send("GET", "/.well-known/writ-feed-keys.json"), "/.well-known/writ-feed-keys.json")

    def key_cache(self, **kwargs: Any) -> KeyCache:
        """A :class:`~writ_client.KeyCache` of the writ keys fetched from this control
        plane (keyword arguments: ``max_age``, ``min_interval``, ``clock``)."""
        return KeyCache(self.jwks, KeyUse.WRIT, **kwargs)
