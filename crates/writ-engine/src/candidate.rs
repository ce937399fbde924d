//! What a candidate bundle would change (SPEC §1, `writ policy replay`): every recorded
//! decision of a log range is evaluated again, from the inputs its entry recorded, with the
//! candidate in place of the bundle that decided; every decision whose outcome or primary
//! reason would differ is reported. Nothing is enforced, signed or written: this reads the
//! store only, and the range is fixed when the replay starts.
//!
//! The baseline is what was decided, under whichever bundle was active at the time: on a
//! log that saw several bundles, a change can come from an older bundle as much as from the
//! candidate. The report therefore breaks every count down by the bundle that decided, and
//! a replay can be restricted to the decisions of one bundle (`decided_by`), typically the
//! active one, to answer "what would change if this replaced the active bundle".
//!
//! Each decision is taken in isolation, with the facts recorded when it was made (usage
//! counters, the parent's standing, quarantine, the time): a candidate that denies a call
//! the active bundle allowed does not, here, lower the usage counters of later calls or
//! deny their children. That is the question a reviewer asks of a policy change ("which of
//! yesterday's calls would this have decided otherwise?"); the consequences of those
//! changes on later calls are out of its scope.
//!
//! A decision that waited for a human approval is reported with what became of it
//! (approved, rejected, unanswered), read from the approval entries that follow it, even
//! beyond the range: `pending (approved) -> deny` is a call that ran and that the candidate
//! would refuse. Decisions denied before policy (a bad credential, quarantine, lineage) are
//! re-evaluated like the rest, and the pipeline denies them at the same stage whatever the
//! bundle; decisions made with no active bundle are evaluated with the candidate, which is
//! what activating it would have done. A request that could not be parsed is denied as
//! malformed by any bundle and is counted apart. An entry that is not the engine's, or a
//! decision entry the engine could not have written, fails the replay rather than being
//! skipped.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use serde::Serialize;
use writ_core::ReasonCode;
use writ_log::Store;
use writ_policy::CompiledBundle;

use crate::EngineError;
use crate::decide::decide;
use crate::record::{Checked, DecisionOutcome, Entry, Outcome};
use crate::replay::each_entry;

/// Past the latest approval deadline of a changed pending decision, this many more seconds
/// of log are read for its answer (an operator's answer is recorded before the deadline,
/// by a clock that may step a little).
const DEADLINE_SLACK: u64 = 300;

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

/// What became of a decision that waited for a human approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolved {
    /// An operator approved it: the call ran.
    Approved,
    /// An operator rejected it.
    Rejected,
    /// No answer in the log (it expired, or is still waiting).
    Unanswered,
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
    /// For a pending decision, what became of it.
    pub resolution: Option<Resolved>,
    /// What the candidate would decide.
    pub candidate: Verdict,
}

/// Counts for the decisions of one bundle (or of none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BundleCounts {
    /// Decisions re-evaluated.
    pub decisions: u64,
    /// Those the candidate decides otherwise.
    pub changed: u64,
}

/// What replaying a candidate over a range of the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CandidateReport {
    /// The candidate's digest.
    pub candidate: String,
    /// The candidate's manifest name.
    pub name: String,
    /// The candidate's manifest version.
    pub version: String,
    /// Only decisions of this bundle were replayed, if set.
    pub decided_by: Option<String>,
    /// The first index read.
    pub from: u64,
    /// One past the last index of the range.
    pub to: u64,
    /// Entries of the range read.
    pub entries: u64,
    /// Decision entries in the range (of `decided_by`, if set):
    /// `unparsed + unchanged + changed`.
    pub decisions: u64,
    /// Requests that could not be parsed: denied as malformed by any bundle, not
    /// re-evaluated.
    pub unparsed: u64,
    /// Decisions the candidate decides the same way (outcome and primary reason).
    pub unchanged: u64,
    /// Of the unchanged, those decided by other policies (the decision stands, the
    /// policies that determine it do not).
    pub policies_changed: u64,
    /// Decisions the candidate decides otherwise; every one is counted here.
    pub changed: u64,
    /// Changes by transition, e.g. `"allow -> deny"`, `"pending (approved) -> deny"`, or
    /// `"deny (policy.denied) -> deny (policy.evaluation_error)"` when only the reason
    /// differs.
    pub transitions: BTreeMap<String, u64>,
    /// Re-evaluated decisions and changes by the bundle that decided (`"none"`: no bundle
    /// was active).
    pub by_bundle: BTreeMap<String, BundleCounts>,
    /// The changes, in log order; the first `limit` of them.
    pub changes: Vec<Change>,
    /// True if more changes were found than listed.
    pub truncated: bool,
}

/// What to replay.
#[derive(Clone, Debug, Default)]
pub struct CandidateRange {
    /// First log index.
    pub from: u64,
    /// One past the last log index (`None`: the log's size when the replay starts).
    pub to: Option<u64>,
    /// Only the decisions this bundle (digest) made.
    pub decided_by: Option<String>,
    /// Most changes listed.
    pub limit: usize,
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

/// A changed pending decision, waiting for its answer to be labelled.
struct Waiting {
    deadline: u64,
    // Index into `changes`, if listed.
    listed: Option<usize>,
    candidate: String,
    resolution: Resolved,
}

fn parse(index: u64, bytes: &[u8]) -> Result<Entry, EngineError> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::UnreadableEntry { index, source: crate::Cause::new(e) })
}

/// Replays `candidate` over the log range of `range`, listing at most `range.limit`
/// changes (all are counted).
pub fn replay_candidate(
    store: &dyn Store,
    candidate: &CompiledBundle,
    range: &CandidateRange,
) -> Result<CandidateReport, EngineError> {
    let size = store.size()?;
    let from = range.from;
    if from > size {
        return Err(EngineError::FromPastEnd { from, size });
    }
    let to = match range.to {
        Some(t) if t < from => return Err(EngineError::ToBeforeFrom { from, to: t }),
        Some(t) => t.min(size),
        None => size,
    };
    let mut report = CandidateReport {
        candidate: candidate.digest().to_string(),
        name: candidate.name().to_owned(),
        version: candidate.version().to_owned(),
        decided_by: range.decided_by.clone(),
        from,
        to,
        ..CandidateReport::default()
    };
    let mut waiting: HashMap<String, Waiting> = HashMap::new();
    each_entry(store, from, to, |index, bytes| {
        report.entries += 1;
        match parse(index, &bytes)? {
            Entry::Decision { id, time, request, facts, limits, bundle, decision, writ, .. } => {
                if range.decided_by.is_some() && bundle != range.decided_by {
                    return Ok(ControlFlow::Continue(()));
                }
                report.decisions += 1;
                let (request, facts) = match (request, facts) {
                    (Some(r), Some(f)) => (r, f),
                    (None, None)
                        if decision.outcome == Outcome::Deny
                            && decision.reasons.first() == Some(&ReasonCode::RequestMalformed) =>
                    {
                        report.unparsed += 1;
                        return Ok(ControlFlow::Continue(()));
                    }
                    _ => {
                        return Err(EngineError::ImpossibleDecision { index });
                    }
                };
                let counts = report.by_bundle.entry(bundle.clone().unwrap_or_else(|| "none".into())).or_default();
                counts.decisions += 1;
                let again = decide(&request, &facts, &limits, time, Some(candidate)).outcome;
                let (before, after) = (decision.reasons.first().copied(), again.reasons.first().copied());
                if again.outcome == decision.outcome && before == after {
                    report.unchanged += 1;
                    if again.policies != decision.policies {
                        report.policies_changed += 1;
                    }
                    return Ok(ControlFlow::Continue(()));
                }
                counts.changed += 1;
                report.changed += 1;
                let only_reason = again.outcome == decision.outcome;
                let recorded = label(decision.outcome, before, only_reason);
                let proposed = label(again.outcome, after, only_reason);
                let listed = report.changes.len() < range.limit;
                if !listed {
                    report.truncated = true;
                }
                if decision.outcome == Outcome::Pending {
                    // Labelled once its answer is known.
                    waiting.insert(
                        id.clone(),
                        Waiting {
                            deadline: writ.as_ref().map_or(time, |w| w.exp),
                            listed: listed.then_some(report.changes.len()),
                            candidate: proposed,
                            resolution: Resolved::Unanswered,
                        },
                    );
                } else {
                    *report.transitions.entry(format!("{recorded} -> {proposed}")).or_default() += 1;
                }
                if listed {
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
                        resolution: (decision.outcome == Outcome::Pending).then_some(Resolved::Unanswered),
                        candidate: Verdict::from(&again),
                    });
                }
            }
            Entry::Approval { id, approved, .. } => answer(&mut waiting, &id, approved),
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if let Some(d) = &range.decided_by
        && report.decisions == 0
    {
        return Err(EngineError::NotDecidedBy { bundle: d.clone(), from, to });
    }
    // The answers to changed pending decisions may lie beyond the range: read on until the
    // latest deadline has passed.
    let latest = waiting.values().filter(|w| w.resolution == Resolved::Unanswered).map(|w| w.deadline).max();
    if let Some(deadline) = latest {
        each_entry(store, to, size, |index, bytes| {
            match parse(index, &bytes)? {
                Entry::Approval { id, approved, .. } => answer(&mut waiting, &id, approved),
                Entry::Decision { time, .. } if time > deadline.saturating_add(DEADLINE_SLACK) => {
                    return Ok(ControlFlow::Break(()));
                }
                _ => {}
            }
            Ok(ControlFlow::Continue(()))
        })?;
    }
    for w in waiting.into_values() {
        let how = match w.resolution {
            Resolved::Approved => "approved",
            Resolved::Rejected => "rejected",
            Resolved::Unanswered => "unanswered",
        };
        *report.transitions.entry(format!("pending ({how}) -> {}", w.candidate)).or_default() += 1;
        if let Some(c) = w.listed.and_then(|i| report.changes.get_mut(i)) {
            c.resolution = Some(w.resolution);
        }
    }
    Ok(report)
}

fn answer(waiting: &mut HashMap<String, Waiting>, id: &str, approved: bool) {
    if let Some(w) = waiting.get_mut(id).filter(|w| w.resolution == Resolved::Unanswered) {
        w.resolution = if approved { Resolved::Approved } else { Resolved::Rejected };
    }
}
