//! `writ log replay`: re-evaluates every recorded decision from its recorded inputs, with
//! the bundle that was active (rebuilt from its activation entry in the same log), and
//! reports every decision that does not reproduce. On an untampered log it finds none.
//! A decision reproduces when its outcome, reason codes and deciding policies do; its
//! `detail` is human text (a deny's explanation) whose wording may change between versions.
//! Approval entries are checked against the pending decisions they answer: once each,
//! before the deadline, issuing exactly the writ the decision placed. Every decision made
//! while a shadow bundle was set (by the `shadow` entries before it) is evaluated under the
//! shadow again: a recorded shadow verdict must reproduce exactly and differ from the
//! decision, and a decision without one must agree with the shadow. Every automatic
//! isolation is derived again from the entries before it and the isolation rules of the
//! bundle active then ([`crate::isolation`]): its rule and its triggers must be exactly
//! those. A writ outlives neither its decision's time nor the cap the recorded bundle sets
//! on its action (`max_lifetime_seconds`).

use std::collections::HashMap;
use std::ops::ControlFlow;

use serde::Serialize;
use writ_log::Store;
use writ_policy::CompiledBundle;

use crate::EngineError;
use crate::decide::decide;
use crate::engine::{bundle_from_parts, evaluate_shadow};
use crate::isolation::Tracker;
use crate::record::{
    BundleCheck, BundleParts, Checked, Entry, Facts, Outcome, RecordedLimits, RecordedRequest, ShadowVerdict,
    WritRecord,
};

/// A decision that did not reproduce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// Log index of the entry.
    pub index: u64,
    /// What differs.
    pub detail: String,
}

/// The result of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Entries read.
    pub entries: u64,
    /// Decisions re-evaluated.
    pub decisions: u64,
    /// Decisions that reproduced.
    pub reproduced: u64,
    /// Approval entries checked against the pending decisions they answer.
    pub approvals: u64,
    /// Shadow verdicts recorded on decisions (disagreements with the shadow bundle) that
    /// reproduced.
    pub shadow_verdicts: u64,
    /// Automatic isolations derived again from the log and the rules active then.
    pub isolations: u64,
    /// Those that did not.
    pub mismatches: Vec<Mismatch>,
}

/// Calls `f` with each stored entry of `from..to`, in order (read a page at a time by
/// [`writ_log::Entries`]), until it breaks or the range ends.
pub(crate) fn each_entry(
    store: &dyn Store,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, Vec<u8>) -> Result<ControlFlow<()>, EngineError>,
) -> Result<(), EngineError> {
    for item in writ_log::Entries::new(store, from, to) {
        let (index, bytes) = item?;
        if f(index, bytes)?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// Replays every entry of a log store. Reads the store directly, so that it also runs
/// on a store whose Merkle tree no longer matches its checkpoints (`writ log verify`
/// reports that; replay reports which decisions no longer reproduce).
pub fn replay(store: &dyn Store) -> Result<ReplayReport, EngineError> {
    let size = store.size()?;
    let mut report = ReplayReport::default();
    let mut bundles: HashMap<String, CompiledBundle> = HashMap::new();
    // Pending decisions not yet answered, by id: the writ an approval may issue.
    let mut pending: HashMap<String, (WritRecord, Option<String>, Option<u64>)> = HashMap::new();
    // The digest of the active bundle at each point of the log.
    let mut active: Option<String> = None;
    // Every accepted bundle's parts (uploads and activations), for the shadow entries.
    let mut known: HashMap<String, BundleParts> = HashMap::new();
    // The shadow bundle at each point of the log.
    let mut shadow: Option<CompiledBundle> = None;
    // The isolation rules' counting, as the engine did it live.
    let mut tracker = Tracker::default();
    each_entry(store, 0, size, |index, bytes| {
        report.entries += 1;
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                report.mismatches.push(Mismatch { index, detail: format!("not an engine entry: {e}") });
                return Ok(ControlFlow::Continue(()));
            }
        };
        if let Entry::Quarantine { subject, isolated: true, rule: Some(rule), triggers, .. } = &entry {
            report.isolations += 1;
            if let Some(problem) = check_isolation(&tracker, subject, rule, triggers) {
                report.mismatches.push(Mismatch { index, detail: problem });
            }
        }
        tracker.observe(&entry, index);
        match entry {
            Entry::Activation { check: BundleCheck { accepted: true, digest, .. }, parts } => {
                match bundle_from_parts(&parts).and_then(|b| {
                    if b.digest().to_string() != digest {
                        return Err(EngineError::PartsMismatch { index });
                    }
                    Ok(b.compile()?)
                }) {
                    Ok(c) => {
                        active = Some(digest.clone());
                        known.insert(digest.clone(), parts);
                        bundles.insert(digest, c);
                    }
                    Err(e) => report.mismatches.push(Mismatch { index, detail: format!("activation: {}", e.detail()) }),
                }
            }
            Entry::Upload { check: BundleCheck { accepted: true, digest, .. }, parts: Some(parts) } => {
                known.insert(digest, parts);
            }
            Entry::Shadow { bundle: None, .. } => shadow = None,
            Entry::Shadow { bundle: Some(digest), .. } => {
                shadow = None;
                match known.get(&digest).map(|p| {
                    bundle_from_parts(p).and_then(|b| {
                        if b.digest().to_string() != digest {
                            return Err(EngineError::PartsMismatch { index });
                        }
                        Ok(b.compile()?)
                    })
                }) {
                    Some(Ok(c)) => shadow = Some(c),
                    Some(Err(e)) => {
                        report.mismatches.push(Mismatch { index, detail: format!("shadow: {}", e.detail()) })
                    }
                    None => report.mismatches.push(Mismatch {
                        index,
                        detail: format!("shadow: bundle {digest} was never uploaded or activated"),
                    }),
                }
            }
            Entry::Decision {
                id,
                time,
                request: Some(request),
                facts: Some(facts),
                limits,
                bundle,
                decision,
                writ,
                shadow: recorded_shadow,
                ..
            } => {
                report.decisions += 1;
                if request.withheld.is_some() && matches!(facts.identity, Checked::Ok(_)) {
                    // Only an anonymous request's arguments are withheld from the log.
                    report.mismatches.push(Mismatch {
                        index,
                        detail: "arguments withheld from a request with a verified identity".into(),
                    });
                    return Ok(ControlFlow::Continue(()));
                }
                let compiled = match &bundle {
                    Some(d) => match bundles.get(d) {
                        Some(c) => Some(c),
                        None => {
                            report
                                .mismatches
                                .push(Mismatch { index, detail: format!("bundle {d} was never activated") });
                            return Ok(ControlFlow::Continue(()));
                        }
                    },
                    None => None,
                };
                let again = decide(&request, &facts, &limits, time, compiled);
                // The detail is human text whose wording may improve between versions
                // (denies that explain themselves): what must reproduce is the outcome, the
                // reason codes and the policies that decided.
                let same = again.outcome.outcome == decision.outcome
                    && again.outcome.reasons == decision.reasons
                    && again.outcome.policies == decision.policies;
                if !same {
                    report.mismatches.push(Mismatch {
                        index,
                        detail: format!("recorded {decision:?}, replayed {:?}", again.outcome),
                    });
                    return Ok(ControlFlow::Continue(()));
                }
                // The bundle's cap on the action's writs (an approval's writ is held to it too).
                let cap = compiled.and_then(|c| c.max_lifetime(&request.action));
                let writ_ok = match (&writ, decision.outcome, &again.placement) {
                    (None, Outcome::Deny, None) => true,
                    (Some(w), Outcome::Allow | Outcome::Pending, Some(p)) => {
                        let subject = match &facts.identity {
                            Checked::Ok(i) => i.subject.as_str(),
                            Checked::Failed { .. } => "",
                        };
                        w.dep == p.depth
                            && w.scp == p.scope
                            && p.root.as_ref().is_none_or(|r| *r == w.root)
                            && w.jti == id
                            && w.sub == subject
                            && w.aud == request.audience
                            && w.iat == time
                            && w.nbf == time
                            && w.exp > time
                            && (decision.outcome == Outcome::Pending
                                || cap.is_none_or(|cap| w.exp.saturating_sub(time) <= cap))
                    }
                    _ => false,
                };
                let inputs = Inputs { request: &request, facts: &facts, limits: &limits, time };
                match check_shadow(shadow.as_ref(), &inputs, decision.outcome, recorded_shadow.as_ref()) {
                    Ok(recorded) => report.shadow_verdicts += u64::from(recorded),
                    Err(problem) => {
                        report.mismatches.push(Mismatch { index, detail: problem });
                        return Ok(ControlFlow::Continue(()));
                    }
                }
                if writ_ok {
                    report.reproduced += 1;
                    if let (Outcome::Pending, Some(w)) = (decision.outcome, writ) {
                        pending.insert(id, (w, bundle, cap));
                    }
                } else {
                    report
                        .mismatches
                        .push(Mismatch { index, detail: "the recorded writ does not match the decision".into() });
                }
            }
            Entry::Decision { request: None, decision, renews, shadow: recorded_shadow, .. } => {
                report.decisions += 1;
                // An unparseable request can only have been denied as malformed, and is not
                // evaluated under a shadow; a renewal of a writ that does not verify, or
                // stands for no allowed decision, only for that (see `engine::renew`).
                let reason = decision.reasons.first().copied();
                let renewal_refusal = renews.is_some()
                    && matches!(
                        reason,
                        Some(writ_core::ReasonCode::WritBadSignature | writ_core::ReasonCode::WritRevoked)
                    );
                if recorded_shadow.is_some() {
                    report
                        .mismatches
                        .push(Mismatch { index, detail: "an unparsed request carries a shadow verdict".into() });
                } else if decision.outcome == Outcome::Deny
                    && (reason == Some(writ_core::ReasonCode::RequestMalformed) || renewal_refusal)
                {
                    report.reproduced += 1;
                } else {
                    report
                        .mismatches
                        .push(Mismatch { index, detail: "an unparsed request was not denied as malformed".into() });
                }
            }
            Entry::Approval { time, id, approved, writ, .. } => {
                report.approvals += 1;
                if let Some(problem) =
                    check_approval(&mut pending, active.as_deref(), time, &id, approved, writ.as_ref())
                {
                    report.mismatches.push(Mismatch { index, detail: problem });
                }
            }
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(report)
}

/// A decision's recorded inputs.
struct Inputs<'a> {
    request: &'a RecordedRequest,
    facts: &'a Facts,
    limits: &'a RecordedLimits,
    time: u64,
}

/// Checks a decision's shadow verdict against the shadow bundle set when it was made:
/// `Ok(true)` when a recorded verdict reproduced, `Ok(false)` when none was due, or what is
/// wrong (a verdict that does not reproduce or agrees with the decision, a disagreement not
/// recorded, a verdict with no shadow set).
fn check_shadow(
    shadow: Option<&CompiledBundle>,
    inputs: &Inputs<'_>,
    real: Outcome,
    recorded: Option<&ShadowVerdict>,
) -> Result<bool, String> {
    let Some(bundle) = shadow else {
        return match recorded {
            None => Ok(false),
            Some(v) => Err(format!("records a verdict of shadow bundle {} while no shadow bundle was set", v.bundle)),
        };
    };
    let again = evaluate_shadow(bundle, inputs.request, inputs.facts, inputs.limits, inputs.time);
    match recorded {
        None if again.outcome == real => Ok(false),
        None => Err(format!(
            "the shadow bundle {} decides {:?} where the decision was {real:?}, and the disagreement is not recorded",
            again.bundle, again.outcome
        )),
        Some(v) if *v == again && v.outcome != real => Ok(true),
        Some(v) => Err(format!("recorded shadow verdict {v:?} (decision {real:?}), replayed {again:?}")),
    }
}

/// What is wrong with an automatic isolation of `subject` by `rule` naming `triggers`,
/// given what the log before it trips.
fn check_isolation(tracker: &Tracker, subject: &str, rule: &str, triggers: &[u64]) -> Option<String> {
    match tracker.due_for(subject) {
        Some(due) if due.rule == rule && due.triggers == triggers => None,
        Some(due) => Some(format!(
            "isolates {subject} by rule {rule:?} on entries {triggers:?}, but the log before it trips rule {:?} on entries {:?}",
            due.rule, due.triggers
        )),
        None => Some(format!(
            "isolates {subject} by rule {rule:?}, but no isolation rule of the bundle active then is tripped by the log before it"
        )),
    }
}

/// What is wrong with an approval entry, given the decisions still pending before it and
/// the active bundle: it must answer a pending decision once, before its deadline, an
/// approval only while the bundle that decided is still active, and it must issue
/// exactly the writ the decision placed (same id, principal, audience, lineage and scope),
/// from the approval's time; a rejection issues none.
fn check_approval(
    pending: &mut HashMap<String, (WritRecord, Option<String>, Option<u64>)>,
    active: Option<&str>,
    time: u64,
    id: &str,
    approved: bool,
    writ: Option<&WritRecord>,
) -> Option<String> {
    let Some((asked, bundle, cap)) = pending.remove(id) else {
        return Some(format!("answers {id}, which is not a pending decision (unknown or already answered)"));
    };
    if approved && bundle.as_deref() != active {
        return Some(format!("approves {id} after the bundle that decided it was replaced"));
    }
    if time < asked.iat {
        return Some(format!("answers {id} at {time}, before it was asked at {}", asked.iat));
    }
    if time >= asked.exp {
        return Some(format!("answers {id} at {time}, after its deadline {}", asked.exp));
    }
    match (approved, writ) {
        (false, None) => None,
        (true, Some(w)) => {
            let same = w.jti == asked.jti
                && w.sub == asked.sub
                && w.aud == asked.aud
                && w.root == asked.root
                && w.dep == asked.dep
                && w.scp == asked.scp;
            let timed = w.iat == time
                && w.nbf == time
                && w.exp > time
                && cap.is_none_or(|cap| w.exp.saturating_sub(time) <= cap);
            (!(same && timed)).then(|| format!("the writ approved for {id} is not the one its decision placed"))
        }
        (true, None) => Some(format!("approves {id} without a writ")),
        (false, Some(_)) => Some(format!("rejects {id} but carries a writ")),
    }
}
