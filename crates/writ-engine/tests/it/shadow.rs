//! The shadow bundle: it never changes an outcome, a reason or a writ (a deny-everything, an
//! allow-everything and a failing shadow over the same traffic as no shadow); exactly the
//! disagreements are recorded, each with both verdicts; who may set it and what it may be;
//! it survives a restart; promotion is an activation; replay reproduces every verdict and
//! catches a forged or missing one.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use writ_core::ReasonCode;
use writ_engine::{Decision, Engine, EngineError, Entry, Missing, Outcome, ShadowVerdict, replay};
use writ_policy::{Bundle, sign_bundle, starter_bundle};

use crate::harness::*;

const ALICE: &str = "spiffe://demo.example/operator/alice";

/// The starter bundle's manifest, schema and entities with these policies, at `version`.
fn starter_with_policies(policies: &str, version: &str) -> Bundle {
    let starter = starter_bundle().unwrap();
    let (manifest, _, schema, entities, _) = starter.parts();
    let manifest = manifest.replace(&format!("\"{}\"", starter.manifest().version), &format!("\"{version}\""));
    Bundle::from_parts(&manifest, policies, &schema, entities.as_deref(), None).unwrap()
}

/// Every declared action of every principal denied.
fn deny_everything() -> Bundle {
    starter_with_policies(
        "@id(\"nothing\")\n@reason(\"shadow: nothing at all\")\nforbid (principal, action, resource);\n",
        "90.0.0",
    )
}

/// Every declared action of every principal allowed, nothing forbidden, no approvals.
fn allow_everything() -> Bundle {
    starter_with_policies("@id(\"everything\")\npermit (principal, action, resource);\n", "91.0.0")
}

/// Every evaluation errors (an integer overflow Cedar reports at run time, not a
/// validation error): writ denies it with `policy.evaluation_error`.
fn overflowing() -> Bundle {
    starter_with_policies(
        "@id(\"overflow\")\npermit (principal, action, resource) when { context.usage.last_hour + 9223372036854775807 + 1 > 0 };\n",
        "92.0.0",
    )
}

/// Uploads `bundle` signed by the harness's policy key; its digest.
fn upload(h: &Harness, bundle: &Bundle) -> String {
    let sig = sign_bundle(bundle, &h.policy_key).unwrap();
    rt().block_on(h.engine.upload(bundle, &sig, Some(ALICE))).unwrap().to_string()
}

fn set(h: &Harness, digest: &str) -> Result<writ_engine::ShadowSetting, EngineError> {
    rt().block_on(h.engine.set_shadow(digest, Some(ALICE), "trying it on live traffic"))
}

/// One request of the traffic, and the outcome expected from the starter bundle, from the
/// deny-everything shadow and from the allow-everything shadow.
struct Call {
    request: Value,
    real: Outcome,
    deny_all: Outcome,
    allow_all: Outcome,
}

/// The traffic, the same for every run: allows, policy denies, a pending payment, an
/// undeclared action, a missing credential, a bad parent, and a child under an allow.
fn traffic(h: &Harness) -> Vec<Call> {
    use Outcome::{Allow, Deny, Pending};
    let mut calls = vec![
        Call {
            request: request(h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/a"})),
            real: Allow,
            deny_all: Deny,
            allow_all: Allow,
        },
        Call { request: write_request(h), real: Allow, deny_all: Deny, allow_all: Allow },
        Call {
            request: request(h, "billing-1", "write", "fs:/zones/support", json!({"path": "/zones/support/x"})),
            real: Deny,
            deny_all: Deny,
            allow_all: Allow,
        },
        Call {
            request: request(h, "billing-2", "payment", "payments:stripe", json!({"amount": 50, "currency": "EUR"})),
            real: Allow,
            deny_all: Deny,
            allow_all: Allow,
        },
        Call {
            request: request(h, "billing-3", "payment", "payments:stripe", json!({"amount": 5000, "currency": "EUR"})),
            real: Pending,
            deny_all: Deny,
            allow_all: Allow,
        },
        // Denied before policy or by the schema: every bundle agrees.
        Call {
            request: request(h, "billing-1", "teleport", "fs:/zones/billing", json!({})),
            real: Deny,
            deny_all: Deny,
            allow_all: Deny,
        },
        Call {
            request: json!({"credentials": {}, "action": "read", "resource": "fs:/zones/billing", "arguments": {}}),
            real: Deny,
            deny_all: Deny,
            allow_all: Deny,
        },
        Call {
            request: {
                let mut r = request(h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/b"}));
                r["parent"] = json!("no-such-writ");
                r
            },
            real: Deny,
            deny_all: Deny,
            allow_all: Deny,
        },
    ];
    for i in 0..6 {
        calls.push(Call {
            request: request(
                h,
                &format!("billing-{}", 10 + i),
                "read",
                "fs:/zones/billing",
                json!({"path": format!("/r/{i}")}),
            ),
            real: Allow,
            deny_all: Deny,
            allow_all: Allow,
        });
    }
    calls
}

/// What must not differ between runs: the outcome, reasons, policies, detail, and the writ's
/// claims but its id, root, parent and log position (which differ by construction).
fn observable(d: &Decision) -> Value {
    let claims = d.writ.as_deref().map(|w| {
        let payload = w.split('.').nth(1).unwrap();
        let mut c: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
        )
        .unwrap();
        for k in ["jti", "root", "par", "log"] {
            c.as_object_mut().unwrap().remove(k);
        }
        c
    });
    json!({"outcome": d.outcome, "reasons": d.reasons, "policies": d.policies, "detail": d.detail, "writ": claims, "recorded": d.log_index.is_some()})
}

/// The decision entries of the log from `from` on, by decision id: their `shadow` verdict.
fn shadow_fields(engine: &Engine, from: u64) -> BTreeMap<String, Option<ShadowVerdict>> {
    let size = engine.log().size();
    engine
        .log()
        .entries(from, size)
        .unwrap()
        .into_iter()
        .filter_map(|b| match serde_json::from_slice::<Entry>(&b).unwrap() {
            Entry::Decision { id, shadow, .. } => Some((id, shadow)),
            _ => None,
        })
        .collect()
}

/// Runs the traffic on a fresh engine with the starter active and `shadow` (if any) set;
/// the decisions, and the engine.
fn run(shadow: Option<&Bundle>) -> (Vec<Decision>, Harness, u64) {
    let h = Harness::new();
    if let Some(b) = shadow {
        let digest = upload(&h, b);
        set(&h, &digest).unwrap();
    }
    let from = h.engine.log().size();
    let calls = traffic(&h);
    let mut decisions: Vec<Decision> = calls.iter().map(|c| h.authorize(&c.request)).collect();
    // A child under the allowed write, and a child under the denied write.
    let mut child = request(&h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/c"}));
    under(&h, &mut child, &decisions[1], "billing-1", "billing-1");
    decisions.push(h.authorize(&child));
    (decisions, h, from)
}

#[test]
fn deny_everything_and_allow_everything_shadows_change_no_outcome_writ_or_reason() {
    let (plain, plain_h, _) = run(None);
    let expected: Vec<Outcome> = traffic(&plain_h).iter().map(|c| c.real).chain([Outcome::Allow]).collect();
    assert_eq!(plain.iter().map(|d| d.outcome).collect::<Vec<_>>(), expected, "the traffic is what the test assumes");
    for (shadow, verdict_of) in [
        (deny_everything(), (|c: &Call| c.deny_all) as fn(&Call) -> Outcome),
        (allow_everything(), |c: &Call| c.allow_all),
    ] {
        let (decided, h, from) = run(Some(&shadow));
        assert_eq!(decided.len(), plain.len());
        for (i, (a, b)) in plain.iter().zip(&decided).enumerate() {
            assert_eq!(observable(a), observable(b), "call {i} under shadow {}", shadow.manifest().version);
        }
        // Exactly the disagreements the table predicts are recorded, each with both verdicts.
        let calls = traffic(&h);
        let shadow_outcomes: Vec<Outcome> = calls
            .iter()
            .map(verdict_of)
            .chain([verdict_of(&Call {
                request: Value::Null,
                real: Outcome::Allow,
                deny_all: Outcome::Deny,
                allow_all: Outcome::Allow,
            })])
            .collect();
        let fields = shadow_fields(&h.engine, from);
        let recorded: Vec<&Decision> = decided.iter().filter(|d| d.log_index.is_some()).collect();
        assert_eq!(fields.len(), recorded.len(), "one entry per recorded decision, no other");
        let mut disagreements = 0;
        for (i, d) in decided.iter().enumerate() {
            let field = fields.get(&d.id).unwrap_or_else(|| panic!("call {i} not recorded"));
            if shadow_outcomes[i] == d.outcome {
                assert_eq!(field, &None, "call {i}: the shadow agreed, nothing is recorded");
            } else {
                disagreements += 1;
                let v = field.as_ref().unwrap_or_else(|| panic!("call {i}: the disagreement is not recorded"));
                assert_eq!(v.bundle, shadow.digest().to_string());
                assert_eq!(v.outcome, shadow_outcomes[i], "call {i}");
                match v.outcome {
                    Outcome::Deny => assert_eq!(v.reasons, vec![ReasonCode::PolicyDenied], "call {i}"),
                    _ => assert!(v.reasons.is_empty(), "call {i}: {v:?}"),
                }
            }
        }
        let expected_disagreements = expected.iter().zip(&shadow_outcomes).filter(|(r, s)| r != s).count();
        assert_eq!(disagreements, expected_disagreements);
        assert!(disagreements >= 2, "the traffic exercises the shadow: {disagreements}");
        let status = h.engine.shadow();
        assert_eq!(status.evaluated, recorded.len() as u64);
        assert_eq!(status.disagreements, disagreements as u64);
        let by_pair: u64 = h.engine.shadow_disagreements().iter().map(|(_, _, n)| n).sum();
        assert_eq!(by_pair, disagreements as u64);
        // The lineage is the real one: the child sits under the real allow.
        let child = decided.last().unwrap();
        assert_eq!(h.engine.lineage(&child.id).unwrap().nodes.len(), 2);
        let report = replay(h.engine.log().store().as_ref()).unwrap();
        assert!(report.mismatches.is_empty(), "{report:?}");
        assert_eq!(report.shadow_verdicts, disagreements as u64);
    }
}

#[test]
fn a_shadow_whose_evaluation_errors_never_denies_a_real_call() {
    // An evaluation error inside the bundle: every shadow verdict is a deny with
    // `policy.evaluation_error`; every real allow stays an allow.
    let (plain, _, _) = run(None);
    let (decided, h, from) = run(Some(&overflowing()));
    for (a, b) in plain.iter().zip(&decided) {
        assert_eq!(observable(a), observable(b));
    }
    let fields = shadow_fields(&h.engine, from);
    let allows: Vec<&Decision> = decided.iter().filter(|d| d.outcome != Outcome::Deny).collect();
    assert!(allows.len() >= 8);
    for d in &allows {
        let v = fields[&d.id].as_ref().unwrap();
        assert_eq!((v.outcome, &v.reasons[..]), (Outcome::Deny, &[ReasonCode::PolicyEvaluationError][..]));
    }
    assert_eq!(fields.values().filter(|f| f.is_some()).count(), allows.len());
    assert!(replay(h.engine.log().store().as_ref()).unwrap().mismatches.is_empty());

    // A panic in the shadow's evaluation (forced through a fail point): the same.
    let scenario = fail::FailScenario::setup();
    fail::cfg("writ-engine::shadow", "panic").unwrap();
    let h = Harness::new();
    let panicking = starter_with_policies(&starter_bundle().unwrap().parts().1, "93.0.0+failpoint");
    set(&h, &upload(&h, &panicking)).unwrap();
    let from = h.engine.log().size();
    let d = h.authorize(&write_request(&h));
    assert_allowed(&d);
    let denied =
        h.authorize(&request(&h, "billing-1", "write", "fs:/zones/support", json!({"path": "/zones/support/x"})));
    assert_denied(&denied, ReasonCode::PolicyDenied);
    let fields = shadow_fields(&h.engine, from);
    let v = fields[&d.id].as_ref().unwrap();
    assert_eq!((v.outcome, &v.reasons[..]), (Outcome::Deny, &[ReasonCode::PolicyEvaluationError][..]));
    assert_eq!(fields[&denied.id], None, "both denied: no disagreement");
    assert_eq!(h.engine.shadow().evaluated, 2);
    scenario.teardown();
}

#[test]
fn only_a_signed_bundle_the_log_holds_and_not_the_active_one_can_be_the_shadow() {
    let h = Harness::new();
    let before = h.engine.log().size();
    // Unknown digest.
    let unknown = format!("sha256:{}", "ab".repeat(32));
    assert!(matches!(set(&h, &unknown), Err(EngineError::NotFound(Missing::Bundle(_)))));
    // Uploaded but refused (signed by an untrusted key): the log keeps no parts of it.
    let stranger = writ_log::NoteSigner::from_seed("policy.evil.example", [9; 32]).unwrap();
    let b = deny_everything();
    let forged = sign_bundle(&b, &stranger).unwrap();
    assert!(rt().block_on(h.engine.upload(&b, &forged, Some(ALICE))).is_err());
    let after_upload = h.engine.log().size();
    assert!(matches!(set(&h, &b.digest().to_string()), Err(EngineError::NotFound(Missing::Bundle(_)))));
    // The active bundle.
    let active = starter_bundle().unwrap().digest().to_string();
    let e = set(&h, &active).unwrap_err();
    assert!(matches!(e, EngineError::ShadowIsActive { .. }), "{e:?}");
    assert!(e.detail().contains("active"), "{}", e.detail());
    // Nothing to clear or promote.
    assert!(matches!(
        rt().block_on(h.engine.clear_shadow(Some(ALICE), "r")),
        Err(EngineError::NotFound(Missing::Shadow))
    ));
    assert!(matches!(
        rt().block_on(h.engine.promote_shadow(Some(ALICE), "r")),
        Err(EngineError::NotFound(Missing::Shadow))
    ));
    assert_eq!(h.engine.log().size(), after_upload, "a refusal records nothing");
    assert_eq!(after_upload, before + 1, "only the refused upload was recorded");
    assert_eq!(h.engine.shadow().bundle, None);

    // A bundle uploaded under a policy key that is no longer trusted.
    let digest = upload(&h, &deny_everything());
    let Harness { dir, issuer, engine, .. } = h;
    drop(engine);
    let other_key = writ_log::NoteSigner::from_seed("policy.demo.example", [7; 32]).unwrap();
    let h = Harness::open(dir, Some((issuer, other_key)));
    let e = set(&h, &digest).unwrap_err();
    assert!(matches!(e, EngineError::BundleUntrusted(_)), "{e:?}");
    assert_eq!(h.engine.shadow().bundle, None);
}

#[test]
fn the_shadow_is_recorded_survives_a_restart_and_clears() {
    let h = Harness::new();
    let digest = upload(&h, &deny_everything());
    let feed_before = rt().block_on(h.engine.feed_view()).unwrap();
    let s = set(&h, &digest).unwrap();
    // The revocation feed does not publish the shadow: nothing enforces it.
    let feed_after = rt().block_on(h.engine.feed_view()).unwrap();
    assert_eq!((feed_after.changed_at, feed_after.bundle), (feed_before.changed_at, feed_before.bundle));
    assert_eq!((s.digest.as_str(), s.version.as_str(), s.set_by.as_deref()), (digest.as_str(), "90.0.0", Some(ALICE)));
    let entry: Entry =
        serde_json::from_slice(&h.engine.log().entries(s.log_index, s.log_index + 1).unwrap()[0]).unwrap();
    let Entry::Shadow { bundle, operator, reason, .. } = &entry else { panic!("{entry:?}") };
    assert_eq!(
        (bundle.as_deref(), operator.as_deref(), reason.as_str()),
        (Some(digest.as_str()), Some(ALICE), "trying it on live traffic")
    );
    assert_eq!(entry.kind_and_operator(), ("shadow", Some(ALICE)));

    let Harness { dir, issuer, policy_key, engine, .. } = h;
    drop(engine);
    let h = Harness::open(dir, Some((issuer, policy_key)));
    assert_eq!(h.engine.shadow().bundle, Some(s.clone()), "rebuilt from the log");
    assert_eq!(h.engine.shadow().evaluated, 0, "counts are since the engine opened");
    let d = h.authorize(&write_request(&h));
    assert_allowed(&d);
    let v = shadow_fields(&h.engine, 0)[&d.id].clone().unwrap();
    assert_eq!((v.bundle.as_str(), v.outcome), (digest.as_str(), Outcome::Deny));

    let cleared = rt().block_on(h.engine.clear_shadow(Some(ALICE), "seen enough")).unwrap();
    let d = h.authorize(&write_request(&h));
    assert_eq!(shadow_fields(&h.engine, cleared)[&d.id], None);
    assert_eq!(h.engine.shadow().bundle, None);
    let Harness { dir, issuer, policy_key, engine, .. } = h;
    drop(engine);
    let h = Harness::open(dir, Some((issuer, policy_key)));
    assert_eq!(h.engine.shadow().bundle, None, "the clear is rebuilt too");
    assert!(replay(h.engine.log().store().as_ref()).unwrap().mismatches.is_empty());
}

#[test]
fn promotion_is_an_activation_with_its_reevaluation_then_no_shadow() {
    let h = Harness::new();
    let write = h.authorize(&write_request(&h));
    assert_allowed(&write);
    let read =
        assert_allowed(&h.authorize(&request(&h, "billing-1", "read", "fs:/zones/billing", json!({"path": "/a"}))));
    let frozen = deny_everything();
    let digest = upload(&h, &frozen);
    set(&h, &digest).unwrap();
    let p = rt().block_on(h.engine.promote_shadow(Some(ALICE), "the shadow agreed for a week")).unwrap();
    assert_eq!(p.activated.digest.to_string(), digest);
    assert_eq!(p.cleared, p.activated.log_index + 1, "the clear follows the activation");
    assert_eq!((p.activated.reevaluation.reevaluated, p.activated.reevaluation.revoked), (2, 2));
    assert_eq!(h.engine.active_bundle().unwrap().2.to_string(), digest);
    assert_eq!(h.engine.shadow().bundle, None);
    let entries = h.engine.log().entries(p.activated.log_index, p.cleared + 1).unwrap();
    let Entry::Activation { check, .. } = serde_json::from_slice(&entries[0]).unwrap() else { panic!() };
    assert_eq!((check.accepted, check.operator.as_deref()), (true, Some(ALICE)));
    let Entry::Shadow { bundle: None, reason, .. } = serde_json::from_slice(&entries[1]).unwrap() else { panic!() };
    assert_eq!(reason, "the shadow agreed for a week");
    let _ = read;
    // Decisions now are the promoted bundle's, with no shadow beside them.
    let d = h.authorize(&write_request(&h));
    assert_denied(&d, ReasonCode::PolicyDenied);
    assert_eq!(shadow_fields(&h.engine, p.cleared)[&d.id], None);

    // An activation of the shadow's bundle by any other way clears it too.
    let open = allow_everything();
    let digest = upload(&h, &open);
    set(&h, &digest).unwrap();
    let a = rt().block_on(h.engine.activate_known(&digest, Some(ALICE))).unwrap();
    assert_eq!(h.engine.shadow().bundle, None);
    let next: Entry =
        serde_json::from_slice(&h.engine.log().entries(a.log_index + 1, a.log_index + 2).unwrap()[0]).unwrap();
    assert!(matches!(next, Entry::Shadow { bundle: None, .. }), "{next:?}");
    assert!(replay(h.engine.log().store().as_ref()).unwrap().mismatches.is_empty());
}

#[test]
fn replay_catches_a_forged_or_a_missing_shadow_verdict() {
    let (decided, h, _) = run(Some(&deny_everything()));
    let size = h.engine.log().size();
    let entries = h.engine.log().entries(0, size).unwrap();
    let index_of = |d: &Decision| d.log_index.unwrap() as usize;
    let allowed = decided.iter().find(|d| d.outcome == Outcome::Allow).unwrap();
    let denied =
        decided.iter().find(|d| d.outcome == Outcome::Deny && d.reason() == Some(ReasonCode::PolicyDenied)).unwrap();
    let conn = rusqlite::Connection::open(h.dir.path().join("log.db")).unwrap();
    let rewrite = |index: usize, from: &str, to: &str| {
        let text = String::from_utf8(entries[index].clone()).unwrap();
        assert!(text.contains(from), "{text}");
        let changed = conn
            .execute(
                "UPDATE entries SET data = ?1 WHERE idx = ?2",
                rusqlite::params![text.replacen(from, to, 1).as_bytes(), index as i64],
            )
            .unwrap();
        assert_eq!(changed, 1);
    };
    // A recorded disagreement removed, and a disagreement invented.
    let text = String::from_utf8(entries[index_of(allowed)].clone()).unwrap();
    let start = text.find(",\"shadow\":").unwrap();
    let end = text[start..].find("},").unwrap() + start + 1;
    rewrite(index_of(allowed), &text[start..end], "");
    rewrite(
        index_of(denied),
        ",\"time\":",
        &format!(
            ",\"shadow\":{{\"bundle\":\"{}\",\"outcome\":\"allow\",\"reasons\":[]}},\"time\":",
            deny_everything().digest()
        ),
    );
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    let mut flagged: Vec<u64> = report.mismatches.iter().map(|m| m.index).collect();
    flagged.sort();
    let mut expected = vec![allowed.log_index.unwrap(), denied.log_index.unwrap()];
    expected.sort();
    assert_eq!(flagged, expected, "{report:?}");
}
