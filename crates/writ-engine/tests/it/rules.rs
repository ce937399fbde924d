//! The starter bundle's temporal windows and rate rules through the whole engine, at fixed
//! clock values.

use serde_json::json;
use writ_core::ReasonCode;
use writ_engine::parse_rfc3339;

use crate::harness::*;

fn pay(h: &Harness, amount: i64) -> writ_engine::Decision {
    h.authorize(&request(h, "billing-1", "payment", "payments:stripe", json!({"amount": amount, "currency": "EUR"})))
}

#[test]
fn payments_only_in_business_hours_and_below_the_limit() {
    let h = Harness::new();
    for (time, ok) in [
        ("2026-11-26T08:59:59Z", false),
        ("2026-11-26T09:00:00Z", true),
        ("2026-11-26T16:59:59Z", true),
        ("2026-11-26T17:00:00Z", false),
        ("2026-11-26T23:30:00Z", false),
    ] {
        h.clock.set(parse_rfc3339(time).unwrap());
        let d = pay(&h, 10);
        if ok {
            assert_allowed(&d);
        } else {
            assert_denied(&d, ReasonCode::PolicyDenied);
        }
    }
    h.clock.set(parse_rfc3339("2026-11-26T12:00:00Z").unwrap());
    assert_allowed(&pay(&h, 999));
    assert_eq!(pay(&h, 1000).outcome, writ_engine::Outcome::Pending, "1,000 to 9,999 waits for an operator");
    assert_eq!(pay(&h, 9999).outcome, writ_engine::Outcome::Pending);
    assert_denied(&pay(&h, 10_000), ReasonCode::PolicyDenied);
    assert_denied(&pay(&h, -5), ReasonCode::PolicyDenied);
}

/// Issue 14: a payment that needs an operator's approval waits for one at any hour; a
/// small payment outside its window is denied with the same reason code as before, and the
/// deny names the permits that came closest and what they require.
#[test]
fn payments_needing_approval_wait_at_any_hour_and_denies_explain_themselves() {
    let h = Harness::new();
    for time in ["2026-11-26T03:00:00Z", "2026-11-26T10:30:00Z", "2026-11-26T23:59:59Z"] {
        h.clock.set(parse_rfc3339(time).unwrap());
        let d = pay(&h, 2500);
        assert_eq!(d.outcome, writ_engine::Outcome::Pending, "{time}: {d:?}");
        assert!(d.explanation.is_none());
    }
    h.clock.set(parse_rfc3339("2026-11-26T03:00:00Z").unwrap());
    let d = pay(&h, 250);
    assert_denied(&d, ReasonCode::PolicyDenied);
    assert_eq!(d.reasons, [ReasonCode::PolicyDenied], "the reason codes stay as they are");
    assert!(d.log_index.is_some());
    let e = d.explanation.as_ref().expect("a policy deny explains itself");
    let closest: Vec<&str> = e.closest_permits.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(closest, ["payment-business-hours", "payment-needs-approval"]);
    assert!(
        d.detail.contains("payment-business-hours requires: a payment of 1 to 999, between 09:00 and 17:00 UTC"),
        "{}",
        d.detail
    );
    let answer = serde_json::to_value(&d).unwrap();
    assert_eq!(answer["explanation"]["closest_permits"][0]["policy"], "payment-business-hours");
    assert_eq!(answer["reasons"], json!(["policy.denied"]));
    // A deny before the policy stage carries none.
    let anonymous = h.authorize(&json!({"action": "payment", "resource": "payments:stripe", "arguments": {}}));
    assert!(anonymous.explanation.is_none() && serde_json::to_value(&anonymous).unwrap().get("explanation").is_none());
    // The recorded decisions (explanation wording included in their detail) replay.
    let report = writ_engine::replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
}

#[test]
fn at_most_five_payments_a_minute() {
    let h = Harness::new();
    h.clock.set(parse_rfc3339("2026-11-26T12:00:00Z").unwrap());
    for _ in 0..5 {
        assert_allowed(&pay(&h, 10));
        h.clock.advance(1);
    }
    assert_denied(&pay(&h, 10), ReasonCode::PolicyDenied);
    // Another agent has its own counter.
    let other =
        h.authorize(&request(&h, "billing-2", "payment", "payments:stripe", json!({"amount": 1, "currency": "EUR"})));
    assert_allowed(&other);
    // A minute after the first, the window has room again.
    h.clock.set(parse_rfc3339("2026-11-26T12:01:00Z").unwrap());
    assert_allowed(&pay(&h, 10));
}

/// Twenty payments at once from one agent: the rate rule lets exactly five through.
#[test]
fn the_rate_rule_holds_under_concurrency() {
    let h = std::sync::Arc::new(Harness::new());
    h.clock.set(parse_rfc3339("2026-11-26T12:00:00Z").unwrap());
    let token = h.credential("billing-1", Some("billing"));
    let body = serde_json::to_vec(&json!({
        "credentials": {"workload": token},
        "action": "payment", "resource": "payments:stripe", "arguments": {"amount": 10, "currency": "EUR"}
    }))
    .unwrap();
    let rt = rt();
    let allowed = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (h, body) = (h.clone(), body.clone());
            tasks.spawn(async move { h.engine.authorize(&body).await });
        }
        let mut allowed = 0;
        while let Some(d) = tasks.join_next().await {
            if d.unwrap().outcome == writ_engine::Outcome::Allow {
                allowed += 1;
            }
        }
        allowed
    });
    assert_eq!(allowed, 5);
}
