//! Human approvals: a decision the policy sends to an operator waits without a writ; only
//! an approval, once, before its deadline and while nothing would deny the request, issues
//! the writ; everything is recorded, survives a restart, and replays.

use serde_json::json;
use writ_core::{ReasonCode, SpiffeId};
use writ_engine::{ApprovalStatus, EngineError, Outcome, replay};

use crate::harness::*;

const OPERATOR: &str = "spiffe://demo.example/operator/alice";

fn big_payment(h: &Harness, agent: &str) -> serde_json::Value {
    request(h, agent, "payment", "payments:stripe", json!({"amount": 2500, "currency": "EUR"}))
}

#[track_caller]
fn assert_pending(d: &writ_engine::Decision) {
    assert_eq!(d.outcome, Outcome::Pending, "{d:?}");
    assert!(d.writ.is_none(), "a pending decision carries no writ");
    assert!(d.reasons.is_empty());
    assert!(d.log_index.is_some(), "a pending decision is recorded");
    assert!(d.detail.contains("payment-needs-approval"), "{}", d.detail);
}

fn answer(h: &Harness, id: &str, approve: bool) -> Result<writ_engine::Approval, EngineError> {
    rt().block_on(h.engine.resolve_approval(id, approve, Some(OPERATOR), "checked the invoice"))
}

#[test]
fn an_approval_issues_the_writ_bound_to_the_request() {
    let h = Harness::new();
    let req = big_payment(&h, "billing-1");
    let d = h.authorize(&req);
    assert_pending(&d);
    let pending = h.engine.approval(&d.id).unwrap();
    assert_eq!(pending.status, ApprovalStatus::Pending);
    assert_eq!(pending.arguments, json!({"amount": 2500, "currency": "EUR"}));
    assert_eq!(h.engine.approvals(true, 10).len(), 1);
    // Nothing to collect before the approval, and the writ id does not verify.
    assert_eq!(h.engine.approved_writ(&d.id).unwrap(), None);

    h.clock.advance(60);
    let approved = answer(&h, &d.id, true).unwrap();
    assert_eq!(approved.status, ApprovalStatus::Approved);
    let resolution = approved.resolution.unwrap();
    assert_eq!(resolution.operator.as_deref(), Some(OPERATOR));
    assert!(resolution.log_index > d.log_index.unwrap());
    assert!(h.engine.approvals(true, 10).is_empty(), "no longer pending");

    let writ = h.engine.approved_writ(&d.id).unwrap().unwrap();
    let v = h.engine.verify(&writ, &digest_of(&req)).unwrap();
    assert_eq!(v.claims.jti, d.id);
    assert_eq!(v.claims.iat, h.now(), "issued at the approval, not at the request");
    assert_eq!(v.claims.log.index, resolution.log_index, "its log claim is the approval entry");
    // The writ is bound to the request: another call does not verify.
    let other = request(&h, "billing-1", "payment", "payments:stripe", json!({"amount": 9000, "currency": "EUR"}));
    assert_eq!(h.engine.verify(&writ, &digest_of(&other)).unwrap_err().reason, ReasonCode::WritBindingMismatch);
    // Answered once.
    assert!(matches!(answer(&h, &d.id, true), Err(EngineError::ApprovalAlreadyAnswered { .. })));
    assert!(matches!(answer(&h, &d.id, false), Err(EngineError::ApprovalAlreadyAnswered { .. })));
}

#[test]
fn a_rejection_issues_nothing() {
    let h = Harness::new();
    let d = h.authorize(&big_payment(&h, "billing-1"));
    assert_pending(&d);
    let rejected = answer(&h, &d.id, false).unwrap();
    assert_eq!(rejected.status, ApprovalStatus::Rejected);
    assert_eq!(h.engine.approved_writ(&d.id).unwrap(), None);
    assert!(matches!(answer(&h, &d.id, true), Err(EngineError::ApprovalAlreadyAnswered { .. })));
    // A rejected decision cannot be a parent: it has no writ to present.
    let mut child = request(&h, "billing-1", "spawn", "agents:pool", json!({"agent": "x"}));
    child["parent"] = json!(d.id);
    assert_denied(&h.authorize(&child), ReasonCode::LineageParentUnknown);
}

#[test]
fn nothing_unknown_late_or_denied_meanwhile_is_approved() {
    let h = Harness::new();
    assert!(matches!(
        answer(&h, "w-unknown", true),
        Err(EngineError::NotFound(writ_engine::Missing::PendingApproval(_)))
    ));
    // A plain allow is not an approval to answer.
    let allowed = h.authorize(&write_request(&h));
    assert_allowed(&allowed);
    assert!(matches!(
        answer(&h, &allowed.id, true),
        Err(EngineError::NotFound(writ_engine::Missing::PendingApproval(_)))
    ));

    // Past the deadline (15 minutes by default).
    let late = h.authorize(&big_payment(&h, "billing-1"));
    assert_pending(&late);
    h.clock.advance(900);
    assert_eq!(h.engine.approval(&late.id).unwrap().status, ApprovalStatus::Expired);
    assert!(matches!(answer(&h, &late.id, true), Err(EngineError::PastDeadline { .. })));

    // The principal was quarantined meanwhile.
    let q = h.authorize(&big_payment(&h, "billing-2"));
    assert_pending(&q);
    let who = SpiffeId::parse("spiffe://demo.example/agent/billing-2").unwrap();
    rt().block_on(h.engine.quarantine(&who, true, Some(OPERATOR), "compromised")).unwrap();
    assert!(matches!(answer(&h, &q.id, true), Err(EngineError::Quarantined { .. })));
    // Rejecting it is still possible.
    assert_eq!(answer(&h, &q.id, false).unwrap().status, ApprovalStatus::Rejected);

    // The policy changed meanwhile: the request must be asked again under the new one.
    let p = h.authorize(&big_payment(&h, "billing-1"));
    assert_pending(&p);
    let starter = writ_policy::starter_bundle().unwrap();
    let (manifest, policies, schema, entities, tests) = starter.parts();
    let newer = writ_policy::Bundle::from_parts(
        &manifest.replace(&format!("\"{}\"", starter.manifest().version), "\"0.0.1-newer\""),
        &policies,
        &schema,
        entities.as_deref(),
        tests.as_deref(),
    )
    .unwrap();
    h.activate(&newer).unwrap();
    assert!(matches!(answer(&h, &p.id, true), Err(EngineError::PolicyChanged { .. })));
    assert_eq!(answer(&h, &p.id, false).unwrap().status, ApprovalStatus::Rejected);
    let fresh = h.authorize(&big_payment(&h, "billing-1"));
    assert_pending(&fresh);
    answer(&h, &fresh.id, true).unwrap();
    assert!(replay(h.engine.log().store().as_ref()).unwrap().mismatches.is_empty());

    // The decision itself was revoked meanwhile.
    let r = h.authorize(&big_payment(&h, "billing-1"));
    assert_pending(&r);
    rt().block_on(h.engine.revoke(&r.id, Some(OPERATOR), "cancelled")).unwrap();
    assert!(matches!(answer(&h, &r.id, true), Err(EngineError::Revoked { .. })));
}

#[test]
fn a_pending_decision_is_no_parent_until_approved() {
    let h = Harness::new();
    let d = h.authorize(&big_payment(&h, "billing-1"));
    assert_pending(&d);
    let mut child = request(&h, "billing-1", "spawn", "agents:pool", json!({"agent": "helper"}));
    child["parent"] = json!(d.id);
    assert_denied(&h.authorize(&child), ReasonCode::LineageParentUnknown);
    answer(&h, &d.id, true).unwrap();
    child["credentials"] = json!({"workload": h.credential("billing-1", Some("billing"))});
    child["parent_writ"] = json!(h.engine.approved_writ(&d.id).unwrap().unwrap());
    assert_allowed(&h.authorize(&child));
}

#[test]
fn approvals_survive_a_restart_and_replay() {
    let h = Harness::new();
    let a = h.authorize(&big_payment(&h, "billing-1"));
    let b = h.authorize(&big_payment(&h, "billing-2"));
    let c = h.authorize(&big_payment(&h, "billing-1"));
    answer(&h, &a.id, true).unwrap();
    answer(&h, &b.id, false).unwrap();
    let writ = h.engine.approved_writ(&a.id).unwrap().unwrap();
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{report:?}");
    assert_eq!(report.approvals, 2);

    let Harness { engine, issuer, policy_key, dir, .. } = h;
    drop(engine);
    let h = Harness::open(dir, Some((issuer, policy_key)));
    assert_eq!(h.engine.approval(&a.id).unwrap().status, ApprovalStatus::Approved);
    assert_eq!(h.engine.approval(&b.id).unwrap().status, ApprovalStatus::Rejected);
    assert_eq!(h.engine.approval(&c.id).unwrap().status, ApprovalStatus::Pending);
    assert_eq!(h.engine.approved_writ(&a.id).unwrap().as_deref(), Some(writ.as_str()), "the same token");
    answer(&h, &c.id, true).unwrap();
}

#[test]
fn replay_flags_an_approval_of_nothing_and_a_swapped_writ() {
    let h = Harness::new();
    let a = h.authorize(&big_payment(&h, "billing-1"));
    answer(&h, &a.id, true).unwrap();
    let size = h.engine.log().size();
    let index = size - 1;
    let text = String::from_utf8(h.engine.log().entries(index, size).unwrap().remove(0)).unwrap();
    assert!(text.contains(r#""kind":"approval""#), "{text}");
    let conn = rusqlite::Connection::open(h.dir.path().join("log.db")).unwrap();
    let tamper = |to: String| {
        conn.execute("UPDATE entries SET data = ?1 WHERE idx = ?2", rusqlite::params![to.as_bytes(), index as i64])
            .unwrap();
        replay(h.engine.log().store().as_ref()).unwrap()
    };
    // An approval that answers a decision that never asked for one.
    let report = tamper(text.replace(&a.id, "w-forged"));
    assert_eq!(report.mismatches.len(), 1, "{report:?}");
    assert_eq!(report.mismatches[0].index, index);
    // An approval whose writ names another principal.
    let report = tamper(text.replace("agent/billing-1", "agent/billing-9"));
    assert_eq!(report.mismatches.len(), 1, "{report:?}");
    // The untampered entry replays clean.
    assert!(tamper(text).mismatches.is_empty());
    // A pending decision whose recorded writ names another principal (which an approval
    // would then carry) is flagged at the decision.
    let pending = d_index(&h, &a.id);
    let text = String::from_utf8(h.engine.log().entries(pending, pending + 1).unwrap().remove(0)).unwrap();
    let forged = text.replacen(
        r#""sub":"spiffe://demo.example/agent/billing-1""#,
        r#""sub":"spiffe://demo.example/agent/billing-9""#,
        1,
    );
    assert_ne!(forged, text);
    conn.execute("UPDATE entries SET data = ?1 WHERE idx = ?2", rusqlite::params![forged.as_bytes(), pending as i64])
        .unwrap();
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.iter().any(|m| m.index == pending), "{report:?}");
}

fn d_index(h: &Harness, id: &str) -> u64 {
    h.engine.approval(id).unwrap().log_index
}

/// Waiting decisions count against rate rules from the moment they are asked: a burst of
/// large payments cannot pile up pending decisions beyond what the rule allows, for an
/// operator to approve past it.
#[test]
fn rate_rules_bound_what_can_wait() {
    let h = Harness::new();
    let asked: Vec<_> = (0..8).map(|_| h.authorize(&big_payment(&h, "billing-1"))).collect();
    for d in &asked[..5] {
        assert_pending(d);
    }
    for d in &asked[5..] {
        assert_denied(d, ReasonCode::PolicyDenied);
        assert_eq!(d.policies, ["payment-rate"]);
    }
    for d in &asked[..5] {
        answer(&h, &d.id, true).unwrap();
    }
    // Approving them does not count them twice.
    h.clock.advance(61);
    assert_pending(&h.authorize(&big_payment(&h, "billing-1")));
}

#[test]
fn an_approved_writ_is_not_handed_out_once_revoked_or_quarantined() {
    let h = Harness::new();
    let a = h.authorize(&big_payment(&h, "billing-1"));
    let b = h.authorize(&big_payment(&h, "billing-2"));
    answer(&h, &a.id, true).unwrap();
    answer(&h, &b.id, true).unwrap();
    rt().block_on(h.engine.revoke(&a.id, Some(OPERATOR), "leaked")).unwrap();
    assert!(matches!(h.engine.approved_writ(&a.id), Err(EngineError::Revoked { .. })));
    let who = SpiffeId::parse("spiffe://demo.example/agent/billing-2").unwrap();
    rt().block_on(h.engine.quarantine(&who, true, Some(OPERATOR), "compromised")).unwrap();
    assert!(matches!(h.engine.approved_writ(&b.id), Err(EngineError::Quarantined { .. })));
    rt().block_on(h.engine.quarantine(&who, false, Some(OPERATOR), "cleared")).unwrap();
    assert!(h.engine.approved_writ(&b.id).unwrap().is_some());
}
