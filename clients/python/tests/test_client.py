"""Client: decisions, the server's verification, approvals, outcomes, and failing closed
when the control plane cannot be reached."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ControlPlane, closed_port_url
from writ_client import (
    ApiError,
    ApprovalPending,
    Client,
    Denied,
    ReasonCode,
    Unavailable,
    Verifier,
    WritError,
    request_digest,
)

REPO = Path(__file__).resolve().parents[3]
ADD = ("tool:calc/add", "tool:calc", {"a": 2, "b": 3})


def test_reason_codes_are_writ_cores() -> None:
    source = (REPO / "crates/writ-core/src/reason.rs").read_text()
    rust = set(re.findall(r'=> "([a-z_.]+)"', source))
    assert rust and rust == {r.value for r in ReasonCode}


def test_allow_then_verify_offline(cp: ControlPlane, client: Client, verifier: Verifier) -> None:
    d = client.authorize(*ADD)
    assert d.outcome == "allow" and d.allowed and d.reason is None
    assert d.writ is not None and d.id is not None and d.id.startswith("w-")
    assert isinstance(d.log_index, int)
    claims = verifier.verify(d.writ, *ADD)
    assert claims.jti == d.id and claims.root == d.id and claims.par is None
    assert (claims.act, claims.res, claims.aud) == ("tool:calc/add", "tool:calc", "writ-enforcement")
    assert claims.req == request_digest(*ADD)
    assert claims.sub == "spiffe://demo.example/agent/py-1"
    assert claims.log.index == d.log_index and claims.scp.zone == "tools"


def test_lineage_by_possession(client: Client, verifier: Verifier) -> None:
    parent = client.authorize(*ADD)
    assert parent.writ is not None
    child = client.authorize("tool:echo/say", "tool:echo", {"message": "hi"}, parent_writ=parent.writ)
    assert child.writ is not None
    claims = verifier.verify(child.writ, "tool:echo/say", "tool:echo", {"message": "hi"})
    assert claims.par == parent.id and claims.root == parent.id and claims.dep == 1


def test_verify_over_the_api(client: Client) -> None:
    d = client.authorize(*ADD)
    assert d.writ is not None
    other = client.verify(d.writ, "tool:calc/add", "tool:calc", {"a": 2, "b": 4})
    assert not other.ok and other.reason == "writ.binding_mismatch"
    first = client.verify(d.writ, *ADD)
    assert first.ok and first.claims is not None and first.claims["jti"] == d.id
    again = client.verify(d.writ, *ADD)
    assert not again.ok and again.reason == "writ.replayed"


def test_deny_is_a_decision(client: Client) -> None:
    d = client.authorize("tool:files/delete", "tool:files", {"path": "/etc/passwd"})
    assert d.outcome == "deny" and not d.allowed and d.writ is None
    assert d.reason == "policy.denied" and d.reasons[0] == "policy.denied"
    assert isinstance(d.log_index, int) and d.id is not None
    assert d.explanation is not None
    assert [f["policy"] for f in d.explanation["forbidden_by"]] == ["files-delete-never"]
    with pytest.raises(Denied) as e:
        d.raise_for_deny()
    assert e.value.reason == "policy.denied" and e.value.decision_id == d.id and e.value.log_index == d.log_index


def test_undeclared_action_is_denied(client: Client) -> None:
    d = client.authorize("tool:calc/sqrt", "tool:calc", {"x": 4})
    assert d.outcome == "deny" and d.reason == "policy.denied"


def test_credentials(cp: ControlPlane) -> None:
    with Client(cp.url, credential="not-a-jwt") as bad:
        d = bad.authorize(*ADD)
        assert d.outcome == "deny" and d.reason is not None and d.reason.startswith("identity.")
    with Client(cp.url) as anonymous:
        assert anonymous.authorize(*ADD).reason == "identity.missing"
    with Client(cp.url, credential=lambda: cp.agent) as from_source:
        assert from_source.authorize(*ADD).allowed

    def broken() -> str:
        raise OSError("no such file")

    with Client(cp.url, credential=broken) as failing, pytest.raises(Denied) as e:
        failing.authorize(*ADD)
    assert e.value.reason == "identity.missing"


def test_arguments_without_canonical_form_are_refused_before_sending(client: Client) -> None:
    for args in ({"n": 2**53}, {"x": float("nan")}, {"b": b"bytes"}):
        with pytest.raises(WritError) as e:
            client.authorize("tool:calc/add", "tool:calc", args)
        assert e.value.reason == "request.malformed"


def test_malformed_request(client: Client) -> None:
    d = client.authorize("", "tool:calc", {})
    assert d.outcome == "deny" and d.reason == "request.malformed", d


def test_approval_granted(cp: ControlPlane, client: Client, verifier: Verifier) -> None:
    call = ("tool:pay/send", "tool:pay", {"amount": 5, "to": "bob"})
    d = client.authorize(*call)
    assert d.outcome == "pending" and d.reason == "pending" and d.writ is None and d.id is not None
    with pytest.raises(ApprovalPending) as e:
        d.raise_for_deny()
    assert e.value.decision_id == d.id and isinstance(e.value, Denied)
    assert client.approval(d.id).status == "pending"
    assert cp.operator_call("POST", f"/v1/approvals/{d.id}/approve", {"reason": "pytest"}).status_code == 200
    approved = client.wait_for_approval(d.id, timeout=5, poll_interval=0.1)
    assert approved.allowed and approved.writ is not None
    assert verifier.verify(approved.writ, *call).jti == d.id


def test_approval_rejected_or_not_given(cp: ControlPlane, client: Client) -> None:
    call = ("tool:pay/send", "tool:pay", {"amount": 7, "to": "eve"})
    waiting = client.authorize(*call)
    assert waiting.id is not None
    ran_out = client.wait_for_approval(waiting.id, timeout=0.3, poll_interval=0.1)
    assert ran_out.outcome == "pending" and ran_out.id == waiting.id
    assert cp.operator_call("POST", f"/v1/approvals/{waiting.id}/reject", {"reason": "no"}).status_code == 200
    rejected = client.wait_for_approval(waiting.id, timeout=5, poll_interval=0.1)
    assert rejected.outcome == "deny" and rejected.reason == "policy.denied" and "rejected" in rejected.detail
    with pytest.raises(ApiError) as e:
        client.approval("w-00000000000000000000000000000000")
    assert e.value.status == 404


def test_outcome_recorded_once(cp: ControlPlane, client: Client) -> None:
    d = client.authorize(*ADD)
    assert d.id is not None and d.log_index is not None
    index = client.outcome(d.id, "succeeded", exit_code=0, detail="five")
    assert index > d.log_index
    entry = cp.entries(index)[0]
    assert entry["kind"] == "outcome" and entry["jti"] == d.id and entry["status"] == "succeeded"
    assert entry["reporter"] == "spiffe://demo.example/agent/py-1" and entry["detail"] == "five"
    with pytest.raises(ApiError) as e:
        client.outcome(d.id, "failed")
    assert e.value.status == 409
    with pytest.raises(WritError):
        client.outcome(d.id, "maybe")


def test_control_plane_down_is_unavailable() -> None:
    with Client(closed_port_url(), credential="x", timeout=1) as down:
        with pytest.raises(Unavailable) as e:
            down.authorize(*ADD)
        assert e.value.reason == "log.unavailable" and isinstance(e.value, Denied)
        with pytest.raises(Unavailable):
            down.verify("a.b.c", *ADD)
        with pytest.raises(Unavailable):
            down.jwks()


def test_renewal_refused_for_another_principal(cp: ControlPlane, client: Client) -> None:
    d = client.authorize(*ADD)
    assert d.writ is not None
    other = cp.issue("spiffe://demo.example/agent/py-2", "--zone", "tools")
    with Client(cp.url, credential=other) as thief:
        r = thief.renew(d.writ)
    assert r.outcome == "deny" and r.reason == "writ.binding_mismatch" and r.writ is None
    assert isinstance(r.log_index, int)


def test_renewal_refused_for_a_tampered_writ(client: Client) -> None:
    d = client.authorize(*ADD)
    assert d.writ is not None
    head, payload, sig = d.writ.split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}AAAA"
    r = client.renew(tampered)
    assert r.outcome == "deny" and r.reason == "writ.bad_signature"


def test_renewal_granted_and_linked(cp: ControlPlane, client: Client, verifier: Verifier) -> None:
    d = client.authorize(*ADD)
    assert d.writ is not None and d.id is not None
    r = client.renew(d.writ)
    assert r.outcome == "allow" and r.writ is not None and r.id is not None and r.id != d.id
    claims = verifier.verify(r.writ, *ADD)
    assert claims.jti == r.id and claims.root == d.id and claims.req == request_digest(*ADD)
    entry = cp.entries(r.log_index or 0, most=1)[0]
    assert entry["kind"] == "decision" and entry["renews"] == d.id
    # A writ renews once: its renewal renews next.
    again = client.renew(d.writ)
    assert again.outcome == "deny" and again.reason == "writ.replayed"
    chained = client.renew(r.writ)
    assert chained.outcome == "allow"
    lineage = cp.operator_call("GET", f"/v1/lineage/{chained.id}").json()
    renews = {n["id"]: n.get("renews") for n in lineage["nodes"]}
    assert renews[r.id] == d.id and renews[chained.id] == r.id and lineage["root"] == d.id


def test_renewal_unreachable_is_unavailable() -> None:
    with Client(closed_port_url(), credential="x", timeout=1) as c, pytest.raises(Unavailable) as e:
        c.renew("a.b.c")
    assert e.value.reason == ReasonCode.LOG_UNAVAILABLE.value
