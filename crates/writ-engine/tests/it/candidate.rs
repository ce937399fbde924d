//! `writ policy replay`: a candidate bundle against the recorded history reports exactly the
//! decisions it would change, counts every one, enforces nothing, and refuses a log it
//! cannot read rather than report on part of it.

use serde_json::json;
use writ_core::ReasonCode;
use writ_engine::{Outcome, replay, replay_candidate};
use writ_policy::{Bundle, CompiledBundle, starter_bundle};

use crate::harness::*;

/// The starter bundle with one policy replaced by `from` → `to`.
fn starter_with(from: &str, to: &str) -> CompiledBundle {
    let (manifest, policies, schema, entities, tests) = starter_bundle().unwrap().parts();
    assert!(policies.contains(from), "the starter bundle no longer has {from:?}");
    Bundle::from_parts(
        &manifest.replace("1.0.0", "2.0.0-rc1"),
        &policies.replace(from, to),
        &schema,
        entities.as_deref(),
        tests.as_deref(),
    )
    .unwrap()
    .compile()
    .unwrap()
}

const READ_ANYWHERE: &str = r#"permit (principal, action == Writ::Action::"read", resource);"#;

#[test]
fn a_candidate_reports_exactly_the_decisions_it_would_change() {
    let h = Harness::new();
    // Reads in two zones, a write inside the agent's zone, a write outside it, a forged
    // credential: six decisions.
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
    let r = replay_candidate(store.as_ref(), &same, 0, None, 100).unwrap();
    assert_eq!((r.decisions, r.changed, r.unchanged), (5, 0, 5), "{r:#?}");
    assert!(r.changes.is_empty() && r.transitions.is_empty());

    // Reads outside the billing zone no longer allowed: exactly one decision changes.
    let narrower = starter_with(
        READ_ANYWHERE,
        r#"permit (principal, action == Writ::Action::"read", resource) when { resource has zone && resource.zone == "billing" };"#,
    );
    let r = replay_candidate(store.as_ref(), &narrower, 0, None, 100).unwrap();
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

    // Writes anywhere: the denied write would be allowed; the forged credential is still
    // denied at identity, whatever the bundle.
    let wider =
        starter_with("when { resource has zone && resource.zone == principal.zone };", "when { resource has zone };");
    let r = replay_candidate(store.as_ref(), &wider, 0, None, 100).unwrap();
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
    let r = replay_candidate(store.as_ref(), &erroring, 0, None, 100).unwrap();
    assert!(r.transitions.contains_key("deny (policy.denied) -> deny (policy.evaluation_error)"), "{r:#?}");
    assert!(r.transitions.contains_key("allow -> deny"), "{r:#?}");
    assert!(r.changes.iter().all(|c| c.id != bad.id), "an identity deny does not depend on policy");

    // A range and a limit: every change is counted, the list stops at the limit.
    let none = starter_with(&format!("@id(\"read-anywhere\")\n{READ_ANYWHERE}"), "");
    let all = replay_candidate(store.as_ref(), &none, 0, None, 100).unwrap();
    assert_eq!(all.changed, 2, "{all:#?}");
    let limited = replay_candidate(store.as_ref(), &none, 0, None, 1).unwrap();
    assert_eq!((limited.changed, limited.changes.len(), limited.truncated), (2, 1, true));
    let from = read_support.log_index.unwrap();
    let tail = replay_candidate(store.as_ref(), &none, from, Some(from + 1), 100).unwrap();
    assert_eq!((tail.entries, tail.decisions, tail.changed), (1, 1, 1), "{tail:#?}");
    let past = replay_candidate(store.as_ref(), &none, 0, Some(u64::MAX), 100).unwrap();
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
    let r = replay_candidate(h.engine.log().store().as_ref(), &starter, 0, None, 10).unwrap();
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
    let err = replay_candidate(&store, &starter, 0, None, 10).unwrap_err();
    assert!(err.to_string().contains(&format!("entry {}", size - 1)), "{err}");
}
