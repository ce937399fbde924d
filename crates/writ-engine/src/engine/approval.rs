//! Human approval (SPEC.md §2): the decisions that wait for one, an operator's answer
//! (checked and recorded under `operator_actions`, so that no revocation, quarantine or
//! activation slips between the checks and the record), and the approved writ handed to
//! the principal that asked.

use writ_log::Appended;

use super::pipeline::Bound;
use super::{Engine, MAX_OUTCOME_DETAIL};
use crate::record::{Entry, ParentFact, WritRecord};
use crate::state::{Approval, ApprovalStatus};
use crate::{EngineError, Missing};

impl Engine {
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
            return Err(EngineError::TooLong { field: "reason", max: MAX_OUTCOME_DETAIL });
        }
        // One operator action at a time: two answers to one decision, or an approval and a
        // revocation or quarantine, are checked and recorded in order.
        let _one = self.operator_actions.lock().await;
        // Nothing is approved while the node cannot vouch for its log, bundle or keys.
        if let Some((reason, detail)) = self.integrity_failure() {
            return Err(EngineError::IntegrityFailed { reason, detail });
        }
        let now = self.clock.now();
        let active_bundle = self.active.read().map_err(|_| EngineError::Poisoned("bundle"))?.clone();
        let active = active_bundle.as_ref().map(|a| a.bundle.digest().to_string());
        let writ =
            {
                let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
                let pending = state
                    .approval(id, now)
                    .ok_or_else(|| EngineError::NotFound(Missing::PendingApproval(id.to_owned())))?;
                match pending.status {
                    ApprovalStatus::Pending => {}
                    ApprovalStatus::Expired => {
                        return Err(EngineError::PastDeadline { id: id.to_owned(), deadline: pending.deadline });
                    }
                    ApprovalStatus::Approved | ApprovalStatus::Rejected => {
                        return Err(EngineError::ApprovalAlreadyAnswered { id: id.to_owned() });
                    }
                }
                if approve {
                    if pending.bundle != active {
                        return Err(EngineError::PolicyChanged { id: id.to_owned(), active });
                    }
                    if state.is_quarantined(&pending.subject) {
                        return Err(EngineError::Quarantined { subject: pending.subject });
                    }
                    if state.is_revoked(id) {
                        return Err(EngineError::Revoked { id: id.to_owned() });
                    }
                    if let Some(parent) = &pending.parent {
                        match state.parent(parent) {
                            ParentFact::Known { revoked: true, .. } => {
                                return Err(EngineError::ParentRevoked { parent: parent.clone() });
                            }
                            ParentFact::Known { exp, .. } if now >= exp => {
                                return Err(EngineError::ParentExpired { parent: parent.clone(), exp });
                            }
                            _ => {}
                        }
                    }
                }
                approve.then(|| WritRecord {
                    iat: now,
                    nbf: now,
                    // The bundle that decided is the active one: its cap on the action's writs holds.
                    exp: now.saturating_add(active_bundle.as_ref().map_or(self.config.writ_ttl, |a| {
                        a.bundle.writ_lifetime(&pending.action, self.config.writ_ttl)
                    })),
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
        self.approval(id).ok_or_else(|| EngineError::AnswerVanished { id: id.to_owned() })
    }

    /// The writ of an approved decision, for its own principal (refused once the writ is
    /// revoked or the principal quarantined): signed anew from the
    /// approval's record (Ed25519 signatures are deterministic, so with the same key it is
    /// the same token), its `log` claim pointing at the approval entry.
    pub fn approved_writ(&self, id: &str) -> Result<Option<String>, EngineError> {
        let Some(a) = self.approval(id) else {
            return Err(EngineError::NotFound(Missing::Approval(id.to_owned())));
        };
        let Some(resolution) = a.resolution.filter(|r| r.approved) else { return Ok(None) };
        {
            let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
            if state.is_revoked(id) {
                return Err(EngineError::Revoked { id: id.to_owned() });
            }
            if state.is_quarantined(&a.subject) {
                return Err(EngineError::Quarantined { subject: a.subject });
            }
        }
        let index = resolution.log_index;
        let bytes = self
            .log
            .entries(index, index.saturating_add(1))?
            .into_iter()
            .next()
            .ok_or(EngineError::ApprovalEntryMissing { index })?;
        let appended = Appended { index, leaf_hash: writ_log::Hash::leaf(&bytes) };
        let bound = Bound {
            action: a.action,
            resource: a.resource,
            digest: a.digest,
            bundle: a.bundle.unwrap_or_default(),
            parent: a.parent,
        };
        self.sign_writ(a.writ, bound, &appended).map(Some)
    }
}
