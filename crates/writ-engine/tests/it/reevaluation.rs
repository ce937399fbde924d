//! Re-evaluation on activation: a stricter bundle revokes exactly the outstanding writs it
//! would deny and their descendants, records why, never un-revokes on rollback, cannot be
//! raced by decisions in flight, and is finished after an interruption.

use serde_json::json;
use writ_core::ReasonCode;
use writ_engine::{Activated, Entry, Outcome};
use writ_policy::{Bundle, sign_bundle, starter_bundle};

use crate::harness::*;

const WRITE_OWN_ZONE: &str = "@id(\"write-own-zone\")";
const NO_WRITES: &str = "@id(\"write-own-zone-off\")\n@reason(\"nothing\")\nforbid (principal, action == Writ::Action::\"write\", resource);\n@id(\"write-own-zone\")";

/// The starter bundle with `from` replaced by `to` in its policies, at `version`.
fn starter_with(from: &str, to: &str, version: &str) -> Bundle {
    let (manifest, policies, schema, entities, _) = starter_bundle().unwrap().parts();
    assert!(policies.contains(from), "the starter bundle no longer has {from:?}");
    Bundle::from_parts(
        &manifest.replace(&format!("\"{}\"", starter_bundle().unwrap().manifest().version), &format!("\"{version}\"")),
        &policies.replace(from, to),
        &schema,
        entities.as_deref(),
        None,
    )
    .unwrap()
}

fn activate(h: &Harness, bundle: &Bundle) -> Activated {
    let sig = sign_bundle(bundle, &h.policy_key).unwrap();
    rt().block_on(h.engine.activate(bundle, &sig, Some("spiffe://demo.example/operator/alice"))).unwrap()
}

fn jti(writ: &str) -> String {
    let payload = writ.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// The revocation entries of the log, by writ id: (bundle, ancestor, reason).
fn revocations(h: &Harness) -> std::collections::BTreeMap<String, (Option<String>, Option<String>, String)> {
    let size = h.engine.log().size();
    h.engine
        .log()
        .entries(0, size)
        .unwrap()
        .into_iter()
        .filter_map(|b| match serde_json::from_slice::<Entry>(&b).unwrap() {
            Entry::Revocation { jti, bundle, ancestor, reason, .. } => Some((jti, (bundle, ancestor, reason))),
            _ => None,
        })
        .collect()
}

fn verify_reason(h: &Harness, writ: &str, request: &serde_json::Value) -> Option<ReasonCode> {
    let digest = writ_core::request_digest(
        request["action"].as_str().unwrap(),
        request["resource"].as_str().unwrap(),
        &request["arguments"],
    )
    .unwrap();
    h.engine.verify(writ, &digest).err().map(|e| e.reason)
}

#[test]
fn a_stricter_bundle_revokes_exactly_the_writs_it_would_deny_and_their_descendants() {
    let h = Harness::new();
    let starter = starter_bundle().unwrap().digest().to_string();
    let read_req = request(&h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/a"}));
    let read = assert_allowed(&h.authorize(&read_req));
    let write_req = write_request(&h);
    let write = h.authorize(&write_req);
    let write_writ = assert_allowed(&write);
    // A read under the write (a lineage child), and a read under that (a grandchild).
    let mut child_req = request(&h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/c"}));
    under(&h, &mut child_req, &write, "billing-1", "billing-1");
    let child = h.authorize(&child_req);
    let child_writ = assert_allowed(&child);
    let mut grandchild_req = request(&h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/g"}));
    under(&h, &mut grandchild_req, &child, "billing-1", "billing-1");
    let grandchild = assert_allowed(&h.authorize(&grandchild_req));
    let other_write_req =
        request(&h, "billing-2", "write", "fs:/zones/billing", json!({"path": "/zones/billing/b.csv"}));
    let other_write = assert_allowed(&h.authorize(&other_write_req));
    // Denied and expired writs are not outstanding.
    assert_denied(
        &h.authorize(&request(&h, "billing-1", "write", "fs:/zones/support", json!({"path": "/zones/support/x"}))),
        ReasonCode::PolicyDenied,
    );

    let stricter = starter_with(WRITE_OWN_ZONE, NO_WRITES, "9.0.0");
    let size_before = h.engine.log().size();
    let a = activate(&h, &stricter);
    let r = &a.reevaluation;
    assert_eq!(a.log_index, size_before, "the activation is the next entry");
    assert_eq!((r.reevaluated, r.revoked, r.descendants), (5, 2, 2), "{r:?}");
    assert_eq!(r.bundle, stricter.digest().to_string());
    assert_eq!(r.activation, a.log_index);
    assert_eq!(r.log_index + 1, h.engine.log().size(), "the reevaluation entry closes it");

    let revoked = revocations(&h);
    assert_eq!(revoked.len(), 4, "{revoked:?}");
    let digest = Some(stricter.digest().to_string());
    for w in [&write_writ, &other_write] {
        let (bundle, ancestor, reason) = &revoked[&jti(w)];
        assert_eq!((bundle, ancestor), (&digest, &None));
        assert!(reason.contains("policy.denied") && reason.contains("9.0.0"), "{reason}");
    }
    for w in [&child_writ, &grandchild] {
        let (bundle, ancestor, _) = &revoked[&jti(w)];
        assert_eq!(bundle, &digest);
        assert!(ancestor.is_some(), "a descendant names the revoked writ above it");
    }
    assert_eq!(revoked[&jti(&child_writ)].1.as_deref(), Some(jti(&write_writ).as_str()));
    assert!(!revoked.contains_key(&jti(&read)));
    // Each revoked writ is refused; the read is not.
    assert_eq!(verify_reason(&h, &write_writ, &write_req), Some(ReasonCode::WritRevoked));
    assert_eq!(verify_reason(&h, &other_write, &other_write_req), Some(ReasonCode::WritRevoked));
    assert_eq!(verify_reason(&h, &child_writ, &child_req), Some(ReasonCode::WritRevoked));
    assert_eq!(verify_reason(&h, &read, &read_req), None);
    // And the revocation feed lists them.
    let view = rt().block_on(h.engine.feed_view()).unwrap();
    let listed: Vec<&str> = view.lists.revoked.iter().map(|(id, _)| id.as_str()).collect();
    for w in [&write_writ, &other_write, &child_writ, &grandchild] {
        assert!(listed.contains(&jti(w).as_str()), "{listed:?}");
    }

    // Rolling back re-evaluates and revokes nothing back: the revoked stay revoked.
    let back = rt().block_on(h.engine.activate_known(&starter, Some("spiffe://demo.example/operator/alice"))).unwrap();
    assert_eq!((back.reevaluation.reevaluated, back.reevaluation.revoked, back.reevaluation.descendants), (1, 0, 0));
    assert_eq!(revocations(&h).len(), 4);
    assert_eq!(verify_reason(&h, &write_writ, &write_req), Some(ReasonCode::WritRevoked));
    // The same bundle again changes nothing.
    let again = rt().block_on(h.engine.activate_known(&starter, None)).unwrap();
    assert_eq!(again.reevaluation.revoked, 0);
}

#[test]
fn expired_writs_are_not_reevaluated_and_a_bundle_asking_approval_revokes_unapproved_writs() {
    let h = Harness::new();
    let old_write = assert_allowed(&h.authorize(&write_request(&h)));
    // Past the writ's window (300 s) and the skew (30 s).
    h.clock.advance(331);
    let write = assert_allowed(&h.authorize(&write_request(&h)));
    // The same permit, now with an operator's approval: a write writ nobody approved goes.
    let ask = "@id(\"write-own-zone\")\n@approval(\"writes need a person now\")";
    let stricter = starter_with(WRITE_OWN_ZONE, ask, "9.1.0");
    let a = activate(&h, &stricter);
    assert_eq!(a.reevaluation.reevaluated, 1, "only the unexpired writ: {:?}", a.reevaluation);
    assert_eq!(a.reevaluation.revoked, 1);
    let revoked = revocations(&h);
    assert!(revoked[&jti(&write)].2.contains("approval"), "{revoked:?}");
    assert!(!revoked.contains_key(&jti(&old_write)));
    // A new write now waits for a person.
    assert_eq!(h.authorize(&write_request(&h)).outcome, Outcome::Pending);
}

#[test]
fn decisions_racing_an_activation_never_keep_a_writ_the_new_bundle_denies() {
    let h = Harness::new();
    let stricter = starter_with(WRITE_OWN_ZONE, NO_WRITES, "9.2.0");
    let sig = sign_bundle(&stricter, &h.policy_key).unwrap();
    let requests: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let req = request(
                &h,
                &format!("billing-{}", i % 6),
                "write",
                "fs:/zones/billing",
                json!({"path": format!("/zones/billing/{i}.csv")}),
            );
            serde_json::to_vec(&req).unwrap()
        })
        .collect();
    let runtime = rt();
    let (decisions, activated) = runtime.block_on(async {
        let decide = futures_util::future::join_all(requests.iter().map(|b| h.engine.authorize(b)));
        let activate = async {
            tokio::task::yield_now().await;
            h.engine.activate(&stricter, &sig, None).await
        };
        tokio::join!(decide, activate)
    });
    let activated = activated.unwrap();
    let revoked = revocations(&h);
    let mut allowed = 0;
    for d in &decisions {
        if d.outcome == Outcome::Allow {
            allowed += 1;
            assert!(
                revoked.contains_key(&d.id),
                "writ {} was allowed under the old bundle and outlived the activation",
                d.id
            );
            assert!(d.log_index.unwrap() < activated.log_index, "an allow recorded after the activation");
        }
    }
    assert_eq!(u64::try_from(allowed).unwrap(), activated.reevaluation.revoked);
}

#[test]
fn an_interrupted_reevaluation_is_finished_when_the_engine_is_next_asked() {
    let scenario = fail::FailScenario::setup();
    let h = Harness::new();
    let write = assert_allowed(&h.authorize(&write_request(&h)));
    let stricter = starter_with(WRITE_OWN_ZONE, NO_WRITES, "9.3.0+failpoint");
    let sig = sign_bundle(&stricter, &h.policy_key).unwrap();
    fail::cfg("writ-engine::reevaluate", "return").unwrap();
    let err = rt().block_on(h.engine.activate(&stricter, &sig, None)).unwrap_err();
    fail::remove("writ-engine::reevaluate");
    drop(scenario);
    assert!(err.detail().contains("interrupted"), "{}", err.detail());
    assert!(revocations(&h).is_empty(), "the stop came before any revocation");
    assert_eq!(h.engine.active_bundle().unwrap().2, stricter.digest(), "the activation itself is recorded");

    // Reopened over the same log, the engine finishes it, once.
    let Harness { engine, dir, issuer, policy_key, .. } = h;
    drop(engine);
    let h = Harness::open(dir, Some((issuer, policy_key)));
    let done = rt().block_on(h.engine.finish_reevaluation()).unwrap().expect("a re-evaluation was due");
    assert_eq!((done.reevaluated, done.revoked), (1, 1));
    assert!(revocations(&h).contains_key(&jti(&write)));
    assert_eq!(rt().block_on(h.engine.finish_reevaluation()).unwrap(), None);
    let Harness { engine, dir, issuer, policy_key, .. } = h;
    drop(engine);
    let h = Harness::open(dir, Some((issuer, policy_key)));
    assert_eq!(rt().block_on(h.engine.finish_reevaluation()).unwrap(), None, "the reevaluation entry closed it");
}
