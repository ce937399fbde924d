//! The live pipeline (SPEC.md §1): gather the facts of each stage, [`decide`], record the
//! decision durably in the log, and only then issue the writ. Every path returns a
//! [`Decision`]; an error anywhere is a deny with a stable reason code. Requests without a
//! verified identity are recorded within a budget ([`AnonymousBudget`]), counted beyond it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use writ_core::{ExecutionRequest, Presented, ReasonCode, SpiffeId};
use writ_identity::{IdentityError, Role};
use writ_log::Appended;

use super::Engine;
use super::renew::Renewing;
use crate::EngineError;
use crate::decide::{Decided, decide};
use crate::record::{
    AttestationFact, Checked, DecisionOutcome, Entry, Facts, IdentityFact, Outcome, RecordedLimits, RecordedRequest,
    Withheld, WritRecord,
};
use writ_verify::{LogRef, WritClaims};

use crate::writ::new_writ_id;

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

    pub(super) fn unrecorded(id: String, request_id: Option<String>, reason: ReasonCode, detail: String) -> Self {
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

/// What a writ is bound to besides its record: the request and the bundle that decided.
pub(super) struct Bound {
    pub(super) action: String,
    pub(super) resource: String,
    pub(super) digest: String,
    pub(super) bundle: String,
    pub(super) parent: Option<String>,
}

/// The budget of anonymous records (a token bucket refilled each second) and the attempts
/// answered beyond it, not yet recorded.
#[derive(Default)]
pub(super) struct AnonymousBudget {
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

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(super) fn identity_fact(c: &writ_identity::VerifiedCredential) -> IdentityFact {
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
    /// Authorizes a request body. Always answers; errors deny. A decision that trips an
    /// isolation rule keeps its outcome; the isolation is made before the answer
    /// ([`super::isolate`]), once the decision's own locks are released.
    pub async fn authorize(&self, body: &[u8]) -> Decision {
        let decision = self.decide_and_record(body).await;
        self.after_recorded().await;
        decision
    }

    async fn decide_and_record(&self, body: &[u8]) -> Decision {
        let now = self.clock.now();
        let id = match new_writ_id() {
            Ok(id) => id,
            Err(e) => return Decision::unrecorded(String::new(), None, ReasonCode::Internal, e.to_string()),
        };
        let parsed = ExecutionRequest::parse(body, &self.config.limits);
        // Fail closed while the node's self-verification fails (see `watch`): nothing is
        // decided or recorded.
        if let Some((reason, detail)) = self.integrity_failure() {
            let request_id = parsed.ok().and_then(|r| r.request_id);
            return Decision::unrecorded(id, request_id, reason, detail);
        }
        let request = match parsed {
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
                    renews: None,
                    writ: None,
                    shadow: None,
                };
                return self.record(id, None, entry).await;
            }
        };
        self.authorize_request(id, now, request, None).await
    }

    pub(super) fn limits(&self) -> RecordedLimits {
        RecordedLimits { lineage_by_possession: true, max_depth: self.config.max_depth }
    }

    /// Decides a parsed request; for a renewal, `renewal` is the writ renewed (its request
    /// is `request`, rebuilt from the writ's decision entry).
    pub(super) async fn authorize_request(
        &self,
        id: String,
        now: u64,
        request: ExecutionRequest,
        renewal: Option<Renewing>,
    ) -> Decision {
        let request_id = request.request_id.clone();
        let digest = match request.digest() {
            Ok(d) => d,
            Err(e) => return Decision::unrecorded(id, request_id, e.reason(), e.to_string()),
        };
        let credentials: BTreeMap<String, String> =
            request.presented_all().map(|(kind, t)| (kind.name().to_owned(), sha256_hex(t.as_bytes()))).collect();
        // Held until the decision is recorded: an activation waits for it (see `reevaluate`).
        let _gate = self.bundle_gate.read().await;
        let active = self.active.read().ok().and_then(|a| a.clone());
        let bundle = active.as_ref().map(|a| &a.bundle);
        // Read under the same gate: a decision recorded after a `shadow` entry was evaluated
        // beside that entry's bundle, one recorded before it beside the one before.
        let shadow = self.shadow_bundle();
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
        // A renewal proves its parent as the writ it renews did (that decision's record).
        if let Some(r) = &renewal {
            facts.parent_writ = r.parent_writ.clone();
        }
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
            if let Some(r) = &renewal {
                facts.renewal = Some(self.renewal_fact(r, &facts.identity, now));
            }
            fault_point("decide", &recorded.action);
            decide(&recorded, &facts, &limits, now, bundle)
        }));
        let Ok(Decided { outcome, placement, explanation }) = staged else {
            return panicked();
        };
        // The shadow's verdict, once the real decision is fixed: the same inputs, the same
        // `decide`; nothing of it reaches the outcome, the writ or the state. Recorded only
        // when its outcome differs.
        let real = outcome.outcome;
        let verdict = shadow.as_ref().map(|s| super::evaluate_shadow(&s.bundle, &recorded, &facts, &limits, now));
        let shadow_outcome = verdict.as_ref().map(|v| v.outcome);
        let writ = match (&outcome.outcome, placement, &facts.identity) {
            (outcome @ (Outcome::Allow | Outcome::Pending), Some(p), Checked::Ok(identity)) => Some(WritRecord {
                jti: id.clone(),
                sub: identity.subject.clone(),
                iat: now,
                nbf: now,
                // A pending decision's record holds the approval deadline instead; a writ
                // lives the configured TTL, or less if the bundle caps its action's writs.
                exp: now.saturating_add(match outcome {
                    Outcome::Pending => self.config.approval_ttl,
                    _ => {
                        bundle.map_or(self.config.writ_ttl, |b| b.writ_lifetime(&recorded.action, self.config.writ_ttl))
                    }
                }),
                aud: recorded.audience.clone(),
                // A renewal keeps the root of the writ it renews (itself, for a root writ).
                root: renewal.as_ref().map(|r| r.root.clone()).or(p.root).unwrap_or_else(|| id.clone()),
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
            renews: renewal.map(|r| r.jti),
            writ,
            shadow: verdict.filter(|v| v.outcome != real),
        };
        let mut answer = self.record(id, request_id, entry).await;
        // Counted once recorded, so that the counts match the log.
        if let (Some(s), Some(_)) = (shadow_outcome, answer.log_index) {
            self.shadow_counts.count(real, s);
        }
        // Only the recorded decision is explained, not a failure to record it.
        if answer.log_index.is_some() {
            answer.explanation = explanation;
        }
        answer
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
        // The credentials that vouch for the workload, each verified under its own role.
        for (kind, t) in request.presented_all() {
            let role = match kind {
                Presented::Operator => Role::Operator,
                Presented::Orchestrator => Role::Orchestrator,
                Presented::Machine => Role::Machine,
                Presented::Runtime => Role::Runtime,
                _ => continue,
            };
            let checked = match self.identity.verify(role, t, now) {
                Ok(c) => Checked::Ok(identity_fact(&c)),
                Err(e) => failed(&e),
            };
            delegation.insert(kind.name().to_owned(), checked);
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
            delegation.insert(Presented::Delegation.name().to_owned(), checked);
        }
        let parent_writ = request.parent_writ.as_deref().map(|token| self.possession(token, request.parent.as_deref()));
        Facts {
            identity,
            delegation,
            attestation,
            quarantined: false,
            parent: None,
            parent_writ,
            renewal: None,
            usage: Default::default(),
        }
    }

    /// Lineage by possession: the parent writ presented must verify (signature by a writ
    /// key, this control plane's issuer; not consumed) and be the parent the request names,
    /// if it names one. Its id, or why not: a writ that does not verify is recorded with the
    /// writ's own reason code (`writ.bad_signature`), which the decision turns into
    /// `lineage.parent_unknown` and an isolation rule may count as a forged writ presented.
    fn possession(&self, token: &str, named: Option<&str>) -> Checked<String> {
        match self.verifier.verify_possession(token) {
            Err(r) => Checked::Failed {
                reason: if r.reason.as_str().starts_with("writ.") {
                    r.reason
                } else {
                    ReasonCode::LineageParentUnknown
                },
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
            .map_err(|_| EngineError::Poisoned("anonymous budget"))?
            .take_summary(self.clock.now());
        match summary {
            Some(summary) => self.append(&summary).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Appends the entry; only once it is durable is an allow answered, with its writ.
    pub(super) async fn record(&self, id: String, request_id: Option<String>, entry: Entry) -> Decision {
        // A verification run that failed while this request was decided: not recorded either.
        if let Some((reason, detail)) = self.integrity_failure() {
            return Decision::unrecorded(id, request_id, reason, detail);
        }
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
        let (entry, appended) = match self.commit(entry, bytes).await {
            Ok(done) => done,
            Err(EngineError::Log(e)) => {
                return Decision::unrecorded(
                    id,
                    request_id,
                    ReasonCode::LogUnavailable,
                    format!("the decision could not be recorded: {e}"),
                );
            }
            Err(e) => {
                return Decision::unrecorded(
                    id,
                    request_id,
                    ReasonCode::Internal,
                    format!("recording the decision: {e}"),
                );
            }
        };
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
                Err(e) => {
                    let detail = format!("signing the writ: {}", e.detail());
                    return Decision::unrecorded(out.id, out.request_id, ReasonCode::Internal, detail);
                }
            }
        }
        out
    }

    /// Signs the writ of a durable entry: `w` as recorded, bound to the request, its `log`
    /// claim pointing at the entry.
    pub(super) fn sign_writ(&self, w: WritRecord, bound: Bound, entry: &Appended) -> Result<String, EngineError> {
        let signer = self.writ_signer().ok_or(EngineError::Poisoned("writ key"))?;
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
        signer.sign(&claims)
    }
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
