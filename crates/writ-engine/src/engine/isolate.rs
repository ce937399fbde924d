//! Automatic isolation in the live engine (issue 17): when an entry trips an isolation rule
//! of the active bundle ([`crate::isolation`]), the principal is quarantined by a
//! `quarantine` entry naming the rule and the entries that tripped it, and its outstanding
//! writs (with every outstanding writ below them, and its decisions waiting for an
//! approval) are revoked, each revocation naming that quarantine entry. Release stays an
//! operator's action, and a release does not undo a revocation.
//!
//! - **When**: right after the entry that tripped the rule is recorded, once the decision
//!   (or verification) has released its own locks: the isolation takes `operator_actions`
//!   like every quarantine change (lock order: `operator_actions` → `bundle_gate` →
//!   serial). The decision that tripped the rule keeps its own outcome; an allow's writ is
//!   revoked with the others.
//! - **Once**: a principal stays due until its quarantine entry is recorded, and one that is
//!   already isolated is never due, so concurrent trips, retries and restarts isolate once.
//! - **Interrupted**: an isolation due but not recorded (a stop, a log failure, the request
//!   that tripped it cut mid-way) is made on the next decision or by
//!   [`Engine::finish_isolations`] (`writ serve` calls it before it listens and every 5 s);
//!   so are the revocations of an automatic isolation whose principal still has
//!   outstanding writs. An isolation run counts as unfinished until it has ended well.
//! - **In flight**: the quarantine is recorded and the writs to revoke are listed under
//!   `bundle_gate` (write), so a decision of the principal decided before the quarantine is
//!   applied before the list is taken (its writ is revoked with the others).
//! - **Presentations**: `POST /v1/verify` records a refused writ (a `presentation` entry)
//!   only when a `presented` rule counts the refusal, the writ's signature verified (its
//!   `sub` is proven) and its principal is neither isolated nor due; a refusal as
//!   `writ.replayed` counts only for a writ this control plane really verified before (not
//!   one refused by the restart horizon or a stopping verifier). So an anonymous caller
//!   can add at most one entry per principal and isolation, never a stream of them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use sha2::{Digest as _, Sha256};
use writ_core::{ReasonCode, RequestDigest};
use writ_verify::{VerifiedWrit, WritRejection};

use super::Engine;
use super::revoke::Revoke;
use crate::EngineError;
use crate::record::Entry;

/// What one automatic isolation did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Isolated {
    /// The principal isolated.
    pub subject: String,
    /// The rule that tripped.
    pub rule: String,
    /// The log indices of the entries that tripped it.
    pub triggers: Vec<u64>,
    /// The log index of the quarantine entry.
    pub log_index: u64,
    /// Its outstanding writs (and decisions waiting for an approval) revoked.
    pub revoked: u64,
    /// Outstanding writs below those, revoked with them.
    pub descendants: u64,
}

impl Engine {
    /// Makes every isolation due (see the module docs), under `operator_actions`.
    pub(super) async fn isolate_due(&self) -> Result<Vec<Isolated>, EngineError> {
        let _one = self.operator_actions.lock().await;
        self.isolate_due_locked().await
    }

    async fn isolate_due_locked(&self) -> Result<Vec<Isolated>, EngineError> {
        // Until this run ends well, the isolations stay due and unfinished: a failure, or the
        // caller going away mid-way (the request that tripped the rule was cut), leaves
        // them to the next decision and to `finish_isolations`, never half made.
        let mut pending = Unfinished { engine: self, done: false };
        self.isolation_due.store(false, Ordering::SeqCst);
        let due = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?.isolation_due();
        let mut done = Vec::new();
        for (subject, due) in due {
            // No decision is between reading the state and being applied while the
            // quarantine is recorded and the writs to revoke are listed: each one in flight is
            // applied before (and its writ revoked with the others), each later one sees
            // the quarantine (lock order `operator_actions` → `bundle_gate`).
            let _gate = self.bundle_gate.write().await;
            let entry = Entry::Quarantine {
                time: self.clock.now(),
                subject: subject.clone(),
                isolated: true,
                operator: None,
                reason: due.reason.clone(),
                rule: Some(due.rule.clone()),
                triggers: due.triggers.clone(),
            };
            let log_index = self.append(&entry).await?;
            if let Ok(mut counts) = self.isolations.lock() {
                *counts.entry(due.rule.clone()).or_default() += 1;
            }
            tracing::warn!(%subject, rule = %due.rule, triggers = ?due.triggers, log_index, "isolated automatically");
            let (revoked, descendants) = self.revoke_isolated(&subject, &due.rule, log_index).await?;
            done.push(Isolated { subject, rule: due.rule, triggers: due.triggers, log_index, revoked, descendants });
        }
        pending.done = true;
        Ok(done)
    }

    /// Revokes the outstanding writs of `subject`, isolated by `rule` at log index
    /// `isolation`, and its decisions waiting for an approval, with every outstanding writ
    /// below them. Under `operator_actions` (the caller holds it).
    async fn revoke_isolated(&self, subject: &str, rule: &str, isolation: u64) -> Result<(u64, u64), EngineError> {
        let now = self.clock.now();
        let targets: Vec<Revoke> = {
            let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
            state
                .outstanding_of(subject, now, self.config.skew)
                .into_iter()
                .map(|jti| Revoke {
                    jti,
                    reason: format!("{subject} was isolated by rule {rule:?} (entry {isolation})"),
                    ancestor: None,
                })
                .collect()
        };
        let direct = u64::try_from(targets.len()).unwrap_or(u64::MAX);
        let all = self.with_descendants(targets, now, &|above| {
            format!("writ {above} above it was revoked by the isolation of {subject} (entry {isolation})")
        })?;
        let descendants = u64::try_from(all.len()).unwrap_or(u64::MAX).saturating_sub(direct);
        self.append_revocations(all, None, None, Some(isolation)).await?;
        Ok((direct, descendants))
    }

    /// Makes the isolations that are due, and finishes the revocations of automatic
    /// isolations a stop interrupted (an automatically isolated principal with outstanding
    /// writs). `writ serve` calls it before it listens and every 5 s.
    pub async fn finish_isolations(&self) -> Result<Vec<Isolated>, EngineError> {
        let _one = self.operator_actions.lock().await;
        let mut done = self.isolate_due_locked().await?;
        // The scan below reads every decision: only at open and after a failure.
        if !self.isolation_unfinished.swap(false, Ordering::SeqCst) {
            return Ok(done);
        }
        let now = self.clock.now();
        let unfinished: Vec<(String, String, u64)> = {
            let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
            state
                .quarantined_automatically()
                .into_iter()
                .filter(|(subject, _, _)| !state.outstanding_of(subject, now, self.config.skew).is_empty())
                .collect()
        };
        for (subject, rule, log_index) in unfinished {
            let (revoked, descendants) = match self.revoke_isolated(&subject, &rule, log_index).await {
                Ok(counts) => counts,
                Err(e) => {
                    self.isolation_unfinished.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            };
            tracing::warn!(%subject, %rule, revoked, descendants, "finished the revocations of an interrupted isolation");
            done.push(Isolated { subject, rule, triggers: Vec::new(), log_index, revoked, descendants });
        }
        Ok(done)
    }

    /// Isolations made automatically since the engine opened, by rule.
    pub fn isolations(&self) -> BTreeMap<String, u64> {
        self.isolations.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// After a decision: makes the isolations it (or any entry before it) made due. A
    /// failure is logged; the isolation stays due.
    pub(super) async fn after_recorded(&self) {
        if !self.isolation_due.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.isolate_due().await {
            tracing::error!(error = %e.detail(), "an automatic isolation is due but could not be recorded: retrying");
        }
    }

    /// `POST /v1/verify`: verifies as [`Engine::verify`] does; a refusal that a `presented`
    /// isolation rule counts is recorded (a `presentation` entry) and isolates the writ's
    /// principal (see the module docs). The answer is the verification's either way.
    pub async fn verify_presented(&self, token: &str, digest: &RequestDigest) -> Result<VerifiedWrit, WritRejection> {
        let refused = match self.verify(token, digest) {
            Ok(v) => return Ok(v),
            Err(r) => r,
        };
        if let Err(e) = self.count_presentation(token, &refused).await {
            tracing::error!(error = %e.detail(), "a refused writ that an isolation rule counts could not be recorded");
        }
        Err(refused)
    }

    async fn count_presentation(&self, token: &str, refused: &WritRejection) -> Result<(), EngineError> {
        // Proven: its signature verified, so its `sub` is the control plane's own word.
        let Ok(claims) = self.verifier.verify_possession(token) else { return Ok(()) };
        // A replay is one only if this control plane verified the writ before.
        if refused.reason == ReasonCode::WritReplayed && !self.verifier.was_used(&claims.jti) {
            return Ok(());
        }
        let counts = |s: &crate::state::State| s.counts_presentation(&claims.sub, refused.reason);
        if !counts(&*self.state.lock().map_err(|_| EngineError::Poisoned("state"))?) {
            return Ok(());
        }
        let _one = self.operator_actions.lock().await;
        // Checked again under the lock: one entry per principal until it is isolated.
        if !counts(&*self.state.lock().map_err(|_| EngineError::Poisoned("state"))?) {
            return Ok(());
        }
        let entry = Entry::Presentation {
            time: self.clock.now(),
            jti: claims.jti.clone(),
            subject: claims.sub.clone(),
            reason: refused.reason,
            detail: refused.detail.clone(),
            writ_digest: format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes()))),
        };
        self.append(&entry).await?;
        self.isolate_due_locked().await.map(|_| ())
    }
}

/// Marks the isolations due and unfinished when dropped before `done`: the next decision and
/// `finish_isolations` (every 5 s) then make and finish them.
struct Unfinished<'a> {
    engine: &'a Engine,
    done: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.engine.isolation_due.store(true, Ordering::SeqCst);
            self.engine.isolation_unfinished.store(true, Ordering::SeqCst);
        }
    }
}
