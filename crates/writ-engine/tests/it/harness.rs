//! A complete engine over a temporary log, a development issuer trusted by the bundle,
//! a trusted policy key and a fixed clock at 2026-11-26T10:00:00Z.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};
use writ_core::{ReasonCode, SpiffeId};
use writ_engine::{Decision, Engine, EngineConfig, EngineParts, FixedClock, Outcome, WritSigner, parse_rfc3339};
use writ_identity::{AttestationRequest, DevIssuer, IssueRequest, Role, TrustBundle};
use writ_log::{Log, LogOptions, NoteSigner, SqliteOptions, SqliteStore, Store, TileId};
use writ_policy::{Bundle, sign_bundle, starter_bundle};

pub const T0: &str = "2026-11-26T10:00:00Z";

pub struct Harness {
    pub engine: Engine,
    pub clock: Arc<FixedClock>,
    pub issuer: DevIssuer,
    pub policy_key: NoteSigner,
    pub store_fails: Arc<AtomicBool>,
    pub dir: tempfile::TempDir,
}

/// A store that can be made unwritable (as a read-only file or a full disk would).
pub struct Switchable {
    inner: SqliteStore,
    fail: Arc<AtomicBool>,
}

impl Store for Switchable {
    fn size(&self) -> Result<u64, writ_log::Error> {
        self.inner.size()
    }
    fn write_batch(&self, b: &writ_log::Batch<'_>) -> Result<(), writ_log::Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(writ_log::Error::Storage("attempt to write a readonly database".into()));
        }
        self.inner.write_batch(b)
    }
    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, writ_log::Error> {
        self.inner.tile(id)
    }
    fn entries(&self, s: u64, e: u64) -> Result<Vec<Vec<u8>>, writ_log::Error> {
        self.inner.entries(s, e)
    }
    fn scan_entries(&self, f: &mut writ_log::EntryVisitor<'_>) -> Result<(), writ_log::Error> {
        self.inner.scan_entries(f)
    }
    fn tile_ids(&self) -> Result<Vec<TileId>, writ_log::Error> {
        self.inner.tile_ids()
    }
    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), writ_log::Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(writ_log::Error::Storage("attempt to write a readonly database".into()));
        }
        self.inner.put_checkpoint(size, note)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, writ_log::Error> {
        self.inner.latest_checkpoint()
    }
    fn checkpoints(&self) -> Result<Vec<(u64, String)>, writ_log::Error> {
        self.inner.checkpoints()
    }
    fn meta(&self, k: &str) -> Result<Option<String>, writ_log::Error> {
        self.inner.meta(k)
    }
    fn set_meta(&self, k: &str, v: &str) -> Result<(), writ_log::Error> {
        self.inner.set_meta(k, v)
    }
    fn probe(&self) -> Result<(), writ_log::Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(writ_log::Error::Storage("attempt to write a readonly database".into()));
        }
        self.inner.probe()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

impl Harness {
    /// An engine with the starter bundle active.
    pub fn new() -> Harness {
        let h = Harness::without_bundle();
        h.activate(&starter_bundle().unwrap()).unwrap();
        h
    }

    pub fn without_bundle() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::open(dir, None)
    }

    /// Opens (or reopens) an engine over `dir`, keeping the given issuer and keys.
    pub fn open(dir: tempfile::TempDir, keys: Option<(DevIssuer, NoteSigner)>) -> Harness {
        Harness::open_with(dir, keys, &[[3; 32]]).map_err(|(e, _)| e).unwrap()
    }

    /// [`Harness::open`] with these writ signing seeds; the engine's refusal comes back with
    /// the directory.
    pub fn open_with(
        dir: tempfile::TempDir,
        keys: Option<(DevIssuer, NoteSigner)>,
        seeds: &[[u8; 32]],
    ) -> Result<Harness, (writ_engine::EngineError, tempfile::TempDir)> {
        let fail = Arc::new(AtomicBool::new(false));
        let store = Switchable {
            inner: SqliteStore::open(&dir.path().join("log.db"), SqliteOptions::default()).unwrap(),
            fail: fail.clone(),
        };
        let log =
            Log::open(Arc::new(store), NoteSigner::from_seed("writ.test/log", [1; 32]).unwrap(), LogOptions::default())
                .unwrap();
        let (issuer, policy_key) = keys.unwrap_or_else(|| {
            (
                DevIssuer::generate("demo.example", "https://dev-issuer.demo.example").unwrap(),
                NoteSigner::from_seed("policy.demo.example", [2; 32]).unwrap(),
            )
        });
        let mut bundle = TrustBundle::new();
        bundle.add(issuer.bundle_entry(&[Role::Workload, Role::Operator, Role::Attestor])).unwrap();
        let clock = Arc::new(FixedClock::new(parse_rfc3339(T0).unwrap()));
        let engine = match Engine::open(EngineParts {
            config: EngineConfig::default(),
            trust_bundle: bundle,
            policy_keys: vec![policy_key.verifier()],
            writ_signer: WritSigner::from_seeds("writ", seeds).unwrap(),
            log: Arc::new(log),
            clock: clock.clone(),
        }) {
            Ok(engine) => engine,
            Err(e) => return Err((e, dir)),
        };
        Ok(Harness { engine, clock, issuer, policy_key, store_fails: fail, dir })
    }

    pub fn activate(&self, bundle: &Bundle) -> Result<(), writ_engine::EngineError> {
        let sig = sign_bundle(bundle, &self.policy_key).unwrap();
        rt().block_on(self.engine.activate(bundle, &sig, Some("spiffe://demo.example/operator/alice"))).map(|_| ())
    }

    pub fn now(&self) -> u64 {
        use writ_engine::Clock as _;
        self.clock.now()
    }

    /// A workload credential for `agent` in `zone`, valid for 10 minutes from now.
    pub fn credential(&self, agent: &str, zone: Option<&str>) -> String {
        self.credential_with(agent, zone, vec!["writ".into()], 600, self.now(), Map::new())
    }

    pub fn credential_with(
        &self,
        agent: &str,
        zone: Option<&str>,
        aud: Vec<String>,
        ttl: u64,
        now: u64,
        mut extra: Map<String, Value>,
    ) -> String {
        if let Some(z) = zone {
            extra.insert("zone".into(), json!(z));
        }
        let subject = SpiffeId::parse(&format!("spiffe://demo.example/agent/{agent}")).unwrap();
        self.issuer
            .issue(IssueRequest { subject: &subject, audience: aud, ttl_secs: ttl, extra_claims: extra, now })
            .unwrap()
    }

    /// A delegation credential: agent `from` lets agent `to` act under its writs (`may_act`).
    pub fn delegation(&self, from: &str, to: &str) -> String {
        let mut extra = Map::new();
        extra.insert("may_act".into(), json!({"sub": format!("spiffe://demo.example/agent/{to}")}));
        self.credential_with(from, Some("billing"), vec!["writ".into()], 600, self.now(), extra)
    }

    pub fn attestation(&self, agent: &str, environment: &str) -> String {
        let subject = SpiffeId::parse(&format!("spiffe://demo.example/agent/{agent}")).unwrap();
        self.issuer
            .issue_attestation(AttestationRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                measurement: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                environment,
                region: "eu-west-1",
                ttl_secs: 600,
                now: self.now(),
            })
            .unwrap()
    }

    pub fn authorize(&self, request: &Value) -> Decision {
        rt().block_on(self.engine.authorize(&serde_json::to_vec(request).unwrap()))
    }
}

/// Makes `req` (by agent `child`) a child of the allowed decision `parent` (by agent
/// `parent_agent`): it presents the parent writ, and the parent's delegation when the child
/// is another principal.
pub fn under(h: &Harness, req: &mut Value, parent: &Decision, parent_agent: &str, child: &str) {
    req["parent_writ"] = json!(parent.writ.as_deref().expect("an allowed parent has a writ"));
    if parent_agent != child {
        req["credentials"]["delegation"] = json!(h.delegation(parent_agent, child));
    }
}

/// A request by `agent` (zone billing) with a fresh credential.
pub fn request(h: &Harness, agent: &str, action: &str, resource: &str, arguments: Value) -> Value {
    json!({
        "credentials": {"workload": h.credential(agent, Some("billing"))},
        "action": action,
        "resource": resource,
        "arguments": arguments,
    })
}

/// The `req` digest of a request built by these helpers.
pub fn digest_of(req: &Value) -> writ_core::RequestDigest {
    writ_core::request_digest(req["action"].as_str().unwrap(), req["resource"].as_str().unwrap(), &req["arguments"])
        .unwrap()
}

pub fn write_request(h: &Harness) -> Value {
    request(h, "billing-1", "write", "fs:/zones/billing", json!({"path": "/zones/billing/out.csv"}))
}

#[track_caller]
pub fn assert_denied(d: &Decision, reason: ReasonCode) {
    assert_eq!(d.outcome, Outcome::Deny, "expected a deny with {reason}, got {d:?}");
    assert_eq!(d.reason(), Some(reason), "{d:?}");
    assert!(d.writ.is_none());
}

#[track_caller]
pub fn assert_allowed(d: &Decision) -> String {
    assert_eq!(d.outcome, Outcome::Allow, "expected an allow, got {d:?}");
    assert!(d.log_index.is_some());
    d.writ.clone().unwrap()
}
