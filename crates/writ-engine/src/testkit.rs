//! A control plane's engine for other crates' tests (feature `testkit`, off in every build
//! that ships): an SQLite log in a temporary directory, a development workload issuer and an
//! operator issuer trusted for their roles, a policy key, fixed writ signing seeds. The
//! server's, the verification library's, the enforcement points' and the example tool
//! server's tests all start from this one set-up instead of each writing it out.
//!
//! Test support: a set-up that cannot be made panics with what failed.

#![allow(clippy::expect_used, reason = "test support: a set-up that cannot be made is a failed test")]

use std::sync::Arc;
use std::time::Duration;

use writ_identity::{DevIssuer, Role, TrustBundle};
use writ_log::{Log, LogOptions, NoteSigner, SqliteOptions, SqliteStore};
use writ_policy::{Bundle, sign_bundle};

use crate::{Clock, Engine, EngineConfig, EngineParts, WritSigner};

/// The log key's name and seed, the policy key's, and the writ signing seed every test
/// engine uses.
pub const LOG_KEY: (&str, [u8; 32]) = ("writ.test/log", [1; 32]);
/// See [`LOG_KEY`].
pub const POLICY_KEY: (&str, [u8; 32]) = ("policy.demo.example", [2; 32]);
/// See [`LOG_KEY`].
pub const WRIT_SEED: [u8; 32] = [3; 32];

/// An engine over a fresh log, with no bundle active yet.
pub struct TestEngine {
    /// The engine.
    pub engine: Engine,
    /// Issues workload credentials (trust domain `demo.example`).
    pub issuer: DevIssuer,
    /// Issues operator credentials.
    pub operators: DevIssuer,
    /// Signs bundles the engine trusts.
    pub policy_key: NoteSigner,
    /// Holds the log; removed when dropped.
    pub dir: tempfile::TempDir,
}

impl TestEngine {
    /// Opens the engine with the default configuration, every checkpoint signed at once.
    pub fn open(clock: Arc<dyn Clock>) -> TestEngine {
        Self::open_with(EngineConfig::default(), clock)
    }

    /// Opens the engine with `config`.
    pub fn open_with(config: EngineConfig, clock: Arc<dyn Clock>) -> TestEngine {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&dir.path().join("log.db"), SqliteOptions::default()).expect("SQLite log");
        let log = Log::open(
            Arc::new(store),
            NoteSigner::from_seed(LOG_KEY.0, LOG_KEY.1).expect("log key"),
            LogOptions { checkpoint_interval: Duration::ZERO, ..LogOptions::default() },
        )
        .expect("log");
        let issuer = DevIssuer::generate("demo.example", "https://dev-issuer.demo.example").expect("workload issuer");
        let operators = DevIssuer::generate("demo.example", "https://operators.demo.example").expect("operator issuer");
        let mut trust = TrustBundle::new();
        trust.add(issuer.bundle_entry(&[Role::Workload])).expect("workload issuer trusted");
        trust.add(operators.bundle_entry(&[Role::Operator])).expect("operator issuer trusted");
        let policy_key = NoteSigner::from_seed(POLICY_KEY.0, POLICY_KEY.1).expect("policy key");
        let engine = Engine::open(EngineParts {
            config,
            trust_bundle: trust,
            policy_keys: vec![policy_key.verifier()],
            writ_signer: WritSigner::from_seeds("writ", &[WRIT_SEED]).expect("writ key"),
            log: Arc::new(log),
            clock,
        })
        .expect("engine");
        TestEngine { engine, issuer, operators, policy_key, dir }
    }

    /// Signs `bundle` with the trusted policy key and activates it.
    pub async fn activate(&self, bundle: &Bundle) {
        let signature = sign_bundle(bundle, &self.policy_key).expect("bundle signed");
        self.engine.activate(bundle, &signature, None).await.expect("bundle activated");
    }
}
