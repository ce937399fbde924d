//! Renewal (issue 17, freshness): a writ renewed before it expires is a new decision under
//! the bundle active now, recorded with `renews` and linked to the writ it renews. Hostile
//! cases first: another principal's writ, forged and tampered writs, revoked writs (and
//! writs below a revoked one), expired writs, a pending decision's id, a quarantined
//! principal, a writ renewed twice; then the renewal granted and linked, refused after a
//! stricter activation and at an hour its policy no longer permits; and the bundle's cap
//! on a writ's lifetime per action, which replay checks.

use serde_json::{Value, json};
use writ_core::{ReasonCode, SpiffeId};
use writ_engine::{Checked, Decision, Entry, LogRef, Scope, WritClaims, WritSigner, replay};
use writ_policy::{Bundle, sign_bundle, starter_bundle};

use crate::harness::*;

fn renew(h: &Harness, body: &Value) -> Decision {
    rt().block_on(h.engine.renew(&serde_json::to_vec(body).unwrap()))
}

/// A renewal of `writ` by `agent`, with a fresh credential.
fn renewal(h: &Harness, agent: &str, writ: &str) -> Value {
    json!({"writ": writ, "credentials": {"workload": h.credential(agent, Some("billing"))}})
}

fn claims(writ: &str) -> Value {
    let payload = writ.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap())
        .unwrap()
}

fn entry(h: &Harness, d: &Decision) -> Entry {
    let i = d.log_index.expect("recorded");
    serde_json::from_slice(&h.engine.log().entries(i, i + 1).unwrap()[0]).unwrap()
}

/// The decision entry's `renews` and `renewal` fact.
fn renews_of(h: &Harness, d: &Decision) -> (Option<String>, Option<Checked<String>>) {
    match entry(h, d) {
        Entry::Decision { renews, facts, .. } => (renews, facts.and_then(|f| f.renewal)),
        other => panic!("not a decision: {other:?}"),
    }
}

/// billing-1 reports that the execution of writ `id` succeeded.
fn report_success(h: &Harness, id: &str) {
    rt().block_on(h.engine.report_outcome(
        id,
        "spiffe://demo.example/agent/billing-1",
        false,
        writ_engine::ExecStatus::Succeeded,
        Some(0),
        "",
    ))
    .unwrap();
}

fn read_request(h: &Harness, agent: &str) -> Value {
    request(h, agent, "read", "fs:/zones/billing", json!({"path": "/zones/billing/a.csv"}))
}

fn assert_replays(h: &Harness) {
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert_eq!(report.reproduced, report.decisions);
}

#[test]
fn renewing_another_principals_writ_is_refused() {
    let h = Harness::new();
    let writ = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    // billing-2 holds billing-1's writ (stolen, or passed along) and its own valid credential.
    let d = renew(&h, &renewal(&h, "billing-2", &writ));
    assert_denied(&d, ReasonCode::WritBindingMismatch);
    let (renews, fact) = renews_of(&h, &d);
    assert_eq!(renews.as_deref(), claims(&writ)["jti"].as_str());
    assert!(matches!(fact, Some(Checked::Failed { reason: ReasonCode::WritBindingMismatch, .. })), "{fact:?}");
    // Without any credential: the identity stage refuses first.
    let anonymous = renew(&h, &json!({"writ": writ}));
    assert_denied(&anonymous, ReasonCode::IdentityMissing);
    // The owner still can: the refused attempts did not use the writ up.
    assert_allowed(&renew(&h, &renewal(&h, "billing-1", &writ)));
    assert_replays(&h);
}

#[test]
fn forged_and_tampered_writs_are_refused() {
    let h = Harness::new();
    let writ = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    let (head, rest) = writ.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    // A later expiry written into the payload: the signature no longer covers it.
    let mut c = claims(&writ);
    c["exp"] = json!(c["exp"].as_u64().unwrap() + 86_400);
    let longer = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c.to_string());
    let tampered = format!("{head}.{longer}.{signature}");
    // The same claims signed by a key this control plane never published.
    let forger = WritSigner::from_seeds("writ", &[[9; 32]]).unwrap();
    let forged = forger.sign(&serde_json::from_value::<WritClaims>(claims(&writ)).unwrap()).unwrap();
    let truncated = format!("{head}.{payload}.{}", &signature[..signature.len() - 4]);
    for bad in [tampered.as_str(), forged.as_str(), truncated.as_str(), "w-0123", ""] {
        let d = renew(&h, &renewal(&h, "billing-1", bad));
        assert_denied(&d, ReasonCode::WritBadSignature);
        let Entry::Decision { request, renews, .. } = entry(&h, &d) else { panic!() };
        assert!(request.is_none(), "no request is trusted from a writ that does not verify");
        assert!(renews.is_some());
    }
    // Not a renewal request at all (an array once deserialized as one: regression).
    let credentials = json!({"workload": h.credential("billing-1", Some("billing"))});
    for body in [
        json!({"writ": writ, "credentials": credentials, "action": "write"}),
        json!({"credentials": credentials}),
        json!([writ, credentials]),
        json!([writ]),
    ] {
        assert_denied(&renew(&h, &body), ReasonCode::RequestMalformed);
    }
    assert_replays(&h);
}

#[test]
fn revoked_writs_and_writs_below_a_revoked_one_are_refused() {
    let h = Harness::new();
    let parent = h.authorize(&read_request(&h, "billing-1"));
    let parent_writ = assert_allowed(&parent);
    let mut child_req = read_request(&h, "billing-1");
    under(&h, &mut child_req, &parent, "billing-1", "billing-1");
    let child = assert_allowed(&h.authorize(&child_req));
    let other = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    let other_renewed = assert_allowed(&renew(&h, &renewal(&h, "billing-1", &other)));
    let jti = |w: &str| claims(w)["jti"].as_str().unwrap().to_owned();
    rt().block_on(h.engine.revoke(&jti(&parent_writ), None, "compromised")).unwrap();
    assert_denied(&renew(&h, &renewal(&h, "billing-1", &parent_writ)), ReasonCode::WritRevoked);
    let d = renew(&h, &renewal(&h, "billing-1", &child));
    assert_denied(&d, ReasonCode::WritRevoked);
    assert!(d.detail.contains(&jti(&parent_writ)), "names the revoked writ above it: {}", d.detail);
    // Revoking a writ also ends the renewal that continues it.
    rt().block_on(h.engine.revoke(&jti(&other), None, "compromised")).unwrap();
    assert_denied(&renew(&h, &renewal(&h, "billing-1", &other_renewed)), ReasonCode::WritRevoked);
    let digest =
        writ_core::request_digest("read", "fs:/zones/billing", &json!({"path": "/zones/billing/a.csv"})).unwrap();
    assert_eq!(h.engine.verify(&other_renewed, &digest).err().map(|e| e.reason), Some(ReasonCode::WritRevoked));
    assert_replays(&h);
}

#[test]
fn an_expired_writ_is_refused_without_grace() {
    let h = Harness::new();
    let writ = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    let exp = claims(&writ)["exp"].as_u64().unwrap();
    h.clock.set(exp);
    let d = renew(&h, &renewal(&h, "billing-1", &writ));
    assert_denied(&d, ReasonCode::WritExpired);
    // One second before its expiry it still renews.
    let fresh = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    h.clock.set(claims(&fresh)["exp"].as_u64().unwrap() - 1);
    assert_allowed(&renew(&h, &renewal(&h, "billing-1", &fresh)));
    assert_replays(&h);
}

#[test]
fn a_pending_decisions_id_is_refused() {
    let h = Harness::new();
    let pending = h.authorize(&request(
        &h,
        "billing-1",
        "payment",
        "payments:stripe",
        json!({"amount": 2500, "currency": "EUR"}),
    ));
    assert_eq!(pending.outcome, writ_engine::Outcome::Pending, "{pending:?}");
    // Its id alone is no writ.
    assert_denied(&renew(&h, &renewal(&h, "billing-1", &pending.id)), ReasonCode::WritBadSignature);
    // A writ with its id, signed with the control plane's own key (as if the key leaked, or
    // a bug signed one): no writ of that id was issued, so there is nothing to renew.
    let now = h.now();
    let signed = WritSigner::from_seeds("writ", &[[3; 32]])
        .unwrap()
        .sign(&WritClaims {
            iss: "writ".into(),
            sub: "spiffe://demo.example/agent/billing-1".into(),
            aud: "writ-enforcement".into(),
            jti: pending.id.clone(),
            iat: now,
            nbf: now,
            exp: now + 300,
            act: "payment".into(),
            res: "payments:stripe".into(),
            req: writ_core::request_digest("payment", "payments:stripe", &json!({"amount": 2500, "currency": "EUR"}))
                .unwrap()
                .to_string(),
            pol: starter_bundle().unwrap().digest().to_string(),
            par: None,
            root: pending.id.clone(),
            dep: 0,
            scp: Scope { zone: "billing".into(), actions: vec!["*".into()] },
            log: LogRef { index: pending.log_index.unwrap(), leaf: format!("sha256:{}", "0".repeat(64)) },
        })
        .unwrap();
    let d = renew(&h, &renewal(&h, "billing-1", &signed));
    assert_denied(&d, ReasonCode::WritRevoked);
    assert!(d.detail.contains("pending"), "{}", d.detail);
    assert_replays(&h);
}

#[test]
fn a_quarantined_principal_cannot_renew() {
    let h = Harness::new();
    let writ = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    let subject = SpiffeId::parse("spiffe://demo.example/agent/billing-1").unwrap();
    rt().block_on(h.engine.quarantine(&subject, true, None, "suspicious")).unwrap();
    assert_denied(&renew(&h, &renewal(&h, "billing-1", &writ)), ReasonCode::Quarantined);
    rt().block_on(h.engine.quarantine(&subject, false, None, "cleared")).unwrap();
    assert_allowed(&renew(&h, &renewal(&h, "billing-1", &writ)));
    assert_replays(&h);
}

#[test]
fn a_renewal_under_an_unchanged_policy_is_granted_and_linked_in_lineage() {
    let h = Harness::new();
    let parent = h.authorize(&read_request(&h, "billing-1"));
    assert_allowed(&parent);
    let mut child_req = read_request(&h, "billing-1");
    under(&h, &mut child_req, &parent, "billing-1", "billing-1");
    let child = h.authorize(&child_req);
    let child_writ = assert_allowed(&child);
    h.clock.advance(100);
    let renewed = renew(&h, &renewal(&h, "billing-1", &child_writ));
    let renewed_writ = assert_allowed(&renewed);
    let (old, new) = (claims(&child_writ), claims(&renewed_writ));
    assert_ne!(old["jti"], new["jti"]);
    for same in ["req", "par", "root", "dep", "scp", "sub", "aud", "act", "res"] {
        assert_eq!(old[same], new[same], "{same}");
    }
    assert_eq!(new["iat"].as_u64().unwrap(), h.now());
    assert_eq!(new["exp"].as_u64().unwrap(), h.now() + 300);
    let (renews, fact) = renews_of(&h, &renewed);
    assert_eq!(renews.as_deref(), Some(child.id.as_str()));
    assert_eq!(fact, Some(Checked::Ok(child.id.clone())));
    // The renewed writ verifies for the same call.
    let digest =
        writ_core::request_digest("read", "fs:/zones/billing", &json!({"path": "/zones/billing/a.csv"})).unwrap();
    assert!(h.engine.verify(&renewed_writ, &digest).is_ok());
    // A writ renews once; its renewal renews next (a chain).
    let twice = renew(&h, &renewal(&h, "billing-1", &child_writ));
    assert_denied(&twice, ReasonCode::WritReplayed);
    // (Before the parent, unrenewed, expires at 300 s.)
    h.clock.advance(50);
    let chained = renew(&h, &renewal(&h, "billing-1", &renewed_writ));
    assert_allowed(&chained);
    // The lineage view: the renewal below the writ it renews, the chain below that.
    let lineage = h.engine.lineage(&chained.id).unwrap();
    assert_eq!(lineage.root, parent.id);
    let node = |id: &str| lineage.nodes.iter().find(|n| n.id == id).unwrap();
    assert_eq!(node(&renewed.id).renews.as_deref(), Some(child.id.as_str()));
    assert_eq!(node(&chained.id).renews.as_deref(), Some(renewed.id.as_str()));
    assert_eq!(node(&child.id).renews, None);
    assert_eq!(node(&renewed.id).parent.as_deref(), Some(parent.id.as_str()));
    // The refused attempt shows too, below the writ it tried to renew.
    assert_eq!(node(&twice.id).renews.as_deref(), Some(child.id.as_str()));
    assert_eq!(node(&twice.id).reason, Some(ReasonCode::WritReplayed));
    let order: Vec<&str> = lineage.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        order,
        [parent.id.as_str(), child.id.as_str(), renewed.id.as_str(), twice.id.as_str(), chained.id.as_str()]
    );
    let json = serde_json::to_value(&lineage).unwrap();
    assert_eq!(json["nodes"][2]["renews"], json!(child.id));
    // Found in review: the lineage search listed a renewal of a root writ as a root of its
    // own (it walked parents only). A renewed root and its renewal: one root.
    let root = h.authorize(&read_request(&h, "billing-2"));
    let root_writ = assert_allowed(&root);
    assert_allowed(&renew(&h, &renewal(&h, "billing-2", &root_writ)));
    let roots = h
        .engine
        .lineage_roots(&writ_engine::LineageSearch {
            principal: Some("spiffe://demo.example/agent/billing-2".into()),
            since: None,
            until: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(roots.iter().map(|r| r.root.as_str()).collect::<Vec<_>>(), [root.id.as_str()]);
    assert!(json["nodes"][0].get("renews").is_none());
    assert_replays(&h);
}

#[test]
fn a_renewed_parent_keeps_its_children_renewable() {
    let h = Harness::new();
    let parent = h.authorize(&read_request(&h, "billing-1"));
    let parent_writ = assert_allowed(&parent);
    // Another parent, which will not be renewed.
    let orphan_parent = h.authorize(&read_request(&h, "billing-1"));
    h.clock.advance(200);
    let mut child_req = read_request(&h, "billing-1");
    under(&h, &mut child_req, &parent, "billing-1", "billing-1");
    let child_writ = assert_allowed(&h.authorize(&child_req));
    h.clock.advance(50);
    let mut orphan_req = read_request(&h, "billing-1");
    under(&h, &mut orphan_req, &orphan_parent, "billing-1", "billing-1");
    let orphan = assert_allowed(&h.authorize(&orphan_req));
    assert_allowed(&renew(&h, &renewal(&h, "billing-1", &parent_writ)));
    // Both original parent writs have expired; the renewal of one has not.
    h.clock.advance(150);
    assert_allowed(&renew(&h, &renewal(&h, "billing-1", &child_writ)));
    // A child whose parent expired unrenewed is not renewed past it.
    assert_denied(&renew(&h, &renewal(&h, "billing-1", &orphan)), ReasonCode::LineageParentExpired);
    assert_replays(&h);
}

#[test]
fn a_renewal_after_a_stricter_activation_is_refused() {
    let h = Harness::new();
    let write_req = write_request(&h);
    let write = assert_allowed(&h.authorize(&write_req));
    let read = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    // Renewed once under the starter bundle: renewals are outstanding writs too.
    let renewed_write = assert_allowed(&renew(&h, &renewal(&h, "billing-1", &write)));
    let (manifest, policies, schema, entities, _) = starter_bundle().unwrap().parts();
    let stricter = Bundle::from_parts(
        &manifest.replace("\"1.4.0\"", "\"9.0.0\""),
        &policies.replace(
            "@id(\"write-own-zone\")",
            "@id(\"write-own-zone-off\")\n@reason(\"no writes\")\nforbid (principal, action == Writ::Action::\"write\", resource);\n@id(\"write-own-zone\")",
        ),
        &schema,
        entities.as_deref(),
        None,
    )
    .unwrap();
    let sig = sign_bundle(&stricter, &h.policy_key).unwrap();
    let a = rt().block_on(h.engine.activate(&stricter, &sig, None)).unwrap();
    // The write and its renewal are revoked by the re-evaluation; the read stays.
    assert_eq!((a.reevaluation.reevaluated, a.reevaluation.revoked), (3, 2), "{:?}", a.reevaluation);
    let d = renew(&h, &renewal(&h, "billing-1", &renewed_write));
    assert_denied(&d, ReasonCode::WritRevoked);
    assert_allowed(&renew(&h, &renewal(&h, "billing-1", &read)));
    assert_replays(&h);
}

#[test]
fn a_renewal_is_decided_at_its_own_time() {
    let h = Harness::new();
    // A payment permitted until 17:00 UTC, renewed after.
    h.clock.set(writ_engine::parse_rfc3339("2026-11-26T16:58:00Z").unwrap());
    let pay = request(&h, "billing-1", "payment", "payments:stripe", json!({"amount": 100, "currency": "EUR"}));
    let writ = assert_allowed(&h.authorize(&pay));
    h.clock.set(writ_engine::parse_rfc3339("2026-11-26T17:01:00Z").unwrap());
    let d = renew(&h, &renewal(&h, "billing-1", &writ));
    assert_denied(&d, ReasonCode::PolicyDenied);
    let (renews, _) = renews_of(&h, &d);
    assert_eq!(renews.as_deref(), claims(&writ)["jti"].as_str());
    assert_replays(&h);
}

/// The starter bundle with `max_lifetime_seconds` in its manifest.
fn capped(caps: &Value) -> Result<Bundle, writ_policy::PolicyError> {
    let (manifest, policies, schema, entities, _) = starter_bundle().unwrap().parts();
    let mut m: Value = serde_json::from_str(&manifest).unwrap();
    m["version"] = json!("1.4.0+capped");
    m["max_lifetime_seconds"] = caps.clone();
    let b = Bundle::from_parts(&m.to_string(), &policies, &schema, entities.as_deref(), None)?;
    b.compile()?;
    Ok(b)
}

#[test]
fn a_bundles_lifetime_cap_is_strict() {
    for bad in [
        json!({"write": 0}),
        json!({"no-such-action": 60}),
        json!({"write": -1}),
        json!({"write": 1.5}),
        json!({"write": "60"}),
        json!(["write"]),
    ] {
        assert!(capped(&bad).is_err(), "{bad} accepted");
    }
    // A bundle without the field keeps its digest (the starter's is pinned elsewhere).
    assert!(capped(&json!({"write": 60, "read": 3600})).is_ok());
}

#[test]
fn the_bundles_cap_bounds_a_writs_lifetime_per_action_and_replay_checks_it() {
    let h = Harness::new();
    h.activate(&capped(&json!({"write": 60, "read": 3600})).unwrap()).unwrap();
    let write = assert_allowed(&h.authorize(&write_request(&h)));
    let read = assert_allowed(&h.authorize(&read_request(&h, "billing-1")));
    let exp = |w: &str| claims(w)["exp"].as_u64().unwrap() - claims(w)["iat"].as_u64().unwrap();
    assert_eq!(exp(&write), 60, "capped by the bundle");
    assert_eq!(exp(&read), 300, "the configured TTL is below the cap");
    // A renewal is capped the same way.
    assert_eq!(exp(&assert_allowed(&renew(&h, &renewal(&h, "billing-1", &write)))), 60);
    assert_replays(&h);
    // A decision entry whose writ outlives the recorded bundle's cap does not reproduce.
    let size = h.engine.log().size();
    let (index, mut longer) = h
        .engine
        .log()
        .entries(0, size)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, b)| (i, serde_json::from_slice::<Entry>(b).unwrap()))
        .find(|(_, e)| matches!(e, Entry::Decision { request: Some(r), writ: Some(_), .. } if r.action == "write"))
        .unwrap();
    if let Entry::Decision { writ: Some(w), .. } = &mut longer {
        w.exp += 1;
    }
    let conn = rusqlite::Connection::open(h.dir.path().join("log.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE entries SET data = ?1 WHERE idx = ?2",
            rusqlite::params![longer.canonical().unwrap(), index as i64],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert_eq!(report.mismatches.len(), 1, "{report:?}");
    assert_eq!(report.mismatches[0].index, index as u64);
}

#[test]
fn a_writ_whose_renewal_waits_for_an_approval_is_not_renewed_twice() {
    let h = Harness::new();
    // A payment an operator approved: its renewal is decided again, and waits for an
    // operator again.
    let req = request(&h, "billing-1", "payment", "payments:stripe", json!({"amount": 2500, "currency": "EUR"}));
    let asked = h.authorize(&req);
    assert_eq!(asked.outcome, writ_engine::Outcome::Pending, "{asked:?}");
    rt().block_on(h.engine.resolve_approval(&asked.id, true, Some("spiffe://demo.example/operator/alice"), "ok"))
        .unwrap();
    let writ = h.engine.approved_writ(&asked.id).unwrap().unwrap();
    let first = renew(&h, &renewal(&h, "billing-1", &writ));
    assert_eq!(first.outcome, writ_engine::Outcome::Pending, "{first:?}");
    // While that renewal waits, the same writ cannot be renewed again (a second renewal,
    // approved later as well, would be two writs continuing one call).
    assert_denied(&renew(&h, &renewal(&h, "billing-1", &writ)), ReasonCode::WritReplayed);
    // Approved, the renewal is the writ's one renewal, and it can be renewed in turn.
    rt().block_on(h.engine.resolve_approval(&first.id, true, Some("spiffe://demo.example/operator/alice"), "ok"))
        .unwrap();
    assert_denied(&renew(&h, &renewal(&h, "billing-1", &writ)), ReasonCode::WritReplayed);
    let renewed = h.engine.approved_writ(&first.id).unwrap().unwrap();
    assert_eq!(renew(&h, &renewal(&h, "billing-1", &renewed)).outcome, writ_engine::Outcome::Pending);
    assert_replays(&h);
}

/// A long-running execution renews for as long as it runs. Its standing used to be found by
/// walking every earlier renewal, bounded at 256 steps: about the 250th renewal of one
/// execution (some 14 hours of a 5-minute writ renewed at two thirds) was refused as
/// `writ.revoked` ("its lineage is longer than any depth limit"). A chain of 300 renewals
/// keeps renewing and handing down authority; a revocation inside it stops every renewal
/// after it and none before; the same after a restart, and replay agrees.
#[test]
fn a_long_renewal_chain_keeps_renewing_and_a_revocation_inside_it_stops_what_follows() {
    let h = Harness::new();
    let mut chain = vec![h.authorize(&read_request(&h, "billing-1"))];
    for _ in 0..300 {
        let writ = assert_allowed(chain.last().unwrap());
        chain.push(renew(&h, &renewal(&h, "billing-1", &writ)));
    }
    assert_allowed(chain.last().unwrap());
    // A child under a renewal: refused exactly when something above it was revoked.
    let child_of = |h: &Harness, k: usize| {
        let mut req = read_request(h, "billing-1");
        under(h, &mut req, &chain[k], "billing-1", "billing-1");
        h.authorize(&req)
    };
    for k in [0, 1, 255, 256, 257, 300] {
        assert_allowed(&child_of(&h, k));
    }
    let jti = |k: usize| chain[k].id.clone();
    rt().block_on(h.engine.revoke(&jti(150), None, "compromised")).unwrap();
    // The children of the renewals before `line` are allowed, those from it on refused, and
    // the newest renewal is not renewed again.
    let check = |h: &Harness, line: usize| {
        for k in [0, 1, line - 1] {
            assert_allowed(&child_of(h, k));
        }
        for k in [line, line + 1, 299, 300] {
            assert_denied(&child_of(h, k), ReasonCode::LineageParentRevoked);
        }
        let d = renew(h, &renewal(h, "billing-1", chain[300].writ.as_deref().unwrap()));
        assert_denied(&d, ReasonCode::WritRevoked);
        assert!(d.detail.contains(&jti(line)), "names the first revoked renewal: {}", d.detail);
    };
    check(&h, 150);
    // A later revocation further down changes nothing; one further up moves the line.
    rt().block_on(h.engine.revoke(&jti(200), None, "compromised")).unwrap();
    check(&h, 150);
    rt().block_on(h.engine.revoke(&jti(100), None, "compromised")).unwrap();
    check(&h, 100);
    assert_replays(&h);
    let Harness { engine, dir, issuer, policy_key, .. } = h;
    drop(engine);
    let h = Harness::open(dir, Some((issuer, policy_key)));
    check(&h, 100);
    // Revoking the chain's origin stops every renewal of it.
    let h2 = Harness::new();
    let first = h2.authorize(&read_request(&h2, "billing-1"));
    let mut last = first.clone();
    for _ in 0..3 {
        last = renew(&h2, &renewal(&h2, "billing-1", &assert_allowed(&last)));
    }
    rt().block_on(h2.engine.revoke(&first.id, None, "compromised")).unwrap();
    let d = renew(&h2, &renewal(&h2, "billing-1", last.writ.as_deref().unwrap()));
    assert_denied(&d, ReasonCode::WritRevoked);
    assert!(d.detail.contains(&first.id), "{}", d.detail);
}

/// Found in review: a renewal was not counted by rate and quota rules, yet its writ is a
/// fresh writ for the same call that an enforcement point accepts once. One payment's writ
/// renewed again and again paid again and again while the starter's `payment-rate` rule
/// (5 a minute) saw one call. Now a renewal counts: the sixth payment in the minute, first
/// writ or renewal, is refused. And the execution that reported its outcome has ended: its
/// writ is not renewed.
#[test]
fn renewals_count_against_rate_rules_and_a_finished_execution_is_not_renewed() {
    let h = Harness::new();
    let pay = request(&h, "billing-1", "payment", "payments:stripe", json!({"amount": 10, "currency": "EUR"}));
    let digest = digest_of(&pay);
    let mut writ = assert_allowed(&h.authorize(&pay));
    let mut ran = 0;
    assert!(h.engine.verify(&writ, &digest).is_ok());
    ran += 1;
    let refused = loop {
        let d = renew(&h, &renewal(&h, "billing-1", &writ));
        if d.outcome != writ_engine::Outcome::Allow {
            break d;
        }
        writ = d.writ.clone().unwrap();
        assert!(h.engine.verify(&writ, &digest).is_ok(), "a renewal's writ verifies once");
        ran += 1;
        assert!(ran <= 5, "more payments ran in a minute than the rate rule allows");
    };
    assert_eq!(ran, 5);
    assert_denied(&refused, ReasonCode::PolicyDenied);
    assert!(refused.policies.iter().any(|p| p == "payment-rate"), "{refused:?}");
    // A minute later the rule allows again; an execution that reported its outcome is over.
    h.clock.advance(61);
    let read = h.authorize(&read_request(&h, "billing-1"));
    let read_writ = assert_allowed(&read);
    let renewed = renew(&h, &renewal(&h, "billing-1", &read_writ));
    let renewed_writ = assert_allowed(&renewed);
    report_success(&h, &read.id);
    let d = renew(&h, &renewal(&h, "billing-1", &renewed_writ));
    assert_denied(&d, ReasonCode::WritReplayed);
    assert!(d.detail.contains("reported its outcome"), "{}", d.detail);
    assert_replays(&h);
    // Found in review: an outcome reported under a renewal in the middle of a chain (X, its
    // renewal R1, R1's renewal R2; the end reported under R1) left R2 renewable, the
    // execution's authority going on after it said it was over.
    h.clock.advance(61);
    let x = h.authorize(&read_request(&h, "billing-1"));
    let r1 = renew(&h, &renewal(&h, "billing-1", &assert_allowed(&x)));
    let r2 = renew(&h, &renewal(&h, "billing-1", &assert_allowed(&r1)));
    let r2_writ = assert_allowed(&r2);
    report_success(&h, &r1.id);
    let d = renew(&h, &renewal(&h, "billing-1", &r2_writ));
    assert_denied(&d, ReasonCode::WritReplayed);
    assert!(d.detail.contains(&r1.id), "{}", d.detail);
    assert_replays(&h);
}

/// Found in review: when the control plane could not read the renewed writ's decision back
/// (its store failing, or the entry unreadable), the renewal was recorded as a deny with
/// `writ.revoked`: the execution was stopped believing its writ revoked, and the log told
/// auditors of a revocation that never happened. It is now the control plane's own failure:
/// `internal`, not recorded, and nothing is revoked.
#[test]
fn a_renewal_the_control_plane_cannot_decide_is_not_recorded_as_a_revocation() {
    let h = Harness::new();
    let allowed = h.authorize(&read_request(&h, "billing-1"));
    let writ = assert_allowed(&allowed);
    let index = allowed.log_index.unwrap();
    let conn = rusqlite::Connection::open(h.dir.path().join("log.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE entries SET data = ?1 WHERE idx = ?2",
            rusqlite::params![b"{\"kind\":\"nonsense\"}".to_vec(), index as i64],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let size = h.engine.log().size();
    let d = renew(&h, &renewal(&h, "billing-1", &writ));
    assert_denied(&d, ReasonCode::Internal);
    assert_eq!(d.log_index, None, "{d:?}");
    assert_eq!(h.engine.log().size(), size, "nothing recorded");
    assert!(h.engine.revoked().is_empty());
}
