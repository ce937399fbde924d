//! Automatic isolation (issue 17): each rule kind at its threshold and one below, the
//! window, attribution only to a proven principal (a forged writ naming a victim isolates
//! nobody but its presenter), a restart between violations, the revocations an isolation
//! makes and what the feed then refuses, release, and the log (rule, triggers, replay).

use serde_json::{Value, json};
use writ_core::{ReasonCode, SpiffeId, request_digest};
use writ_engine::{Entry, LogRef, Outcome, Scope, WritClaims, WritSigner, replay};
use writ_identity::AttestationRequest;
use writ_policy::{Bundle, starter_bundle};

use crate::harness::*;

/// The starter bundle with these isolation rules instead of its own.
fn with_rules(rules: Value, version: &str) -> Bundle {
    let (manifest, policies, schema, entities, tests) = starter_bundle().unwrap().parts();
    let mut m: Value = serde_json::from_str(&manifest).unwrap();
    m["version"] = json!(version);
    m["isolation"] = rules;
    Bundle::from_parts(&m.to_string(), &policies, &schema, entities.as_deref(), tests.as_deref()).unwrap()
}

fn harness(rules: Value) -> Harness {
    let h = Harness::without_bundle();
    h.activate(&with_rules(rules, "1.5.0+isolation")).unwrap();
    h
}

fn entries(h: &Harness) -> Vec<(u64, Entry)> {
    let size = h.engine.log().size();
    h.engine
        .log()
        .entries(0, size)
        .unwrap()
        .into_iter()
        .zip(0..)
        .map(|(b, i)| (i, serde_json::from_slice(&b).unwrap()))
        .collect()
}

/// A quarantine entry: (index, subject, isolated, rule, triggers).
type Quarantine = (u64, String, bool, Option<String>, Vec<u64>);

/// The quarantine entries.
fn quarantines(h: &Harness) -> Vec<Quarantine> {
    entries(h)
        .into_iter()
        .filter_map(|(i, e)| match e {
            Entry::Quarantine { subject, isolated, rule, triggers, .. } => Some((i, subject, isolated, rule, triggers)),
            _ => None,
        })
        .collect()
}

fn agent(name: &str) -> String {
    format!("spiffe://demo.example/agent/{name}")
}

fn is_isolated(h: &Harness, name: &str) -> bool {
    h.engine.quarantined().iter().any(|(s, _)| *s == agent(name))
}

/// A write outside billing-1's zone: `policy.denied`.
fn denied_write(h: &Harness, name: &str) -> Value {
    request(h, name, "write", "fs:/zones/support", json!({"path": "/zones/support/payload.sh"}))
}

fn read(h: &Harness, name: &str) -> Value {
    request(h, name, "read", "fs:/zones/billing", json!({"path": "/zones/billing/ledger.csv"}))
}

fn read_digest() -> writ_core::RequestDigest {
    request_digest("read", "fs:/zones/billing", &json!({"path": "/zones/billing/ledger.csv"})).unwrap()
}

/// A writ for `sub` signed by a key the control plane never trusted.
fn forged_writ(sub: &str) -> String {
    let rogue = WritSigner::from_seeds("writ", &[[9; 32]]).unwrap();
    rogue
        .sign(&WritClaims {
            iss: "writ".into(),
            sub: sub.into(),
            aud: "writ-enforcement".into(),
            jti: "w-forged0000000000000000000000000".into(),
            iat: 1_795_000_000,
            nbf: 1_795_000_000,
            exp: 1_895_000_000,
            act: "read".into(),
            res: "fs:/zones/billing".into(),
            req: read_digest().to_string(),
            pol: "sha256:00".into(),
            par: None,
            root: "w-forged0000000000000000000000000".into(),
            dep: 0,
            scp: Scope { zone: "billing".into(), actions: vec!["*".into()] },
            log: LogRef { index: 1, leaf: "sha256:00".into() },
        })
        .unwrap()
}

/// A real writ with one character of its signature changed.
fn tampered(writ: &str) -> String {
    let mut bytes = writ.as_bytes().to_vec();
    let at = writ.rfind('.').unwrap() + 5;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[track_caller]
fn assert_replays(h: &Harness, isolations: u64) {
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert_eq!(report.isolations, isolations);
}

/// The hostile case: a forged writ carrying a victim's `sub`, presented as a parent by an
/// authenticated attacker, isolates the attacker (its credential is proven), never the
/// victim (the forged `sub` proves nothing). At `POST /v1/verify`, where nobody proven
/// presents it, it isolates nobody and writes nothing.
#[test]
fn a_forged_writ_naming_a_victim_never_isolates_the_victim() {
    let h = Harness::new();
    let victim = assert_allowed(&h.authorize(&read(&h, "billing-1")));
    for forged in [forged_writ(&agent("billing-1")), tampered(&victim)] {
        let size = h.engine.log().size();
        let refused = rt().block_on(h.engine.verify_presented(&forged, &read_digest())).unwrap_err();
        assert_eq!(refused.reason, ReasonCode::WritBadSignature);
        assert_eq!(h.engine.log().size(), size, "an unproven presentation is not recorded");
        assert!(h.engine.quarantined().is_empty());
    }
    // The attacker presents the forged writ as the parent of its own call.
    let mut req = read(&h, "intruder");
    req["parent_writ"] = json!(forged_writ(&agent("billing-1")));
    let d = h.authorize(&req);
    assert_denied(&d, ReasonCode::LineageParentUnknown);
    assert!(is_isolated(&h, "intruder"));
    assert!(!is_isolated(&h, "billing-1"), "the victim named by the forgery is not isolated");
    assert_allowed(&h.authorize(&read(&h, "billing-1")));
    assert_denied(&h.authorize(&read(&h, "intruder")), ReasonCode::Quarantined);
    let q = quarantines(&h);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].1, agent("intruder"));
    assert_eq!((q[0].3.as_deref(), q[0].4.clone()), (Some("forged-writ"), vec![d.log_index.unwrap()]));
    assert_eq!(h.engine.isolations().get("forged-writ"), Some(&1));
    assert_replays(&h, 1);
}

/// A writ's principal is isolated for a presentation only when its signature verified, and
/// a replay counts only when this control plane did verify the writ before: a writ refused
/// by the restart horizon is `writ.replayed` too, and isolates nobody.
#[test]
fn a_replay_isolates_the_writs_principal_but_the_restart_horizon_does_not() {
    let h = harness(json!([{"name": "replays", "presented": ["writ.replayed"]}]));
    let first_decision = h.authorize(&read(&h, "billing-1"));
    let first = assert_allowed(&first_decision);
    let second = assert_allowed(&h.authorize(&read(&h, "billing-2")));
    // Below the threshold: verified once, and a refusal the rule does not list.
    rt().block_on(h.engine.verify_presented(&first, &read_digest())).unwrap();
    let other = request_digest("read", "fs:/zones/billing", &json!({"path": "/zones/billing/secrets.env"})).unwrap();
    let size = h.engine.log().size();
    let r = rt().block_on(h.engine.verify_presented(&second, &other)).unwrap_err();
    assert_eq!(r.reason, ReasonCode::WritBindingMismatch);
    // The horizon (a restart without the record of used writs) refuses, but proves no replay.
    h.engine.refuse_writs_issued_before(h.now() + 1);
    let r = rt().block_on(h.engine.verify_presented(&second, &read_digest())).unwrap_err();
    assert_eq!(r.reason, ReasonCode::WritReplayed);
    assert_eq!(h.engine.log().size(), size, "nothing counted, nothing recorded");
    assert!(h.engine.quarantined().is_empty());
    // At the threshold: the writ verified here before, presented again.
    let r = rt().block_on(h.engine.verify_presented(&first, &read_digest())).unwrap_err();
    assert_eq!(r.reason, ReasonCode::WritReplayed, "the answer is the verification's");
    let all = entries(&h);
    let presentation = all
        .iter()
        .find_map(|(i, e)| match e {
            Entry::Presentation { subject, reason, jti, writ_digest, .. } => {
                assert_eq!((subject.as_str(), *reason), (agent("billing-1").as_str(), ReasonCode::WritReplayed));
                assert!(writ_digest.starts_with("sha256:") && !writ_digest.contains(&first));
                assert_eq!(jti, &first_decision.id);
                Some(*i)
            }
            _ => None,
        })
        .expect("a presentation entry");
    let q = quarantines(&h);
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].1.as_str(), q[0].3.as_deref()), (agent("billing-1").as_str(), Some("replays")));
    assert_eq!(q[0].4, vec![presentation]);
    // Isolated, its writs are refused as quarantined: no further entry, however often.
    let size = h.engine.log().size();
    for _ in 0..5 {
        let r = rt().block_on(h.engine.verify_presented(&first, &read_digest())).unwrap_err();
        assert_eq!(r.reason, ReasonCode::Quarantined);
    }
    assert_eq!(h.engine.log().size(), size);
    assert_replays(&h, 1);
}

/// `denials`: `count` denials with a listed reason within the window isolate; one fewer
/// does not; the decision that trips the rule keeps its own outcome.
#[test]
fn a_denials_rule_fires_at_its_threshold_and_not_below() {
    let h = harness(
        json!([{"name": "writes-elsewhere", "denials": {"reasons": ["policy.denied"], "count": 3, "window_seconds": 60}}]),
    );
    let mut indices = Vec::new();
    for _ in 0..2 {
        let d = h.authorize(&denied_write(&h, "billing-1"));
        assert_denied(&d, ReasonCode::PolicyDenied);
        indices.push(d.log_index.unwrap());
    }
    // Denials with other reasons, and another principal's, do not count.
    let mut deep = read(&h, "billing-1");
    deep["parent"] = json!("w-00000000000000000000000000000000");
    assert_denied(&h.authorize(&deep), ReasonCode::LineageParentUnknown);
    assert_denied(&h.authorize(&denied_write(&h, "billing-2")), ReasonCode::PolicyDenied);
    assert!(h.engine.quarantined().is_empty(), "one below the threshold");
    assert_allowed(&h.authorize(&read(&h, "billing-1")));
    let third = h.authorize(&denied_write(&h, "billing-1"));
    assert_denied(&third, ReasonCode::PolicyDenied);
    indices.push(third.log_index.unwrap());
    let q = quarantines(&h);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        (q[0].1.as_str(), q[0].2, q[0].3.as_deref()),
        (agent("billing-1").as_str(), true, Some("writes-elsewhere"))
    );
    assert_eq!(q[0].4, indices, "the isolation names the denials that tripped it");
    let (_, action) = h.engine.quarantined().into_iter().next().unwrap();
    assert_eq!((action.operator, action.rule.as_deref(), action.triggers), (None, Some("writes-elsewhere"), indices));
    assert_denied(&h.authorize(&read(&h, "billing-1")), ReasonCode::Quarantined);
    assert_allowed(&h.authorize(&read(&h, "billing-2")));
    assert_replays(&h, 1);
}

/// Denials older than the window no longer count.
#[test]
fn denials_outside_the_window_do_not_count() {
    let h = harness(
        json!([{"name": "burst", "denials": {"reasons": ["policy.denied"], "count": 3, "window_seconds": 60}}]),
    );
    for _ in 0..2 {
        h.authorize(&denied_write(&h, "billing-1"));
    }
    h.clock.advance(60);
    let late = h.authorize(&denied_write(&h, "billing-1"));
    h.clock.advance(59);
    let later = h.authorize(&denied_write(&h, "billing-1"));
    assert!(h.engine.quarantined().is_empty(), "two in the last minute");
    let tripping = h.authorize(&denied_write(&h, "billing-1"));
    assert_eq!(
        quarantines(&h).iter().map(|q| q.4.clone()).collect::<Vec<_>>(),
        vec![vec![late.log_index.unwrap(), later.log_index.unwrap(), tripping.log_index.unwrap()]]
    );
}

fn attestation(h: &Harness, name: &str, measurement: &str) -> String {
    let subject = SpiffeId::parse(&agent(name)).unwrap();
    h.issuer
        .issue_attestation(AttestationRequest {
            subject: &subject,
            audience: vec!["writ".into()],
            measurement,
            environment: "production",
            region: "eu-west-1",
            ttl_secs: 600,
            now: h.now(),
        })
        .unwrap()
}

/// `attestation_changed`: the same measurement again isolates nothing; another one
/// isolates, naming the entry of the last measurement and the new one.
#[test]
fn an_attestation_change_isolates_and_names_both_measurements() {
    let h = harness(json!([{"name": "image-drift", "attestation_changed": true}]));
    let attested = |m: &str| {
        let mut r = read(&h, "billing-1");
        r["attestation"] = json!(attestation(&h, "billing-1", m));
        h.authorize(&r)
    };
    let one = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let two = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    assert_allowed(&attested(one));
    let same = attested(one);
    assert_allowed(&same);
    // Without an attestation: nothing to compare.
    assert_allowed(&h.authorize(&read(&h, "billing-1")));
    assert!(h.engine.quarantined().is_empty());
    let changed = attested(two);
    assert_allowed(&changed);
    let q = quarantines(&h);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].3.as_deref(), Some("image-drift"));
    assert_eq!(q[0].4, vec![same.log_index.unwrap(), changed.log_index.unwrap()]);
    // The tripping decision kept its allow; its writ is revoked by the isolation.
    let refused = h.engine.verify(changed.writ.as_deref().unwrap(), &read_digest()).unwrap_err();
    assert_eq!(refused.reason, ReasonCode::Quarantined);
    // Released, the new measurement is the one on record: no second isolation.
    let sub = SpiffeId::parse(&agent("billing-1")).unwrap();
    rt().block_on(h.engine.quarantine(&sub, false, Some("op"), "new image rolled out")).unwrap();
    assert_allowed(&attested(two));
    assert_eq!(quarantines(&h).len(), 2, "the release only");
    assert_replays(&h, 1);
}

/// A restart between the N-1th and the Nth violation neither forgets the first ones nor,
/// once isolated, isolates again.
#[test]
fn a_restart_between_violations_still_isolates_exactly_once() {
    let rules = json!([{"name": "writes-elsewhere", "denials": {"reasons": ["policy.denied"], "count": 3, "window_seconds": 60}}]);
    let h = harness(rules);
    h.authorize(&denied_write(&h, "billing-1"));
    h.authorize(&denied_write(&h, "billing-1"));
    let reopen = |h: Harness| {
        let Harness { engine, dir, issuer, policy_key, .. } = h;
        drop(engine);
        Harness::open(dir, Some((issuer, policy_key)))
    };
    let h = reopen(h);
    assert!(rt().block_on(h.engine.finish_isolations()).unwrap().is_empty());
    assert!(h.engine.quarantined().is_empty());
    h.authorize(&denied_write(&h, "billing-1"));
    assert_eq!(quarantines(&h).len(), 1, "the two before the restart counted");
    let h = reopen(h);
    assert!(rt().block_on(h.engine.finish_isolations()).unwrap().is_empty());
    assert_denied(&h.authorize(&denied_write(&h, "billing-1")), ReasonCode::Quarantined);
    assert_eq!(quarantines(&h).len(), 1, "isolated once");
    assert_replays(&h, 1);
}

/// The isolation revokes the principal's outstanding writs and everything below them
/// (another principal's delegated child too) and its decisions waiting for an approval;
/// the feed lists them; a release restores new authorizations and revokes nothing back.
#[test]
fn an_isolation_revokes_outstanding_writs_and_their_descendants() {
    let h = Harness::new();
    let root = h.authorize(&request(&h, "planner", "spawn", "agents:pool", json!({"agent": "worker"})));
    let root_writ = assert_allowed(&root);
    let mut child = read(&h, "worker");
    under(&h, &mut child, &root, "planner", "worker");
    let child = h.authorize(&child);
    let child_writ = assert_allowed(&child);
    let payment = h.authorize(&request(
        &h,
        "planner",
        "payment",
        "payments:vendor-42",
        json!({"amount": 2500, "currency": "EUR"}),
    ));
    assert_eq!(payment.outcome, Outcome::Pending, "{payment:?}");
    let bystander = assert_allowed(&h.authorize(&read(&h, "billing-2")));
    // Ten lineage probes in a minute: the starter's rule.
    for _ in 0..9 {
        let mut probe = read(&h, "planner");
        probe["parent"] = json!("w-00000000000000000000000000000000");
        assert_denied(&h.authorize(&probe), ReasonCode::LineageParentUnknown);
    }
    assert!(h.engine.quarantined().is_empty());
    let mut probe = read(&h, "planner");
    probe["parent"] = json!("w-00000000000000000000000000000000");
    h.authorize(&probe);
    let q = quarantines(&h);
    assert_eq!((q.len(), q[0].3.as_deref()), (1, Some("lineage-probing")));
    let isolation = q[0].0;
    let revoked: Vec<(String, Option<String>, Option<u64>)> = entries(&h)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entry::Revocation { jti, ancestor, isolation, operator: None, .. } => Some((jti, ancestor, isolation)),
            _ => None,
        })
        .collect();
    let mut expect = vec![
        (root.id.clone(), None, Some(isolation)),
        (payment.id.clone(), None, Some(isolation)),
        (child.id.clone(), Some(root.id.clone()), Some(isolation)),
    ];
    let mut got = revoked.clone();
    got.sort();
    expect.sort();
    assert_eq!(got, expect);
    // The feed refuses them: the writs by id, the principal by name.
    let feed = rt().block_on(h.engine.feed_view()).unwrap();
    let listed: Vec<&str> = feed.lists.revoked.iter().map(|(id, _)| id.as_str()).collect();
    assert!(listed.contains(&root.id.as_str()) && listed.contains(&child.id.as_str()), "{listed:?}");
    assert!(feed.lists.quarantined.contains(&agent("planner")));
    let spawn = request_digest("spawn", "agents:pool", &json!({"agent": "worker"})).unwrap();
    assert_eq!(h.engine.verify(&child_writ, &read_digest()).unwrap_err().reason, ReasonCode::WritRevoked);
    h.engine.verify(&bystander, &read_digest()).unwrap();
    // The pending payment can no longer be approved, even after a release.
    let sub = SpiffeId::parse(&agent("planner")).unwrap();
    rt().block_on(h.engine.quarantine(&sub, false, Some("spiffe://demo.example/operator/alice"), "investigated"))
        .unwrap();
    assert!(rt().block_on(h.engine.resolve_approval(&payment.id, true, Some("op"), "ok")).is_err());
    assert_eq!(h.engine.verify(&root_writ, &spawn).unwrap_err().reason, ReasonCode::WritRevoked, "not un-revoked");
    assert_allowed(&h.authorize(&read(&h, "planner")));
    assert_replays(&h, 1);
}

/// An isolation entry that no rule justifies (appended behind the engine's back) is what
/// `writ log replay` reports.
#[test]
fn replay_reports_an_isolation_no_rule_justifies() {
    let h = Harness::new();
    h.authorize(&denied_write(&h, "billing-1"));
    let forged = Entry::Quarantine {
        time: h.now(),
        subject: agent("billing-1"),
        isolated: true,
        operator: None,
        reason: "forged".into(),
        rule: Some("forged-writ".into()),
        triggers: vec![1],
    };
    let index = rt().block_on(h.engine.log().append(forged.canonical().unwrap())).unwrap().index;
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert_eq!(report.isolations, 1);
    assert_eq!(report.mismatches.len(), 1, "{:?}", report.mismatches);
    assert_eq!(report.mismatches[0].index, index);
    assert!(report.mismatches[0].detail.contains("no isolation rule"), "{:?}", report.mismatches);
}

/// Rules that cannot mean what their author wrote refuse the bundle, with a clear error;
/// a bundle without rules keeps its digest.
#[test]
fn bad_isolation_rules_refuse_the_bundle() {
    let (manifest, policies, schema, entities, tests) = starter_bundle().unwrap().parts();
    let build = |rules: Value| {
        let mut m: Value = serde_json::from_str(&manifest).unwrap();
        m["isolation"] = rules;
        Bundle::from_parts(&m.to_string(), &policies, &schema, entities.as_deref(), tests.as_deref())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let denials = |d: Value| json!([{"name": "r", "denials": d}]);
    for (rules, says) in [
        (denials(json!({"reasons": ["policy.denied"], "count": 0, "window_seconds": 60})), "count must be 1 to"),
        (
            denials(json!({"reasons": ["policy.denied"], "count": 3, "window_seconds": 0})),
            "window_seconds must be 1 to",
        ),
        (denials(json!({"reasons": ["policy.denied"], "count": 1001, "window_seconds": 60})), "count must be 1 to"),
        (denials(json!({"reasons": ["policy.nope"], "count": 3, "window_seconds": 60})), "unknown reason code"),
        (
            denials(json!({"reasons": ["identity.bad_signature"], "count": 3, "window_seconds": 60})),
            "cannot be counted",
        ),
        (denials(json!({"reasons": ["quarantined"], "count": 3, "window_seconds": 60})), "cannot be counted"),
        (denials(json!({"reasons": [], "count": 3, "window_seconds": 60})), "lists no reason code"),
        (denials(json!({"reasons": ["policy.denied", "policy.denied"], "count": 3, "window_seconds": 60})), "twice"),
        (denials(json!({"reasons": ["policy.denied"], "count": 3, "window_seconds": 60, "extra": 1})), "unknown field"),
        (denials(json!({"reasons": ["policy.denied"], "count": 3})), "missing field"),
        (json!([{"name": "r", "presented": ["policy.denied"]}]), "cannot be counted"),
        (json!([{"name": "r", "attestation_changed": false}]), "never fires"),
        (json!([{"name": "r"}]), "exactly one of"),
        (json!([{"name": "r", "attestation_changed": true, "presented": ["writ.replayed"]}]), "exactly one of"),
        (json!([{"name": "r", "attestation_changed": true, "severity": "high"}]), "unknown field"),
        (json!([{"name": "Bad Name", "attestation_changed": true}]), "a name is"),
        (
            json!([{"name": "r", "attestation_changed": true}, {"name": "r", "presented": ["writ.replayed"]}]),
            "two rules",
        ),
        (json!({"name": "r"}), "invalid type"),
    ] {
        let err = build(rules.clone()).expect_err(&rules.to_string());
        assert!(err.contains(says), "{rules}: {err}");
    }
    build(json!([{"name": "ok", "presented": ["writ.replayed", "writ.binding_mismatch"]}])).unwrap();
    // A manifest without the field reads as before: same digest as its text says.
    let plain = Bundle::from_parts(r#"{"name": "n", "version": "1"}"#, &policies, &schema, None, None).unwrap();
    assert!(plain.manifest().isolation.is_empty());
}

/// Found in review: the isolation runs in the request that tripped its rule. Cut mid-way
/// (the client disconnects, or the request times out, after the quarantine is recorded
/// and before every revocation is), the rest of the revocations were never made: nothing
/// marked the isolation unfinished, and once an operator released the principal its writs
/// verified again. Now the run counts as unfinished until it ends well, and
/// `finish_isolations` (every 5 s in `writ serve`) completes it.
#[test]
fn an_isolation_cut_mid_way_is_finished_and_a_release_does_not_restore_the_writs() {
    use std::future::Future as _;
    use std::task::Poll;
    let h = harness(
        json!([{"name": "probe", "denials": {"reasons": ["policy.denied"], "count": 1, "window_seconds": 60}}]),
    );
    // More outstanding writs than one window of concurrent revocations (256).
    let writs: Vec<String> = (0..600).map(|_| assert_allowed(&h.authorize(&read(&h, "billing-1")))).collect();
    let rt = rt();
    // The catch-up at start (what `writ serve` does before it listens): nothing unfinished.
    assert!(rt.block_on(h.engine.finish_isolations()).unwrap().is_empty());
    let tripping = serde_json::to_vec(&denied_write(&h, "billing-1")).unwrap();
    rt.block_on(async {
        let mut fut = Box::pin(h.engine.authorize(&tripping));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // Step the request until its quarantine is in force, then cut it.
        while !is_isolated(&h, "billing-1") {
            assert!(std::time::Instant::now() < deadline, "never isolated");
            let polled = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            if let Poll::Ready(d) = polled {
                panic!("the request ended before it could be cut: {d:?}");
            }
            tokio::task::yield_now().await;
        }
        drop(fut);
    });
    rt.block_on(h.engine.finish_isolations()).unwrap();
    let subject = SpiffeId::parse(&agent("billing-1")).unwrap();
    rt.block_on(h.engine.quarantine(&subject, false, Some("spiffe://demo.example/operator/alice"), "released"))
        .unwrap();
    for w in &writs {
        let refused = h.engine.verify(w, &read_digest()).err().map(|e| e.reason);
        assert_eq!(refused, Some(ReasonCode::WritRevoked), "a writ the isolation should have revoked");
    }
    drop(rt);
}
