//! The shadow bundle: a second bundle, set by an operator, evaluated beside the active one
//! on every decision and never enforced. What it owns:
//!
//! - **The setting**: [`Engine::set_shadow`] and [`Engine::clear_shadow`], each a `shadow`
//!   log entry (who, why, which bundle) appended under `operator_actions` and the bundle
//!   gate, exactly as an activation is, so that every decision recorded after the entry
//!   was evaluated beside the new shadow and every one before it beside the old. Rebuilt
//!   from the log when the engine opens ([`Engine::open`]), as the active bundle is. Only a
//!   bundle the log holds (accepted on upload or activation) whose signature verifies
//!   against the policy keys trusted now can be the shadow, and never the active bundle.
//! - **The evaluation**: [`evaluate`] runs [`decide`] (the code `writ log replay` and
//!   `writ policy replay` run) on exactly the inputs of the real decision (request, stage
//!   facts, limits, time), with the shadow in place of the active bundle, once the real
//!   decision is fixed. A panic in it is the shadow's verdict `deny` with
//!   `policy.evaluation_error`, never the real call's: nothing the shadow does reaches the
//!   real outcome, the writ, the lineage or the revocation feed.
//! - **The record**: a decision whose shadow verdict has another outcome (allow, deny,
//!   pending) than the real one carries `shadow: {bundle, outcome, reasons}` in its own
//!   decision entry (one append: the disagreement is in the log exactly when the decision
//!   is); agreeing decisions carry nothing. The counts since the engine opened (decisions
//!   evaluated, disagreements by pair of outcomes) are kept for `/metrics` and
//!   `GET /v1/policy/shadow`; only recorded decisions are counted, so the counts match the
//!   log.
//! - **Promotion**: [`Engine::promote_shadow`] is an activation of the shadow bundle (the
//!   activation's code: its checks, its entry, the re-evaluation of the outstanding writs),
//!   after which the shadow is cleared by a `shadow` entry appended beside the activation's.
//!   Any activation of the shadow's bundle clears the shadow the same way: the active
//!   bundle is never also the shadow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use writ_core::ReasonCode;
use writ_policy::{CompiledBundle, verify_bundle_signature};

use super::{Activated, Engine, bundle_from_parts};
use crate::decide::decide;
use crate::record::{Entry, Facts, Outcome, RecordedLimits, RecordedRequest, ShadowVerdict};
use crate::state::ShadowSetting;
use crate::{EngineError, Missing};

/// The compiled shadow bundle.
pub(super) struct Shadow {
    pub(super) bundle: CompiledBundle,
}

/// Where the shadow stands: the bundle set (if any), and the counts since the engine opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShadowStatus {
    /// The shadow bundle, `None` when none is set.
    pub bundle: Option<ShadowSetting>,
    /// Decisions evaluated under the shadow and recorded, since the engine opened.
    pub evaluated: u64,
    /// Those whose shadow outcome differed from the real one.
    pub disagreements: u64,
}

/// What a promotion did: the activation of the shadow bundle, and the entry that cleared it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promoted {
    /// The activation (and its re-evaluation).
    pub activated: Activated,
    /// The log index of the `shadow` entry that cleared the shadow.
    pub cleared: u64,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Allow, Outcome::Deny, Outcome::Pending];

fn slot(o: Outcome) -> usize {
    match o {
        Outcome::Allow => 0,
        Outcome::Deny => 1,
        Outcome::Pending => 2,
    }
}

/// The counts since the engine opened.
#[derive(Debug, Default)]
pub(super) struct ShadowCounts {
    evaluated: AtomicU64,
    // By (real outcome, shadow outcome), each `slot` of `OUTCOMES`.
    disagreements: [[AtomicU64; 3]; 3],
}

impl ShadowCounts {
    /// Counts one recorded decision evaluated under the shadow, and its disagreement.
    pub(super) fn count(&self, real: Outcome, shadow: Outcome) {
        self.evaluated.fetch_add(1, Ordering::Relaxed);
        if real != shadow
            && let Some(c) = self.disagreements.get(slot(real)).and_then(|r| r.get(slot(shadow)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The shadow's verdict on a decision: [`decide`] with `bundle` on the recorded inputs. A
/// panic is the verdict `deny` with `policy.evaluation_error`. Deterministic (as `decide`
/// is), so that replay reproduces it.
pub(crate) fn evaluate(
    bundle: &CompiledBundle,
    request: &RecordedRequest,
    facts: &Facts,
    limits: &RecordedLimits,
    time: u64,
) -> ShadowVerdict {
    let digest = bundle.digest().to_string();
    let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fault_point(bundle.version());
        decide(request, facts, limits, time, Some(bundle)).outcome
    }));
    match decided {
        Ok(d) => ShadowVerdict { bundle: digest, outcome: d.outcome, reasons: d.reasons },
        Err(_) => {
            ShadowVerdict { bundle: digest, outcome: Outcome::Deny, reasons: vec![ReasonCode::PolicyEvaluationError] }
        }
    }
}

impl Engine {
    /// The compiled shadow bundle, if one is set.
    pub(super) fn shadow_bundle(&self) -> Option<Arc<Shadow>> {
        self.shadow.read().ok().and_then(|s| s.clone())
    }

    /// Sets the shadow bundle: one the log holds (uploaded, or active before) whose
    /// signature verifies against the policy keys trusted now, and not the active bundle.
    /// Recorded in the log before it takes effect.
    pub async fn set_shadow(
        &self,
        digest: &str,
        operator: Option<&str>,
        reason: &str,
    ) -> Result<ShadowSetting, EngineError> {
        let _one = self.operator_actions.lock().await;
        let known = {
            let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
            state.bundle(digest).map(|b| (b.parts.clone(), b.signature.clone()))
        };
        let Some((parts, signature)) = known else {
            return Err(EngineError::NotFound(Missing::Bundle(digest.to_owned())));
        };
        // The active bundle changes only under `operator_actions`, which this holds.
        if self.active_bundle().is_some_and(|(_, _, d)| d.to_string() == digest) {
            return Err(EngineError::ShadowIsActive { digest: digest.to_owned() });
        }
        let bundle = bundle_from_parts(&parts)?;
        verify_bundle_signature(&bundle, &signature, &self.policy_keys)?;
        let compiled = bundle.compile()?;
        let entry = Entry::Shadow {
            time: self.clock.now(),
            bundle: Some(digest.to_owned()),
            operator: operator.map(str::to_owned),
            reason: reason.to_owned(),
        };
        {
            // No decision is between reading the old shadow and recording what it found.
            let _gate = self.bundle_gate.write().await;
            self.append(&entry).await?;
            *self.shadow.write().map_err(|_| EngineError::Poisoned("shadow"))? =
                Some(Arc::new(Shadow { bundle: compiled }));
        }
        self.state
            .lock()
            .map_err(|_| EngineError::Poisoned("state"))?
            .shadow()
            .cloned()
            .ok_or(EngineError::Poisoned("shadow"))
    }

    /// Clears the shadow bundle (recorded in the log); the entry's index.
    pub async fn clear_shadow(&self, operator: Option<&str>, reason: &str) -> Result<u64, EngineError> {
        let _one = self.operator_actions.lock().await;
        let _gate = self.bundle_gate.write().await;
        self.clear_shadow_locked(operator, reason).await
    }

    /// Clears the shadow; the caller holds `operator_actions` and the bundle gate (write).
    pub(super) async fn clear_shadow_locked(&self, operator: Option<&str>, reason: &str) -> Result<u64, EngineError> {
        if self.state.lock().map_err(|_| EngineError::Poisoned("state"))?.shadow().is_none() {
            return Err(EngineError::NotFound(Missing::Shadow));
        }
        let entry = Entry::Shadow {
            time: self.clock.now(),
            bundle: None,
            operator: operator.map(str::to_owned),
            reason: reason.to_owned(),
        };
        let index = self.append(&entry).await?;
        *self.shadow.write().map_err(|_| EngineError::Poisoned("shadow"))? = None;
        Ok(index)
    }

    /// Promotes the shadow bundle: an activation of it (checked, recorded and followed by
    /// the re-evaluation of the outstanding writs, as every activation is), then the shadow
    /// is cleared. A refused activation (its signature no longer trusted) leaves the shadow.
    pub async fn promote_shadow(&self, operator: Option<&str>, reason: &str) -> Result<Promoted, EngineError> {
        let _one = self.operator_actions.lock().await;
        let known = {
            let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
            let Some(setting) = state.shadow() else {
                return Err(EngineError::NotFound(Missing::Shadow));
            };
            state.bundle(&setting.digest).map(|b| (b.parts.clone(), b.signature.clone()))
        };
        let Some((parts, signature)) = known else {
            return Err(EngineError::Poisoned("shadow"));
        };
        let bundle = bundle_from_parts(&parts)?;
        let (activated, cleared) = self.activate_locked(&bundle, &signature, operator, reason).await?;
        let cleared = cleared.ok_or(EngineError::Poisoned("shadow"))?;
        Ok(Promoted { activated, cleared })
    }

    /// The shadow bundle and the counts since the engine opened.
    pub fn shadow(&self) -> ShadowStatus {
        let bundle = self.state.lock().ok().and_then(|s| s.shadow().cloned());
        let c = &self.shadow_counts;
        let disagreements = c.disagreements.iter().flatten().map(|n| n.load(Ordering::Relaxed)).sum();
        ShadowStatus { bundle, evaluated: c.evaluated.load(Ordering::Relaxed), disagreements }
    }

    /// Disagreements since the engine opened, by (real outcome, shadow outcome): the six
    /// pairs of different outcomes, zero counts included.
    pub fn shadow_disagreements(&self) -> Vec<(Outcome, Outcome, u64)> {
        let c = &self.shadow_counts;
        let mut out = Vec::with_capacity(6);
        for real in OUTCOMES {
            for shadow in OUTCOMES {
                if real == shadow {
                    continue;
                }
                let n = c.disagreements.get(slot(real)).and_then(|r| r.get(slot(shadow)));
                out.push((real, shadow, n.map_or(0, |n| n.load(Ordering::Relaxed))));
            }
        }
        out
    }
}

/// A failing shadow, for the tests: the fail point `writ-engine::shadow` (set to `panic`)
/// makes the evaluation of a shadow bundle whose version ends in `+failpoint` panic (so
/// that tests running beside it are not touched).
fn fault_point(version: &str) {
    // Read here too: without the feature the macro below is empty.
    let _ = version;
    fail::fail_point!("writ-engine::shadow", version.ends_with("+failpoint"), |_| {});
}
