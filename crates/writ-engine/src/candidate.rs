//! What a candidate bundle would change (SPEC §1, `writ policy replay`): every recorded
//! decision of a log range is evaluated again, from the inputs its entry recorded, with the
//! candidate in place of the bundle that decided; every decision whose outcome or primary
//! reason would differ is reported. Nothing is enforced, signed or written: this reads the
//! store only.
//!
//! Each decision is taken in isolation, with the facts recorded when it was made (usage
//! counters, the parent's standing, quarantine, the time): a candidate that denies a call
//! the active bundle allowed does not, here, lower the usage counters of later calls or
//! deny their children. That is the question a reviewer asks of a policy change ("which of
//! yesterday's calls would this have decided otherwise?"); the consequences of those
//! changes on later calls are out of its scope.
//!
//! Decisions denied before policy (a bad credential, quarantine, lineage, a malformed
//! request) are re-evaluated like the rest, and the pipeline denies them at the same stage
//! whatever the bundle; decisions made with no active bundle are evaluated with the
//! candidate, which is what activating it would have done.

use std::collections::BTreeMap;

use serde::Serialize;
use writ_core::ReasonCode;
use writ_log::Store;
use writ_policy::CompiledBundle;

use crate::EngineError;
use crate::decide::decide;
use crate::record::{Checked, DecisionOutcome, Entry, Outcome};

/// Entries read per store call.
const PAGE: u64 = 1024;

/// One side of a change: what was decided, or what the candidate would decide.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Allow, deny or pending.
    pub outcome: Outcome,
    /// The primary reason of a deny.
    pub reason: Option<ReasonCode>,
    /// The determining policies.
    pub policies: Vec<String>,
    /// Human-readable detail.
    pub detail: String,
}

impl From<&DecisionOutcome> for Verdict {
    fn from(d: &DecisionOutcome) -> Verdict {
        Verdict {
            outcome: d.outcome,
            reason: d.reasons.first().copied(),
            policies: d.policies.clone(),
            detail: d.detail.clone(),
        }
    }
}

/// A recorded decision the candidate would decide otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Log index of the decision entry.
    pub index: u64,
    /// Decision id.
    pub id: String,
    /// Decision time (Unix seconds).
    pub time: u64,
    /// The principal (empty if its credential did not verify).
    pub subject: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The bundle that decided (`None`: no bundle was active).
    pub bundle: Option<String>,
    /// What was decided.
    pub recorded: Verdict,
    /// What the candidate would decide.
    pub candidate: Verdict,
}

/// What replaying a candidate over a range of the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CandidateReport {
    /// The candidate's digest.
    pub candidate: String,
    /// The first index read.
    pub from: u64,
    /// One past the last index read.
    pub to: u64,
    /// Entries read.
    pub entries: u64,
    /// Decision entries re-evaluated.
    pub decisions: u64,
    /// Those the candidate decides the same way (outcome and primary reason).
    pub unchanged: u64,
    /// Those it decides otherwise; every one is counted here.
    pub changed: u64,
    /// Changes by transition, e.g. `"allow -> deny"`, or `"deny (policy.denied) -> deny
    /// (policy.evaluation_error)"` when only the reason differs.
    pub transitions: BTreeMap<String, u64>,
    /// The changes, in log order; the first `limit` of them.
    pub changes: Vec<Change>,
    /// True if more changes were found than listed.
    pub truncated: bool,
}

fn label(outcome: Outcome, reason: Option<ReasonCode>, with_reason: bool) -> String {
    let o = match outcome {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
        Outcome::Pending => "pending",
    };
    match (with_reason, reason) {
        (true, Some(r)) => format!("{o} ({})", r.as_str()),
        _ => o.to_owned(),
    }
}

/// Replays `candidate` over the log entries `from..to` (`to` capped at the store's size),
/// listing at most `limit` changes (all are counted).
pub fn replay_candidate(
    store: &dyn Store,
    candidate: &CompiledBundle,
    from: u64,
    to: Option<u64>,
    limit: usize,
) -> Result<CandidateReport, EngineError> {
    let size = store.size()?;
    let to = to.map_or(size, |t| t.min(size));
    let mut report =
        CandidateReport { candidate: candidate.digest().to_string(), from, to, ..CandidateReport::default() };
    let mut start = from;
    while start < to {
        let end = (start + PAGE).min(to);
        for (index, bytes) in (start..).zip(store.entries(start, end)?) {
            report.entries += 1;
            // An entry that is not the engine's cannot be evaluated: that is corruption,
            // and `writ log replay` / `writ log verify` are the tools that report it.
            let entry: Entry = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Corrupt(format!("entry {index} is not an engine entry: {e}")))?;
            let Entry::Decision { id, time, request, facts, limits, bundle, decision, .. } = entry else {
                continue;
            };
            report.decisions += 1;
            // An unparsed request is denied as malformed by any bundle.
            let (Some(request), Some(facts)) = (request, facts) else {
                report.unchanged += 1;
                continue;
            };
            let again = decide(&request, &facts, &limits, time, Some(candidate)).outcome;
            let (before, after) = (decision.reasons.first().copied(), again.reasons.first().copied());
            if again.outcome == decision.outcome && before == after {
                report.unchanged += 1;
                continue;
            }
            report.changed += 1;
            let only_reason = again.outcome == decision.outcome;
            let transition = format!(
                "{} -> {}",
                label(decision.outcome, before, only_reason),
                label(again.outcome, after, only_reason)
            );
            *report.transitions.entry(transition).or_default() += 1;
            if report.changes.len() >= limit {
                report.truncated = true;
                continue;
            }
            let subject = match &facts.identity {
                Checked::Ok(i) => i.subject.clone(),
                Checked::Failed { .. } => String::new(),
            };
            report.changes.push(Change {
                index,
                id,
                time,
                subject,
                action: request.action,
                resource: request.resource,
                bundle,
                recorded: Verdict::from(&decision),
                candidate: Verdict::from(&again),
            });
        }
        start = end;
    }
    Ok(report)
}
