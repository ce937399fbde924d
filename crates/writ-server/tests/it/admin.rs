//! The operator routes, outcome reports, receipts, metrics, the OpenAPI document and the
//! edge limits, through the router.

use axum::http::StatusCode;
use serde_json::{Value, json};
use writ_core::SpiffeId;
use writ_identity::{DevIssuer, IssueRequest};
use writ_log::{NoteVerifier, Receipt};
use writ_policy::{Bundle, sign_bundle, starter_bundle};
use writ_server::Limits;

use crate::{Fixture, fixture, fixture_with, rt};

/// Every operator route, with a body that would be valid.
fn admin_routes() -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/v1/bundles".into(), None),
        (
            "POST",
            "/v1/bundles".into(),
            Some(json!({"bundle": {"manifest": "", "policies": "", "schema": ""}, "signature": ""})),
        ),
        ("POST", "/v1/bundles/sha256:00/activate".into(), None),
        ("GET", "/v1/revocations".into(), None),
        ("POST", "/v1/revocations".into(), Some(json!({"jti": "x", "reason": "r"}))),
        ("GET", "/v1/quarantine".into(), None),
        ("POST", "/v1/quarantine/isolate".into(), Some(json!({"subject": "spiffe://demo.example/a", "reason": "r"}))),
        ("POST", "/v1/quarantine/release".into(), Some(json!({"subject": "spiffe://demo.example/a", "reason": "r"}))),
        ("GET", "/v1/lineage/x".into(), None),
        ("GET", "/v1/lineage?limit=5".into(), None),
        ("POST", "/v1/keys/rotate".into(), None),
        ("GET", "/v1/approvals".into(), None),
        ("POST", "/v1/approvals/x/approve".into(), Some(json!({"reason": "r"}))),
        ("POST", "/v1/approvals/x/reject".into(), Some(json!({"reason": "r"}))),
        ("GET", "/v1/policy/bundles/sha256:00".into(), None),
        ("POST", "/v1/demo/runs".into(), None),
        ("GET", "/v1/demo/runs/x".into(), None),
        ("GET", "/v1/demo/runs/x/events".into(), None),
        ("POST", "/v1/health/verify".into(), None),
    ]
}

#[test]
fn nothing_administrative_is_reachable_without_an_operator() {
    let f = fixture(true);
    let workload = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let stranger = DevIssuer::generate("demo.example", "https://operators.demo.example").unwrap();
    let admin = SpiffeId::parse("spiffe://demo.example/operator/mallory").unwrap();
    let issue = |issuer: &DevIssuer, now: u64, ttl: u64| {
        issuer
            .issue(IssueRequest {
                subject: &admin,
                audience: vec!["writ".into()],
                ttl_secs: ttl,
                extra_claims: Default::default(),
                now,
            })
            .unwrap()
    };
    let forged = issue(&stranger, f.now, 600);
    let expired = issue(&f.operators, f.now - 7200, 600);
    let size_before = f.engine.log().size();
    for (method, uri, body) in admin_routes() {
        let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
        for (auth, status, code) in [
            (None, StatusCode::UNAUTHORIZED, "identity.missing"),
            (Some("Bearer".to_owned()), StatusCode::UNAUTHORIZED, "identity.malformed"),
            (Some(format!("Basic {workload}")), StatusCode::UNAUTHORIZED, "identity.malformed"),
            (Some("Bearer not.a.jwt".to_owned()), StatusCode::UNAUTHORIZED, "identity.malformed"),
            (Some(format!("Bearer {forged}")), StatusCode::UNAUTHORIZED, "identity.untrusted_issuer"),
            (Some(format!("Bearer {expired}")), StatusCode::UNAUTHORIZED, "identity.expired"),
            (Some(format!("Bearer {workload}")), StatusCode::FORBIDDEN, "identity.untrusted_issuer"),
        ] {
            let (s, b, _) = f.call_as(method, &uri, bytes.clone(), auth.as_deref());
            let e: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!((s, e["error"].as_str().unwrap()), (status, code), "{method} {uri} with {auth:?}: {e}");
        }
    }
    assert_eq!(f.engine.log().size(), size_before, "a refused caller changed nothing");
}

#[test]
fn quarantine_through_the_api_is_recorded_with_the_operator() {
    let f = fixture(true);
    let op = f.operator();
    let agent = "spiffe://demo.example/agent/billing-1";
    let (s, r) = f.json_as(
        "POST",
        "/v1/quarantine/isolate",
        Some(json!({"subject": agent, "reason": "exfiltration"})),
        Some(&op),
    );
    assert_eq!(s, StatusCode::OK, "{r}");
    let index = r["log_index"].as_u64().unwrap();
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["reasons"], json!(["quarantined"]));
    let (_, list) = f.json_as("GET", "/v1/quarantine", None, Some(&op));
    assert_eq!(list["quarantined"][0]["subject"], agent);
    assert_eq!(list["quarantined"][0]["isolated"]["operator"], "spiffe://demo.example/operator/alice");
    let (_, e) = f.json("GET", &format!("/v1/log/entries?start={index}&end={}", index + 1), None);
    assert_eq!(e["entries"][0]["entry"]["operator"], "spiffe://demo.example/operator/alice");
    assert_eq!(e["entries"][0]["entry"]["kind"], "quarantine");
    let (s, _) =
        f.json_as("POST", "/v1/quarantine/release", Some(json!({"subject": agent, "reason": "cleared"})), Some(&op));
    assert_eq!(s, StatusCode::OK);
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow", "{d}");
    for bad in [
        json!({"subject": "not-spiffe", "reason": "r"}),
        json!({"subject": agent}),
        json!({"subject": agent, "reason": "r", "x": 1}),
    ] {
        let (s, e) = f.json_as("POST", "/v1/quarantine/isolate", Some(bad.clone()), Some(&op));
        assert_eq!((s, e["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "request.malformed"), "{bad}");
    }
}

#[test]
fn revocation_through_the_api_stops_the_writ() {
    let f = fixture(true);
    let op = f.operator();
    let req = f.request();
    let (_, d) = f.json("POST", "/v1/authorize", Some(req.clone()));
    let jti = d["id"].as_str().unwrap();
    let (s, _) = f.json_as("POST", "/v1/revocations", Some(json!({"jti": jti, "reason": "leaked"})), Some(&op));
    assert_eq!(s, StatusCode::OK);
    let verify = json!({"writ": d["writ"], "request": {"action": req["action"], "resource": req["resource"], "arguments": req["arguments"]}});
    let (_, v) = f.json("POST", "/v1/verify", Some(verify));
    assert_eq!(v["reason"], "writ.revoked");
    let (_, list) = f.json_as("GET", "/v1/revocations", None, Some(&op));
    assert_eq!(list["revocations"][0]["jti"], jti);
    assert_eq!(list["revocations"][0]["revoked"]["reason"], "leaked");
    let (s, _) = f.json_as("POST", "/v1/revocations", Some(json!({"jti": "", "reason": "r"})), Some(&op));
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

pub(crate) fn bundle_body(b: &Bundle, sig: &str, activate: bool) -> Value {
    let (manifest, policies, schema, entities, tests) = b.parts();
    json!({"bundle": {"manifest": manifest, "policies": policies, "schema": schema, "entities": entities, "tests": tests}, "signature": sig, "activate": activate})
}

/// The starter bundle with writes forbidden everywhere.
pub(crate) fn frozen(f: &Fixture) -> (Bundle, String) {
    let (manifest, policies, schema, entities, _) = starter_bundle().unwrap().parts();
    let manifest = manifest.replace("\"version\": \"", "\"version\": \"frozen-");
    let policies =
        format!("{policies}\n@id(\"freeze\")\nforbid (principal, action == Writ::Action::\"write\", resource);\n");
    let b = Bundle::from_parts(&manifest, &policies, &schema, entities.as_deref(), None).unwrap();
    let sig = sign_bundle(&b, &f.policy_key).unwrap();
    (b, sig)
}

#[test]
fn bundles_upload_activate_and_roll_back() {
    let f = fixture(true);
    let op = f.operator();
    let (_, list) = f.json_as("GET", "/v1/bundles", None, Some(&op));
    let starter = list["bundles"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(list["bundles"][0]["active"], true);
    let (b, sig) = frozen(&f);
    let (s, up) = f.json_as("POST", "/v1/bundles", Some(bundle_body(&b, &sig, false)), Some(&op));
    assert_eq!(s, StatusCode::OK, "{up}");
    let digest = up["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest, b.digest().to_string());
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow", "uploading does not activate");
    let outstanding = d["writ"].as_str().unwrap().to_owned();
    let (s, a) = f.json_as("POST", &format!("/v1/bundles/{digest}/activate"), None, Some(&op));
    assert_eq!(s, StatusCode::OK);
    // The write writ issued under the starter is re-evaluated and revoked by the activation.
    assert_eq!(
        (&a["reevaluation"]["reevaluated"], &a["reevaluation"]["revoked"], &a["reevaluation"]["descendants"]),
        (&json!(1), &json!(1), &json!(0)),
        "{a}"
    );
    let req = f.request();
    let (_, v) = f.json(
        "POST",
        "/v1/verify",
        Some(json!({"writ": outstanding, "request": {"action": req["action"], "resource": req["resource"], "arguments": req["arguments"]}})),
    );
    assert_eq!(v["reason"], "writ.revoked", "{v}");
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!((d["outcome"].as_str(), d["policies"][0].as_str()), (Some("deny"), Some("freeze")), "{d}");
    let (_, list) = f.json_as("GET", "/v1/bundles", None, Some(&op));
    let active: Vec<&str> = list["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["active"] == true)
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert_eq!(active, vec![digest.as_str()]);
    // Roll back to the starter by its digest.
    let (s, a) = f.json_as("POST", &format!("/v1/bundles/{starter}/activate"), None, Some(&op));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["reevaluation"]["revoked"], 0, "a rollback never un-revokes nor revokes here: {a}");
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow");

    // Hostile uploads: a signature by an untrusted key, a signature of another bundle, a
    // bundle that fails its schema, an unknown digest, unknown fields, an oversized body.
    let rogue = writ_log::NoteSigner::generate("policy.rogue").unwrap();
    let size = f.engine.log().size();
    let (s, e) =
        f.json_as("POST", "/v1/bundles", Some(bundle_body(&b, &sign_bundle(&b, &rogue).unwrap(), true)), Some(&op));
    assert_eq!((s, e["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "policy.bundle_untrusted"));
    assert_eq!(f.engine.log().size(), size + 1, "the refusal is recorded");
    let starter_sig = sign_bundle(&starter_bundle().unwrap(), &f.policy_key).unwrap();
    let (s, e) = f.json_as("POST", "/v1/bundles", Some(bundle_body(&b, &starter_sig, false)), Some(&op));
    assert_eq!((s, e["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "policy.bundle_untrusted"));
    let (manifest, policies, schema, entities, _) = starter_bundle().unwrap().parts();
    let broken = Bundle::from_parts(
        &manifest,
        &format!("{policies}\n@id(\"bad\")\npermit (principal, action == Writ::Action::\"fly\", resource);\n"),
        &schema,
        entities.as_deref(),
        None,
    )
    .unwrap();
    let (s, e) = f.json_as(
        "POST",
        "/v1/bundles",
        Some(bundle_body(&broken, &sign_bundle(&broken, &f.policy_key).unwrap(), false)),
        Some(&op),
    );
    assert_eq!((s, e["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "policy.bundle_untrusted"), "{e}");
    let (s, _) = f.json_as("POST", "/v1/bundles/sha256:0000/activate", None, Some(&op));
    assert_eq!(s, StatusCode::BAD_REQUEST, "not a digest");
    let (s, _) = f.json_as("POST", &format!("/v1/bundles/sha256:{}/activate", "0".repeat(64)), None, Some(&op));
    assert_eq!(s, StatusCode::NOT_FOUND);
    let mut extra = bundle_body(&b, &sig, false);
    extra["bundle"]["extra"] = json!("x");
    assert_eq!(f.json_as("POST", "/v1/bundles", Some(extra), Some(&op)).0, StatusCode::BAD_REQUEST);
    let big = vec![b' '; writ_server::MAX_BUNDLE_BODY + 1];
    let (s, _, _) = f.call_as("POST", "/v1/bundles", Some(big), Some(&format!("Bearer {op}")));
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow", "no refused bundle became active");
}

#[test]
fn lineage_shows_the_chain_and_outcomes_are_reported_once_by_the_right_caller() {
    let f = fixture(true);
    let op = f.operator();
    let agent = "spiffe://demo.example/agent/billing-1";
    let token = f.workload(agent, "billing");
    let spawn = |parent: Option<&str>| {
        let mut r = json!({"credentials": {"workload": token}, "action": "spawn", "resource": "agent:helper", "arguments": {"agent": "helper"}});
        if let Some(p) = parent {
            r["parent_writ"] = json!(p);
        }
        f.json("POST", "/v1/authorize", Some(r)).1
    };
    let root = spawn(None);
    assert_eq!(root["outcome"], "allow", "{root}");
    let root_id = root["id"].as_str().unwrap();
    let child = spawn(Some(root["writ"].as_str().unwrap()));
    let child_id = child["id"].as_str().unwrap();
    let bad = spawn(Some("no-such-writ"));
    assert_eq!(bad["reasons"][0], "lineage.parent_unknown");
    let (s, l) = f.json_as("GET", &format!("/v1/lineage/{child_id}"), None, Some(&op));
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["root"], root_id);
    let ids: Vec<&str> = l["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![root_id, child_id]);
    assert_eq!(l["nodes"][1]["parent"], root_id);
    assert_eq!(l["nodes"][1]["depth"], 1);
    assert_eq!(f.json_as("GET", "/v1/lineage/nope", None, Some(&op)).0, StatusCode::NOT_FOUND);

    let report = |jti: &str, bearer: Option<&str>| {
        f.json_as("POST", "/v1/outcomes", Some(json!({"jti": jti, "status": "succeeded", "exit_code": 0})), bearer)
    };
    let other = f.workload("spiffe://demo.example/agent/other", "billing");
    assert_eq!(report(root_id, None).0, StatusCode::UNAUTHORIZED);
    assert_eq!(report(root_id, Some(&other)).0, StatusCode::FORBIDDEN);
    assert_eq!(report("no-such-writ", Some(&token)).0, StatusCode::NOT_FOUND);
    assert_eq!(report(bad["id"].as_str().unwrap(), Some(&token)).0, StatusCode::NOT_FOUND, "a deny has no execution");
    let (s, r) = report(root_id, Some(&token));
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(report(root_id, Some(&token)).0, StatusCode::CONFLICT);
    assert_eq!(report(child_id, Some(&op)).0, StatusCode::OK, "an operator may report");
    let (s, _) = f.json_as("POST", "/v1/outcomes", Some(json!({"jti": root_id, "status": "exploded"})), Some(&token));
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let long = "x".repeat(writ_engine::MAX_OUTCOME_DETAIL + 1);
    let (s, _) = f.json_as(
        "POST",
        "/v1/outcomes",
        Some(json!({"jti": child_id, "status": "failed", "detail": long})),
        Some(&op),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, l) = f.json_as("GET", &format!("/v1/lineage/{root_id}"), None, Some(&op));
    assert_eq!(l["nodes"][0]["execution"], "succeeded");
}

#[test]
fn lineage_search_finds_the_roots_by_principal_and_time_and_refuses_bad_queries() {
    let f = fixture(true);
    let op = f.operator();
    let a = "spiffe://demo.example/agent/billing-1";
    let b = "spiffe://demo.example/agent/billing-2";
    let (ta, tb) = (f.workload(a, "billing"), f.workload(b, "billing"));
    let spawn = |token: &str, parent: Option<&str>| {
        let mut r = json!({"credentials": {"workload": token}, "action": "spawn", "resource": "agent:helper", "arguments": {"agent": "helper"}});
        if let Some(p) = parent {
            r["parent_writ"] = json!(p);
        }
        f.json("POST", "/v1/authorize", Some(r)).1
    };
    // a's root, a child under it asked by b (denied: a delegated nothing to b, but recorded
    // under a's root), and a root of b's own.
    let root_a = spawn(&ta, None);
    let child = spawn(&tb, Some(root_a["writ"].as_str().unwrap()));
    assert_eq!(child["reasons"][0], "lineage.scope_escalation", "{child}");
    let root_b = spawn(&tb, None);
    let search = |q: &str| f.json_as("GET", &format!("/v1/lineage?{q}"), None, Some(&op));

    let (s, all) = search("");
    assert_eq!(s, StatusCode::OK, "{all}");
    let roots: Vec<&str> = all["roots"].as_array().unwrap().iter().map(|r| r["root"].as_str().unwrap()).collect();
    assert_eq!(roots, vec![root_b["id"].as_str().unwrap(), root_a["id"].as_str().unwrap()], "newest first");
    assert_eq!(all["roots"][1]["matched"], 2, "a's root and b's child under it");
    assert_eq!(all["roots"][1]["subject"], a);

    // b's decisions lead to both roots: its own, and a's (its child is under it).
    let (_, by_b) = search(&format!("principal={}", b.replace(':', "%3A").replace('/', "%2F")));
    assert_eq!(by_b["roots"].as_array().unwrap().len(), 2, "{by_b}");
    let (_, by_a) = search(&format!("principal={a}"));
    assert_eq!(by_a["roots"].as_array().unwrap().len(), 1, "{by_a}");
    assert_eq!(by_a["roots"][0]["root"], root_a["id"]);
    let (_, none) = search("principal=spiffe://demo.example/agent/nobody");
    assert_eq!(none["roots"], json!([]));
    let (_, limited) = search("limit=1");
    assert_eq!(limited["roots"].as_array().unwrap().len(), 1);

    // Time: the fixture's clock is fixed, so every decision is at `now`.
    let now = f.now;
    let (_, at) = search(&format!("since={now}&until={}", now + 1));
    assert_eq!(at["roots"].as_array().unwrap().len(), 2);
    let (_, before) = search(&format!("until={now}"));
    assert_eq!(before["roots"], json!([]));

    // Hostile queries: refused with request.malformed, never a full scan of nonsense.
    for q in [
        "principal=not-a-spiffe-id",
        "since=10&until=10",
        "since=11&until=10",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "since=x",
        "unknown=1",
    ] {
        let (s, e) = search(q);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {e}");
        assert_eq!(e["error"], "request.malformed", "{q}");
    }
    assert_eq!(f.json("GET", "/v1/lineage", None).0, StatusCode::UNAUTHORIZED);
}

#[test]
fn nodes_lists_this_node_live_and_the_heartbeats_in_the_shared_store() {
    let f = fixture(true);
    let (s, n) = f.json("GET", "/v1/nodes", None);
    assert_eq!(s, StatusCode::OK, "public: no credential");
    let nodes = n["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{n}");
    assert_eq!(nodes[0]["self"], true);
    assert_eq!(nodes[0]["id"], "local");
    assert!(nodes[0]["bundle_digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(!nodes[0]["bundle_version"].as_str().unwrap().is_empty());
    let size = nodes[0]["log_size"].as_u64().unwrap();
    f.json("POST", "/v1/authorize", Some(f.request()));
    let (_, n) = f.json("GET", "/v1/nodes", None);
    assert_eq!(n["nodes"][0]["log_size"].as_u64().unwrap(), size + 1, "this node's figures are live");

    // Another node sharing the store, a damaged heartbeat, and one under a wrong key.
    let store = f.engine.log().store();
    let other = json!({"id": "node-b", "address": "10.0.0.2:7070", "bundle_digest": null, "bundle_version": null, "log_size": 3, "last_seen": 100, "self": false});
    store.set_meta("node/node-b", &other.to_string()).unwrap();
    store.set_meta("node/broken", "{not json").unwrap();
    store.set_meta("node/liar", &json!({"id": "node-c", "address": "", "bundle_digest": null, "bundle_version": null, "log_size": 0, "last_seen": 1}).to_string()).unwrap();
    store.set_meta("node/local", &json!({"id": "local", "address": "stale", "bundle_digest": null, "bundle_version": null, "log_size": 0, "last_seen": 1}).to_string()).unwrap();
    let (_, n) = f.json("GET", "/v1/nodes", None);
    let ids: Vec<&str> = n["nodes"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["local", "node-b"], "{n}");
    assert_eq!(n["nodes"][0]["self"], true);
    assert_eq!(n["nodes"][1], other);
}

#[test]
fn a_heartbeat_records_this_node_in_the_store() {
    let f = fixture(true);
    let state = writ_server::AppState::new(f.engine.clone())
        .with_node(writ_server::NodeIdentity::new("n1", "127.0.0.1:1").unwrap());
    rt().block_on(state.heartbeat()).unwrap();
    let rows = f.engine.log().store().meta_prefixed("node/").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "node/n1");
    let v: Value = serde_json::from_str(&rows[0].1).unwrap();
    assert_eq!(v["address"], "127.0.0.1:1");
    assert_eq!(v["log_size"], f.engine.log().size());
    for bad in ["", "has space", &"x".repeat(129), "tab\t"] {
        assert!(writ_server::NodeIdentity::new(bad, "").is_err(), "{bad:?}");
    }
}

#[test]
fn receipts_verify_offline_with_the_log_key() {
    let f = fixture(true);
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    let index = d["log_index"].as_u64().unwrap();
    let (s, text, ctype) = f.call("GET", &format!("/v1/log/receipt/{index}"), None);
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"));
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex "), "{text}");
    let receipt = Receipt::parse(&text).unwrap();
    let (_, key, _) = f.call("GET", "/v1/log/key", None);
    let key = NoteVerifier::from_vkey(String::from_utf8(key).unwrap().trim()).unwrap();
    let entry = f.engine.log().entries(index, index + 1).unwrap().remove(0);
    receipt.verify(&entry, &key).unwrap();
    let mut other = entry.clone();
    other[10] ^= 1;
    assert!(receipt.verify(&other, &key).is_err());
    assert_eq!(f.call("GET", "/v1/log/receipt/999999", None).0, StatusCode::NOT_FOUND);
    assert_eq!(f.call("GET", "/v1/log/receipt/x", None).0, StatusCode::BAD_REQUEST);
}

#[test]
fn metrics_count_decisions_and_read_the_log() {
    let f = fixture(true);
    f.json("POST", "/v1/authorize", Some(f.request()));
    f.json("POST", "/v1/authorize", Some(json!({"action": "write", "resource": "r"})));
    let (s, body, ctype) = f.call("GET", "/metrics", None);
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    for needle in [
        "writ_decisions_total{outcome=\"allow\",reason=\"\"} 1",
        "writ_decisions_total{outcome=\"deny\",reason=\"identity.missing\"} 1",
        "writ_decision_duration_seconds_count 2",
        // The activation, its (empty) re-evaluation, and the two decisions.
        "writ_log_entries 4",
        "writ_log_commit_batch_entries_bucket{le=\"1.0\"}",
        "writ_log_commit_batch_entries_count",
        "writ_log_commit_seconds_bucket{le=\"0.001\"}",
        "writ_log_commit_seconds_count",
        "writ_active_bundle{name=\"writ-starter\"",
        "writ_http_requests_total{route=\"/v1/authorize\",status=\"200\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Every commit is timed: as many durations as batches.
    let value = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).unwrap()
    };
    assert_eq!(value("writ_log_commit_seconds_count "), value("writ_log_commit_batch_entries_count "));
    assert!(value("writ_log_commit_seconds_count ") >= 1.0);
}

#[test]
fn the_openapi_document_covers_every_route_and_mirrors_the_request() {
    let f = fixture(true);
    let (s, doc) = f.json("GET", "/v1/openapi.json", None);
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // Every operation has an id of its own (OpenAPI 3 requires them unique; the contract
    // test's validator refuses the document otherwise).
    let mut ids = std::collections::BTreeMap::<&str, u32>::new();
    for ops in paths.values() {
        for op in ops.as_object().unwrap().values() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                *ids.entry(id).or_default() += 1;
            }
        }
    }
    let repeated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "operation ids used more than once: {repeated:?}");
    for p in [
        "/v1/authorize",
        "/v1/renew",
        "/v1/verify",
        "/v1/outcomes",
        "/v1/log/checkpoint",
        "/v1/log/key",
        "/v1/log/entries",
        "/v1/log/proof/inclusion",
        "/v1/log/proof/consistency",
        "/v1/log/receipt/{index}",
        "/v1/log/stream",
        "/v1/stats",
        "/v1/policy/bundles/{digest}",
        "/v1/demo/runs",
        "/v1/demo/runs/{id}",
        "/v1/demo/runs/{id}/events",
        "/v1/bundles",
        "/v1/bundles/{digest}/activate",
        "/v1/revocations",
        "/v1/quarantine",
        "/v1/quarantine/isolate",
        "/v1/quarantine/release",
        "/v1/lineage/{id}",
        "/v1/lineage",
        "/v1/nodes",
        "/v1/approvals",
        "/v1/approvals/{id}",
        "/v1/approvals/{id}/approve",
        "/v1/approvals/{id}/reject",
        "/v1/openapi.json",
        "/.well-known/jwks.json",
        "/healthz",
        "/v1/health",
        "/v1/health/verify",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    for (method, uri, _) in admin_routes() {
        let path = if uri.contains("/activate") {
            "/v1/bundles/{digest}/activate".to_owned()
        } else if uri.starts_with("/v1/lineage/") {
            "/v1/lineage/{id}".to_owned()
        } else if let Some((path, _)) = uri.split_once('?') {
            path.to_owned()
        } else if let Some(answer) = uri.strip_prefix("/v1/approvals/x/") {
            format!("/v1/approvals/{{id}}/{answer}")
        } else if uri.starts_with("/v1/policy/bundles/") {
            "/v1/policy/bundles/{digest}".to_owned()
        } else if let Some(rest) = uri.strip_prefix("/v1/demo/runs/x") {
            format!("/v1/demo/runs/{{id}}{rest}")
        } else {
            uri.clone()
        };
        let op = &doc["paths"][&path][method.to_lowercase()];
        assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
    }
    // The documented request has exactly the fields the engine parses.
    let full = writ_core::ExecutionRequest {
        request_id: Some("r".into()),
        credentials: writ_core::Credentials {
            workload: Some("w".into()),
            operator: Some("o".into()),
            orchestrator: Some("o".into()),
            machine: Some("m".into()),
            runtime: Some("r".into()),
            delegation: Some("d".into()),
        },
        attestation: Some("a".into()),
        action: "a".into(),
        resource: "r".into(),
        arguments: json!({}),
        parent: Some("p".into()),
        parent_writ: Some("p".into()),
        audience: Some("a".into()),
    };
    let real = serde_json::to_value(&full).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let schemas = &doc["components"]["schemas"];
    assert_eq!(keys(&schemas["AuthorizeRequestDoc"]["properties"]), keys(&real));
    assert_eq!(keys(&schemas["CredentialsDoc"]["properties"]), keys(&real["credentials"]));
}

#[test]
fn overload_is_refused_at_once_and_slow_requests_time_out() {
    let f = fixture_with(
        true,
        Limits { max_in_flight: 1, request_timeout: std::time::Duration::from_secs(10), ..Limits::default() },
    );
    let req = serde_json::to_vec(&f.request()).unwrap();
    let statuses = rt().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let router = f.router.clone();
            let body = req.clone();
            tasks.push(tokio::spawn(async move {
                use tower::ServiceExt as _;
                let r = axum::http::Request::post("/v1/authorize").body(axum::body::Body::from(body)).unwrap();
                let resp = router.oneshot(r).await.unwrap();
                (resp.status(), resp.headers().get("retry-after").is_some())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let refused = statuses.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).count();
    let ok = statuses.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert!(refused > 0 && ok > 0, "{statuses:?}");
    assert!(statuses.iter().all(|(s, retry)| *s == StatusCode::OK || *retry), "every 503 says Retry-After");
    assert_eq!(refused + ok, 64);
    // Health and metrics stay reachable; an operator-free probe still answers.
    assert_eq!(f.call("GET", "/healthz", None).0, StatusCode::OK);

    // A store stuck behind another writer's lock: the request is answered 503 at the
    // timeout, not left hanging.
    let slow = fixture_with(
        true,
        Limits { max_in_flight: 16, request_timeout: std::time::Duration::from_millis(200), ..Limits::default() },
    );
    let db = rusqlite::Connection::open(slow.dir.path().join("log.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (s, e) = slow.json("POST", "/v1/authorize", Some(slow.request()));
    assert_eq!((s, e["error"].as_str().unwrap_or_default()), (StatusCode::SERVICE_UNAVAILABLE, "internal"), "{e}");
    db.execute_batch("ROLLBACK").unwrap();
    let (_, _, _) = slow.call("GET", "/metrics", None);
    let (_, m, _) = slow.call("GET", "/metrics", None);
    assert!(String::from_utf8(m).unwrap().contains("writ_http_refused_total{why=\"timeout\"} 1"));
}

/// `POST /v1/keys/rotate`: the new key is stored, the rotation recorded with the operator,
/// new writs carry the new kid, and writs issued before keep verifying; a store that cannot
/// take the key changes nothing.
#[test]
fn an_operator_rotates_the_writ_key_without_downtime() {
    let f = fixture(true);
    let op = f.operator();
    let request = f.request();
    let (_, first) = f.json("POST", "/v1/authorize", Some(request.clone()));
    let old = first["writ"].as_str().unwrap().to_owned();
    let (_, jwks) = f.json("GET", "/.well-known/jwks.json", None);
    let before: Vec<Value> = jwks["keys"].as_array().unwrap().clone();

    // A store that cannot take the key: 503, nothing recorded, nothing changed.
    f.keys.fail_add.store(true, std::sync::atomic::Ordering::SeqCst);
    let size = f.engine.log().size();
    let (s, e) = f.json_as("POST", "/v1/keys/rotate", None, Some(&op));
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(f.engine.log().size(), size);
    f.keys.fail_add.store(false, std::sync::atomic::Ordering::SeqCst);

    let (s, r) = f.json_as("POST", "/v1/keys/rotate", None, Some(&op));
    assert_eq!(s, StatusCode::OK, "{r}");
    let kid = r["kid"].as_str().unwrap();
    assert_eq!(r["kids"].as_array().unwrap().len(), 2);
    assert_eq!(r["kids"][0], before[0]["kid"]);
    assert_eq!(f.keys.seeds.lock().unwrap().len(), 2);
    let (_, jwks) = f.json("GET", "/.well-known/jwks.json", None);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(f.keys.published.lock().unwrap().as_ref(), Some(&jwks));

    let index = r["log_index"].as_u64().unwrap();
    let (_, entries) = f.json("GET", &format!("/v1/log/entries?start={index}&end={}", index + 1), None);
    let entry = entries["entries"][0].to_string();
    assert!(entry.contains("key_rotation") && entry.contains("operator/alice"), "{entries}");

    let (_, second) = f.json("POST", "/v1/authorize", Some(request.clone()));
    let new = second["writ"].as_str().unwrap().to_owned();
    let header = |w: &str| -> Value {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(w.split('.').next().unwrap()).unwrap();
        serde_json::from_slice(&b).unwrap()
    };
    assert_eq!(header(&new)["kid"], kid);
    assert_eq!(header(&old)["kid"], before[0]["kid"]);
    let call = json!({"action": request["action"], "resource": request["resource"], "arguments": request["arguments"]});
    for writ in [&old, &new] {
        let (s, v) = f.json("POST", "/v1/verify", Some(json!({"writ": writ, "request": call})));
        assert_eq!((s, v["ok"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    }
}

/// A payment the starter bundle sends to an operator: pending, listed, approved by the
/// operator, collected by the agent that asked (and only by it), verified, recorded.
#[test]
fn an_approval_through_the_api() {
    let f = fixture(true);
    let op = f.operator();
    let agent = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let other = f.workload("spiffe://demo.example/agent/billing-2", "billing");
    let call =
        json!({"action": "payment", "resource": "payments:stripe", "arguments": {"amount": 2500, "currency": "EUR"}});
    let mut req = call.clone();
    req["credentials"] = json!({"workload": agent});
    let (s, d) = f.json("POST", "/v1/authorize", Some(req));
    assert_eq!((s, d["outcome"].as_str()), (StatusCode::OK, Some("pending")), "{d}");
    assert!(d.get("writ").is_none(), "{d}");
    let id = d["id"].as_str().unwrap().to_owned();
    let status_uri = format!("/v1/approvals/{id}");

    let (s, list) = f.json_as("GET", "/v1/approvals", None, Some(&op));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["approvals"][0]["id"], id.as_str());
    assert_eq!(list["approvals"][0]["status"], "pending");
    assert_eq!(list["approvals"][0]["arguments"]["amount"], 2500);
    let (s, e) = f.json_as("GET", "/v1/approvals?status=everything", None, Some(&op));
    assert_eq!((s, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("request.malformed")));

    // Status: the agent that asked and operators; nobody else, nobody anonymous.
    let (s, mine) = f.json_as("GET", &status_uri, None, Some(&agent));
    assert_eq!((s, mine["status"].as_str()), (StatusCode::OK, Some("pending")), "{mine}");
    assert!(mine.get("writ").is_none());
    let (s, e) = f.json_as("GET", &status_uri, None, Some(&other));
    assert_eq!((s, e["error"].as_str()), (StatusCode::FORBIDDEN, Some("identity.untrusted_issuer")), "{e}");
    let (s, _) = f.json("GET", &status_uri, None);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = f.json_as("GET", "/v1/approvals/w-nothing", None, Some(&op));
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Bad answers change nothing.
    let before = f.engine.log().size();
    for bad in [json!({}), json!({"reason": 7}), json!({"reason": "r", "approve": true})] {
        let (s, e) = f.json_as("POST", &format!("{status_uri}/approve"), Some(bad.clone()), Some(&op));
        assert_eq!((s, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("request.malformed")), "{bad}");
    }
    let (s, _, _) = f.call_as(
        "POST",
        &format!("{status_uri}/approve"),
        Some(vec![b' '; 64 * 1024 + 1]),
        Some(&format!("Bearer {op}")),
    );
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = f.json_as("POST", "/v1/approvals/w-nothing/approve", Some(json!({"reason": "r"})), Some(&op));
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(f.engine.log().size(), before);

    let (s, a) =
        f.json_as("POST", &format!("{status_uri}/approve"), Some(json!({"reason": "invoice checked"})), Some(&op));
    assert_eq!((s, a["status"].as_str()), (StatusCode::OK, Some("approved")), "{a}");
    assert_eq!(a["resolution"]["operator"], "spiffe://demo.example/operator/alice");
    let index = a["resolution"]["log_index"].as_u64().unwrap();
    let (_, e) = f.json("GET", &format!("/v1/log/entries?start={index}&end={}", index + 1), None);
    assert_eq!(e["entries"][0]["entry"]["kind"], "approval");
    assert_eq!(e["entries"][0]["entry"]["operator"], "spiffe://demo.example/operator/alice");
    let (s, again) = f.json_as("POST", &format!("{status_uri}/reject"), Some(json!({"reason": "late"})), Some(&op));
    assert_eq!(s, StatusCode::CONFLICT, "{again}");

    // The operator's view has no writ; the agent collects it and it verifies once.
    let (_, seen) = f.json_as("GET", &status_uri, None, Some(&op));
    assert!(seen.get("writ").is_none());
    let (_, mine) = f.json_as("GET", &status_uri, None, Some(&agent));
    assert_eq!(mine["status"], "approved");
    let verify = json!({"writ": mine["writ"], "request": call});
    let (_, v) = f.json("POST", "/v1/verify", Some(verify.clone()));
    assert_eq!(v["ok"], true, "{v}");
    let (_, v) = f.json("POST", "/v1/verify", Some(verify));
    assert_eq!(v["reason"], "writ.replayed");
}

/// Every route that takes a body other than authorize (whose malformed requests are
/// recorded denials, tested apart), called by someone allowed to: a body over the route's
/// limit is 413; an empty body, one that is not JSON, one with an unknown field and one
/// with a field of the wrong type are each 400 `request.malformed`; and none of them
/// changes anything (the log keeps its size, the pending approval stays pending).
#[test]
fn every_body_is_bounded_and_parsed_strictly_before_anything_changes() {
    use writ_server::{MAX_BODY, MAX_BUNDLE_BODY};
    let f = fixture(true);
    let op = f.operator();
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    let jti = d["id"].as_str().unwrap().to_owned();
    let token = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let pay = json!({"credentials": {"workload": token}, "action": "payment", "resource": "payments:stripe", "arguments": {"amount": 2500, "currency": "EUR"}});
    let (_, pending) = f.json("POST", "/v1/authorize", Some(pay));
    assert_eq!(pending["outcome"], "pending", "{pending}");
    let pending = pending["id"].as_str().unwrap().to_owned();
    let subject = "spiffe://demo.example/agent/billing-1";
    let routes: Vec<(String, Option<&str>, Value, &str, usize)> = vec![
        (
            "/v1/verify".into(),
            None,
            json!({"writ": "x", "request": {"action": "a", "resource": "r"}}),
            "writ",
            MAX_BODY,
        ),
        ("/v1/outcomes".into(), Some(&op), json!({"jti": jti, "status": "succeeded"}), "status", MAX_BODY),
        (
            "/v1/bundles".into(),
            Some(&op),
            json!({"bundle": {"manifest": "", "policies": "", "schema": ""}, "signature": ""}),
            "signature",
            MAX_BUNDLE_BODY,
        ),
        ("/v1/revocations".into(), Some(&op), json!({"jti": jti, "reason": "r"}), "jti", MAX_BODY),
        ("/v1/quarantine/isolate".into(), Some(&op), json!({"subject": subject, "reason": "r"}), "subject", MAX_BODY),
        ("/v1/quarantine/release".into(), Some(&op), json!({"subject": subject, "reason": "r"}), "reason", MAX_BODY),
        (format!("/v1/approvals/{pending}/approve"), Some(&op), json!({"reason": "r"}), "reason", MAX_BODY),
        (format!("/v1/approvals/{pending}/reject"), Some(&op), json!({"reason": "r"}), "reason", MAX_BODY),
    ];
    let size = f.engine.log().size();
    for (uri, bearer, valid, field, limit) in routes {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let (s, _, _) = f.call_as("POST", &uri, Some(vec![b' '; limit + 1]), auth.as_deref());
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: oversized");
        let mut unknown = valid.clone();
        unknown["admin"] = json!(true);
        let mut retyped = valid.clone();
        retyped[field] = json!(7);
        for (what, body) in [
            ("empty", Vec::new()),
            ("not JSON", b"{\"reason\": ".to_vec()),
            ("an array", b"[]".to_vec()),
            ("an unknown field", serde_json::to_vec(&unknown).unwrap()),
            ("a field of the wrong type", serde_json::to_vec(&retyped).unwrap()),
        ] {
            let (s, b, ctype) = f.call_as("POST", &uri, Some(body), auth.as_deref());
            let e: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            assert_eq!(
                (s, e["error"].as_str(), ctype.as_str()),
                (StatusCode::BAD_REQUEST, Some("request.malformed"), "application/json"),
                "{uri} with {what}: {e}"
            );
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{uri} with {what}: a human message");
        }
    }
    assert_eq!(f.engine.log().size(), size, "a refused body changed nothing");
    let (_, a) = f.json_as("GET", &format!("/v1/approvals/{pending}"), None, Some(&op));
    assert_eq!(a["status"], "pending", "{a}");
}

/// Found in review: an activation whose client went away (a disconnect, the request
/// timeout) after its entry was handed to the log was recorded and listed as active, but
/// the node went on deciding under the old bundle until a restart, and its re-evaluation
/// never ran. Every recording handler now runs its operation in a task of its own.
#[test]
fn an_activation_whose_client_went_away_is_in_force() {
    let f = fixture(true);
    let op = f.operator();
    let (b, sig) = frozen(&f);
    let (s, up) = f.json_as("POST", "/v1/bundles", Some(bundle_body(&b, &sig, false)), Some(&op));
    assert_eq!(s, StatusCode::OK, "{up}");
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow");
    let outstanding = d["id"].as_str().unwrap().to_owned();
    let digest = b.digest().to_string();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/bundles/{digest}/activate"))
        .header("authorization", format!("Bearer {op}"))
        .body(axum::body::Body::empty())
        .unwrap();
    // The client goes away after the first poll of its request.
    let rt = rt();
    let cut = rt.block_on(async {
        futures_util::FutureExt::now_or_never(tower::ServiceExt::oneshot(f.router.clone(), req)).is_none()
    });
    assert!(cut, "the activation answered in one poll: nothing was cut");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
        if d["outcome"] == "deny" {
            assert_eq!(d["policies"][0], "freeze", "{d}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the activation is recorded but never in force: {d}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Its re-evaluation ran too: the write writ issued under the starter is revoked.
    loop {
        let (_, list) = f.json_as("GET", "/v1/revocations", None, Some(&op));
        if list["revocations"].as_array().unwrap().iter().any(|r| r["jti"] == outstanding.as_str()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the activation's re-evaluation never ran: {list}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(rt);
}
