"""@governed: allowed calls run and their outcome is in the log; denied calls never run;
an unreachable control plane is a deny; sync and async functions alike."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
import rfc8785

from conftest import ControlPlane, closed_port_url
from writ_client import (
    ApprovalPending,
    Client,
    Decision,
    Denied,
    Unavailable,
    Verifier,
    WritRejected,
    current_decision,
    governed,
)


def outcome_of(cp: ControlPlane, d: Decision) -> dict[str, Any]:
    assert d.log_index is not None
    found = [e for e in cp.entries(d.log_index) if e["kind"] == "outcome" and e["jti"] == d.id]
    assert len(found) == 1, found
    return found[0]


def test_allow_runs_and_records_the_outcome(cp: ControlPlane, client: Client) -> None:
    seen: list[Decision | None] = []

    @governed(client, action="tool:calc/add", resource="tool:calc")
    def add(a: int, b: int = 0) -> dict[str, int]:
        seen.append(current_decision())
        return {"sum": a + b}

    assert add(2, b=3) == {"sum": 5}
    assert add.__name__ == "add"
    d = seen[0]
    assert d is not None and d.allowed and current_decision() is None
    entry = outcome_of(cp, d)
    assert entry["status"] == "succeeded" and entry["reporter"] == "spiffe://demo.example/agent/py-1"
    detail = json.loads(entry["detail"])
    assert detail["result"] == "sha256:" + hashlib.sha256(rfc8785.dumps({"sum": 5})).hexdigest()
    assert isinstance(detail["duration_ms"], int)


def test_a_failing_function_records_failed(cp: ControlPlane, client: Client) -> None:
    seen: list[Decision | None] = []

    @governed(client, action="tool:calc/divide", resource="tool:calc")
    def divide(a: int, b: int) -> float:
        seen.append(current_decision())
        return a / b

    with pytest.raises(ZeroDivisionError):
        divide(1, 0)
    d = seen[0]
    assert d is not None
    entry = outcome_of(cp, d)
    assert entry["status"] == "failed" and json.loads(entry["detail"])["error"] == "ZeroDivisionError"


def test_deny_never_runs_the_body(client: Client) -> None:
    deleted: list[str] = []

    @governed(client, action="tool:files/delete", resource="tool:files")
    def delete(path: str) -> None:
        deleted.append(path)

    with pytest.raises(Denied) as e:
        delete("/etc/passwd")
    assert deleted == []
    assert e.value.reason == "policy.denied" and e.value.decision_id is not None
    assert isinstance(e.value.log_index, int)


def test_pending_approval_never_runs_the_body(client: Client) -> None:
    paid: list[int] = []

    @governed(client, action="tool:pay/send", resource="tool:pay")
    def send(amount: int, to: str) -> None:
        paid.append(amount)

    with pytest.raises(ApprovalPending) as e:
        send(10, "mallory")
    assert paid == [] and e.value.reason == "pending" and e.value.decision_id is not None


def test_control_plane_down_is_a_deny() -> None:
    ran: list[int] = []
    with Client(closed_port_url(), credential="x", timeout=1) as down:

        @governed(down, action="tool:calc/add", resource="tool:calc")
        def add(a: int, b: int) -> int:
            ran.append(1)
            return a + b

        with pytest.raises(Denied) as e:
            add(1, 2)
    assert ran == [] and isinstance(e.value, Unavailable) and e.value.reason == "log.unavailable"


def test_arguments_mapping_and_callables(cp: ControlPlane, client: Client) -> None:
    calls: list[str] = []

    @governed(
        client,
        action=lambda tool, **_: f"tool:{tool}/say",
        resource=lambda tool, **_: f"tool:{tool}",
        arguments=lambda tool, message, secret: {"message": message},
    )
    def say(tool: str, message: str, secret: str) -> str:
        calls.append(message)
        return message

    assert say("echo", message="hi", secret="not for the policy") == "hi"
    # A call the policy cannot read (no canonical JSON) is refused before anything runs.
    with pytest.raises(Denied) as e:
        say("echo", message=float("nan"), secret="")  # type: ignore[arg-type]
    assert e.value.reason == "request.malformed" and calls == ["hi"]


def test_methods_leave_their_receiver_out(client: Client) -> None:
    class Calculator:
        def __init__(self) -> None:
            self.calls = 0

        @governed(client, action="tool:calc/add", resource="tool:calc")
        def add(self, a: int, b: int) -> int:
            self.calls += 1
            d = current_decision()
            assert d is not None and d.writ is not None
            return a + b

    calc = Calculator()
    assert calc.add(4, 5) == 9 and calc.calls == 1


def test_offline_verification_before_running(cp: ControlPlane, client: Client, verifier: Verifier) -> None:
    ran: list[int] = []

    @governed(client, action="tool:calc/add", resource="tool:calc", verifier=verifier)
    def add(a: int, b: int) -> int:
        ran.append(1)
        return a + b

    assert add(1, 1) == 2 and ran == [1]

    @governed(client, action="tool:calc/add", resource="tool:calc", audience="elsewhere", verifier=verifier)
    def add_elsewhere(a: int, b: int) -> int:
        ran.append(2)
        return a + b

    with pytest.raises(WritRejected) as e:
        add_elsewhere(1, 1)
    assert e.value.reason == "writ.audience" and ran == [1]
    refused = Decision("allow", e.value.decision_id, log_index=e.value.log_index)
    assert outcome_of(cp, refused)["status"] == "not_run"


def test_async_functions(cp: ControlPlane, client: Client) -> None:
    said: list[str] = []
    deleted: list[str] = []

    @governed(client, action="tool:echo/say", resource="tool:echo")
    async def say(message: str) -> str:
        await asyncio.sleep(0)
        said.append(message)
        d = current_decision()
        assert d is not None and d.allowed
        return message.upper()

    @governed(client, action="tool:files/delete", resource="tool:files")
    async def delete(path: str) -> None:
        deleted.append(path)

    async def main() -> None:
        assert await asyncio.gather(say("a"), say("b")) == ["A", "B"]
        with pytest.raises(Denied) as e:
            await delete("/")
        assert e.value.reason == "policy.denied"

    asyncio.run(main())
    assert sorted(said) == ["a", "b"] and deleted == []
