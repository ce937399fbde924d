//! `writ policy replay`: a candidate bundle against the recorded history reports exactly the
//! decisions it would change, counts every one, enforces nothing, and refuses a log it
//! cannot read rather than report on part of it.

use serde_json::json;
use writ_core::ReasonCode;
use writ_engine::{CandidateRange, CandidateReport, EngineError, Outcome, Resolved, replay, replay_candidate};
use writ_log::Store;
use writ_policy::{Bundle, CompiledBundle, starter_bundle};

use crate::harness::*;

/// The starter bundle with one policy replaced by `from` → `to`.
fn starter_with(from: &str, to: &str) -> CompiledBundle {
    starter_bundle_with(from, to, "2.0.0-rc1").compile().unwrap()
}

/// The starter bundle's text with one policy replaced, as a bundle.
fn starter_bundle_with(from: &str, to: &str, version: &str) -> Bundle {
    let (manifest, policies, schema, entities, tests) = starter_bundle().unwrap().parts();
    assert!(policies.contains(from), "the starter bundle no longer has {from:?}");
    Bundle::from_parts(
        &manifest.replace(&format!("\"{}\"", starter_bundle().unwrap().manifest().version), &format!("\"{version}\"")),
        &policies.replace(from, to),
        &schema,
        entities.as_deref(),
        tests.as_deref(),
    )
    .unwrap()
}

fn run(store: &dyn Store, candidate: &CompiledBundle, from: u64, to: Option<u64>, limit: usize) -> CandidateReport {
    replay_candidate(store, candidate, &CandidateRange { from, to, decided_by: None, limit }).unwrap()
}

const READ_ANYWHERE: &str = r#"permit (principal, action == Writ::Action::"read", resource);"#;

#[test]
fn a_candidate_reports_exactly_the_decisions_it_would_change() {
    let h = Harness::new();
    // Reads in two zones, a write inside the agent's zone, a write outside it, a forged
    // credential: five decisions.
    let read_billing = h.authorize(&request(&h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/a"})));
    let read_support = h.authorize(&request(&h, "billing-1", "read", "fs:/zones/support", json!({"path": "/b"})));
    let write_own = h.authorize(&write_request(&h));
    let write_other =
        h.authorize(&request(&h, "billing-1", "write", "fs:/zones/support", json!({"path": "/zones/support/x"})));
    let mut forged = request(&h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/a"}));
    let token = forged["credentials"]["workload"].as_str().unwrap().to_owned();
    forged["credentials"]["workload"] = json!(format!("{}AAAA", &token[..token.len() - 4]));
    let bad = h.authorize(&forged);
    assert_allowed(&read_billing);
    assert_allowed(&read_support);
    assert_allowed(&write_own);
    assert_denied(&write_other, ReasonCode::PolicyDenied);
    assert_denied(&bad, ReasonCode::IdentityBadSignature);
    let size_before = h.engine.log().size();
    let store = h.engine.log().store();

    // The active bundle itself changes nothing.
    let same = starter_bundle().unwrap().compile().unwrap();
    let r = run(store.as_ref(), &same, 0, None, 100);
    assert_eq!((r.decisions, r.changed, r.unchanged), (5, 0, 5), "{r:#?}");
    assert!(r.changes.is_empty() && r.transitions.is_empty());

    // Reads outside the billing zone no longer allowed: exactly one decision changes.
    let narrower = starter_with(
        READ_ANYWHERE,
        r#"permit (principal, action == Writ::Action::"read", resource) when { resource has zone && resource.zone == "billing" };"#,
    );
    let r = run(store.as_ref(), &narrower, 0, None, 100);
    assert_eq!((r.decisions, r.changed, r.unchanged), (5, 1, 4), "{r:#?}");
    let c = &r.changes[0];
    assert_eq!(c.id, read_support.id);
    assert_eq!(Some(c.index), read_support.log_index);
    assert_eq!((c.recorded.outcome, c.candidate.outcome), (Outcome::Allow, Outcome::Deny));
    assert_eq!(c.candidate.reason, Some(ReasonCode::PolicyDenied));
    assert_eq!(c.subject, "spiffe://demo.example/agent/billing-1");
    assert_eq!((c.action.as_str(), c.resource.as_str()), ("read", "fs:/zones/support"));
    assert_eq!(r.transitions.get("allow -> deny"), Some(&1));
    assert_eq!(r.candidate, narrower.digest().to_string());
    assert_eq!((r.name.as_str(), r.version.as_str()), ("writ-starter", "2.0.0-rc1"));
    assert_eq!((r.unparsed, r.policies_changed), (0, 0));

    // Writes in any zone (the path still under the resource's directory): the denied write
    // would be allowed; the forged credential is still denied at identity, whatever the
    // bundle.
    let wider = starter_with(
        "resource has zone && resource.zone == principal.zone &&\n  context.arguments has path",
        "resource has zone &&\n  context.arguments has path",
    );
    let r = run(store.as_ref(), &wider, 0, None, 100);
    assert_eq!(r.changed, 1, "{r:#?}");
    assert_eq!(r.changes[0].id, write_other.id);
    assert_eq!(r.transitions.get("deny -> allow"), Some(&1));

    // A reason that changes with the outcome kept is a change too: a forbid that errors
    // (integer overflow) on every call.
    let erroring = starter_with(
        READ_ANYWHERE,
        &format!(
            "{READ_ANYWHERE}\n@id(\"broken\") forbid (principal, action, resource) when {{ context.usage.last_minute + 9223372036854775807 + 1 > 0 }};"
        ),
    );
    let r = run(store.as_ref(), &erroring, 0, None, 100);
    let expected: std::collections::BTreeMap<String, u64> =
        [("allow -> deny".to_owned(), 3), ("deny (policy.denied) -> deny (policy.evaluation_error)".to_owned(), 1)]
            .into();
    assert_eq!(r.transitions, expected, "{r:#?}");
    assert_eq!(r.changed, 4);
    assert!(r.changes.iter().all(|c| c.id != bad.id), "an identity deny does not depend on policy");

    // A range and a limit: every change is counted, the list stops at the limit.
    let none =
        starter_with(&format!("@id(\"read-anywhere\")\n@reason(\"nothing: any agent may read\")\n{READ_ANYWHERE}"), "");
    let all = run(store.as_ref(), &none, 0, None, 100);
    assert_eq!(all.changed, 2, "{all:#?}");
    let limited = run(store.as_ref(), &none, 0, None, 1);
    assert_eq!((limited.changed, limited.changes.len(), limited.truncated), (2, 1, true));
    let from = read_support.log_index.unwrap();
    let tail = run(store.as_ref(), &none, from, Some(from + 1), 100);
    assert_eq!((tail.entries, tail.decisions, tail.changed), (1, 1, 1), "{tail:#?}");
    let past = run(store.as_ref(), &none, 0, Some(u64::MAX), 100);
    assert_eq!(past.to, size_before);

    // Nothing was enforced or written, and the log still replays as recorded.
    assert_eq!(h.engine.log().size(), size_before);
    assert_eq!(h.engine.active_bundle().unwrap().2.to_string(), same.digest().to_string());
    assert!(replay(store.as_ref()).unwrap().mismatches.is_empty());
}

#[test]
fn decisions_made_without_a_bundle_are_what_the_candidate_would_have_decided() {
    let h = Harness::without_bundle();
    let d = h.authorize(&write_request(&h));
    assert_denied(&d, ReasonCode::PolicyNoActiveBundle);
    let starter = starter_bundle().unwrap().compile().unwrap();
    let r = run(h.engine.log().store().as_ref(), &starter, 0, None, 10);
    assert_eq!(r.changed, 1);
    assert_eq!(r.changes[0].bundle, None);
    assert_eq!(r.transitions.get("deny -> allow"), Some(&1), "{r:#?}");
}

#[test]
fn an_unreadable_entry_fails_the_replay_instead_of_being_skipped() {
    let h = Harness::new();
    h.authorize(&write_request(&h));
    let size = h.engine.log().size();
    drop(h.engine);
    let db = h.dir.path().join("log.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE entries SET data = ?1 WHERE idx = ?2",
        rusqlite::params![b"{\"kind\":\"nonsense\"}".to_vec(), (size - 1) as i64],
    )
    .unwrap();
    drop(conn);
    let store = writ_log::SqliteStore::open(&db, writ_log::SqliteOptions::default()).unwrap();
    let starter = starter_bundle().unwrap().compile().unwrap();
    let err =
        replay_candidate(&store, &starter, &CandidateRange { limit: 10, ..CandidateRange::default() }).unwrap_err();
    assert!(err.to_string().contains(&format!("entry {}", size - 1)), "{err}");
}

#[test]
fn ranges_past_the_end_reversed_or_of_an_unknown_bundle_are_refused() {
    let h = Harness::new();
    h.authorize(&write_request(&h));
    let size = h.engine.log().size();
    let store = h.engine.log().store();
    let starter = starter_bundle().unwrap().compile().unwrap();
    let go = |from, to, decided_by: Option<&str>| {
        replay_candidate(
            store.as_ref(),
            &starter,
            &CandidateRange { from, to, decided_by: decided_by.map(str::to_owned), limit: 10 },
        )
    };
    assert!(matches!(go(size + 1, None, None), Err(EngineError::FromPastEnd { .. })));
    assert!(matches!(go(1, Some(0), None), Err(EngineError::ToBeforeFrom { from: 1, to: 0 })));
    let unknown = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert!(matches!(go(0, None, Some(unknown)), Err(EngineError::NotDecidedBy { .. })));
    // The end of the log itself is an empty range, not an error.
    assert_eq!(go(size, None, None).unwrap().entries, 0);
}

#[test]
fn a_log_of_two_bundles_is_broken_down_by_the_bundle_that_decided() {
    let h = Harness::new();
    let v1 = starter_bundle().unwrap();
    let read = |h: &Harness| h.authorize(&request(h, "billing-1", "read", "fs:/zones/support", json!({"path": "/b"})));
    assert_allowed(&read(&h));
    let v2 = starter_bundle_with(
        READ_ANYWHERE,
        r#"permit (principal, action == Writ::Action::"read", resource) when { resource has zone && resource.zone == "billing" };"#,
        "2.0.0",
    );
    h.activate(&v2).unwrap();
    assert_denied(&read(&h), ReasonCode::PolicyDenied);
    let store = h.engine.log().store();
    // Replaying the active bundle over the whole log: v1's allow changes, v2's deny stands.
    let active = v2.compile().unwrap();
    let r = run(store.as_ref(), &active, 0, None, 10);
    assert_eq!(r.changed, 1, "{r:#?}");
    let (d1, d2) = (v1.digest().to_string(), v2.digest().to_string());
    assert_eq!((r.by_bundle[&d1].decisions, r.by_bundle[&d1].changed), (1, 1));
    assert_eq!((r.by_bundle[&d2].decisions, r.by_bundle[&d2].changed), (1, 0));
    assert_eq!(r.changes[0].bundle.as_deref(), Some(d1.as_str()));
    // Only the active bundle's decisions: nothing changes.
    let only = replay_candidate(
        store.as_ref(),
        &active,
        &CandidateRange { decided_by: Some(d2.clone()), limit: 10, ..CandidateRange::default() },
    )
    .unwrap();
    assert_eq!((only.decisions, only.changed, only.decided_by), (1, 0, Some(d2)));
}

#[test]
fn pending_decisions_are_reported_with_what_became_of_them() {
    let h = Harness::new();
    let pay = |h: &Harness| {
        h.authorize(&request(h, "billing-1", "payment", "payments:stripe", json!({"amount": 2500, "currency": "EUR"})))
    };
    let (approved, rejected, unanswered) = (pay(&h), pay(&h), pay(&h));
    for d in [&approved, &rejected, &unanswered] {
        assert_eq!(d.outcome, Outcome::Pending, "{d:?}");
    }
    // The answers come after the range replayed below ends.
    let to = unanswered.log_index.unwrap() + 1;
    rt().block_on(h.engine.resolve_approval(&approved.id, true, None, "ok")).unwrap();
    rt().block_on(h.engine.resolve_approval(&rejected.id, false, None, "no")).unwrap();
    h.authorize(&write_request(&h));
    // A candidate with no approval step allows all three outright.
    let candidate = starter_with("@approval(\"a payment of 1,000 or more needs an operator's approval\")\n", "");
    let r = run(h.engine.log().store().as_ref(), &candidate, 0, Some(to), 10);
    let expected: std::collections::BTreeMap<String, u64> = [
        ("pending (approved) -> allow".to_owned(), 1),
        ("pending (rejected) -> allow".to_owned(), 1),
        ("pending (unanswered) -> allow".to_owned(), 1),
    ]
    .into();
    assert_eq!(r.transitions, expected, "{r:#?}");
    let by_id: std::collections::HashMap<&str, Option<Resolved>> =
        r.changes.iter().map(|c| (c.id.as_str(), c.resolution)).collect();
    assert_eq!(by_id[approved.id.as_str()], Some(Resolved::Approved));
    assert_eq!(by_id[rejected.id.as_str()], Some(Resolved::Rejected));
    assert_eq!(by_id[unanswered.id.as_str()], Some(Resolved::Unanswered));
    // Listed or not, every pending change is labelled.
    let short = run(h.engine.log().store().as_ref(), &candidate, 0, Some(to), 1);
    assert_eq!((short.changes.len(), short.truncated), (1, true));
    assert_eq!(short.transitions, expected);
}

#[test]
fn a_decision_entry_the_engine_could_not_have_written_fails_the_replay() {
    let h = Harness::new();
    h.authorize(&write_request(&h));
    let index = h.engine.log().size() - 1;
    let text = String::from_utf8(h.engine.log().entries(index, index + 1).unwrap().remove(0)).unwrap();
    let mut entry: serde_json::Value = serde_json::from_str(&text).unwrap();
    entry["facts"] = serde_json::Value::Null;
    let conn = rusqlite::Connection::open(h.dir.path().join("log.db")).unwrap();
    conn.execute(
        "UPDATE entries SET data = ?1 WHERE idx = ?2",
        rusqlite::params![entry.to_string().as_bytes(), index as i64],
    )
    .unwrap();
    let starter = starter_bundle().unwrap().compile().unwrap();
    let err = replay_candidate(
        h.engine.log().store().as_ref(),
        &starter,
        &CandidateRange { limit: 10, ..CandidateRange::default() },
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::UnreadableEntry { .. } | EngineError::ImpossibleDecision { .. }), "{err}");
    assert!(err.to_string().contains(&format!("entry {index}")), "{err}");
}
