//! The live pipeline (SPEC.md §1): gather the facts of each stage, [`decide`], record the
//! decision durably in the log, and only then issue the writ. Every path returns a
//! [`Decision`]; an error anywhere is a deny with a stable reason code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use writ_core::{ExecutionRequest, Limits, ReasonCode, RequestDigest, SpiffeId};
use writ_identity::{IdentityError, IdentityVerifier, Role, TrustBundle, VerifierConfig};
use writ_log::{Appended, Log, NoteVerifier};
use writ_policy::{Bundle, BundleDigest, CompiledBundle, verify_bundle_signature};

use crate::EngineError;
use crate::clock::Clock;
use crate::decide::{Decided, decide};
use crate::keys::{Recorded, Rotation, WritKeyStore, check_recorded};
use crate::record::{
    AttestationFact, BundleParts, Checked, DecisionOutcome, Entry, ExecStatus, Facts, IdentityFact, Outcome,
    ParentFact, RecordedLimits, RecordedRequest, Withheld, WritRecord,
};
use crate::state::{Approval, ApprovalStatus, BundleSummary, Lineage, OperatorAction, State};
use crate::writ::{LogRef, UsedWrits, VerifiedWrit, WritClaims, WritRejection, WritSigner, WritVerifier, new_writ_id};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The control plane's name: writs' `iss`.
    pub issuer: String,
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
            issuer: "writ".into(),
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

/// The answer to an authorization request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Decision id (the writ's `jti` on allow).
    pub id: String,
    /// The caller's request id, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Allow or deny.
    pub outcome: Outcome,
    /// Reason codes, primary first (empty on allow).
    pub reasons: Vec<ReasonCode>,
    /// Determining policies.
    pub policies: Vec<String>,
    /// Human-readable detail.
    pub detail: String,
    /// For a `policy.denied` deny: the forbids that decided or the closest permits, with
    /// their `@reason` (not recorded in the log; the `detail` is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<writ_policy::Explanation>,
    /// Index of the decision in the log (absent only when the log could not record it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// The writ, on allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writ: Option<String>,
}

impl Decision {
    /// The primary reason code of a deny.
    pub fn reason(&self) -> Option<ReasonCode> {
        self.reasons.first().copied()
    }

    fn unrecorded(id: String, request_id: Option<String>, reason: ReasonCode, detail: String) -> Self {
        // Not in the log, so said here: these are the control plane's own failures.
        tracing::warn!(decision = %id, reason = %reason, detail = %detail, "denied without a log record");
        Decision {
            id,
            request_id,
            outcome: Outcome::Deny,
            reasons: vec![reason],
            policies: Vec::new(),
            detail,
            explanation: None,
            log_index: None,
            writ: None,
        }
    }
}

/// One async lock per (subject, action): decisions that share a usage counter run one at a time.
type SerialLocks = std::collections::HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// What checking a bundle established, for its log entry.
struct CheckedBundle {
    time: u64,
    digest: String,
    name: String,
    version: String,
    accepted: bool,
    refusal: Option<String>,
    signer: Option<String>,
    parts: BundleParts,
}

/// What a writ is bound to besides its record: the request and the bundle that decided.
struct Bound {
    action: String,
    resource: String,
    digest: String,
    bundle: String,
    parent: Option<String>,
}

/// The budget of anonymous records (a token bucket refilled each second) and the attempts
/// answered beyond it, not yet recorded.
#[derive(Default)]
struct AnonymousBudget {
    tokens: u64,
    refilled: u64,
    pending: BTreeMap<ReasonCode, u64>,
    since: u64,
    until: u64,
    // Every attempt answered without its own record, since the engine opened.
    unrecorded: u64,
}

impl AnonymousBudget {
    /// The attempts counted since the last summary, as the entry that records them.
    fn take_summary(&mut self, now: u64) -> Option<Entry> {
        if self.pending.is_empty() {
            return None;
        }
        let reasons = std::mem::take(&mut self.pending);
        Some(Entry::AnonymousAttempts { time: now, since: self.since, until: self.until, reasons })
    }
}

/// The active bundle.
struct Active {
    bundle: CompiledBundle,
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
    state: Mutex<State>,
    active: RwLock<Option<Arc<Active>>>,
    serial: Mutex<SerialLocks>,
    // Held by the operator actions that check the state and then append (approvals) and
    // by those that change what they check (revocations, quarantine), so that an approval
    // cannot slip between a check and a revocation or quarantine recorded beside it.
    operator_actions: tokio::sync::Mutex<()>,
    anonymous: Mutex<AnonymousBudget>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn identity_fact(c: &writ_identity::VerifiedCredential) -> IdentityFact {
    IdentityFact {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_owned(),
        trust_domain: c.trust_domain().to_owned(),
        claims: c.claims().clone(),
    }
}

fn failed<T>(e: &IdentityError) -> Checked<T> {
    Checked::Failed { reason: e.reason(), detail: e.to_string() }
}

impl Engine {
    /// Opens the engine: rebuilds its state and the active bundle from the log.
    pub fn open(parts: EngineParts) -> Result<Engine, EngineError> {
        let EngineParts { config, trust_bundle, policy_keys, writ_signer, log, clock } = parts;
        let mut vc = VerifierConfig::new(config.credential_audiences.clone());
        vc.max_skew_secs = config.skew;
        let identity = IdentityVerifier::new(trust_bundle, vc);
        let verifier =
            WritVerifier::new(writ_signer.issuer(), &writ_signer.jwks(), &config.writ_audience, config.skew)?;
        let engine = Engine {
            config,
            identity,
            policy_keys,
            signer: RwLock::new(Arc::new(writ_signer)),
            verifier,
            log,
            clock,
            state: Mutex::new(State::default()),
            active: RwLock::new(None),
            serial: Mutex::new(std::collections::HashMap::new()),
            operator_actions: tokio::sync::Mutex::new(()),
            anonymous: Mutex::new(AnonymousBudget::default()),
        };
        let recorded = engine.rebuild()?;
        // The log is the source of truth for which keys sign: a key it never recorded does not.
        let kids = engine.writ_signer().map(|s| s.kids()).unwrap_or_default();
        check_recorded(&kids, &recorded)?;
        Ok(engine)
    }

    /// Rebuilds the state and the active bundle from the log; returns the latest key rotation.
    fn rebuild(&self) -> Result<Recorded, EngineError> {
        let size = self.log.size();
        let mut state = State::default();
        let mut active = None;
        let mut recorded = Recorded::default();
        let mut start = 0;
        while start < size {
            let end = (start + 1024).min(size);
            for (i, bytes) in (start..).zip(self.log.entries(start, end)?) {
                let entry: Entry = serde_json::from_slice(&bytes)
                    .map_err(|e| EngineError::Corrupt(format!("log entry {i} is not an engine entry: {e}")))?;
                if let Entry::Activation { accepted: true, parts, .. } = &entry {
                    let bundle = bundle_from_parts(parts)?;
                    active = Some(Arc::new(Active { bundle: bundle.compile()? }));
                }
                if let Entry::KeyRotation { kids, .. } = &entry {
                    recorded.latest = Some((i, kids.clone()));
                }
                state.apply(&entry, i);
            }
            start = end;
        }
        *self.state.lock().map_err(|_| EngineError::Internal("state lock poisoned".into()))? = state;
        *self.active.write().map_err(|_| EngineError::Internal("bundle lock poisoned".into()))? = active;
        Ok(recorded)
    }

    /// The writ signing keys as a JWKS document.
    pub fn jwks(&self) -> Value {
        self.writ_signer().map(|s| s.jwks()).unwrap_or_else(|| json!({"keys": []}))
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

    /// The lineage of a decision: every decision under its root. `None` if the log holds
    /// no decision with that id.
    pub fn lineage(&self, id: &str) -> Option<Lineage> {
        self.state.lock().ok()?.lineage(id)
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

    /// Authorizes a request body. Always answers; errors deny.
    pub async fn authorize(&self, body: &[u8]) -> Decision {
        let now = self.clock.now();
        let id = match new_writ_id() {
            Ok(id) => id,
            Err(e) => return Decision::unrecorded(String::new(), None, ReasonCode::Internal, e.to_string()),
        };
        let request = match ExecutionRequest::parse(body, &self.config.limits) {
            Ok(r) => r,
            Err(e) => {
                let entry = Entry::Decision {
                    id: id.clone(),
                    time: now,
                    request: None,
                    body_digest: Some(sha256_hex(body)),
                    facts: None,
                    limits: self.limits(),
                    bundle: None,
                    decision: DecisionOutcome {
                        outcome: Outcome::Deny,
                        reasons: vec![e.reason()],
                        policies: Vec::new(),
                        detail: e.to_string(),
                    },
                    writ: None,
                };
                return self.record(id, None, entry).await;
            }
        };
        self.authorize_request(id, now, request).await
    }

    fn limits(&self) -> RecordedLimits {
        RecordedLimits { lineage_by_possession: true, max_depth: self.config.max_depth }
    }

    async fn authorize_request(&self, id: String, now: u64, request: ExecutionRequest) -> Decision {
        let request_id = request.request_id.clone();
        let digest = match request.digest() {
            Ok(d) => d,
            Err(e) => return Decision::unrecorded(id, request_id, e.reason(), e.to_string()),
        };
        let c = &request.credentials;
        let mut credentials = BTreeMap::new();
        for (role, token) in [
            ("workload", &c.workload),
            ("operator", &c.operator),
            ("orchestrator", &c.orchestrator),
            ("machine", &c.machine),
            ("runtime", &c.runtime),
            ("delegation", &c.delegation),
            ("attestation", &request.attestation),
            ("parent_writ", &request.parent_writ),
        ] {
            if let Some(t) = token {
                credentials.insert(role.to_owned(), sha256_hex(t.as_bytes()));
            }
        }
        let active = self.active.read().ok().and_then(|a| a.clone());
        let bundle = active.as_ref().map(|a| &a.bundle);
        let limits = self.limits();
        // A panic anywhere in the stages is a deny, never an unanswered request.
        let panicked = || {
            Decision::unrecorded(
                id.clone(),
                request_id.clone(),
                ReasonCode::Internal,
                "a pipeline stage panicked".into(),
            )
        };
        let Ok(mut facts) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fault_point("identity", &request.action);
            self.verify_credentials(&request, now)
        })) else {
            return panicked();
        };
        let ExecutionRequest { action, resource, arguments, parent, audience, .. } = request;
        // A parent presented by its writ alone is that writ's id.
        let parent = parent.or_else(|| match &facts.parent_writ {
            Some(Checked::Ok(jti)) => Some(jti.clone()),
            _ => None,
        });
        // An anonymous caller does not get its arguments into the permanent log (the identity
        // stage denies it before anything reads them).
        let (arguments, withheld) = if matches!(facts.identity, Checked::Failed { .. }) {
            match writ_core::canonical_json(&arguments) {
                Ok(bytes) => (
                    Value::Null,
                    Some(Withheld {
                        arguments_digest: sha256_hex(&bytes),
                        arguments_size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                    }),
                ),
                Err(e) => return Decision::unrecorded(id, request_id, ReasonCode::Internal, e.to_string()),
            }
        } else {
            (arguments, None)
        };
        let recorded = RecordedRequest {
            request_id: request_id.clone(),
            action,
            resource,
            arguments,
            parent,
            audience: audience.unwrap_or_else(|| self.config.writ_audience.clone()),
            digest: digest.to_string(),
            credentials,
            withheld,
        };
        // Decisions of one principal for one action are serialised from reading the usage
        // counters to recording the decision, so that concurrent calls cannot both pass a
        // rate rule.
        let subject = match &facts.identity {
            Checked::Ok(i) => i.subject.clone(),
            Checked::Failed { .. } => String::new(),
        };
        let serial = self.serial_lock(&subject, &recorded.action);
        let _serial = serial.lock().await;
        let staged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.add_state_facts(&mut facts, &recorded, now);
            fault_point("decide", &recorded.action);
            decide(&recorded, &facts, &limits, now, bundle)
        }));
        let Ok(Decided { outcome, placement, explanation }) = staged else {
            return panicked();
        };
        let writ = match (&outcome.outcome, placement, &facts.identity) {
            (outcome @ (Outcome::Allow | Outcome::Pending), Some(p), Checked::Ok(identity)) => Some(WritRecord {
                jti: id.clone(),
                sub: identity.subject.clone(),
                iat: now,
                nbf: now,
                // A pending decision's record holds the approval deadline instead.
                exp: now.saturating_add(match outcome {
                    Outcome::Pending => self.config.approval_ttl,
                    _ => self.config.writ_ttl,
                }),
                aud: recorded.audience.clone(),
                root: p.root.unwrap_or_else(|| id.clone()),
                dep: p.depth,
                scp: p.scope,
            }),
            (Outcome::Allow | Outcome::Pending, _, _) => {
                return Decision::unrecorded(
                    id,
                    request_id,
                    ReasonCode::Internal,
                    "an allow without a placement".into(),
                );
            }
            _ => None,
        };
        let entry = Entry::Decision {
            id: id.clone(),
            time: now,
            request: Some(recorded),
            body_digest: None,
            facts: Some(facts),
            limits,
            bundle: bundle.map(|b| b.digest().to_string()),
            decision: outcome,
            writ,
        };
        let mut answer = self.record(id, request_id, entry).await;
        // Only the recorded decision is explained, not a failure to record it.
        if answer.log_index.is_some() {
            answer.explanation = explanation;
        }
        answer
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

    /// Verifies the credentials and the attestation; the state facts come later, under the
    /// principal's serial lock.
    fn verify_credentials(&self, request: &ExecutionRequest, now: u64) -> Facts {
        let identity = match &request.credentials.workload {
            None => Checked::Failed { reason: ReasonCode::IdentityMissing, detail: "no workload credential".into() },
            Some(token) => match self.identity.verify(Role::Workload, token, now) {
                Ok(c) => Checked::Ok(identity_fact(&c)),
                Err(e) => failed(&e),
            },
        };
        let c = &request.credentials;
        let mut delegation = BTreeMap::new();
        for (role, name, token) in [
            (Role::Operator, "operator", &c.operator),
            (Role::Orchestrator, "orchestrator", &c.orchestrator),
            (Role::Machine, "machine", &c.machine),
            (Role::Runtime, "runtime", &c.runtime),
        ] {
            if let Some(t) = token {
                let checked = match self.identity.verify(role, t, now) {
                    Ok(c) => Checked::Ok(identity_fact(&c)),
                    Err(e) => failed(&e),
                };
                delegation.insert(name.to_owned(), checked);
            }
        }
        let attestation = request.attestation.as_ref().map(|token| {
            let subject = match &identity {
                Checked::Ok(i) => SpiffeId::parse(&i.subject).ok(),
                Checked::Failed { .. } => None,
            };
            let Some(sub) = subject else {
                return Checked::Failed {
                    reason: ReasonCode::AttestationInvalid,
                    detail: "no verified workload to bind the attestation to".into(),
                };
            };
            match self.identity.verify_attestation(token, &sub, now) {
                Ok(a) => Checked::Ok(AttestationFact {
                    measurement: a.measurement().to_owned(),
                    environment: a.environment().to_owned(),
                    region: a.region().to_owned(),
                }),
                Err(e) => Checked::Failed { reason: ReasonCode::AttestationInvalid, detail: e.to_string() },
            }
        });
        if let Some(token) = &c.delegation {
            let checked = match self.identity.verify_delegation(token, now) {
                Ok((c, _)) => Checked::Ok(identity_fact(&c)),
                Err(e) => failed(&e),
            };
            delegation.insert("delegation".to_owned(), checked);
        }
        let parent_writ = request.parent_writ.as_deref().map(|token| self.possession(token, request.parent.as_deref()));
        Facts {
            identity,
            delegation,
            attestation,
            quarantined: false,
            parent: None,
            parent_writ,
            usage: Default::default(),
        }
    }

    /// Lineage by possession: the parent writ presented must verify (signature by a writ
    /// key, this control plane's issuer; not consumed) and be the parent the request names,
    /// if it names one. Its id, or why not.
    fn possession(&self, token: &str, named: Option<&str>) -> Checked<String> {
        match self.verifier.verify_possession(token) {
            Err(r) => Checked::Failed {
                reason: ReasonCode::LineageParentUnknown,
                detail: format!("the parent writ presented does not verify ({}: {})", r.reason, r.detail),
            },
            Ok(c) if named.is_some_and(|n| n != c.jti) => Checked::Failed {
                reason: ReasonCode::RequestMalformed,
                detail: format!("the parent writ presented is {}, not the parent named", c.jti),
            },
            Ok(c) => Checked::Ok(c.jti),
        }
    }

    /// Looks up quarantine, the parent writ and the usage counters.
    fn add_state_facts(&self, facts: &mut Facts, request: &RecordedRequest, now: u64) {
        let subject = match &facts.identity {
            Checked::Ok(i) => Some(i.subject.as_str()),
            Checked::Failed { .. } => None,
        };
        let (quarantined, parent, usage) = match self.state.lock() {
            Ok(state) => (
                subject.is_some_and(|s| state.is_quarantined(s)),
                request.parent.as_ref().map(|p| state.parent(p)),
                state.usage(subject.unwrap_or_default(), &request.action, now),
            ),
            // A poisoned state lock cannot be trusted: treat the principal as isolated.
            Err(_) => (true, None, Default::default()),
        };
        facts.quarantined = quarantined;
        facts.parent = parent;
        facts.usage = usage;
    }

    /// Admits an anonymous decision (no verified identity, or no parsable request) to the
    /// log within the budget: `Ok` with the summary of the attempts answered beyond the
    /// budget before it (to record first), or `Err` when over budget (the attempt is
    /// counted for the next summary).
    fn admit_anonymous(&self, now: u64, reason: ReasonCode) -> Result<Option<Entry>, ()> {
        let Ok(mut b) = self.anonymous.lock() else { return Err(()) };
        let rate = self.config.anonymous_records_per_sec;
        let burst = rate.saturating_mul(10);
        if now > b.refilled {
            b.tokens = b.tokens.saturating_add(now.saturating_sub(b.refilled).saturating_mul(rate)).min(burst);
            b.refilled = now;
        }
        if b.tokens == 0 {
            if b.pending.is_empty() {
                b.since = now;
            }
            b.until = now;
            *b.pending.entry(reason).or_default() += 1;
            b.unrecorded += 1;
            return Err(());
        }
        b.tokens -= 1;
        Ok(b.take_summary(now))
    }

    /// Requests without a verified identity answered (denied) without a log record of
    /// their own since the engine opened (they are counted in `anonymous_attempts` entries).
    pub fn anonymous_unrecorded(&self) -> u64 {
        self.anonymous.lock().map_or(0, |b| b.unrecorded)
    }

    /// Records the attempts answered beyond the anonymous budget and not yet counted in the
    /// log (for a stopping control plane).
    pub async fn flush_anonymous(&self) -> Result<(), EngineError> {
        let summary = self
            .anonymous
            .lock()
            .map_err(|_| EngineError::Internal("budget lock poisoned".into()))?
            .take_summary(self.clock.now());
        match summary {
            Some(summary) => self.append(&summary).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Appends the entry; only once it is durable is an allow answered, with its writ.
    async fn record(&self, id: String, request_id: Option<String>, entry: Entry) -> Decision {
        let Entry::Decision { time, request, facts, decision, .. } = &entry else {
            return Decision::unrecorded(id, request_id, ReasonCode::Internal, "not a decision".into());
        };
        let anonymous =
            request.is_none() || facts.as_ref().is_some_and(|f| matches!(f.identity, Checked::Failed { .. }));
        if anonymous {
            let reason = decision.reasons.first().copied().unwrap_or(ReasonCode::Internal);
            match self.admit_anonymous(*time, reason) {
                Err(()) => {
                    return Decision {
                        id,
                        request_id,
                        outcome: Outcome::Deny,
                        reasons: decision.reasons.clone(),
                        policies: Vec::new(),
                        detail: format!(
                            "{} (not recorded one by one: too many requests without a verified identity; counted in the log's next anonymous_attempts entry)",
                            decision.detail
                        ),
                        explanation: None,
                        log_index: None,
                        writ: None,
                    };
                }
                Ok(Some(summary)) => {
                    if let Err(e) = self.append(&summary).await {
                        tracing::warn!(error = %e, "the count of unrecorded anonymous attempts could not be recorded");
                    }
                }
                Ok(None) => {}
            }
        }
        let bytes = match entry.canonical().map_err(|e| e.to_string()) {
            Ok(b) => b,
            Err(e) => {
                return Decision::unrecorded(id, request_id, ReasonCode::Internal, format!("encoding the record: {e}"));
            }
        };
        let appended = match self.log.append(bytes).await {
            Ok(a) => a,
            Err(e) => {
                return Decision::unrecorded(
                    id,
                    request_id,
                    ReasonCode::LogUnavailable,
                    format!("the decision could not be recorded: {e}"),
                );
            }
        };
        if let Ok(mut state) = self.state.lock() {
            state.apply(&entry, appended.index);
        }
        let Entry::Decision { decision, bundle, request, writ, .. } = entry else {
            return Decision::unrecorded(id, request_id, ReasonCode::Internal, "not a decision".into());
        };
        let mut out = Decision {
            id,
            request_id,
            outcome: decision.outcome,
            reasons: decision.reasons,
            policies: decision.policies,
            detail: decision.detail,
            explanation: None,
            log_index: Some(appended.index),
            writ: None,
        };
        if let (Outcome::Allow, Some(w), Some(request)) = (decision.outcome, writ, request) {
            let bound = Bound {
                action: request.action,
                resource: request.resource,
                digest: request.digest,
                bundle: bundle.unwrap_or_default(),
                parent: request.parent,
            };
            match self.sign_writ(w, bound, &appended) {
                Ok(token) => out.writ = Some(token),
                Err(e) => return Decision::unrecorded(out.id, out.request_id, ReasonCode::Internal, e),
            }
        }
        out
    }

    /// Signs the writ of a durable entry: `w` as recorded, bound to the request, its `log`
    /// claim pointing at the entry.
    fn sign_writ(&self, w: WritRecord, bound: Bound, entry: &Appended) -> Result<String, String> {
        let signer = self.writ_signer().ok_or_else(|| "writ key lock poisoned".to_owned())?;
        let claims = WritClaims {
            iss: signer.issuer().to_owned(),
            sub: w.sub,
            aud: w.aud,
            jti: w.jti,
            iat: w.iat,
            nbf: w.nbf,
            exp: w.exp,
            act: bound.action,
            res: bound.resource,
            req: bound.digest,
            pol: bound.bundle,
            par: bound.parent,
            root: w.root,
            dep: w.dep,
            scp: w.scp,
            log: LogRef { index: entry.index, leaf: entry.leaf_hash.to_prefixed() },
        };
        signer.sign(&claims).map_err(|e| format!("signing the writ: {e}"))
    }

    /// Verifies a writ for the call about to run: signature, time, audience, binding, its
    /// standing (not revoked, nor any writ above it in its lineage: `writ.revoked`; its
    /// principal, or one above it, not isolated: `quarantined`), single use at this engine.
    pub fn verify(&self, token: &str, digest: &RequestDigest) -> Result<VerifiedWrit, WritRejection> {
        let now = self.clock.now();
        // The state is locked for the standing lookup only, not across the signature check;
        // a poisoned lock refuses (fail closed).
        self.verifier.verify_with(token, digest, now, &|c| {
            let state =
                self.state.lock().map_err(|_| WritRejection::new(ReasonCode::Internal, "state lock poisoned"))?;
            state.standing(&c.jti, &c.sub).map_err(|(reason, detail)| WritRejection::new(reason, detail))
        })
    }

    /// Stops verifying writs (every later verification is `writ.replayed`) and returns what a
    /// stopping control plane keeps so that single use survives a restart: the writs
    /// verified here that could still verify now, and the horizon before which writs are
    /// refused.
    pub fn close_verification(&self) -> UsedWrits {
        self.verifier.close(self.clock.now())
    }

    /// Takes back what [`Engine::close_verification`] of an earlier run kept.
    pub fn restore_used_writs(&self, kept: UsedWrits) {
        self.verifier.restore(kept);
    }

    /// Refuses as `writ.replayed` every writ issued before `time` not known as used: for a
    /// control plane that lost its record of used writs (it was killed), see
    /// [`WritVerifier::refuse_issued_before`].
    pub fn refuse_writs_issued_before(&self, time: u64) {
        self.verifier.refuse_issued_before(time);
    }

    /// Activates a signed bundle: the signature must be by a trusted policy key and the
    /// bundle must validate against its schema. Refusals are recorded too.
    pub async fn activate(
        &self,
        bundle: &Bundle,
        signature: &str,
        operator: Option<&str>,
    ) -> Result<BundleDigest, EngineError> {
        // An approval checks the active bundle: the two are recorded in order.
        let _one = self.operator_actions.lock().await;
        let (checked, compiled) = self.check_bundle(bundle, signature);
        let entry = Entry::Activation {
            time: checked.time,
            digest: checked.digest,
            name: checked.name,
            version: checked.version,
            accepted: checked.accepted,
            refusal: checked.refusal.clone(),
            signer: checked.signer,
            signature: signature.to_owned(),
            operator: operator.map(str::to_owned),
            parts: checked.parts,
        };
        let refusal = checked.refusal;
        self.append(&entry).await?;
        match compiled {
            Some(c) => {
                *self.active.write().map_err(|_| EngineError::Internal("bundle lock poisoned".into()))? =
                    Some(Arc::new(Active { bundle: c }));
                Ok(bundle.digest())
            }
            None => Err(EngineError::BundleUntrusted(refusal.unwrap_or_default())),
        }
    }

    /// Checks a bundle's signature against the trusted policy keys and compiles it against
    /// its schema: what an activation or upload entry records, and the compiled bundle.
    fn check_bundle(&self, bundle: &Bundle, signature: &str) -> (CheckedBundle, Option<CompiledBundle>) {
        let checked = verify_bundle_signature(bundle, signature, &self.policy_keys)
            .and_then(|signer| bundle.compile().map(|c| (signer, c)));
        let (manifest, policies, schema, entities, tests) = bundle.parts();
        let (accepted, refusal, signer, compiled) = match checked {
            Ok((signer, compiled)) => (true, None, Some(signer), Some(compiled)),
            Err(e) => (false, Some(e.to_string()), None, None),
        };
        let fields = CheckedBundle {
            time: self.clock.now(),
            digest: bundle.digest().to_string(),
            name: bundle.manifest().name.clone(),
            version: bundle.manifest().version.clone(),
            accepted,
            refusal,
            signer,
            parts: BundleParts { manifest, policies, schema, entities, tests },
        };
        (fields, compiled)
    }

    /// Uploads a signed bundle for later activation: it is checked exactly as an
    /// activation checks it and recorded in the log (a refusal too, without its parts).
    pub async fn upload(
        &self,
        bundle: &Bundle,
        signature: &str,
        operator: Option<&str>,
    ) -> Result<BundleDigest, EngineError> {
        let (checked, _) = self.check_bundle(bundle, signature);
        let refusal = checked.refusal.clone();
        let entry = Entry::Upload {
            time: checked.time,
            digest: checked.digest,
            name: checked.name,
            version: checked.version,
            accepted: checked.accepted,
            refusal: checked.refusal,
            signer: checked.signer,
            signature: signature.to_owned(),
            operator: operator.map(str::to_owned),
            parts: checked.accepted.then_some(checked.parts),
        };
        self.append(&entry).await?;
        match refusal {
            None => Ok(bundle.digest()),
            Some(r) => Err(EngineError::BundleUntrusted(r)),
        }
    }

    /// Activates a bundle the log already holds (uploaded, or active before: a rollback).
    /// Its signature is checked again against the keys trusted now.
    pub async fn activate_known(&self, digest: &str, operator: Option<&str>) -> Result<BundleDigest, EngineError> {
        let known = {
            let state = self.state.lock().map_err(|_| EngineError::Internal("state lock poisoned".into()))?;
            state.bundle(digest).map(|b| (b.parts.clone(), b.signature.clone()))
        };
        let Some((parts, signature)) = known else {
            return Err(EngineError::NotFound(format!("the log holds no accepted bundle {digest}")));
        };
        let bundle = bundle_from_parts(&parts)?;
        self.activate(&bundle, &signature, operator).await
    }

    /// Records the outcome of an allowed execution. `reporter` is the authenticated SPIFFE
    /// ID; unless `reporter_is_operator`, it must be the writ's own subject. One outcome per
    /// writ.
    pub async fn report_outcome(
        &self,
        jti: &str,
        reporter: &str,
        reporter_is_operator: bool,
        status: ExecStatus,
        exit_code: Option<i64>,
        detail: &str,
    ) -> Result<u64, EngineError> {
        if detail.len() > MAX_OUTCOME_DETAIL {
            return Err(EngineError::Invalid(format!("detail is longer than {MAX_OUTCOME_DETAIL} bytes")));
        }
        // The check and the append run under the writ's serial lock, so two reports of the
        // same writ cannot both pass the "no outcome yet" check.
        let serial = self.serial_lock("outcome", jti);
        let _serial = serial.lock().await;
        {
            let state = self.state.lock().map_err(|_| EngineError::Internal("state lock poisoned".into()))?;
            match state.allowed_writ(jti) {
                None => return Err(EngineError::NotFound(format!("no allowed decision {jti} in the log"))),
                Some((_, true)) => {
                    return Err(EngineError::Conflict(format!("an outcome for {jti} is already recorded")));
                }
                Some((subject, false)) if !reporter_is_operator && subject != reporter => {
                    return Err(EngineError::Forbidden(format!(
                        "{reporter} may not report for a writ issued to {subject}"
                    )));
                }
                Some(_) => {}
            }
        }
        let entry = Entry::Outcome {
            time: self.clock.now(),
            jti: jti.to_owned(),
            reporter: reporter.to_owned(),
            status,
            exit_code,
            detail: detail.to_owned(),
        };
        self.append(&entry).await
    }

    /// Revokes a writ: it can no longer verify or serve as a parent.
    pub async fn revoke(&self, jti: &str, operator: Option<&str>, reason: &str) -> Result<u64, EngineError> {
        let _one = self.operator_actions.lock().await;
        let entry = Entry::Revocation {
            time: self.clock.now(),
            jti: jti.to_owned(),
            operator: operator.map(str::to_owned),
            reason: reason.to_owned(),
        };
        self.append(&entry).await
    }

    /// Isolates (`true`) or releases (`false`) an identity.
    pub async fn quarantine(
        &self,
        subject: &SpiffeId,
        isolated: bool,
        operator: Option<&str>,
        reason: &str,
    ) -> Result<u64, EngineError> {
        let _one = self.operator_actions.lock().await;
        let entry = Entry::Quarantine {
            time: self.clock.now(),
            subject: subject.to_string(),
            isolated,
            operator: operator.map(str::to_owned),
            reason: reason.to_owned(),
        };
        self.append(&entry).await
    }

    /// Rotates the writ signing key, the one way to do so (`writ keys rotate` and
    /// `POST /v1/keys/rotate` both come here): a new key is added to `store` (durably), the
    /// rotation is recorded in the log (key ids only), the new key signs from then on, and
    /// the keys are handed to the store to publish. If the rotation cannot be recorded, the
    /// new key is removed from the store again, so that no later start signs with a key the
    /// log does not hold (and should that removal fail too, the next open refuses the store:
    /// see [`crate::keys`]). Every older key stays published, so outstanding writs keep
    /// verifying. One rotation at a time, under the operator-action lock.
    pub async fn rotate_writ_key_with(
        &self,
        store: &dyn WritKeyStore,
        operator: Option<&str>,
    ) -> Result<Rotation, EngineError> {
        let _one = self.operator_actions.lock().await;
        let seeds = store.add().map_err(|e| EngineError::Key(format!("storing the new key: {e}")))?;
        let (kid, log_index) = match self.rotate_writ_key(&seeds, operator).await {
            Ok(done) => done,
            Err(e) => {
                return Err(match store.remove_newest() {
                    Ok(()) => e,
                    Err(undo) => {
                        tracing::error!(error = %e, %undo, "a writ key rotation failed and its key is still stored");
                        EngineError::Key(format!(
                            "{e}; and the new key could not be removed from the key store: {undo} (the next start \
                             refuses the store until it is removed)"
                        ))
                    }
                });
            }
        };
        let jwks = self.jwks();
        let warning = store.published(&jwks).err().map(|e| format!("the JWKS file was not updated: {e}"));
        if let Some(w) = &warning {
            tracing::error!(kid = %kid, "writ key rotated, but {w}");
        }
        let kids = self.writ_signer().map(|s| s.kids()).unwrap_or_default();
        Ok(Rotation { kid, kids, log_index, warning })
    }

    /// Records a rotation to `seeds` and signs with them: the keys to use from now on, oldest
    /// first, which must be the present keys with new ones after them. The rotation is
    /// recorded (key ids only) before the new key signs anything. Returns the new current
    /// `kid` and the entry's index.
    async fn rotate_writ_key(&self, seeds: &[[u8; 32]], operator: Option<&str>) -> Result<(String, u64), EngineError> {
        let current = self.writ_signer().ok_or_else(|| EngineError::Internal("writ key lock poisoned".into()))?;
        let next = WritSigner::from_seeds(current.issuer(), seeds)?;
        let (before, after) = (current.kids(), next.kids());
        if after.len() <= before.len() || after.get(..before.len()) != Some(&before[..]) {
            return Err(EngineError::Invalid(
                "a rotation keeps every present key, in order, and adds at least one".into(),
            ));
        }
        let kid = after.last().cloned().unwrap_or_default();
        let entry = Entry::KeyRotation {
            time: self.clock.now(),
            kid: kid.clone(),
            kids: after,
            operator: operator.map(str::to_owned),
        };
        let index = self.append(&entry).await?;
        self.verifier.trust(&next.jwks())?;
        *self.signer.write().map_err(|_| EngineError::Internal("writ key lock poisoned".into()))? = Arc::new(next);
        Ok((kid, index))
    }

    async fn append(&self, entry: &Entry) -> Result<u64, EngineError> {
        Ok(self.append_entry(entry).await?.index)
    }

    async fn append_entry(&self, entry: &Entry) -> Result<Appended, EngineError> {
        let bytes = entry.canonical().map_err(|e| EngineError::Internal(e.to_string()))?;
        let a = self.log.append(bytes).await?;
        self.state.lock().map_err(|_| EngineError::Internal("state lock poisoned".into()))?.apply(entry, a.index);
        let (kind, operator) = entry.kind_and_operator();
        tracing::info!(kind, operator = operator.unwrap_or("local"), log_index = a.index, "recorded");
        Ok(a)
    }

    /// The decision `id` that needed a human approval, as it stands now.
    pub fn approval(&self, id: &str) -> Option<Approval> {
        self.state.lock().ok()?.approval(id, self.clock.now())
    }

    /// Decisions that needed a human approval, newest first: those still pending, or all;
    /// at most `limit`.
    pub fn approvals(&self, pending_only: bool, limit: usize) -> Vec<Approval> {
        self.state.lock().map(|s| s.approvals(self.clock.now(), pending_only, limit)).unwrap_or_default()
    }

    /// Approves (`approve`) or rejects a pending decision, once, before its deadline. An
    /// approval is refused once another bundle is active than the one that decided, while
    /// the principal is quarantined, once the decision or its parent writ was revoked, or
    /// once the parent expired: what would deny a new request
    /// also stops an old one from being approved. The answer is recorded in the log; an
    /// approval carries the writ, issued from the approval's time for the writ lifetime.
    pub async fn resolve_approval(
        &self,
        id: &str,
        approve: bool,
        operator: Option<&str>,
        reason: &str,
    ) -> Result<Approval, EngineError> {
        if reason.len() > MAX_OUTCOME_DETAIL {
            return Err(EngineError::Invalid(format!("reason is longer than {MAX_OUTCOME_DETAIL} bytes")));
        }
        // One operator action at a time: two answers to one decision, or an approval and a
        // revocation or quarantine, are checked and recorded in order.
        let _one = self.operator_actions.lock().await;
        let now = self.clock.now();
        let active = self
            .active
            .read()
            .map_err(|_| EngineError::Internal("bundle lock poisoned".into()))?
            .as_ref()
            .map(|a| a.bundle.digest().to_string());
        let writ = {
            let state = self.state.lock().map_err(|_| EngineError::Internal("state lock poisoned".into()))?;
            let pending = state
                .approval(id, now)
                .ok_or_else(|| EngineError::NotFound(format!("no decision {id} awaits approval")))?;
            match pending.status {
                ApprovalStatus::Pending => {}
                ApprovalStatus::Expired => {
                    return Err(EngineError::Conflict(format!(
                        "the approval window of {id} closed at {}",
                        pending.deadline
                    )));
                }
                ApprovalStatus::Approved | ApprovalStatus::Rejected => {
                    return Err(EngineError::Conflict(format!("{id} was already answered")));
                }
            }
            if approve {
                if pending.bundle != active {
                    return Err(EngineError::Conflict(format!(
                        "the policy changed since {id} was decided (active bundle {}); the request must be asked again",
                        active.as_deref().unwrap_or("none")
                    )));
                }
                if state.is_quarantined(&pending.subject) {
                    return Err(EngineError::Conflict(format!("{} is quarantined", pending.subject)));
                }
                if state.is_revoked(id) {
                    return Err(EngineError::Conflict(format!("{id} was revoked")));
                }
                if let Some(parent) = &pending.parent {
                    match state.parent(parent) {
                        ParentFact::Known { revoked: true, .. } => {
                            return Err(EngineError::Conflict(format!("its parent writ {parent} was revoked")));
                        }
                        ParentFact::Known { exp, .. } if now >= exp => {
                            return Err(EngineError::Conflict(format!("its parent writ {parent} expired at {exp}")));
                        }
                        _ => {}
                    }
                }
            }
            approve.then(|| WritRecord {
                iat: now,
                nbf: now,
                exp: now.saturating_add(self.config.writ_ttl),
                ..pending.writ
            })
        };
        let entry = Entry::Approval {
            time: now,
            id: id.to_owned(),
            approved: approve,
            operator: operator.map(str::to_owned),
            reason: reason.to_owned(),
            writ,
        };
        self.append_entry(&entry).await?;
        self.approval(id).ok_or_else(|| EngineError::Internal("the answered approval vanished".into()))
    }

    /// The writ of an approved decision, for its own principal (refused once the writ is
    /// revoked or the principal quarantined): signed anew from the
    /// approval's record (Ed25519 signatures are deterministic, so with the same key it is
    /// the same token), its `log` claim pointing at the approval entry.
    pub fn approved_writ(&self, id: &str) -> Result<Option<String>, EngineError> {
        let Some(a) = self.approval(id) else {
            return Err(EngineError::NotFound(format!("no decision {id} awaited approval")));
        };
        let Some(resolution) = a.resolution.filter(|r| r.approved) else { return Ok(None) };
        {
            let state = self.state.lock().map_err(|_| EngineError::Internal("state lock poisoned".into()))?;
            if state.is_revoked(id) {
                return Err(EngineError::Conflict(format!("{id} was revoked")));
            }
            if state.is_quarantined(&a.subject) {
                return Err(EngineError::Conflict(format!("{} is quarantined", a.subject)));
            }
        }
        let index = resolution.log_index;
        let bytes = self
            .log
            .entries(index, index.saturating_add(1))?
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Internal(format!("approval entry {index} is missing")))?;
        let appended = Appended { index, leaf_hash: writ_log::Hash::leaf(&bytes) };
        let bound = Bound {
            action: a.action,
            resource: a.resource,
            digest: a.digest,
            bundle: a.bundle.unwrap_or_default(),
            parent: a.parent,
        };
        self.sign_writ(a.writ, bound, &appended).map(Some).map_err(EngineError::Internal)
    }
}

/// Rebuilds a bundle from the parts an activation entry recorded.
pub(crate) fn bundle_from_parts(p: &BundleParts) -> Result<Bundle, EngineError> {
    Ok(Bundle::from_parts(&p.manifest, &p.policies, &p.schema, p.entities.as_deref(), p.tests.as_deref())?)
}

/// The fault-injection tests' way in (tikv's `fail`): a request whose action is
/// `failpoint.<stage>` passes the fail point `writ-engine::<stage>` (`identity`, `decide`),
/// which a test can make panic. Compiled to nothing unless the `fail` crate's
/// `failpoints` feature is on, which only a dev-dependency turns on.
fn fault_point(stage: &str, action: &str) {
    // Read here too: without the feature the macro below is empty.
    let _ = (stage, action);
    fail::fail_point!(
        match stage {
            "identity" => "writ-engine::identity",
            _ => "writ-engine::decide",
        },
        action.strip_prefix("failpoint.") == Some(stage),
        |_| {}
    );
}
