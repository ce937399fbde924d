//! `writ-verify` against a real control plane: `writ_server`'s router served on a loopback
//! socket, its engine signing writs with its own keys. What the unit tests check with
//! documents they sign themselves, checked here with what the server publishes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};
use writ_core::{ExecutionRequest, Limits, ReasonCode, RequestDigest, SpiffeId};
use writ_engine::testkit::TestEngine;
use writ_engine::{Engine, SystemClock};
use writ_identity::{DevIssuer, IssueRequest};
use writ_log::NoteSigner;
use writ_policy::{sign_bundle, starter_bundle};
use writ_server::AppState;
use writ_verify::{
    ControlPlane, EnforcementPoint, Fetching, KeyCache, KeySource, KeyUse, ReceiptVerifier, SharedFeed, WritVerifier,
};

mod feed;

/// A writ key store in memory (what `writ keys rotate` keeps in `keys/writ.keys`).
#[derive(Default)]
struct MemoryKeys {
    seeds: std::sync::Mutex<Vec<[u8; 32]>>,
}

impl writ_server::WritKeyStore for MemoryKeys {
    fn add(&self) -> Result<Vec<[u8; 32]>, String> {
        let mut seeds = self.seeds.lock().unwrap();
        let next = [4 + seeds.len() as u8; 32];
        seeds.push(next);
        Ok(seeds.clone())
    }
    fn remove_newest(&self) -> Result<(), String> {
        self.seeds.lock().unwrap().pop();
        Ok(())
    }
    fn published(&self, _: &Value) -> Result<(), String> {
        Ok(())
    }
}

pub(crate) struct Server {
    pub(crate) engine: Arc<Engine>,
    pub(crate) url: String,
    pub(crate) keys: Arc<MemoryKeys>,
    issuer: DevIssuer,
    operators: DevIssuer,
    pub(crate) policy_key: NoteSigner,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A control plane with the starter bundle active, on a loopback port, on the current
/// runtime.
pub(crate) async fn server() -> Server {
    server_with(|state| state).await
}

/// [`server`], its state shaped by `shape` (feed settings, for one).
pub(crate) async fn server_with(shape: impl FnOnce(AppState) -> AppState) -> Server {
    let TestEngine { engine, issuer, operators, policy_key, dir } = TestEngine::open(Arc::new(SystemClock));
    let b = starter_bundle().unwrap();
    engine.activate(&b, &sign_bundle(&b, &policy_key).unwrap(), None).await.unwrap();
    let engine = Arc::new(engine);
    let keys = Arc::new(MemoryKeys { seeds: std::sync::Mutex::new(vec![[3; 32]]) });
    let state = shape(AppState::new(engine.clone()).with_key_store(keys.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(writ_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Server { engine, url, keys, issuer, operators, policy_key, _dir: dir, _stop: stop }
}

impl Server {
    /// An operator credential.
    pub(crate) fn operator(&self) -> String {
        let subject = SpiffeId::parse("spiffe://demo.example/operator/alice").unwrap();
        self.operators
            .issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 600,
                extra_claims: Map::new(),
                now: now(),
            })
            .unwrap()
    }

    /// `POST path` with a JSON body as the operator; the status.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> u16 {
        use http_body_util::{BodyExt as _, Full};
        let addr = self.url.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::post(path)
            .header("host", addr)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.operator()))
            .body(Full::new(hyper::body::Bytes::from(serde_json::to_vec(body).unwrap())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        status
    }

    /// An allowed writ for a write under the billing zone, with the call's digest.
    pub(crate) async fn writ(&self, path: &str) -> (String, RequestDigest) {
        let subject = SpiffeId::parse("spiffe://demo.example/agent/billing-1").unwrap();
        let mut extra = Map::new();
        extra.insert("zone".into(), json!("billing"));
        let token = self
            .issuer
            .issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 600,
                extra_claims: extra,
                now: now(),
            })
            .unwrap();
        let body = json!({"credentials": {"workload": token}, "action": "write", "resource": "fs:/zones/billing",
                          "arguments": {"path": path}});
        let bytes = serde_json::to_vec(&body).unwrap();
        let d = self.engine.authorize(&bytes).await;
        let writ = d.writ.unwrap_or_else(|| panic!("not allowed: {:?} {}", d.reasons, d.detail));
        (writ, ExecutionRequest::parse(&bytes, &Limits::default()).unwrap().digest().unwrap())
    }
}

/// Counts the fetches of a key source.
#[derive(Clone)]
pub(crate) struct Counted<S>(pub(crate) S, pub(crate) Arc<AtomicU64>);

impl<S: KeySource> KeySource for Counted<S> {
    fn fetch(&self) -> Fetching<'_> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.fetch()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The JWKS the server publishes verifies its writs; a rotation is picked up by one fetch,
/// old writs keep verifying; a flood of unknown kids costs at most one fetch.
#[test]
fn keys_from_the_control_plane_rotate_without_downtime() {
    rt().block_on(async {
        let s = server().await;
        let cp = ControlPlane::new(&s.url).unwrap();
        let fetches = Arc::new(AtomicU64::new(0));
        let cache = Arc::new(KeyCache::new(Counted(cp.jwks(), fetches.clone()), KeyUse::Writ).with_min_interval(1));
        let t = now();
        let keys = cache.load(t).await.unwrap();
        let writs = WritVerifier::with_keys("writ", (*keys).clone(), "writ-enforcement", 30);
        let point = EnforcementPoint::new(writs, SharedFeed::new(30)).with_key_cache(cache.clone());
        let (old, old_digest) = s.writ("/zones/billing/a").await;
        // No feed here: the standing is not this test's subject.
        point.writs().verify(&old, &old_digest, t, &|_| false).unwrap();

        s.engine.rotate_writ_key_with(s.keys.as_ref(), None).await.unwrap();
        let (new, digest) = s.writ("/zones/billing/b").await;
        let (old2, old2_digest) = (old.clone(), old_digest);
        // Past the minimum interval (1 s here), the unknown kid triggers exactly one fetch.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let t = now();
        let before = fetches.load(Ordering::SeqCst);
        let r = point.verify(&new, &digest, t).await.unwrap_err();
        // The signature, with the refreshed key, now holds: what refuses is the empty feed.
        assert_eq!(r.reason, ReasonCode::WritRevoked, "{}", r.detail);
        assert_eq!(fetches.load(Ordering::SeqCst), before + 1);
        assert_eq!(point.writs().keys().len(), 2);
        point.writs().verify(&new, &digest, t, &|_| false).unwrap();
        // The old writ was used; a fresh verifier over the new set still accepts it.
        let fresh = WritVerifier::with_keys("writ", (*cache.current()).clone(), "writ-enforcement", 30);
        fresh.verify(&old2, &old2_digest, t, &|_| false).unwrap();

        // A flood of 1,000 unknown kids: at most one more fetch.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let before = fetches.load(Ordering::SeqCst);
        let point = Arc::new(point);
        let (_, rest) = new.split_once('.').unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..1000 {
            let point = point.clone();
            let header = base64_url(&json!({"alg": "EdDSA", "typ": "JWT", "kid": format!("flood-{n}")}).to_string());
            let token = format!("{header}.{rest}");
            tasks.spawn(async move { point.verify(&token, &digest, now()).await.unwrap_err().reason });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap(), ReasonCode::WritBadSignature);
        }
        let flood_fetches = fetches.load(Ordering::SeqCst) - before;
        println!("a flood of 1,000 unknown kids: {flood_fetches} JWKS fetch(es)");
        assert!(flood_fetches <= 1, "{flood_fetches} fetches");
    });
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A writ's decision is in the log: the receipt the server serves verifies against the
/// log key it publishes, for that writ's `log` claim, and not for another entry.
#[test]
fn receipts_from_the_control_plane_verify() {
    rt().block_on(async {
        let s = server().await;
        let cp = ControlPlane::new(&s.url).unwrap();
        let (writ, digest) = s.writ("/zones/billing/a").await;
        let v = WritVerifier::new("writ", &s.engine.jwks(), "writ-enforcement", 30).unwrap();
        let claims = v.verify(&writ, &digest, now(), &|_| false).unwrap().claims;
        let vkey = String::from_utf8(cp.get("/v1/log/key").await.unwrap().to_vec()).unwrap();
        let receipts = ReceiptVerifier::from_vkey(&vkey).unwrap();
        let text = String::from_utf8(cp.get(&format!("/v1/log/receipt/{}", claims.log.index)).await.unwrap().to_vec())
            .unwrap();
        let proved = receipts.verify_writ(&text, &claims).unwrap();
        assert_eq!(proved.index, claims.log.index);
        let entry = s.engine.log().entries(claims.log.index, claims.log.index + 1).unwrap().remove(0);
        receipts.verify_entry(&text, &entry).unwrap();
        let mut other = claims.clone();
        other.log.index -= 1;
        assert!(receipts.verify_writ(&text, &other).is_err());
        let before =
            String::from_utf8(cp.get(&format!("/v1/log/receipt/{}", claims.log.index - 1)).await.unwrap().to_vec())
                .unwrap();
        assert!(receipts.verify_writ(&before, &claims).is_err());
    });
}
