//! An entry the log has committed is applied to the state even when the caller that asked
//! for it went away first. Over HTTP, a client that disconnects, or the request timeout,
//! drops the request's future; the log's sequencer commits what it was handed whether or
//! not anybody waits. Found in review: a revocation (or activation, quarantine, decision)
//! cut at that point was in the log but not in force until a restart, and an entry never
//! applied stalled the isolation rules' in-order counting for everyone.

use std::time::{Duration, Instant};

use writ_core::ReasonCode;

use crate::harness::*;

/// Polls `fut` once (it gets as far as it can without waiting), then drops it.
fn poll_once_and_drop<F: std::future::Future>(rt: &tokio::runtime::Runtime, fut: F) {
    let cut = rt.block_on(async { futures_util::FutureExt::now_or_never(fut).is_none() });
    assert!(cut, "the future finished in one poll: nothing was cut");
}

/// Waits (bounded) until `done` holds.
#[track_caller]
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_revocation_whose_caller_went_away_is_in_force() {
    let h = Harness::new();
    let parent = h.authorize(&write_request(&h));
    assert_allowed(&parent);
    let child = |h: &Harness| {
        let mut req = write_request(h);
        under(h, &mut req, &parent, "billing-1", "billing-1");
        h.authorize(&req)
    };
    assert_allowed(&child(&h));
    let rt = rt();
    let before = h.engine.log().size();
    poll_once_and_drop(&rt, h.engine.revoke(&parent.id, None, "the operator's connection dropped"));
    eventually("the revocation is committed", || h.engine.log().size() > before);
    // In force without a restart: a child under the revoked writ is refused.
    eventually("the revocation is applied", || child(&h).reason() == Some(ReasonCode::LineageParentRevoked));
    drop(rt);
}

#[test]
fn a_decision_whose_caller_went_away_is_applied_and_counted() {
    let h = Harness::new();
    let rt = rt();
    let before = h.engine.log().size();
    let stats = h.engine.stats();
    poll_once_and_drop(&rt, h.engine.authorize(&serde_json::to_vec(&write_request(&h)).unwrap()));
    eventually("the decision is committed", || h.engine.log().size() > before);
    eventually("the decision is applied", || h.engine.stats().allow == stats.allow + 1);
    // The next decisions are counted after it, in log order, as usual.
    assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(h.engine.stats().allow, stats.allow + 2);
    assert_eq!(h.engine.stats().size, h.engine.log().size());
    let report = writ_engine::replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    drop(rt);
}
