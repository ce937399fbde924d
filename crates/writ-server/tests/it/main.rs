//! Every route of the API through the router, without a socket: success, malformed input,
//! oversized bodies, unknown fields; and proofs served by the API verify offline against
//! the signed checkpoint with only the log's public key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;
use writ_core::SpiffeId;
use writ_engine::testkit::TestEngine;
use writ_engine::{Engine, FixedClock, parse_rfc3339};
use writ_identity::{DevIssuer, IssueRequest};
use writ_log::{Hash, NoteSigner, NoteVerifier, SignedCheckpoint};
use writ_log::{verify_consistency, verify_inclusion};
use writ_policy::{sign_bundle, starter_bundle};
use writ_server::{AppState, Limits, MAX_BODY, app};

mod admin;
mod conn;
mod console;
mod errors;
mod feed;
mod health;
mod isolation;
mod shadow;

pub(crate) struct Fixture {
    pub(crate) router: axum::Router,
    pub(crate) issuer: DevIssuer,
    pub(crate) operators: DevIssuer,
    pub(crate) policy_key: NoteSigner,
    pub(crate) engine: Arc<Engine>,
    pub(crate) now: u64,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) keys: Arc<MemoryKeys>,
}

/// A writ key store in memory, whose additions can be made to fail.
#[derive(Default)]
pub(crate) struct MemoryKeys {
    pub(crate) seeds: std::sync::Mutex<Vec<[u8; 32]>>,
    pub(crate) fail_add: std::sync::atomic::AtomicBool,
    pub(crate) published: std::sync::Mutex<Option<Value>>,
}

impl writ_server::WritKeyStore for MemoryKeys {
    fn add(&self) -> Result<Vec<[u8; 32]>, String> {
        if self.fail_add.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("writing /srv/writ-data/keys/writ.keys: No space left on device (os error 28)".into());
        }
        let mut seeds = self.seeds.lock().unwrap();
        let next = [4 + seeds.len() as u8; 32];
        seeds.push(next);
        Ok(seeds.clone())
    }
    fn remove_newest(&self) -> Result<(), String> {
        self.seeds.lock().unwrap().pop();
        Ok(())
    }
    fn published(&self, jwks: &Value) -> Result<(), String> {
        *self.published.lock().unwrap() = Some(jwks.clone());
        Ok(())
    }
}

pub(crate) fn fixture(with_bundle: bool) -> Fixture {
    fixture_with(with_bundle, Limits::default())
}

pub(crate) fn fixture_with(with_bundle: bool, limits: Limits) -> Fixture {
    let now = parse_rfc3339("2026-11-26T10:00:00Z").unwrap();
    let TestEngine { engine, issuer, operators, policy_key, dir } = TestEngine::open(Arc::new(FixedClock::new(now)));
    if with_bundle {
        let b = starter_bundle().unwrap();
        let sig = sign_bundle(&b, &policy_key).unwrap();
        rt().block_on(engine.activate(&b, &sig, None)).unwrap();
    }
    let engine = Arc::new(engine);
    let keys = Arc::new(MemoryKeys { seeds: std::sync::Mutex::new(vec![[3; 32]]), ..MemoryKeys::default() });
    Fixture {
        router: app(AppState::with_limits(engine.clone(), limits).with_key_store(keys.clone())),
        keys,
        issuer,
        operators,
        policy_key,
        engine,
        now,
        dir,
    }
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

impl Fixture {
    pub(crate) fn call(&self, method: &str, uri: &str, body: Option<Vec<u8>>) -> (StatusCode, Vec<u8>, String) {
        self.call_as(method, uri, body, None)
    }

    pub(crate) fn call_as(
        &self,
        method: &str,
        uri: &str,
        body: Option<Vec<u8>>,
        authorization: Option<&str>,
    ) -> (StatusCode, Vec<u8>, String) {
        let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        rt().block_on(async {
            let resp = self.router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (status, resp.into_body().collect().await.unwrap().to_bytes().to_vec(), ctype)
        })
    }

    pub(crate) fn json(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.json_as(method, uri, body, None)
    }

    pub(crate) fn json_as(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let (s, b, _) = self.call_as(method, uri, body.map(|v| serde_json::to_vec(&v).unwrap()), auth.as_deref());
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// A workload credential for `subject` in `zone`.
    pub(crate) fn workload(&self, subject: &str, zone: &str) -> String {
        let subject = SpiffeId::parse(subject).unwrap();
        let mut extra = Map::new();
        extra.insert("zone".into(), json!(zone));
        self.issuer
            .issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 600,
                extra_claims: extra,
                now: self.now,
            })
            .unwrap()
    }

    /// An operator credential.
    pub(crate) fn operator(&self) -> String {
        let subject = SpiffeId::parse("spiffe://demo.example/operator/alice").unwrap();
        self.operators
            .issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 600,
                extra_claims: Map::new(),
                now: self.now,
            })
            .unwrap()
    }

    /// Sets or clears (`+i`, `-i`) the immutable flag on the log store's files and folder
    /// (it binds root too); false where chattr cannot do it here.
    pub(crate) fn chattr_store(&self, flag: &str) -> bool {
        let paths: Vec<String> = ["log.db", "log.db-wal", ""]
            .iter()
            .map(|p| self.dir.path().join(p).to_str().unwrap().trim_end_matches('/').to_owned())
            .collect();
        std::process::Command::new("chattr").arg(flag).args(&paths).status().is_ok_and(|s| s.success())
    }

    pub(crate) fn request(&self) -> Value {
        let token = self.workload("spiffe://demo.example/agent/billing-1", "billing");
        json!({"credentials": {"workload": token}, "action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a"}})
    }
}

/// `POST /v1/renew`: the writ's own principal renews it once (a new writ for the same
/// request); a second renewal of it, another principal's and a body that is not a renewal
/// request are denies with their reason codes, never errors.
#[test]
fn renew_answers_like_authorize() {
    let f = fixture(true);
    let req = f.request();
    let (_, d) = f.json("POST", "/v1/authorize", Some(req.clone()));
    let writ = d["writ"].as_str().unwrap().to_owned();
    let body = json!({"writ": writ, "credentials": req["credentials"]});
    let (status, r) = f.json("POST", "/v1/renew", Some(body.clone()));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["outcome"], "allow", "{r}");
    assert_ne!(r["id"], d["id"]);
    assert!(r["writ"].is_string() && r["log_index"].is_u64(), "{r}");
    let (status, again) = f.json("POST", "/v1/renew", Some(body));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["reasons"][0], "writ.replayed", "{again}");
    let thief = f.workload("spiffe://demo.example/agent/billing-2", "billing");
    let next = r["writ"].as_str().unwrap();
    let (_, other) = f.json("POST", "/v1/renew", Some(json!({"writ": next, "credentials": {"workload": thief}})));
    assert_eq!(other["reasons"][0], "writ.binding_mismatch", "{other}");
    let (status, junk) = f.json("POST", "/v1/renew", Some(json!([next])));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(junk["reasons"][0], "request.malformed", "{junk}");
}

#[test]
fn authorize_then_verify_once() {
    let f = fixture(true);
    let req = f.request();
    let (status, d) = f.json("POST", "/v1/authorize", Some(req.clone()));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["outcome"], "allow", "{d}");
    let verify = json!({"writ": d["writ"], "request": {"action": req["action"], "resource": req["resource"], "arguments": req["arguments"]}});
    let (status, v) = f.json("POST", "/v1/verify", Some(verify.clone()));
    assert_eq!((status, v["ok"].clone()), (StatusCode::OK, json!(true)), "{v}");
    let (_, again) = f.json("POST", "/v1/verify", Some(verify));
    assert_eq!(again["reason"], "writ.replayed");
}

#[test]
fn denials_are_answers_and_bad_bodies_are_refused() {
    let f = fixture(true);
    let (status, d) = f.json("POST", "/v1/authorize", Some(json!({"action": "write", "resource": "r", "extra": 1})));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["reasons"], json!(["request.malformed"]));
    let (status, d) = f.json("POST", "/v1/authorize", Some(json!({"action": "write", "resource": "r"})));
    assert_eq!((status, d["reasons"].clone()), (StatusCode::OK, json!(["identity.missing"])));
    let (status, _, _) = f.call("POST", "/v1/authorize", Some(vec![b'x'; MAX_BODY + 1]));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, e) = f.json(
        "POST",
        "/v1/verify",
        Some(json!({"writ": "x", "request": {"action": "a", "resource": "r"}, "admin": true})),
    );
    assert_eq!((status, e["error"].clone()), (StatusCode::BAD_REQUEST, json!("request.malformed")));
    let (status, e) = f.json("POST", "/v1/verify", Some(json!({"writ": 7})));
    assert_eq!((status, e["error"].clone()), (StatusCode::BAD_REQUEST, json!("request.malformed")));
    let (_, v) =
        f.json("POST", "/v1/verify", Some(json!({"writ": "not.a.writ", "request": {"action": "a", "resource": "r"}})));
    assert_eq!(v["reason"], "writ.bad_signature");
    for (method, uri, status, code) in [
        ("GET", "/v1/authorize", StatusCode::METHOD_NOT_ALLOWED, "request.malformed"),
        ("GET", "/v1/nothing", StatusCode::NOT_FOUND, "not_found"),
        ("GET", "/v1/log/entries?start=1", StatusCode::BAD_REQUEST, "request.malformed"),
        ("GET", "/v1/log/receipt/-1", StatusCode::BAD_REQUEST, "request.malformed"),
    ] {
        let (s, body, ctype) = f.call(method, uri, None);
        assert_eq!(s, status, "{uri}");
        assert_eq!(ctype, "application/json", "{uri}: every error is JSON");
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"], code, "{uri}");
    }
}

/// Issue 14: a policy deny explains itself in `detail` and in `explanation`; the reason
/// codes are what they were, and the OpenAPI document describes the field.
#[test]
fn a_policy_deny_explains_itself() {
    let f = fixture(true);
    let token = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let over = json!({"credentials": {"workload": token}, "action": "payment", "resource": "payments:stripe", "arguments": {"amount": 50000, "currency": "EUR"}});
    let (status, d) = f.json("POST", "/v1/authorize", Some(over));
    assert_eq!(status, StatusCode::OK);
    assert_eq!((d["outcome"].clone(), d["reasons"].clone()), (json!("deny"), json!(["policy.denied"])), "{d}");
    let closest: Vec<&str> =
        d["explanation"]["closest_permits"].as_array().unwrap().iter().map(|p| p["policy"].as_str().unwrap()).collect();
    assert_eq!(closest, ["payment-business-hours", "payment-needs-approval"], "{d}");
    assert_eq!(d["explanation"]["forbidden_by"], json!([]));
    assert!(d["explanation"]["closest_permits"][1]["requires"].as_str().unwrap().contains("approved by an operator"));
    assert!(
        d["detail"].as_str().unwrap().starts_with("no policy permits this; closest: payment-business-hours requires:")
    );
    let hostile = json!({"credentials": {"workload": f.workload("spiffe://demo.example/agent/billing-1", "billing")}, "action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/../support/x"}});
    let (_, d) = f.json("POST", "/v1/authorize", Some(hostile));
    assert_eq!(d["reasons"], json!(["policy.denied"]));
    assert_eq!(d["explanation"]["forbidden_by"][0]["policy"], "write-path-normalised", "{d}");
    assert_eq!(d["explanation"]["closest_permits"], json!([]));
    let allowed = f.json("POST", "/v1/authorize", Some(f.request())).1;
    assert!(allowed.get("explanation").is_none(), "{allowed}");
    let (_, doc) = f.json("GET", "/v1/openapi.json", None);
    let props = &doc["components"]["schemas"]["DecisionDoc"]["properties"];
    assert!(props.get("explanation").is_some(), "{props}");
}

#[test]
fn proofs_from_the_api_verify_offline_against_the_signed_checkpoint() {
    let f = fixture(true);
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    let index = d["log_index"].as_u64().unwrap();
    let (status, key, ctype) = f.call("GET", "/v1/log/key", None);
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"));
    let vkey = NoteVerifier::from_vkey(String::from_utf8(key).unwrap().trim()).unwrap();
    let (status, note, ctype) = f.call("GET", "/v1/log/checkpoint", None);
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"));
    let (cp, _) = SignedCheckpoint::open(&note, &vkey, &[]).unwrap();
    let cp = cp.checkpoint().clone();
    let (status, p) = f.json("GET", &format!("/v1/log/proof/inclusion?index={index}&size={}", cp.size), None);
    assert_eq!(status, StatusCode::OK);
    let (_, e) = f.json("GET", &format!("/v1/log/entries?start={index}&end={}", index + 1), None);
    use base64::Engine as _;
    let entry =
        base64::engine::general_purpose::STANDARD.decode(e["entries"][0]["entry_base64"].as_str().unwrap()).unwrap();
    let hashes = |v: &Value| {
        v.as_array().unwrap().iter().map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(Hash::leaf(&entry).to_base64(), p["leaf_hash"].as_str().unwrap());
    verify_inclusion(index, cp.size, &Hash::leaf(&entry), &hashes(&p["proof"]), &cp.root).unwrap();
    let (status, c) = f.json("GET", &format!("/v1/log/proof/consistency?from=1&to={}", cp.size), None);
    assert_eq!(status, StatusCode::OK);
    let (_, first) = f.json("GET", "/v1/log/entries?start=0&end=1", None);
    let root1 = Hash::leaf(
        &base64::engine::general_purpose::STANDARD
            .decode(first["entries"][0]["entry_base64"].as_str().unwrap())
            .unwrap(),
    );
    verify_consistency(1, cp.size, &hashes(&c["proof"]), &root1, &cp.root).unwrap();
}

#[test]
fn log_routes_refuse_bad_ranges() {
    let f = fixture(true);
    for uri in [
        "/v1/log/entries?start=5&end=2",
        "/v1/log/entries?start=0&end=5000",
        "/v1/log/entries?start=0&end=99",
        "/v1/log/entries?start=x&end=1",
        "/v1/log/entries?start=0&end=1&extra=1",
        "/v1/log/proof/inclusion?index=99&size=1",
        "/v1/log/proof/inclusion?index=0&size=99",
        "/v1/log/proof/consistency?from=0&to=1",
        "/v1/log/proof/consistency?from=1&to=99",
    ] {
        let (status, _, _) = f.call("GET", uri, None);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
    }
}

#[test]
fn jwks_health_and_readiness() {
    let f = fixture(true);
    let (status, jwks) = f.json("GET", "/.well-known/jwks.json", None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(f.call("GET", "/healthz", None).0, StatusCode::OK);
    let (status, page, ctype) = f.call("GET", "/console/governance", None);
    assert_eq!((status, ctype.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
    assert!(String::from_utf8(page).unwrap().contains("Governance Console"));
    let (status, r) = f.json("GET", "/readyz", None);
    assert_eq!((status, r["ready"].clone()), (StatusCode::OK, json!(true)));
    let bare = fixture(false);
    let (status, r) = bare.json("GET", "/readyz", None);
    assert_eq!((status, r["error"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("policy.no_active_bundle")));
}

/// `/readyz` asks the log whether it takes writes, even while nothing is appended: the data
/// directory made immutable (chattr +i binds root too) is `503 log.unavailable` at once,
/// without a decision having failed first; writable again, ready again once the probe's
/// answer (kept for a second) is renewed.
#[test]
fn readiness_probes_an_idle_log_for_writes() {
    let f = fixture(true);
    let (status, _) = f.json("GET", "/readyz", None);
    assert_eq!(status, StatusCode::OK);
    let chattr = |flag: &str| f.chattr_store(flag);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    if !chattr("+i") {
        eprintln!("skipped: chattr +i is not available here");
        return;
    }
    let (status, r) = f.json("GET", "/readyz", None);
    // Asked again within the second: the same answer, without another probe.
    let (again, _) = f.json("GET", "/readyz", None);
    // The health document says the same (found in review: it said ready while /readyz
    // answered 503, and the dashboard showed a healthy node denying everything).
    let (_, health) = f.json("GET", "/v1/health", None);
    assert!(chattr("-i"));
    assert_eq!((status, r["error"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("log.unavailable")), "{r}");
    assert_eq!(again, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((&health["ready"], &health["log"]["writable"]), (&json!(false), &json!(false)), "{health}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, r) = f.json("GET", "/readyz", None);
    assert_eq!((status, r["ready"].clone()), (StatusCode::OK, json!(true)), "{r}");
    let (_, health) = f.json("GET", "/v1/health", None);
    assert_eq!((&health["ready"], &health["log"]["writable"]), (&json!(true), &json!(true)), "{health}");
    // Nothing was lost or refused meanwhile.
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow", "{d}");
}

/// Issue 13, item 3: the last member won in `POST /v1/authorize` and inside `arguments` at
/// `POST /v1/verify`; a tool keeping the first member would run a call nobody saw. Every
/// body with a repeated member, at any depth, is `request.malformed`, and changes nothing.
#[test]
fn regression_duplicate_members_are_refused_in_every_body() {
    let f = fixture(true);
    let token = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    for body in [
        format!(
            r#"{{"credentials":{{"workload":"{token}"}},"action":"read","action":"write","resource":"fs:/zones/billing","arguments":{{}}}}"#
        ),
        format!(
            r#"{{"credentials":{{"workload":"{token}"}},"action":"write","resource":"fs:/zones/billing","arguments":{{"path":"/zones/billing/a","path":"/zones/support/b"}}}}"#
        ),
    ] {
        let (status, d, _) = f.call("POST", "/v1/authorize", Some(body.into_bytes()));
        let d: Value = serde_json::from_slice(&d).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!((d["outcome"].as_str(), d["reasons"][0].as_str()), (Some("deny"), Some("request.malformed")), "{d}");
        assert!(d["writ"].is_null());
    }
    // Verify: a duplicate inside the arguments of the call about to run is refused before
    // the writ is looked at, so the writ is not consumed.
    let req = f.request();
    let (_, d) = f.json("POST", "/v1/authorize", Some(req.clone()));
    let writ = d["writ"].as_str().unwrap().to_owned();
    let hostile = format!(
        r#"{{"writ":"{writ}","request":{{"action":"write","resource":"fs:/zones/billing","arguments":{{"path":"/zones/billing/a","path":"/zones/support/b"}}}}}}"#
    );
    let (status, body, _) = f.call("POST", "/v1/verify", Some(hostile.into_bytes()));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("request.malformed")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("duplicate member"), "{body}");
    let verify = json!({"writ": writ, "request": {"action": req["action"], "resource": req["resource"], "arguments": req["arguments"]}});
    assert_eq!(f.json("POST", "/v1/verify", Some(verify)).1["ok"], true);
    // An operator route.
    let op = format!("Bearer {}", f.operator());
    let isolate = br#"{"subject":"spiffe://demo.example/agent/x","subject":"spiffe://demo.example/agent/billing-1","reason":"r"}"#;
    let (status, _, _) = f.call_as("POST", "/v1/quarantine/isolate", Some(isolate.to_vec()), Some(&op));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(f.json_as("GET", "/v1/quarantine", None, Some(&f.operator())).1["quarantined"], json!([]));
}

/// Issue 13, item 2: a writ issued before its principal was isolated still verified.
#[test]
fn regression_verify_refuses_a_quarantined_principals_writ() {
    let f = fixture(true);
    let req = f.request();
    let (_, d) = f.json("POST", "/v1/authorize", Some(req.clone()));
    let verify = json!({"writ": d["writ"], "request": {"action": req["action"], "resource": req["resource"], "arguments": req["arguments"]}});
    let op = f.operator();
    let (status, _) = f.json_as(
        "POST",
        "/v1/quarantine/isolate",
        Some(json!({"subject": "spiffe://demo.example/agent/billing-1", "reason": "compromised"})),
        Some(&op),
    );
    assert_eq!(status, StatusCode::OK);
    let (_, v) = f.json("POST", "/v1/verify", Some(verify.clone()));
    assert_eq!((v["ok"].clone(), v["reason"].clone()), (json!(false), json!("quarantined")), "{v}");
    f.json_as(
        "POST",
        "/v1/quarantine/release",
        Some(json!({"subject": "spiffe://demo.example/agent/billing-1", "reason": "cleared"})),
        Some(&op),
    );
    assert_eq!(f.json("POST", "/v1/verify", Some(verify)).1["ok"], true);
}
