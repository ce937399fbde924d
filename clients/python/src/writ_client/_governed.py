"""``@governed``: a Python function that runs only under a writ. Before each call the
decorator asks the control plane for a decision on (action, resource, arguments); it runs
the function only on allow, then records the outcome (``POST /v1/outcomes``: ``succeeded``
or ``failed``, with the duration and the SHA-256 of the result's RFC 8785 form, as the MCP
gateway records a tool call). Anything else raises :class:`~writ_client.Denied` with the
reason code, and the function's body never runs: a deny, a pending approval
(:class:`~writ_client.ApprovalPending`), a control plane that cannot be reached
(:class:`~writ_client.Unavailable`, ``log.unavailable``), arguments with no canonical JSON
form (``request.malformed``), any unexpected error (``internal``). Works on ``def`` and
``async def`` functions (the control plane is asked from a worker thread, so that the event
loop is never blocked).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from ._client import Client, Decision
from ._digest import canonical_json, sha256_digest
from ._errors import Denied, WritError
from ._reasons import ReasonCode
from ._verifier import Verifier

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("writ_client")

_CURRENT: contextvars.ContextVar[Decision | None] = contextvars.ContextVar("writ_client_current", default=None)


def current_decision() -> Decision | None:
    """Inside a governed function, the decision it runs under (its ``writ``, ``id`` and
    ``log_index``), say to pass the writ on as a ``parent_writ``; ``None`` elsewhere."""
    return _CURRENT.get()


def _default_arguments(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    sig = inspect.signature(fn)
    params = list(sig.parameters)
    # A method's receiver is not an argument the policy can read.
    skip = params[0] if params and params[0] in ("self", "cls") else None

    def arguments(*args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return {k: v for k, v in bound.arguments.items() if k != skip}

    return arguments


def _text(value: str | Callable[..., str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    out = value(*args, **kwargs) if callable(value) else value
    if not isinstance(out, str):
        raise WritError(ReasonCode.REQUEST_MALFORMED.value, "action and resource must be strings")
    return out


def governed(
    client: Client,
    *,
    action: str | Callable[..., str],
    resource: str | Callable[..., str],
    arguments: Callable[..., Mapping[str, Any]] | None = None,
    audience: str | None = None,
    parent_writ: str | Callable[[], str | None] | None = None,
    verifier: Verifier | None = None,
    approval_wait: float = 0.0,
    record_outcome: bool = True,
) -> Callable[[F], F]:
    """Governs a function with ``client``.

    ``action``, ``resource``: strings, or callables given the call's ``(*args, **kwargs)``.
    ``arguments``: a callable given ``(*args, **kwargs)`` returning the arguments object the
    policy sees; by default the call's arguments by parameter name (defaults applied; a
    first parameter named ``self`` or ``cls`` left out).
    ``audience``: the writ's audience (default ``writ-enforcement``). ``parent_writ``: the
    writ this call runs under (a string or a callable), for lineage. ``verifier``: if
    given, the writ is also verified offline for this call before the function runs.
    ``approval_wait``: seconds to wait for an operator when a policy asks for approval
    (``0``: raise :class:`~writ_client.ApprovalPending` at once). ``record_outcome``:
    report the outcome after the call (a failure to report is logged on the
    ``writ_client`` logger, never raised: the function has run).
    """

    def decorate(fn: F) -> F:
        args_of = arguments if arguments is not None else _default_arguments(fn)

        def decide(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Decision, str]:
            try:
                act = _text(action, args, kwargs)
                res = _text(resource, args, kwargs)
                call_args = dict(args_of(*args, **kwargs))
                parent = parent_writ() if callable(parent_writ) else parent_writ
                d = client.authorize(act, res, call_args, audience=audience, parent_writ=parent)
                if d.outcome == "pending" and approval_wait > 0 and d.id is not None:
                    d = client.wait_for_approval(d.id, timeout=approval_wait)
                writ = d.raise_for_deny()
                if verifier is not None:
                    try:
                        verifier.verify(writ, act, res, call_args)
                    except Denied as e:
                        e.decision_id, e.log_index = d.id, d.log_index
                        _record(d, "not_run", None, None, None)
                        raise
                return d, writ
            except Denied:
                raise
            except WritError as e:
                raise Denied(e.reason, e.detail) from e
            except Exception as e:  # anything unexpected before the call: deny, never run
                raise Denied(ReasonCode.INTERNAL.value, f"{type(e).__name__}: {e}") from e

        def _record(d: Decision, status: str, started: float | None, result: Any, error: BaseException | None) -> None:
            if not record_outcome or d.id is None:
                return
            ran_ms = 0 if started is None else int((time.monotonic() - started) * 1000)
            detail: dict[str, Any] = {"duration_ms": ran_ms}
            if status == "succeeded":
                try:
                    detail["result"] = sha256_digest(canonical_json(result))
                except WritError:
                    detail["result"] = "unavailable"
            if error is not None:
                detail["error"] = type(error).__name__
            try:
                client.outcome(d.id, status, detail=json.dumps(detail, separators=(",", ":")))
            except Exception as e:  # the function ran: report the failure, keep its result
                log.warning("writ: the outcome of writ %s (%s) was not recorded: %s", d.id, status, e)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                d, _ = await asyncio.to_thread(decide, args, kwargs)
                token = _CURRENT.set(d)
                started = time.monotonic()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as e:
                    await asyncio.to_thread(_record, d, "failed", started, None, e)
                    raise
                finally:
                    _CURRENT.reset(token)
                await asyncio.to_thread(_record, d, "succeeded", started, result, None)
                return result

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            d, _ = decide(args, kwargs)
            token = _CURRENT.set(d)
            started = time.monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                _record(d, "failed", started, None, e)
                raise
            finally:
                _CURRENT.reset(token)
            _record(d, "succeeded", started, result, None)
            return result

        return cast(F, wrapper)

    return decorate


