//! Regression tests from the hostile review of issue 13 that the engine owns: float
//! arguments that replayed otherwise than they were decided, and anonymous requests that
//! wrote what they liked into the permanent log, without bound.

use serde_json::{Value, json};
use writ_core::ReasonCode;
use writ_engine::{CandidateRange, Entry, replay, replay_candidate};
use writ_policy::starter_bundle;

use crate::harness::*;

fn entry(h: &Harness, index: u64) -> Entry {
    let bytes = h.engine.log().entries(index, index + 1).unwrap().remove(0);
    serde_json::from_slice(&bytes).unwrap()
}

/// Issue 13, item 5: `120.0` was denied live (not a Cedar integer) but recorded as `120`,
/// which `writ log replay` evaluated as an allow: any agent could plant permanent audit
/// alarms. The decision is now made on the recorded form, and replays exactly.
#[test]
fn regression_float_arguments_decide_what_the_log_records() {
    let h = Harness::new();
    let mut indexes = Vec::new();
    for written in ["120.0", "2500.0", "-0", "2.5e3", "1e1", "120", "2.5"] {
        let body = format!(
            r#"{{"credentials":{{"workload":"{}"}},"action":"write","resource":"fs:/zones/billing","arguments":{{"path":"/zones/billing/out.csv","bytes":{written}}}}}"#,
            h.credential("billing-1", Some("billing"))
        );
        let d = rt().block_on(h.engine.authorize(body.as_bytes()));
        if written == "2.5" {
            // A fraction is no Cedar value: denied, live and on replay alike.
            assert_denied(&d, ReasonCode::RequestMalformed);
        } else {
            assert_allowed(&d);
        }
        indexes.push(d.log_index.unwrap());
    }
    let Entry::Decision { request: Some(r), .. } = entry(&h, indexes[0]) else { panic!("not a decision") };
    assert_eq!(r.arguments["bytes"], json!(120));
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert_eq!(report.reproduced, report.decisions);
    let starter = starter_bundle().unwrap().compile().unwrap();
    let candidate = replay_candidate(
        h.engine.log().store().as_ref(),
        &starter,
        &CandidateRange { limit: 10, ..Default::default() },
    )
    .unwrap();
    assert_eq!(candidate.unchanged, candidate.decisions, "{candidate:?}");
}

/// Issue 13, item 10: a request whose credential did not verify recorded its whole
/// arguments (one anonymous request wrote a 64 KB permanent entry). Now only their digest
/// and size are recorded, and the request still replays.
#[test]
fn regression_anonymous_requests_do_not_record_their_arguments() {
    let h = Harness::new();
    let big = "x".repeat(16 * 1024);
    let body = json!({"credentials": {"workload": "forged.token.here"}, "action": "write", "resource": "fs:/zones/billing",
        "arguments": {"a": big, "b": big, "c": big}});
    let d = h.authorize(&body);
    assert_eq!(d.outcome, writ_engine::Outcome::Deny);
    assert!(d.reason().unwrap().as_str().starts_with("identity."), "{d:?}");
    let index = d.log_index.expect("the attempt is recorded");
    let bytes = h.engine.log().entries(index, index + 1).unwrap().remove(0);
    assert!(bytes.len() < 2048, "an anonymous record of {} bytes", bytes.len());
    let Entry::Decision { request: Some(r), .. } = entry(&h, index) else { panic!("not a decision") };
    assert_eq!(r.arguments, Value::Null);
    let withheld = r.withheld.expect("digest and size recorded");
    let canonical = writ_core::canonical_json(&body["arguments"]).unwrap();
    assert_eq!(withheld.arguments_size, canonical.len() as u64);
    assert_eq!(
        withheld.arguments_digest,
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical)))
    );
    // An authenticated request keeps its arguments.
    let ok = h.authorize(&write_request(&h));
    let Entry::Decision { request: Some(r), .. } = entry(&h, ok.log_index.unwrap()) else { panic!() };
    assert!(r.withheld.is_none());
    assert_eq!(r.arguments["path"], "/zones/billing/out.csv");
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
}

/// Issue 13, item 10: anonymous records are bounded in rate (100 a second, ten seconds'
/// worth in a burst); beyond that, attempts are answered and counted, and the count is
/// recorded once the budget allows: the fact that they happened is not lost.
#[test]
fn regression_anonymous_records_are_bounded_and_counted() {
    let h = Harness::new();
    let before = h.engine.log().size();
    let attempt =
        |h: &Harness| h.authorize(&json!({"credentials": {"workload": "nope"}, "action": "read", "resource": "r"}));
    for _ in 0..1000 {
        assert!(attempt(&h).log_index.is_some());
    }
    let over: Vec<_> = (0..50).map(|_| attempt(&h)).collect();
    for d in &over {
        assert_denied(d, ReasonCode::IdentityMalformed);
        assert!(d.log_index.is_none(), "{d:?}");
        assert!(d.detail.contains("anonymous_attempts"), "{d:?}");
    }
    // Malformed bodies count against the same budget.
    let d = rt().block_on(h.engine.authorize(b"{not json"));
    assert_denied(&d, ReasonCode::RequestMalformed);
    assert!(d.log_index.is_none());
    assert_eq!(h.engine.log().size(), before + 1000);
    assert_eq!(h.engine.anonymous_unrecorded(), 51);
    // Authenticated requests are never held back.
    assert!(h.authorize(&write_request(&h)).log_index.is_some());
    // A second later the budget allows a record again: the summary comes first.
    h.clock.advance(1);
    let d = attempt(&h);
    let index = d.log_index.expect("recorded again");
    match entry(&h, index - 1) {
        Entry::AnonymousAttempts { reasons, .. } => {
            assert_eq!(reasons.get(&ReasonCode::IdentityMalformed), Some(&50));
            assert_eq!(reasons.get(&ReasonCode::RequestMalformed), Some(&1));
        }
        other => panic!("expected the count of unrecorded attempts, got {other:?}"),
    }
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
}
