//! One test per reason code the engine produces, each from a realistic hostile request.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Map, json};
use writ_core::{ReasonCode, SpiffeId, request_digest};
use writ_identity::DevIssuer;
use writ_log::NoteSigner;
use writ_policy::{Bundle, sign_bundle, starter_bundle};

use crate::harness::*;

#[test]
fn allowed_request_gets_a_writ_bound_to_it_that_verifies_once() {
    let h = Harness::new();
    let req = write_request(&h);
    let d = h.authorize(&req);
    let writ = assert_allowed(&d);
    let v = h.engine.verify(&writ, &digest_of(&req)).unwrap();
    assert_eq!(v.claims.sub, "spiffe://demo.example/agent/billing-1");
    assert_eq!(v.claims.act, "write");
    assert_eq!(v.claims.log.index, d.log_index.unwrap());
    assert_eq!(v.claims.root, v.claims.jti);
    assert_eq!(v.claims.pol, h.engine.active_bundle().unwrap().2.to_string());
    // writ.replayed: the same writ presented twice.
    let again = h.engine.verify(&writ, &digest_of(&req)).unwrap_err();
    assert_eq!(again.reason, ReasonCode::WritReplayed);
}

/// Single use across a restart of the enforcement point: the used set a closing engine hands
/// to the next one over the same log (a clean stop) keeps a used writ refused and an unused
/// one valid; with the set lost (a kill), writs issued before the restart are refused as
/// replayed, and writs issued at or after it verify.
#[test]
fn writ_replayed_across_a_restart() {
    let reopen = |h: Harness, at: u64| {
        let Harness { engine, dir, issuer, policy_key, .. } = h;
        drop(engine);
        let h = Harness::open(dir, Some((issuer, policy_key)));
        h.clock.set(at);
        h
    };
    let h = Harness::new();
    let req = write_request(&h);
    let digest = digest_of(&req);
    let used = assert_allowed(&h.authorize(&req));
    let unused = assert_allowed(&h.authorize(&req));
    h.engine.verify(&used, &digest).unwrap();
    let kept = h.engine.close_verification();
    assert_eq!(kept.used.len(), 1);
    assert_eq!(kept.refuse_issued_before, 0);
    // Closed: nothing verifies after the snapshot, so nothing can be missing from it.
    let r = h.engine.verify(&unused, &digest).unwrap_err();
    assert_eq!(r.reason, ReasonCode::WritReplayed, "{r:?}");
    assert!(r.detail.contains("stopping"), "{r:?}");

    let t0 = h.now();
    let clean = reopen(h, t0);
    clean.engine.restore_used_writs(kept);
    assert_eq!(clean.engine.verify(&used, &digest).unwrap_err().reason, ReasonCode::WritReplayed);
    clean.engine.verify(&unused, &digest).unwrap();

    // Killed: nothing kept. Writs from before the restart are refused, fresh ones are not.
    let before = assert_allowed(&clean.authorize(&req));
    let killed = reopen(clean, t0 + 1);
    killed.engine.refuse_writs_issued_before(t0 + 1);
    let r = killed.engine.verify(&before, &digest).unwrap_err();
    assert_eq!(r.reason, ReasonCode::WritReplayed, "{r:?}");
    assert!(r.detail.contains("restarted"), "{r:?}");
    let after = assert_allowed(&killed.authorize(&req));
    killed.engine.verify(&after, &digest).unwrap();
    // Writs verified since the restart are kept with the time after which they lapse.
    let kept = killed.engine.close_verification();
    assert_eq!(kept.used.len(), 1);
    assert!(kept.used[0].1 > killed.now());
    // Issue 13, item 1: the horizon is kept too, so the clean restart after the kill still
    // refuses the writ from before it (it verified `ok` again before), and the next too.
    assert_eq!(kept.refuse_issued_before, t0 + 1);
    let after_clean = reopen(killed, t0 + 2);
    after_clean.engine.restore_used_writs(kept);
    let r = after_clean.engine.verify(&before, &digest).unwrap_err();
    assert_eq!(r.reason, ReasonCode::WritReplayed, "{r:?}");
    assert_eq!(after_clean.engine.verify(&after, &digest).unwrap_err().reason, ReasonCode::WritReplayed);
    let kept = after_clean.engine.close_verification();
    assert_eq!(kept.refuse_issued_before, t0 + 1);
    let again = reopen(after_clean, t0 + 3);
    again.engine.restore_used_writs(kept);
    assert_eq!(again.engine.verify(&before, &digest).unwrap_err().reason, ReasonCode::WritReplayed);
}

#[test]
fn request_malformed() {
    let h = Harness::new();
    let d = h.authorize(&json!({"action": "write", "resource": "fs:/zones/billing", "sudo": true}));
    assert_denied(&d, ReasonCode::RequestMalformed);
    assert!(d.log_index.is_some(), "malformed requests are recorded too");
    let d = rt().block_on(h.engine.authorize(b"{not json"));
    assert_denied(&d, ReasonCode::RequestMalformed);
}

#[test]
fn identity_missing() {
    let h = Harness::new();
    let mut req = write_request(&h);
    req["credentials"] = json!({});
    assert_denied(&h.authorize(&req), ReasonCode::IdentityMissing);
}

#[test]
fn identity_malformed() {
    let h = Harness::new();
    let mut req = write_request(&h);
    req["credentials"]["workload"] = json!("not.a.jwt");
    assert_denied(&h.authorize(&req), ReasonCode::IdentityMalformed);
}

#[test]
fn identity_bad_signature_forged() {
    let h = Harness::new();
    let mut req = write_request(&h);
    let token = req["credentials"]["workload"].as_str().unwrap().to_owned();
    // Swap the payload for one naming another agent, keeping the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&B64URL.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("spiffe://demo.example/agent/admin");
    parts[1] = B64URL.encode(serde_json::to_vec(&claims).unwrap());
    req["credentials"]["workload"] = json!(parts.join("."));
    assert_denied(&h.authorize(&req), ReasonCode::IdentityBadSignature);
}

#[test]
fn identity_bad_signature_alg_none_and_hmac_confusion() {
    let h = Harness::new();
    let token = h.credential("billing-1", Some("billing"));
    let parts: Vec<&str> = token.split('.').collect();
    let mut header: serde_json::Value = serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
    header["alg"] = json!("none");
    let none = format!("{}.{}.", B64URL.encode(serde_json::to_vec(&header).unwrap()), parts[1]);
    let mut req = write_request(&h);
    req["credentials"]["workload"] = json!(none);
    assert_denied(&h.authorize(&req), ReasonCode::IdentityBadSignature);
    // HS256 keyed with the issuer's public key bytes.
    header["alg"] = json!("HS256");
    let x = h.issuer.public_jwk()["x"].as_str().unwrap().to_owned();
    let key = jsonwebtoken::EncodingKey::from_secret(&B64URL.decode(x).unwrap());
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(h.issuer.kid().to_owned());
    let claims: serde_json::Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    req["credentials"]["workload"] = json!(jsonwebtoken::encode(&hs, &claims, &key).unwrap());
    assert_denied(&h.authorize(&req), ReasonCode::IdentityBadSignature);
}

#[test]
fn identity_untrusted_issuer() {
    let h = Harness::new();
    let rogue = DevIssuer::generate("demo.example", "https://rogue.example").unwrap();
    let subject = SpiffeId::parse("spiffe://demo.example/agent/billing-1").unwrap();
    let token = rogue
        .issue(writ_identity::IssueRequest {
            subject: &subject,
            audience: vec!["writ".into()],
            ttl_secs: 600,
            extra_claims: Map::new(),
            now: h.now(),
        })
        .unwrap();
    let mut req = write_request(&h);
    req["credentials"]["workload"] = json!(token);
    assert_denied(&h.authorize(&req), ReasonCode::IdentityUntrustedIssuer);
}

#[test]
fn identity_expired_and_not_yet_valid() {
    let h = Harness::new();
    let mut req = write_request(&h);
    req["credentials"]["workload"] =
        json!(h.credential_with("billing-1", Some("billing"), vec!["writ".into()], 60, h.now() - 3600, Map::new()));
    assert_denied(&h.authorize(&req), ReasonCode::IdentityExpired);
    req["credentials"]["workload"] =
        json!(h.credential_with("billing-1", Some("billing"), vec!["writ".into()], 600, h.now() + 3600, Map::new()));
    assert_denied(&h.authorize(&req), ReasonCode::IdentityNotYetValid);
}

#[test]
fn identity_audience() {
    let h = Harness::new();
    let mut req = write_request(&h);
    req["credentials"]["workload"] = json!(h.credential_with(
        "billing-1",
        Some("billing"),
        vec!["another-service".into()],
        600,
        h.now(),
        Map::new()
    ));
    assert_denied(&h.authorize(&req), ReasonCode::IdentityAudience);
}

#[test]
fn attestation_invalid_for_another_workload() {
    let h = Harness::new();
    let mut req =
        request(&h, "billing-1", "deploy", "deploy:billing-api", json!({"service": "billing-api", "version": "1.4.2"}));
    req["attestation"] = json!(h.attestation("someone-else", "production"));
    assert_denied(&h.authorize(&req), ReasonCode::AttestationInvalid);
    // The right one allows (deploys need an attested production runtime).
    h.clock.set(writ_engine::parse_rfc3339("2026-11-26T11:00:00Z").unwrap());
    req["credentials"]["workload"] = json!(h.credential("billing-1", Some("billing")));
    req["attestation"] = json!(h.attestation("billing-1", "production"));
    assert_allowed(&h.authorize(&req));
    // Without one: the bundle requires it for deploys.
    req.as_object_mut().unwrap().remove("attestation");
    assert_denied(&h.authorize(&req), ReasonCode::AttestationMissing);
}

#[test]
fn quarantined_until_released() {
    let h = Harness::new();
    let agent = SpiffeId::parse("spiffe://demo.example/agent/billing-1").unwrap();
    rt().block_on(h.engine.quarantine(&agent, true, Some("op"), "repeated violations")).unwrap();
    assert_denied(&h.authorize(&write_request(&h)), ReasonCode::Quarantined);
    assert_eq!(h.engine.quarantined().into_iter().map(|(s, _)| s).collect::<Vec<_>>(), vec![agent.to_string()]);
    rt().block_on(h.engine.quarantine(&agent, false, Some("op"), "cleared")).unwrap();
    assert_allowed(&h.authorize(&write_request(&h)));
}

/// A spawn by `agent`, as a child of `parent` (its decision and agent) when given.
fn spawn(h: &Harness, parent: Option<(&writ_engine::Decision, &str)>, agent: &str) -> writ_engine::Decision {
    let mut req = request(h, agent, "spawn", "agents:pool", json!({"agent": "worker"}));
    if let Some((p, parent_agent)) = parent {
        under(h, &mut req, p, parent_agent, agent);
    }
    h.authorize(&req)
}

#[test]
fn lineage_parent_unknown() {
    let h = Harness::new();
    let mut req = request(&h, "a", "spawn", "agents:pool", json!({"agent": "worker"}));
    req["parent"] = json!("w-00000000000000000000000000000000");
    assert_denied(&h.authorize(&req), ReasonCode::LineageParentUnknown);
    // A parent writ that does not verify proves nothing.
    let mut req = request(&h, "a", "spawn", "agents:pool", json!({"agent": "worker"}));
    req["parent_writ"] = json!("eyJhbGciOiJFZERTQSJ9.e30.AAAA");
    assert_denied(&h.authorize(&req), ReasonCode::LineageParentUnknown);
}

/// Issue 13, item 6: a parent was a writ id, and ids are public in the log, so any principal
/// of the zone could name another's writ as its parent and inherit its lineage. A child
/// must now hold the parent writ, and the parent's principal must have delegated to it.
#[test]
fn regression_lineage_is_proven_by_possession_not_by_naming() {
    let h = Harness::new();
    let root = spawn(&h, None, "planner");
    let root_writ = assert_allowed(&root).to_owned();
    // Naming the public id alone: refused, whoever names it (the owner too).
    for agent in ["intruder", "planner"] {
        let mut named = request(&h, agent, "read", "fs:/zones/billing", json!({}));
        named["parent"] = json!(root.id);
        let d = h.authorize(&named);
        assert_denied(&d, ReasonCode::LineageParentUnknown);
        assert!(d.detail.contains("parent_writ"), "{d:?}");
    }
    // Holding the writ (say, leaked) without the owner's delegation: refused.
    let mut stolen = request(&h, "intruder", "read", "fs:/zones/billing", json!({}));
    stolen["parent_writ"] = json!(root_writ);
    let d = h.authorize(&stolen);
    assert_denied(&d, ReasonCode::LineageScopeEscalation);
    assert!(d.detail.contains("did not delegate"), "{d:?}");
    // A delegation by someone else than the parent's principal, or naming someone else.
    for (from, to) in [("intruder", "intruder"), ("other", "intruder"), ("planner", "someone-else")] {
        stolen["credentials"]["delegation"] = json!(h.delegation(from, to));
        assert_denied(&h.authorize(&stolen), ReasonCode::LineageScopeEscalation);
    }
    // The writ presented is not the parent named.
    let other = spawn(&h, None, "planner");
    let mut mismatch = request(&h, "planner", "read", "fs:/zones/billing", json!({}));
    mismatch["parent"] = json!(other.id);
    mismatch["parent_writ"] = json!(root_writ);
    assert_denied(&h.authorize(&mismatch), ReasonCode::RequestMalformed);
    // A delegation credential cannot act as the delegating principal.
    let mut impersonation = request(&h, "planner", "read", "fs:/zones/billing", json!({}));
    impersonation["credentials"]["workload"] = json!(h.delegation("planner", "intruder"));
    assert_denied(&h.authorize(&impersonation), ReasonCode::IdentityMalformed);
    // The same principal with the writ, and a delegated principal: allowed, and the parent
    // writ was not consumed by being shown.
    let mut own = request(&h, "planner", "read", "fs:/zones/billing", json!({}));
    own["parent_writ"] = json!(root_writ);
    let child = h.authorize(&own);
    assert_allowed(&child);
    assert_eq!(h.engine.lineage(&child.id).unwrap().root, root.id);
    let mut delegated = request(&h, "worker", "read", "fs:/zones/billing", json!({}));
    under(&h, &mut delegated, &root, "planner", "worker");
    assert_allowed(&h.authorize(&delegated));
    let digest = request_digest("spawn", "agents:pool", &json!({"agent": "worker"})).unwrap();
    h.engine.verify(&root_writ, &digest).unwrap();
}

#[test]
fn lineage_parent_denied_cannot_be_presented() {
    // A denied decision has no writ to present: naming it is all one can do, which proves
    // nothing (the lineage stage's `lineage.parent_denied` stays for recorded decisions).
    let h = Harness::new();
    let mut req = request(&h, "support-1", "write", "fs:/zones/support", json!({}));
    req["credentials"]["workload"] = json!(h.credential("support-1", Some("billing")));
    let denied = h.authorize(&req);
    assert_eq!(denied.outcome, writ_engine::Outcome::Deny);
    assert!(denied.writ.is_none());
    let mut child = request(&h, "support-1", "spawn", "agents:pool", json!({"agent": "worker"}));
    child["parent"] = json!(denied.id);
    assert_denied(&h.authorize(&child), ReasonCode::LineageParentUnknown);
}

#[test]
fn lineage_parent_expired() {
    let h = Harness::new();
    let root = spawn(&h, None, "root");
    assert_allowed(&root);
    h.clock.advance(301); // writs live 300 s
    assert_denied(&spawn(&h, Some((&root, "root")), "child"), ReasonCode::LineageParentExpired);
}

#[test]
fn lineage_parent_revoked_and_writ_revoked() {
    let h = Harness::new();
    let root = spawn(&h, None, "root");
    let writ = assert_allowed(&root).to_owned();
    rt().block_on(h.engine.revoke(&root.id, Some("op"), "compromised")).unwrap();
    assert_denied(&spawn(&h, Some((&root, "root")), "child"), ReasonCode::LineageParentRevoked);
    let digest = request_digest("spawn", "agents:pool", &json!({"agent": "worker"})).unwrap();
    assert_eq!(h.engine.verify(&writ, &digest).unwrap_err().reason, ReasonCode::WritRevoked);
}

/// Issue 13, item 2: a revoked writ stops its whole lineage (its descendants' writs do not
/// verify, and no grandchild is authorized under them), and an isolated principal's writs
/// issued before its isolation no longer verify.
#[test]
fn regression_revocation_and_quarantine_reach_writs_already_issued() {
    let h = Harness::new();
    let root = spawn(&h, None, "root");
    assert_allowed(&root);
    let child = spawn(&h, Some((&root, "root")), "child");
    let child_writ = assert_allowed(&child).to_owned();
    let grandchild = spawn(&h, Some((&child, "child")), "grandchild");
    let grandchild_writ = assert_allowed(&grandchild).to_owned();
    let digest = request_digest("spawn", "agents:pool", &json!({"agent": "worker"})).unwrap();
    rt().block_on(h.engine.revoke(&root.id, Some("op"), "compromised")).unwrap();
    for writ in [&child_writ, &grandchild_writ] {
        let r = h.engine.verify(writ, &digest).unwrap_err();
        assert_eq!(r.reason, ReasonCode::WritRevoked, "{r:?}");
        assert!(r.detail.contains(&root.id), "{r:?}");
    }
    assert_denied(&spawn(&h, Some((&grandchild, "grandchild")), "leaf"), ReasonCode::LineageParentRevoked);

    // Quarantine: a writ issued before the isolation is refused with `quarantined`, and so
    // is a writ issued to a principal below an isolated one.
    let lone = h.authorize(&write_request(&h));
    let lone_writ = assert_allowed(&lone).to_owned();
    let below = spawn(&h, None, "billing-1");
    let below_child = spawn(&h, Some((&below, "billing-1")), "helper");
    let below_child_writ = assert_allowed(&below_child).to_owned();
    let agent = SpiffeId::parse("spiffe://demo.example/agent/billing-1").unwrap();
    rt().block_on(h.engine.quarantine(&agent, true, Some("op"), "compromised")).unwrap();
    let write_digest =
        request_digest("write", "fs:/zones/billing", &json!({"path": "/zones/billing/out.csv"})).unwrap();
    assert_eq!(h.engine.verify(&lone_writ, &write_digest).unwrap_err().reason, ReasonCode::Quarantined);
    assert_eq!(h.engine.verify(&below_child_writ, &digest).unwrap_err().reason, ReasonCode::Quarantined);
    // Released: the writ verifies (once) again.
    rt().block_on(h.engine.quarantine(&agent, false, Some("op"), "cleared")).unwrap();
    h.engine.verify(&lone_writ, &write_digest).unwrap();
}

#[test]
fn lineage_depth_exceeded() {
    let h = Harness::new();
    let mut parent = spawn(&h, None, "d0");
    assert_allowed(&parent);
    for depth in 1..=3 {
        let child = spawn(&h, Some((&parent, &format!("d{}", depth - 1))), &format!("d{depth}"));
        if depth < 3 {
            assert_allowed(&child);
        } else {
            // Depth 3 is within the engine's limit but the starter policy lets only
            // depth < 3 spawn.
            assert_denied(&child, ReasonCode::PolicyDenied);
        }
        parent = child;
    }
    // A chain deeper than the engine's limit (3) is refused before policy.
    let mut parent = h.authorize(&request(&h, "r", "read", "fs:/zones/billing", json!({})));
    for depth in 1..=4 {
        let mut req = request(&h, "r", "read", "fs:/zones/billing", json!({}));
        under(&h, &mut req, &parent, "r", "r");
        let child = h.authorize(&req);
        if depth <= 3 {
            assert_allowed(&child);
        } else {
            assert_denied(&child, ReasonCode::LineageDepthExceeded);
        }
        parent = child;
    }
}

#[test]
fn lineage_scope_escalation() {
    let h = Harness::new();
    // A root that may delegate only reads.
    let mut extra = Map::new();
    extra.insert("scope".into(), json!(["read"]));
    let mut req = request(&h, "planner", "spawn", "agents:pool", json!({"agent": "worker"}));
    req["credentials"]["workload"] =
        json!(h.credential_with("planner", Some("billing"), vec!["writ".into()], 600, h.now(), extra));
    let root = h.authorize(&req);
    assert_allowed(&root);
    // Its child writes: outside the delegated scope.
    let mut child = write_request(&h);
    under(&h, &mut child, &root, "planner", "billing-1");
    assert_denied(&h.authorize(&child), ReasonCode::LineageScopeEscalation);
    // A child in another zone.
    let mut other = request(&h, "support-1", "read", "fs:/zones/support", json!({}));
    other["credentials"]["workload"] = json!(h.credential("support-1", Some("support")));
    under(&h, &mut other, &root, "planner", "support-1");
    assert_denied(&h.authorize(&other), ReasonCode::LineageScopeEscalation);
    // A read in the same zone is within scope.
    let mut read = request(&h, "worker", "read", "fs:/zones/billing", json!({}));
    under(&h, &mut read, &root, "planner", "worker");
    assert_allowed(&h.authorize(&read));
}

/// Issue 13, item 4: a `scope` claim of the wrong type was read as "no restriction", so
/// the child of such a root could take any action in its zone. Every claim writ reads
/// with the wrong type is `identity.malformed`.
#[test]
fn regression_mistyped_claims_are_malformed() {
    let h = Harness::new();
    for (claim, value) in [
        ("scope", json!("read")),
        ("scope", json!({"actions": ["read"]})),
        ("scope", json!(7)),
        ("scope", json!(["read", 7])),
        ("scope", json!(null)),
        ("zone", json!(["billing"])),
        ("zone", json!(1)),
        ("zone", json!("")),
        ("may_act", json!("spiffe://demo.example/agent/x")),
        ("may_act", json!({"sub": "not a spiffe id"})),
        ("may_act", json!({"sub": "spiffe://demo.example/agent/x", "act": {}})),
    ] {
        let mut extra = Map::new();
        extra.insert(claim.into(), value.clone());
        let mut req = request(&h, "planner", "spawn", "agents:pool", json!({"agent": "worker"}));
        req["credentials"]["workload"] =
            json!(h.credential_with("planner", None, vec!["writ".into()], 600, h.now(), extra));
        let d = h.authorize(&req);
        assert_denied(&d, ReasonCode::IdentityMalformed);
        assert!(d.detail.contains(claim), "{claim} = {value}: {d:?}");
    }
}

#[test]
fn policy_denied() {
    let h = Harness::new();
    let mut req = write_request(&h);
    req["credentials"]["workload"] = json!(h.credential("support-1", Some("support")));
    let d = h.authorize(&req);
    assert_denied(&d, ReasonCode::PolicyDenied);
    assert!(d.log_index.is_some());
}

#[test]
fn policy_no_active_bundle() {
    let h = Harness::without_bundle();
    assert_denied(&h.authorize(&write_request(&h)), ReasonCode::PolicyNoActiveBundle);
}

#[test]
fn policy_evaluation_error_when_a_claim_is_missing() {
    let h = Harness::new();
    let mut req = write_request(&h);
    req["credentials"]["workload"] = json!(h.credential("billing-1", None));
    assert_denied(&h.authorize(&req), ReasonCode::PolicyEvaluationError);
}

#[test]
fn policy_bundle_untrusted_unsigned_wrong_key_or_invalid() {
    let h = Harness::new();
    let before = h.engine.active_bundle().unwrap();
    let b = starter_bundle().unwrap();
    let (m, _p, s, e, t) = b.parts();
    let permissive =
        Bundle::from_parts(&m, "@id(\"all\") permit (principal, action, resource);", &s, e.as_deref(), t.as_deref())
            .unwrap();
    // Unsigned.
    let err = rt().block_on(h.engine.activate(&permissive, "", None)).unwrap_err();
    assert!(matches!(err, writ_engine::EngineError::BundleUntrusted(_)), "{err:?}");
    // Signed by an untrusted key.
    let rogue = NoteSigner::from_seed("policy.demo.example", [9; 32]).unwrap();
    let sig = sign_bundle(&permissive, &rogue).unwrap();
    let err = rt().block_on(h.engine.activate(&permissive, &sig, None)).unwrap_err();
    assert!(matches!(err, writ_engine::EngineError::BundleUntrusted(_)), "{err:?}");
    // Signed by the trusted key but failing schema validation.
    let invalid = Bundle::from_parts(
        &m,
        "@id(\"x\") permit (principal, action, resource) when { principal.clearance > 1 };",
        &s,
        None,
        None,
    )
    .unwrap();
    let sig = sign_bundle(&invalid, &h.policy_key).unwrap();
    let err = rt().block_on(h.engine.activate(&invalid, &sig, None)).unwrap_err();
    assert!(matches!(err, writ_engine::EngineError::BundleUntrusted(_)), "{err:?}");
    // Nothing changed: the starter bundle is still active and still denies.
    assert_eq!(h.engine.active_bundle().unwrap(), before);
    let mut req = write_request(&h);
    req["credentials"]["workload"] = json!(h.credential("support-1", Some("support")));
    assert_denied(&h.authorize(&req), ReasonCode::PolicyDenied);
}

#[test]
fn writ_bad_signature_tampered() {
    let h = Harness::new();
    let req = write_request(&h);
    let writ = assert_allowed(&h.authorize(&req));
    let mut parts: Vec<String> = writ.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&B64URL.decode(&parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_u64().unwrap() + 86400);
    parts[1] = B64URL.encode(serde_json::to_vec(&claims).unwrap());
    let err = h.engine.verify(&parts.join("."), &digest_of(&req)).unwrap_err();
    assert_eq!(err.reason, ReasonCode::WritBadSignature);
}

#[test]
fn writ_expired() {
    let h = Harness::new();
    let req = write_request(&h);
    let writ = assert_allowed(&h.authorize(&req));
    h.clock.advance(300 + 31);
    assert_eq!(h.engine.verify(&writ, &digest_of(&req)).unwrap_err().reason, ReasonCode::WritExpired);
}

#[test]
fn writ_audience() {
    let h = Harness::new();
    let mut req = write_request(&h);
    req["audience"] = json!("payments-gateway");
    let writ = assert_allowed(&h.authorize(&req));
    assert_eq!(h.engine.verify(&writ, &digest_of(&req)).unwrap_err().reason, ReasonCode::WritAudience);
}

#[test]
fn writ_binding_mismatch() {
    let h = Harness::new();
    let req = write_request(&h);
    let writ = assert_allowed(&h.authorize(&req));
    let other = request_digest("write", "fs:/zones/billing", &json!({"path": "/zones/billing/other.csv"})).unwrap();
    assert_eq!(h.engine.verify(&writ, &other).unwrap_err().reason, ReasonCode::WritBindingMismatch);
}

#[test]
fn log_unavailable_denies_even_what_policy_allows() {
    let h = Harness::new();
    let size = h.engine.log().size();
    h.store_fails.store(true, Ordering::SeqCst);
    let d = h.authorize(&write_request(&h));
    assert_denied(&d, ReasonCode::LogUnavailable);
    assert!(d.log_index.is_none());
    h.store_fails.store(false, Ordering::SeqCst);
    assert_eq!(h.engine.log().size(), size);
    assert_allowed(&h.authorize(&write_request(&h)));
}

#[test]
fn state_survives_reopen() {
    let h = Harness::new();
    let agent = SpiffeId::parse("spiffe://demo.example/agent/billing-1").unwrap();
    let root = spawn(&h, None, "root");
    rt().block_on(h.engine.revoke(&root.id, None, "x")).unwrap();
    rt().block_on(h.engine.quarantine(&agent, true, None, "x")).unwrap();
    let bundle = h.engine.active_bundle();
    let Harness { engine, dir, issuer, policy_key, .. } = h;
    drop(engine);
    let h = Harness::open(dir, Some((issuer, policy_key)));
    assert_eq!(h.engine.active_bundle(), bundle);
    assert_denied(&h.authorize(&write_request(&h)), ReasonCode::Quarantined);
    assert_denied(&spawn(&h, Some((&root, "root")), "child"), ReasonCode::LineageParentRevoked);
}

/// `internal`: a panic inside a pipeline stage (forced through a fail point) is a deny with
/// no writ, never an unanswered request; a panic inside policy evaluation is the bundle's
/// own `policy.evaluation_error`, recorded. The engine decides the next request as usual.
#[test]
fn internal_a_panicking_stage_denies() {
    let scenario = fail::FailScenario::setup();
    for point in ["writ-engine::identity", "writ-engine::decide", "writ-policy::evaluate"] {
        fail::cfg(point, "panic").unwrap();
    }
    let h = Harness::new();
    let size = h.engine.log().size();
    for stage in ["identity", "decide"] {
        let d = h.authorize(&request(&h, "billing-1", &format!("failpoint.{stage}"), "fs:/zones/billing", json!({})));
        assert_denied(&d, ReasonCode::Internal);
        assert!(d.detail.contains("panicked"), "{d:?}");
    }
    assert_eq!(h.engine.log().size(), size, "a panicked stage has nothing trustworthy to record");
    let d = h.authorize(&request(&h, "billing-1", "failpoint.evaluate", "fs:/zones/billing", json!({})));
    assert_denied(&d, ReasonCode::PolicyEvaluationError);
    assert!(d.log_index.is_some(), "{d:?}");
    assert_allowed(&h.authorize(&write_request(&h)));
    scenario.teardown();
}
