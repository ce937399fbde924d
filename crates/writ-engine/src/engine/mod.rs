//! The decision engine's shell: [`Engine`] (what it holds and its locks), [`Engine::open`]
//! (the state and the active bundle rebuilt from the log, the writ keys checked against
//! the log's rotations), the read-only views of the state, authentication of bearer
//! credentials, and the one way an operator entry is appended and applied. What the engine
//! does lives in its submodules:
//!
//! - [`pipeline`]: `authorize` (SPEC.md §1): gather the facts of each stage, [`decide`],
//!   record the decision durably, and only then issue the writ; the anonymous budget.
//! - [`operator`]: operator actions and reports: bundle upload and activation (rollback
//!   included), revocation, quarantine, writ key rotation, execution outcomes.
//! - [`reevaluate`]: after an activation, every outstanding writ decided again under the
//!   new bundle, and revoked if it would now be denied.
//! - [`isolate`]: automatic isolation: a principal quarantined when an entry trips an
//!   isolation rule of the active bundle, its outstanding writs revoked.
//! - [`revoke`]: revocation in bulk (a set of writs and their descendants), shared by the
//!   two above.
//! - [`renew`]: renewal of a writ before it expires (`POST /v1/renew`): a new decision
//!   under the current bundle from the writ's recorded request, linked to it.
//! - [`approval`]: human approval of pending decisions, and the approved writ.
//! - [`preview`]: which calls a principal could be allowed to make (`tools/list`
//!   filtering), deciding and recording nothing.
//! - [`verification`]: writ verification at this control plane and single use across
//!   restarts.
//! - [`shadow`]: the shadow bundle, evaluated beside the active one on every decision and
//!   never enforced: its setting, its evaluation, the disagreements, promotion.
//! - [`watch`]: the verification loop: the node re-verifies its log, checkpoints, active
//!   bundle and signing keys, and denies every decision while a check fails.
//!
//! # Locks
//!
//! INVARIANT (lock order): the engine has two kinds of locks.
//!
//! - Async locks, held across `.await` (the log append): `operator_actions` (one operator
//!   action at a time: approvals, revocations, quarantine, automatic isolations and the
//!   presentations that trip them, activations, key rotations),
//!   `bundle_gate` (read by a decision from reading the active bundle until its entry is
//!   appended; written by an activation while it appends its entry and swaps the bundle)
//!   and the per-(subject, action) locks handed out by `serial` (decisions of one
//!   principal for one action, and the outcome report of one writ). They are taken in
//!   that order: an activation holds `operator_actions` then `bundle_gate`; a decision
//!   `bundle_gate` then its serial lock; an outcome report only its serial lock. No code
//!   path takes a serial lock while holding `operator_actions` or the reverse (an
//!   automatic isolation tripped by a decision is made after the decision released its
//!   gate and serial locks).
//! - Std locks (`signer`, `state`, `active`, `shadow`, `serial`'s map, `anonymous`): leaves. Each is
//!   taken after any async lock the task holds, released before the next `.await`, and
//!   never held while another of them is taken (every guard lives in one statement or one
//!   block that takes no other lock). `signer`, `active` and `shadow` are swapped whole (an `Arc`
//!   cloned out under the lock), so a reader never holds them while it works.
//!
//! So the order is: `operator_actions` → `bundle_gate` → one serial lock → at most one of `signer`,
//! `state`, `active`, `shadow`, `serial` (the map), `anonymous`. Setting or clearing the shadow
//! takes `operator_actions` then `bundle_gate` (write), as an activation does. The writ verifier's own locks (its
//! keys and its used set) are leaves too: `state` is taken in the standing callback, which
//! runs while neither is held.

mod approval;
mod isolate;
mod operator;
mod pipeline;
mod preview;
mod reevaluate;
mod renew;
mod revoke;
mod shadow;
mod verification;
mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};
use writ_core::{Limits, ReasonCode};
use writ_identity::{IdentityError, IdentityVerifier, Role, TrustBundle, VerifierConfig};
use writ_log::{Appended, Log, NoteVerifier};
use writ_policy::{Bundle, BundleDigest, CompiledBundle};

use crate::clock::Clock;
#[cfg(doc)]
use crate::decide::decide;
use crate::feed::FeedView;
use crate::keys::{Recorded, check_recorded};
use crate::record::{BundleCheck, BundleParts, Entry};
use crate::state::{BundleDetail, BundleSummary, Lineage, LineageRoot, LineageSearch, OperatorAction, State, Stats};
use writ_verify::WritVerifier;

use crate::writ::WritSigner;
use crate::{Cause, EngineError, KeyError};

pub use isolate::Isolated;
use pipeline::AnonymousBudget;
pub use pipeline::Decision;
pub use preview::{MAX_PREVIEW_CANDIDATES, Possible, Preview};
pub use reevaluate::Reevaluation;
pub(crate) use shadow::evaluate as evaluate_shadow;
pub use shadow::{Promoted, ShadowStatus};
pub use watch::{
    DURATION_BOUNDS, PublishedJwks, SELF_VERIFICATION_FAILED, VerificationConfig, VerificationProblem,
    VerificationState, VerificationStats, VerificationStatus, spawn_verification,
};

/// What an activation did: the bundle now active, and the re-evaluation of the writs
/// outstanding when it became active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activated {
    /// The active bundle's digest.
    pub digest: BundleDigest,
    /// The log index of the activation entry.
    pub log_index: u64,
    /// The outstanding writs re-evaluated, and those revoked.
    pub reevaluation: Reevaluation,
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Audiences accepted on credentials presented to the control plane.
    pub credential_audiences: Vec<String>,
    /// Default audience of issued writs (a request may name another).
    pub writ_audience: String,
    /// Writ lifetime in seconds.
    pub writ_ttl: u64,
    /// Deepest lineage allowed (a root writ is depth 0).
    pub max_depth: u32,
    /// How long a decision that needs a human approval waits for one, in seconds.
    pub approval_ttl: u64,
    /// Clock skew allowed on credentials and writs, in seconds.
    pub skew: u64,
    /// Request bounds.
    pub limits: Limits,
    /// Decisions on requests without a verified identity (or that do not parse) recorded
    /// one by one per second, on average; a burst of ten seconds' worth is allowed. Beyond
    /// it they are answered and counted, and the count is recorded once the budget allows.
    pub anonymous_records_per_sec: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            credential_audiences: vec!["writ".into()],
            writ_audience: "writ-enforcement".into(),
            writ_ttl: 300,
            max_depth: 3,
            approval_ttl: 900,
            skew: 30,
            limits: Limits::default(),
            anonymous_records_per_sec: 100,
        }
    }
}

/// What the engine needs: configuration, trust, keys, the log and a clock.
pub struct EngineParts {
    /// Settings.
    pub config: EngineConfig,
    /// Issuers trusted for credentials and attestations.
    pub trust_bundle: TrustBundle,
    /// Keys trusted to sign policy bundles.
    pub policy_keys: Vec<NoteVerifier>,
    /// Writ signing keys.
    pub writ_signer: WritSigner,
    /// The log.
    pub log: Arc<Log>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// Longest execution-outcome detail kept, in bytes.
pub const MAX_OUTCOME_DETAIL: usize = 4096;

/// Why a bearer credential was refused at an authenticated route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Missing or invalid (HTTP 401), with the identity stage's reason code.
    Unauthenticated(ReasonCode, String),
    /// Valid, but not for the role the route needs (HTTP 403).
    Forbidden(String),
}

/// One async lock per (subject, action): decisions that share a usage counter run one at a time.
type SerialLocks = std::collections::HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// The active bundle, and the index of the activation entry that stores it.
struct Active {
    bundle: CompiledBundle,
    index: u64,
}

/// The decision engine.
pub struct Engine {
    config: EngineConfig,
    identity: IdentityVerifier,
    policy_keys: Vec<NoteVerifier>,
    // Swapped whole when the writ key rotates.
    signer: RwLock<Arc<WritSigner>>,
    verifier: WritVerifier,
    log: Arc<Log>,
    clock: Arc<dyn Clock>,
    // Shared with the tasks that append entries (see `commit`).
    state: Arc<Mutex<State>>,
    active: RwLock<Option<Arc<Active>>>,
    // The shadow bundle, swapped whole under the bundle gate (write), as `active` is.
    shadow: RwLock<Option<Arc<shadow::Shadow>>>,
    shadow_counts: shadow::ShadowCounts,
    serial: Mutex<SerialLocks>,
    // Held by the operator actions that check the state and then append (approvals) and
    // by those that change what they check (revocations, quarantine), so that an approval
    // cannot slip between a check and a revocation or quarantine recorded beside it.
    operator_actions: tokio::sync::Mutex<()>,
    // Read by a decision from reading the active bundle until its entry is appended;
    // written by an activation to append its entry and swap the bundle (see `reevaluate`).
    bundle_gate: tokio::sync::RwLock<()>,
    anonymous: Mutex<AnonymousBudget>,
    // The index of the newest entry the revocation feed publishes (revocation, quarantine
    // change, activation), sent after it is applied; sent under `operator_actions`, which
    // every such entry is appended under.
    feed: Arc<tokio::sync::watch::Sender<Option<u64>>>,
    // The verification loop's state (see `watch`).
    watch: watch::Watch,
    // Set when an applied entry left a principal due for an automatic isolation (read
    // after each decision without a lock); cleared by the isolation that takes the list.
    isolation_due: Arc<AtomicBool>,
    // Set at open and when an isolation's revocations failed: `finish_isolations` then
    // looks for automatically isolated principals that still hold outstanding writs.
    isolation_unfinished: AtomicBool,
    // Automatic isolations made since the engine opened, by rule (for the metrics).
    isolations: Mutex<BTreeMap<String, u64>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("writ_audience", &self.config.writ_audience).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the engine: rebuilds its state and the active bundle from the log.
    pub fn open(parts: EngineParts) -> Result<Engine, EngineError> {
        let EngineParts { config, trust_bundle, policy_keys, writ_signer, log, clock } = parts;
        let mut vc = VerifierConfig::new(config.credential_audiences.clone());
        vc.max_skew_secs = config.skew;
        let identity = IdentityVerifier::new(trust_bundle, vc);
        let verifier = WritVerifier::new(writ_signer.issuer(), &writ_signer.jwks(), &config.writ_audience, config.skew)
            .map_err(|e| KeyError::JwksKey(Cause::new(e)))?;
        let engine = Engine {
            config,
            identity,
            policy_keys,
            signer: RwLock::new(Arc::new(writ_signer)),
            verifier,
            log,
            clock,
            state: Arc::new(Mutex::new(State::default())),
            active: RwLock::new(None),
            shadow: RwLock::new(None),
            shadow_counts: shadow::ShadowCounts::default(),
            serial: Mutex::new(std::collections::HashMap::new()),
            operator_actions: tokio::sync::Mutex::new(()),
            bundle_gate: tokio::sync::RwLock::new(()),
            anonymous: Mutex::new(AnonymousBudget::default()),
            feed: Arc::new(tokio::sync::watch::Sender::new(None)),
            watch: watch::Watch::new(Recorded::default()),
            isolation_due: Arc::new(AtomicBool::new(false)),
            isolation_unfinished: AtomicBool::new(true),
            isolations: Mutex::new(BTreeMap::new()),
        };
        let recorded = engine.rebuild()?;
        if let Some((index, kids)) = &recorded.latest {
            engine.watch.rotated(*index, kids.clone());
        }
        // The log is the source of truth for which keys sign: a key it never recorded does not.
        let kids = engine.writ_signer().map(|s| s.kids()).unwrap_or_default();
        check_recorded(&kids, &recorded)?;
        Ok(engine)
    }

    /// Rebuilds the state and the active bundle from the log; returns the latest key rotation.
    fn rebuild(&self) -> Result<Recorded, EngineError> {
        let mut state = State::default();
        let mut active = None;
        let mut recorded = Recorded::default();
        let mut feed = None;
        for item in self.log.entries_from(0) {
            let (i, bytes) = item?;
            let entry: Entry = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::UnreadableEntry { index: i, source: Cause::new(e) })?;
            if let Entry::Activation { check: BundleCheck { accepted: true, .. }, parts } = &entry {
                let bundle = bundle_from_parts(parts)?;
                active = Some(Arc::new(Active { bundle: bundle.compile()?, index: i }));
            }
            if let Entry::KeyRotation { kids, .. } = &entry {
                recorded.latest = Some((i, kids.clone()));
            }
            if entry.feeds() {
                feed = Some(i);
            }
            state.apply(&entry, i);
        }
        self.feed.send_replace(feed);
        // The shadow bundle the log set last, rebuilt from the parts the log holds.
        let shadow = match state.shadow() {
            None => None,
            Some(s) => {
                let parts = state
                    .bundle(&s.digest)
                    .map(|b| b.parts.clone())
                    .ok_or_else(|| EngineError::NotFound(crate::Missing::Bundle(s.digest.clone())))?;
                Some(Arc::new(shadow::Shadow { bundle: bundle_from_parts(&parts)?.compile()? }))
            }
        };
        *self.shadow.write().map_err(|_| EngineError::Poisoned("shadow"))? = shadow;
        self.isolation_due.store(state.any_isolation_due(), Ordering::SeqCst);
        *self.state.lock().map_err(|_| EngineError::Poisoned("state"))? = state;
        *self.active.write().map_err(|_| EngineError::Poisoned("bundle"))? = active;
        Ok(recorded)
    }

    /// The writ signing keys as a JWKS document.
    pub fn jwks(&self) -> Value {
        self.writ_signer().map(|s| s.jwks()).unwrap_or_else(|| json!({"keys": []}))
    }

    /// The control plane's name (the `iss` of its writs).
    pub fn issuer(&self) -> String {
        self.writ_signer().map(|s| s.issuer().to_owned()).unwrap_or_else(|| "writ".to_owned())
    }

    /// The current writ signer; `None` if its lock is poisoned.
    fn writ_signer(&self) -> Option<Arc<WritSigner>> {
        self.signer.read().ok().map(|s| s.clone())
    }

    /// The active bundle's name, version and digest.
    pub fn active_bundle(&self) -> Option<(String, String, BundleDigest)> {
        let a = self.active.read().ok()?.clone()?;
        Some((a.bundle.name().to_owned(), a.bundle.version().to_owned(), a.bundle.digest()))
    }

    /// Whether the state can be read: `Err` once a panic poisoned its lock, which is for
    /// good. The listing accessors below answer empty then; a caller that must not show an
    /// empty list for an unreadable one (every HTTP route that lists) checks this first.
    pub fn state_readable(&self) -> Result<(), EngineError> {
        if self.state.is_poisoned() { Err(EngineError::Poisoned("state")) } else { Ok(()) }
    }

    /// Quarantined identities, with who isolated them, when and why.
    pub fn quarantined(&self) -> Vec<(String, OperatorAction)> {
        self.state.lock().map(|s| s.quarantined()).unwrap_or_default()
    }

    /// Revoked writ ids, with who revoked them, when and why.
    pub fn revoked(&self) -> Vec<(String, OperatorAction)> {
        self.state.lock().map(|s| s.revoked()).unwrap_or_default()
    }

    /// Every bundle the log holds (uploaded or activated), the active one marked.
    pub fn bundles(&self) -> Vec<BundleSummary> {
        self.state.lock().map(|s| s.bundles()).unwrap_or_default()
    }

    /// A bundle the log holds, with its text and its newest activations; `None` if the log
    /// holds no bundle with that digest.
    pub fn bundle_detail(&self, digest: &str) -> Option<BundleDetail> {
        self.state.lock().ok()?.bundle_detail(digest)
    }

    /// Decision totals since the log's first entry ([`Stats`]).
    pub fn stats(&self) -> Stats {
        self.state.lock().map(|s| s.stats()).unwrap_or_default()
    }

    /// The lineage of a decision: every decision under its root. `None` if the log holds
    /// no decision with that id.
    pub fn lineage(&self, id: &str) -> Option<Lineage> {
        self.state.lock().ok()?.lineage(id)
    }

    /// The lineage roots over the decisions a search selects, newest first (see
    /// [`LineageSearch`]). `None` if the state cannot be read (a panic poisoned it).
    pub fn lineage_roots(&self, q: &LineageSearch) -> Option<Vec<LineageRoot>> {
        self.state.lock().ok().map(|s| s.lineage_roots(q))
    }

    /// Authenticates a bearer credential as an operator: its SPIFFE ID. A credential that
    /// verifies but for another role is [`AuthFailure::Forbidden`]; anything else that fails
    /// is [`AuthFailure::Unauthenticated`] with the identity stage's reason code.
    pub fn authenticate_operator(&self, token: Option<&str>) -> Result<String, AuthFailure> {
        self.authenticate(token, Role::Operator)
    }

    /// Authenticates a bearer credential as `role` (see [`Engine::authenticate_operator`]).
    pub fn authenticate(&self, token: Option<&str>, role: Role) -> Result<String, AuthFailure> {
        let Some(token) = token else {
            return Err(AuthFailure::Unauthenticated(ReasonCode::IdentityMissing, "no credential".into()));
        };
        let now = self.clock.now();
        match self.identity.verify(role, token, now) {
            Ok(c) => Ok(c.subject().to_string()),
            Err(e @ IdentityError::UntrustedIssuer(_)) => {
                let other = Role::ALL
                    .into_iter()
                    .filter(|r| *r != role)
                    .find_map(|r| self.identity.verify(r, token, now).ok().map(|c| (r, c.subject().to_string())));
                match other {
                    Some((r, sub)) => Err(AuthFailure::Forbidden(format!("{sub} holds a {r} credential, not {role}"))),
                    None => Err(AuthFailure::Unauthenticated(e.reason(), e.to_string())),
                }
            }
            Err(e) => Err(AuthFailure::Unauthenticated(e.reason(), e.to_string())),
        }
    }

    /// The log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The engine's clock, now (Unix seconds).
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The bounds requests are held to.
    pub fn request_limits(&self) -> &Limits {
        &self.config.limits
    }

    /// The index of the newest entry the revocation feed publishes, each time one is
    /// applied (see [`crate::FeedView`]).
    pub fn feed_changes(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.feed.subscribe()
    }

    /// What the revocation feed publishes now. Taken under `operator_actions`, so that no
    /// revocation, quarantine change or activation is appended but not yet applied: every
    /// one below `size` is in the lists.
    pub async fn feed_view(&self) -> Result<FeedView, EngineError> {
        let _one = self.operator_actions.lock().await;
        let size = self.log.size();
        let changed_at = *self.feed.borrow();
        let lists = self
            .state
            .lock()
            .map_err(|_| EngineError::Poisoned("state"))?
            .feed_lists(self.clock.now(), self.config.skew);
        let bundle = self.active.read().ok().and_then(|a| a.as_ref().map(|a| a.bundle.digest().to_string()));
        Ok(FeedView { size, changed_at, bundle, lists })
    }

    /// The lock that serialises decisions of `subject` for `action`.
    fn serial_lock(&self, subject: &str, action: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut locks) = self.serial.lock() else {
            return Arc::new(tokio::sync::Mutex::new(()));
        };
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry((subject.to_owned(), action.to_owned())).or_default().clone()
    }

    async fn append(&self, entry: &Entry) -> Result<u64, EngineError> {
        Ok(self.append_entry(entry).await?.index)
    }

    async fn append_entry(&self, entry: &Entry) -> Result<Appended, EngineError> {
        let bytes = entry.canonical().map_err(|e| EngineError::Encoding(Cause::new(e)))?;
        let (kind, operator) = entry.kind_and_operator();
        let (_, a) = self.commit(entry.clone(), bytes).await?;
        tracing::info!(kind, operator = operator.unwrap_or("local"), log_index = a.index, "recorded");
        Ok(a)
    }

    /// Appends `entry` (encoded as `bytes`) and applies it to the state once it is durable.
    /// The log commits an entry it has been handed whether or not anybody still waits for
    /// it, so the append and the apply must not be separable by the caller going away (a
    /// client that disconnects, a request timeout: both drop the request's future): dropped
    /// while it waits, the caller hands the wait and the apply to a task of their own
    /// ([`Unapplied`]). It loses the answer; the state still sees every committed entry.
    /// (A task for every append cost about 3 % of the decision rate: BENCHMARKS.md.)
    /// Returns the entry back with where it was appended.
    pub(super) async fn commit(&self, entry: Entry, bytes: Vec<u8>) -> Result<(Entry, Appended), EngineError> {
        let submitted = self.log.submit(bytes).await?;
        let mut pending = Unapplied { engine: self, wait: Some((submitted, entry)) };
        let appended = match pending.wait.as_mut() {
            Some((submitted, _)) => submitted.await,
            None => return Err(EngineError::Poisoned("append")),
        };
        let Some((_, entry)) = pending.wait.take() else { return Err(EngineError::Poisoned("append")) };
        let a = appended?;
        apply_committed(&self.state, &self.isolation_due, &self.feed, &entry, a.index)?;
        Ok((entry, a))
    }
}

/// Applies a committed entry to the state; tells the isolation check and the feed.
fn apply_committed(
    state: &Mutex<State>,
    due: &AtomicBool,
    feed: &tokio::sync::watch::Sender<Option<u64>>,
    entry: &Entry,
    index: u64,
) -> Result<(), EngineError> {
    {
        let mut state = state.lock().map_err(|_| EngineError::Poisoned("state"))?;
        state.apply(entry, index);
        if state.any_isolation_due() {
            due.store(true, Ordering::SeqCst);
        }
    }
    if entry.feeds() {
        feed.send_replace(Some(index));
    }
    Ok(())
}

/// An entry handed to the log and not yet applied. Dropped before it is (its caller went
/// away), it spawns the wait for the commit and the apply.
struct Unapplied<'a> {
    engine: &'a Engine,
    wait: Option<(writ_log::Submitted, Entry)>,
}

impl Drop for Unapplied<'_> {
    fn drop(&mut self) {
        let Some((submitted, entry)) = self.wait.take() else { return };
        let (state, due, feed) =
            (self.engine.state.clone(), self.engine.isolation_due.clone(), self.engine.feed.clone());
        let finish = async move {
            match submitted.await {
                Ok(a) => {
                    if let Err(e) = apply_committed(&state, &due, &feed, &entry, a.index) {
                        tracing::error!(error = %e, log_index = a.index, "an entry committed after its caller went away could not be applied");
                    }
                }
                // Not committed: nothing to apply.
                Err(e) => tracing::warn!(error = %e, "an append whose caller went away failed"),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(finish);
            }
            Err(_) => tracing::error!(
                "an entry was handed to the log outside a runtime and its caller went away: it is applied at the next open"
            ),
        }
    }
}

/// Rebuilds a bundle from the parts an activation entry recorded.
pub(crate) fn bundle_from_parts(p: &BundleParts) -> Result<Bundle, EngineError> {
    Ok(Bundle::from_parts(&p.manifest, &p.policies, &p.schema, p.entities.as_deref(), p.tests.as_deref())?)
}
