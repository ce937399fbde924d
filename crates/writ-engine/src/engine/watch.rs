//! The verification loop (issue 17): what a serving node checks of itself, again and
//! again, and what it does while a check fails. Each run ([`Engine::verify_now`]):
//!
//! - **log**: the entries appended since the last passing run are recomputed from their
//!   stored bytes and must hash to the stored tree and to the tree this node served; the
//!   newest stored checkpoint must verify under the log key, match the stored tree, not be
//!   older than the one verified last, and be consistent with it (an RFC 9162 consistency
//!   proof built from the store and verified); a random sample of older entries is
//!   re-verified by inclusion proof ([`writ_log::Log::recheck`]). The cost is proportional
//!   to what was appended since the last run; the full audit stays `writ log verify`.
//! - **bundle**: the active bundle is read again from where it is stored (its activation
//!   entry in the log), rebuilt from its parts, and must have the digest of the bundle in
//!   force and a signature by a trusted policy key (`verify_bundle_signature`).
//! - **keys**: the keys that sign writs must be those the log's latest key rotation
//!   records ([`crate::keys`]), and exactly those of the published JWKS (RFC 7517) when the
//!   engine is told where that is ([`VerificationConfig::published_jwks`]).
//!
//! While the last run failed, the node fails closed: every decision is a deny, not
//! recorded in the log (the reason code is the failed check's: `log.unavailable`,
//! `policy.bundle_untrusted` or `internal`; the detail names the check), and approvals are
//! refused ([`EngineError::IntegrityFailed`]). No decision is appended while the node
//! cannot vouch for its own log, bundle or keys: appending to a log whose stored entries
//! no longer hash to its tree would extend and sign it again, and a recorded deny must be
//! reproducible by `writ log replay` from its recorded facts, which a failed self-check is
//! not. It recovers only when a later run passes: there is no switch to ignore a failure.
//! A run is scheduled ([`spawn_verification`]) and can be asked for (`POST
//! /v1/health/verify`); runs never overlap.
//!
//! Until the first run ends the state is `pending` and decisions are answered: the log was
//! checked against its newest checkpoint when it opened ([`writ_log::Log::open`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use writ_core::ReasonCode;
use writ_log::Verified;
use writ_policy::verify_bundle_signature;

use super::{Engine, bundle_from_parts};
use crate::keys::{Recorded, check_recorded};
use crate::record::Entry;

/// How the detail of a decision denied because the node's self-verification failed
/// begins (the server shows such a detail to the caller: it names the failed check, which
/// `GET /v1/health` publishes anyway).
pub const SELF_VERIFICATION_FAILED: &str = "the control plane's self-verification failed";

/// Where the published JWKS is read from (the binary's `trust/jwks.json`): the document
/// enforcement points trust, or why it cannot be read.
pub type PublishedJwks = Arc<dyn Fn() -> Result<Value, String> + Send + Sync>;

/// Settings of the verification loop.
#[derive(Clone)]
pub struct VerificationConfig {
    /// Older entries re-verified by inclusion proof each run (all of them when the log holds
    /// fewer). A tampered old entry is found, on average, within `size / sample` runs.
    pub sample: usize,
    /// Where the published JWKS is read; `None`: only the log's record of the keys is checked.
    pub published_jwks: Option<PublishedJwks>,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        VerificationConfig { sample: 16, published_jwks: None }
    }
}

impl std::fmt::Debug for VerificationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationConfig")
            .field("sample", &self.sample)
            .field("published_jwks", &self.published_jwks.is_some())
            .finish()
    }
}

/// Where the node's self-verification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationState {
    /// The last run passed.
    Ok,
    /// The last run found a problem: the node denies every decision.
    Failed,
    /// No run has ended yet.
    Pending,
}

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerificationProblem {
    /// `log`, `checkpoint`, `bundle` or `keys`.
    pub check: &'static str,
    /// What is wrong.
    pub detail: String,
}

impl VerificationProblem {
    /// The reason code a decision denied because of this problem carries.
    pub fn reason(&self) -> ReasonCode {
        match self.check {
            "log" | "checkpoint" => ReasonCode::LogUnavailable,
            "bundle" => ReasonCode::PolicyBundleUntrusted,
            _ => ReasonCode::Internal,
        }
    }
}

/// The verification loop's state (`GET /v1/health`'s `verification`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerificationStatus {
    /// Where it stands.
    pub state: VerificationState,
    /// When the last run ended (Unix seconds).
    pub last_run: Option<u64>,
    /// When the last passing run ended.
    pub last_ok: Option<u64>,
    /// Entries `0..verified_size` were recomputed and found to hash to the stored tree.
    pub verified_size: u64,
    /// Runs since the engine opened.
    pub runs: u64,
    /// What the last run found wrong (empty unless `failed`).
    pub problems: Vec<VerificationProblem>,
}

/// Upper bounds of the run-duration histogram, in seconds (the last one catches all).
pub const DURATION_BOUNDS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, f64::INFINITY];

/// Counters of the loop, for metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerificationStats {
    /// Runs that passed.
    pub runs_ok: u64,
    /// Runs that failed.
    pub runs_failed: u64,
    /// Runs by duration: `(upper bound in seconds, runs that took at most that long)`,
    /// cumulative ([`DURATION_BOUNDS`]).
    pub durations: Vec<(f64, u64)>,
    /// Total duration of the runs, in seconds.
    pub duration_sum: f64,
}

struct Inner {
    config: VerificationConfig,
    status: VerificationStatus,
    verified: Verified,
    // Older entries a run's sample found altered: every later run re-verifies them, and the
    // loop passes again only once they verify (a fresh random sample would almost surely
    // miss them, and the node would silently answer again on top of a tampered log).
    suspects: BTreeSet<u64>,
    recorded: Recorded,
    by_duration: [u64; DURATION_BOUNDS.len()],
    runs_ok: u64,
    runs_failed: u64,
    duration_sum: f64,
}

/// At most this many suspect entries are kept (re-verified on every run).
const MAX_SUSPECTS: usize = 1024;

/// The engine's part of the loop: its state, and the lock that keeps runs from overlapping.
pub(super) struct Watch {
    // Read by every decision: set while the last run failed.
    failed: AtomicBool,
    inner: Mutex<Inner>,
    // Held for a whole run (blocking; a run is on a blocking thread).
    run: Mutex<()>,
}

impl Watch {
    pub(super) fn new(recorded: Recorded) -> Watch {
        Watch {
            failed: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                config: VerificationConfig::default(),
                status: VerificationStatus {
                    state: VerificationState::Pending,
                    last_run: None,
                    last_ok: None,
                    verified_size: 0,
                    runs: 0,
                    problems: Vec::new(),
                },
                verified: Verified::default(),
                suspects: BTreeSet::new(),
                recorded,
                by_duration: [0; DURATION_BOUNDS.len()],
                runs_ok: 0,
                runs_failed: 0,
                duration_sum: 0.0,
            }),
            run: Mutex::new(()),
        }
    }

    /// A key rotation recorded at `index` lists `kids`.
    pub(super) fn rotated(&self, index: u64, kids: Vec<String>) {
        if let Ok(mut i) = self.inner.lock() {
            i.recorded.latest = Some((index, kids));
        }
    }
}

/// `n` indices below `size`, at random (every one when `size <= n`).
fn sample(size: u64, n: usize) -> Vec<u64> {
    let n64 = u64::try_from(n).unwrap_or(u64::MAX);
    if size <= n64 {
        return (0..size).collect();
    }
    let mut bytes = vec![0u8; n * 8];
    // Without randomness the sample is the oldest entries: still a check, never none.
    if getrandom::fill(&mut bytes).is_err() {
        return (0..n64).collect();
    }
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) % size).collect()
}

impl Engine {
    /// Sets the verification loop's settings.
    pub fn configure_verification(&self, config: VerificationConfig) {
        if let Ok(mut i) = self.watch.inner.lock() {
            i.config = config;
        }
    }

    /// The verification loop's state.
    pub fn verification(&self) -> VerificationStatus {
        match self.watch.inner.lock() {
            Ok(i) => i.status.clone(),
            Err(_) => VerificationStatus {
                state: VerificationState::Failed,
                last_run: None,
                last_ok: None,
                verified_size: 0,
                runs: 0,
                problems: vec![VerificationProblem {
                    check: "keys",
                    detail: "the verification state lock is poisoned".into(),
                }],
            },
        }
    }

    /// The verification loop's counters.
    pub fn verification_stats(&self) -> VerificationStats {
        let Ok(i) = self.watch.inner.lock() else { return VerificationStats::default() };
        let mut acc = 0;
        let durations = DURATION_BOUNDS
            .iter()
            .zip(i.by_duration)
            .map(|(b, n)| {
                acc += n;
                (*b, acc)
            })
            .collect();
        VerificationStats { runs_ok: i.runs_ok, runs_failed: i.runs_failed, durations, duration_sum: i.duration_sum }
    }

    /// While the last run failed: the reason code and detail every decision is denied with.
    pub(super) fn integrity_failure(&self) -> Option<(ReasonCode, String)> {
        if !self.watch.failed.load(Ordering::Acquire) {
            return None;
        }
        let status = self.verification();
        let first = status
            .problems
            .first()
            .cloned()
            .unwrap_or(VerificationProblem { check: "log", detail: "the last verification run failed".into() });
        Some((
            first.reason(),
            format!(
                "{SELF_VERIFICATION_FAILED} ({} check): {}; every decision and writ verification is denied until a later run passes",
                first.check, first.detail
            ),
        ))
    }

    /// Runs the verification loop once, now (blocking: it reads the store; call it on a
    /// blocking thread). Runs never overlap: a second caller waits for the first run and
    /// then runs its own. Returns the state after the run.
    pub fn verify_now(&self) -> VerificationStatus {
        let _one = self.watch.run.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let (config, since, suspects) = match self.watch.inner.lock() {
            Ok(i) => (i.config.clone(), i.verified, i.suspects.clone()),
            Err(_) => (VerificationConfig::default(), Verified::default(), BTreeSet::new()),
        };
        let mut problems = Vec::new();
        let mut verified = since;
        let mut indices = sample(since.size, config.sample);
        indices.extend(suspects.iter().copied());
        let mut found = BTreeSet::new();
        match self.log.recheck(since, &indices) {
            Ok(r) if r.ok() => verified = r.verified,
            Ok(r) => problems.extend(
                r.problems
                    .into_iter()
                    .inspect(|p| {
                        if p.kind == "entry" && p.index < since.size {
                            found.insert(p.index);
                        }
                    })
                    .map(|p| VerificationProblem {
                        check: match p.kind {
                            "checkpoint" | "consistency" => "checkpoint",
                            _ => "log",
                        },
                        detail: p.detail,
                    }),
            ),
            Err(e) => {
                problems.push(VerificationProblem { check: "log", detail: format!("the store could not be read: {e}") })
            }
        }
        if let Err(detail) = self.check_active_bundle() {
            problems.push(VerificationProblem { check: "bundle", detail });
        }
        if let Err(detail) = self.check_keys(config.published_jwks.as_ref()) {
            problems.push(VerificationProblem { check: "keys", detail });
        }
        let took = started.elapsed().as_secs_f64();
        let now = self.clock.now();
        let ok = problems.is_empty();
        let Ok(mut i) = self.watch.inner.lock() else {
            self.watch.failed.store(true, Ordering::Release);
            return self.verification();
        };
        let was = i.status.state;
        i.verified = verified;
        if ok {
            i.suspects.clear();
        } else {
            i.suspects.extend(found);
            while i.suspects.len() > MAX_SUSPECTS {
                i.suspects.pop_first();
            }
        }
        i.status.runs += 1;
        i.status.last_run = Some(now);
        i.status.verified_size = verified.size;
        i.duration_sum += took;
        let slot = DURATION_BOUNDS.iter().position(|b| took <= *b).unwrap_or(DURATION_BOUNDS.len() - 1);
        if let Some(n) = i.by_duration.get_mut(slot) {
            *n += 1;
        }
        if ok {
            i.runs_ok += 1;
            i.status.state = VerificationState::Ok;
            i.status.last_ok = Some(now);
            i.status.problems.clear();
            if was == VerificationState::Failed {
                tracing::warn!(
                    verified_size = verified.size,
                    "self-verification passes again: decisions are answered again"
                );
            }
        } else {
            i.runs_failed += 1;
            i.status.state = VerificationState::Failed;
            for p in &problems {
                tracing::error!(check = p.check, detail = %p.detail, "self-verification failed: every decision is denied until it passes");
            }
            i.status.problems = problems;
        }
        self.watch.failed.store(!ok, Ordering::Release);
        i.status.clone()
    }

    /// The active bundle as stored (its activation entry) has the digest of the bundle in
    /// force and a signature by a trusted policy key.
    fn check_active_bundle(&self) -> Result<(), String> {
        let Some(active) = self.active.read().map_err(|_| "the active bundle's lock is poisoned".to_owned())?.clone()
        else {
            return Ok(());
        };
        let index = active.index;
        let bytes = self
            .log
            .entries(index, index + 1)
            .map_err(|e| format!("the activation entry {index} cannot be read: {e}"))?;
        let bytes = bytes.first().ok_or_else(|| format!("the activation entry {index} is missing"))?;
        let entry: Entry = serde_json::from_slice(bytes)
            .map_err(|e| format!("the activation entry {index} is not an engine entry: {e}"))?;
        let Entry::Activation { check, parts } = entry else {
            return Err(format!("entry {index}, the active bundle's activation, is not an activation"));
        };
        let in_force = active.bundle.digest();
        let stored = bundle_from_parts(&parts)
            .map_err(|e| format!("the active bundle stored in entry {index} does not rebuild: {}", e.detail()))?;
        if stored.digest() != in_force || check.digest != in_force.to_string() {
            return Err(format!(
                "the active bundle stored in entry {index} hashes to {} (recorded {}), not to the bundle in force {in_force}",
                stored.digest(),
                check.digest
            ));
        }
        verify_bundle_signature(&stored, &check.signature, &self.policy_keys)
            .map_err(|e| format!("the active bundle {in_force} (entry {index}): {e}"))?;
        Ok(())
    }

    /// The writ signing keys are those the log records, and exactly those published.
    ///
    /// Both are read at the moment of the check, the signer first: a rotation records its
    /// keys (`Watch::rotated`) before the new key signs, so the keys read are always ones
    /// the record read after them lists (a prefix of it while a further rotation is under
    /// way). A record read at the start of the run could be older than the signer read at
    /// its end, and a rotation during the run would look like a key added behind the log's
    /// back (regression test `no_false_alarm_while_the_writ_key_rotates_beside_the_loop`).
    fn check_keys(&self, published: Option<&PublishedJwks>) -> Result<(), String> {
        let signer = || self.writ_signer().ok_or_else(|| "the writ key's lock is poisoned".to_owned());
        let signing = signer()?;
        let recorded = match self.watch.inner.lock() {
            Ok(i) => i.recorded.clone(),
            Err(_) => return Err("the verification state lock is poisoned".to_owned()),
        };
        check_recorded(&signing.kids(), &recorded).map_err(|e| e.detail())?;
        let Some(read) = published else { return Ok(()) };
        // A rotation publishes its keys under `operator_actions`, after the new key signs:
        // while one is in progress the two may differ for a moment, so the comparison waits
        // for the next run. Under the lock the signer is read again: a rotation may have
        // finished since the read above.
        let Ok(_no_rotation) = self.operator_actions.try_lock() else { return Ok(()) };
        let signer = signer()?;
        let doc = read().map_err(|e| format!("the published JWKS cannot be read: {e}"))?;
        let keyset = |doc: &Value| -> Result<std::collections::BTreeSet<(String, String)>, String> {
            let keys = doc.get("keys").and_then(Value::as_array).ok_or("the published JWKS has no keys array")?;
            keys.iter()
                .map(|k| {
                    let field = |name: &str| k.get(name).and_then(Value::as_str).map(str::to_owned);
                    field("kid").zip(field("x")).ok_or_else(|| "a published key has no kid or x".to_owned())
                })
                .collect()
        };
        let ours = keyset(&signer.jwks())?;
        let theirs = keyset(&doc)?;
        if ours != theirs {
            let names = |s: &std::collections::BTreeSet<(String, String)>| {
                s.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
            };
            let extra: std::collections::BTreeSet<_> = theirs.difference(&ours).cloned().collect();
            let missing: std::collections::BTreeSet<_> = ours.difference(&theirs).cloned().collect();
            return Err(format!(
                "the published JWKS is not the keys that sign writs: published but not signing [{}], signing but not published [{}]",
                names(&extra),
                names(&missing)
            ));
        }
        Ok(())
    }
}

/// Runs the verification loop on `engine` now and then every `every`, on a blocking
/// thread each time, until the returned task is aborted.
pub fn spawn_verification(engine: Arc<Engine>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let e = engine.clone();
            if let Err(err) = tokio::task::spawn_blocking(move || e.verify_now()).await {
                tracing::error!(error = %err, "a verification run did not finish");
            }
            tokio::time::sleep(every).await;
        }
    })
}
