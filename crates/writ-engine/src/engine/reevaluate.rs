//! Re-evaluation on activation: when a bundle becomes active (an activation or a rollback),
//! every writ still outstanding (allowed, inside its window, not revoked, nothing above it
//! revoked) is decided again from the inputs its decision entry recorded, with the new
//! bundle in place of the one that decided it, and revoked if the new bundle would deny it.
//!
//! - **What counts as "would now deny"**: the new bundle denies the recorded request; or it
//!   requires an operator's approval (pending) for a writ that was allowed outright, which
//!   no operator ever approved. A writ an operator approved stays when the new bundle also
//!   asks for an approval.
//! - **From the recorded inputs**: the request, the stage facts (identity, attestation,
//!   quarantine, the parent's standing, usage counters) and the time of the original
//!   decision, as `writ policy replay` does ([`crate::candidate`]); a time rule is judged at
//!   the hour the writ was issued, not at the hour of the activation.
//! - **Descendants**: every outstanding writ below a revoked one is revoked with it, its
//!   entry naming the `ancestor`. (A revoked writ already stops its descendants at every
//!   verifier; the entries make each revocation visible in the log and the feed on its own.)
//! - **Recorded**: each revocation is a `revocation` entry naming the new bundle's digest
//!   and the reason, then one `reevaluation` entry with the counts. A writ whose decision
//!   entry cannot be read back or re-evaluated is revoked: its standing cannot be
//!   established. Revocations are never undone: a rollback re-evaluates and can only
//!   revoke more.
//! - **Atomic with the activation**: decisions hold the bundle gate (read) from reading the
//!   active bundle until their entry is appended, and an activation takes it (write) to
//!   append its entry and swap the bundle, so every decision made under the old bundle is in
//!   the log before the outstanding writs are listed, and every later one used the new
//!   bundle.
//! - **Interrupted**: an activation with no `reevaluation` entry after it (a crash in
//!   between) is re-evaluated again when the engine is next asked
//!   ([`Engine::finish_reevaluation`], which `writ serve` calls before it listens);
//!   revocations already recorded are not repeated.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use writ_log::Log;
use writ_policy::CompiledBundle;

use super::revoke::Revoke;
use super::{Active, Engine};
use crate::decide::decide;
use crate::record::{Entry, Outcome};
use crate::{Cause, EngineError};

/// Entries read from the store at once while re-evaluating.
const READ_PAGE: u64 = 1000;

/// What the re-evaluation that followed an activation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reevaluation {
    /// The activated bundle's digest.
    pub bundle: String,
    /// The log index of its activation entry.
    pub activation: u64,
    /// Outstanding writs evaluated again.
    pub reevaluated: u64,
    /// Those revoked because the bundle would now deny them.
    pub revoked: u64,
    /// Outstanding writs below those, revoked with them.
    pub descendants: u64,
    /// The log index of the `reevaluation` entry.
    pub log_index: u64,
}

impl Engine {
    /// Re-evaluates the outstanding writs under the bundle activated at log index
    /// `activation`. Runs under `operator_actions` (the caller holds it).
    pub(super) async fn reevaluate(
        &self,
        activation: u64,
        active: Arc<Active>,
        operator: Option<&str>,
    ) -> Result<Reevaluation, EngineError> {
        let now = self.clock.now();
        let outstanding =
            self.state.lock().map_err(|_| EngineError::Poisoned("state"))?.outstanding(now, self.config.skew);
        let reevaluated = u64::try_from(outstanding.len()).unwrap_or(u64::MAX);
        let log = self.log.clone();
        let judged = active.clone();
        let denied = tokio::task::spawn_blocking(move || judge(&log, &judged.bundle, &outstanding))
            .await
            .map_err(|e| EngineError::Reevaluation(Cause::text(format!("the re-evaluation task failed: {e}"))))??;
        let revoked = u64::try_from(denied.len()).unwrap_or(u64::MAX);
        // Every outstanding writ below a denied one goes with it (once, under the nearest).
        let all = self.with_descendants(denied, now, &|above| {
            format!("writ {above} above it was revoked by this re-evaluation")
        })?;
        let descendant_count = u64::try_from(all.len()).unwrap_or(u64::MAX).saturating_sub(revoked);
        interruption_point(active.bundle.version())?;
        let digest = active.bundle.digest().to_string();
        self.append_revocations(all, operator, Some(&digest), None).await?;
        let log_index = self
            .append(&Entry::Reevaluation {
                time: self.clock.now(),
                bundle: digest.clone(),
                activation,
                reevaluated,
                revoked,
                descendants: descendant_count,
                operator: operator.map(str::to_owned),
            })
            .await?;
        tracing::info!(bundle = %digest, reevaluated, revoked, descendants = descendant_count, "re-evaluated the outstanding writs");
        Ok(Reevaluation { bundle: digest, activation, reevaluated, revoked, descendants: descendant_count, log_index })
    }

    /// Finishes the re-evaluation of the active bundle's activation if it was interrupted
    /// (no `reevaluation` entry after it); `None` when there was nothing to finish.
    pub async fn finish_reevaluation(&self) -> Result<Option<Reevaluation>, EngineError> {
        let _one = self.operator_actions.lock().await;
        let due = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?.reevaluation_due();
        let Some((activation, digest, operator)) = due else {
            return Ok(None);
        };
        let active = self.active.read().map_err(|_| EngineError::Poisoned("bundle"))?.clone();
        match active {
            Some(a) if a.bundle.digest().to_string() == digest => {
                self.reevaluate(activation, a, operator.as_deref()).await.map(Some)
            }
            // The state and the active bundle come from the same log: they cannot disagree.
            _ => Err(EngineError::Reevaluation(Cause::text(format!(
                "the activation at {activation} of {digest} is not the active bundle"
            )))),
        }
    }
}

/// Decides each outstanding writ again (`outstanding`: id and decision index, by index)
/// under `bundle`; returns those to revoke, with the reason.
fn judge(log: &Log, bundle: &CompiledBundle, outstanding: &[(String, u64)]) -> Result<Vec<Revoke>, EngineError> {
    let by_index: BTreeMap<u64, &str> = outstanding.iter().map(|(id, i)| (*i, id.as_str())).collect();
    let name = format!("{} {} ({})", bundle.name(), bundle.version(), bundle.digest());
    let mut out = Vec::new();
    let mut indices = by_index.keys().copied().peekable();
    while let Some(start) = indices.next() {
        // One read covers every wanted index within a page of `start`.
        let mut end = start + 1;
        while let Some(&next) = indices.peek() {
            if next >= start + READ_PAGE {
                break;
            }
            end = next + 1;
            indices.next();
        }
        let entries = log.entries(start, end)?;
        for (offset, bytes) in (start..end).zip(entries) {
            let Some(&id) = by_index.get(&offset) else { continue };
            if let Some(reason) = judge_one(bundle, &name, id, &bytes) {
                out.push(Revoke { jti: id.to_owned(), reason, ancestor: None });
            }
        }
    }
    Ok(out)
}

/// The reason to revoke writ `id`, whose decision entry is `bytes`, under `bundle`; `None`
/// to keep it.
fn judge_one(bundle: &CompiledBundle, name: &str, id: &str, bytes: &[u8]) -> Option<String> {
    let unreadable =
        |why: &str| Some(format!("re-evaluation under {name}: its decision {why}; its standing cannot be established"));
    let entry: Entry = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(_) => return unreadable("entry cannot be read"),
    };
    let Entry::Decision { id: recorded_id, time, request: Some(request), facts: Some(facts), limits, decision, .. } =
        entry
    else {
        return unreadable("entry is not a decision with its recorded inputs");
    };
    if recorded_id != id {
        return unreadable("entry names another decision");
    }
    let again = decide(&request, &facts, &limits, time, Some(bundle)).outcome;
    match (again.outcome, decision.outcome) {
        (Outcome::Deny, _) => {
            let code = again.reasons.first().map_or_else(|| "policy.denied".to_owned(), ToString::to_string);
            Some(format!("re-evaluation under {name}: denied now: {code}: {}", again.detail))
        }
        (Outcome::Pending, Outcome::Allow) => Some(format!(
            "re-evaluation under {name}: requires an operator's approval now, which this writ never had: {}",
            again.detail
        )),
        _ => None,
    }
}

/// A stop between the activation and its revocations, for the tests: the fail point
/// `writ-engine::reevaluate` set to `return` interrupts the re-evaluation of a bundle
/// whose version ends in `+failpoint` (so that tests running beside it are not touched).
fn interruption_point(version: &str) -> Result<(), EngineError> {
    // Read here too: without the feature the macro below is empty.
    let _ = version;
    fail::fail_point!("writ-engine::reevaluate", version.ends_with("+failpoint"), |_| {
        Err(EngineError::Reevaluation(Cause::text("interrupted at the fail point")))
    });
    Ok(())
}
