//! Automatic isolation (issue 17): which log entries are trust violations of a proven
//! principal, counted against the isolation rules of the bundle active when each was
//! recorded, and which principal a rule has tripped for ([`Tracker`]). The rules are the
//! bundle manifest's (`writ_policy::IsolationRule`); the quarantine entry that acts on a
//! tripped rule, and the revocations after it, are `engine::isolate`'s.
//!
//! - **Violations** are log entries, so that an isolation names them (`triggers`) and the
//!   counting is rebuilt from the log on open: a restart neither forgets a violation nor
//!   counts one twice, and `writ log replay` derives every automatic isolation again.
//!   - a `decision` denied with a primary reason code a `denials` rule lists;
//!   - a `decision` whose presented parent writ was refused (`facts.parent_writ`) with a
//!     code a `presented` rule lists (the caller presented it);
//!   - a `presentation` entry: a writ refused at `POST /v1/verify`, recorded only when a
//!     `presented` rule counts it;
//!   - a `decision` whose verified attestation measurement differs from the last one
//!     recorded for the principal, for an `attestation_changed` rule.
//! - **Only a proven principal** is counted: the verified workload credential of a
//!   decision, or the `sub` of a writ whose signature verified (a `presentation` entry is
//!   written only for those). A claim nobody proved (a forged writ's `sub`) is never
//!   counted, so nobody can get another principal isolated by forging its name.
//! - **Reset**: a principal's counts start again at each quarantine change (isolation or
//!   release); decisions made while it was isolated count nothing and leave the
//!   attestation baseline as it was.
//! - **Bounded**: a `denials` window holds at most `count` entries per principal, older
//!   ones dropped as time passes, and principals with nothing left in any window are swept
//!   away (amortised); the attestation baseline is one measurement per principal, kept only
//!   while a rule reads it.
//! - **Once**: a tripped rule makes the principal *due* until a quarantine entry for it is
//!   recorded; a principal already isolated is never due.
//! - **In log order**: the entries of one commit batch may be applied to the state out of
//!   index order; the tracker holds those that come early and counts every entry in index
//!   order, as a rebuild and `writ log replay` read them, so that live counting and replay
//!   trip the same rule on the same entries.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use writ_core::ReasonCode;
use writ_policy::{IsolationRule, Manifest, Trigger};

use crate::record::{BundleCheck, Checked, Entry, Outcome};

/// Principals tracked in `denials` windows before the first sweep.
const SWEEP_FLOOR: usize = 1024;

/// A rule that tripped for a principal: what its quarantine entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Due {
    /// The rule's name.
    pub(crate) rule: String,
    /// The log indices of the entries that tripped it, oldest first.
    pub(crate) triggers: Vec<u64>,
    /// Why, in words.
    pub(crate) reason: String,
}

/// The counting of violations against the active isolation rules (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    rules: Vec<IsolationRule>,
    // By rule name, then principal: the counted denials (time, log index) in the window,
    // oldest first. INVARIANT: at most the rule's `count` - 1 between entries (a window
    // reaching `count` trips the rule and is emptied by the quarantine entry after it).
    windows: HashMap<String, HashMap<String, VecDeque<(u64, u64)>>>,
    // The last measurement recorded for each principal, with its entry's index; kept only
    // while an `attestation_changed` rule is active.
    measurements: HashMap<String, (String, u64)>,
    quarantined: HashSet<String>,
    due: BTreeMap<String, Due>,
    // The newest entry time seen, the principal count at which the next sweep runs, and
    // the time of the last sweep.
    latest: u64,
    sweep_at: usize,
    swept: u64,
    // The next log index to count, and the entries applied ahead of it.
    next: u64,
    ahead: BTreeMap<u64, Observed>,
}

/// What an entry means to the tracker, taken from it when it is applied (entries of one
/// batch can be applied out of index order; they are counted in index order).
#[derive(Debug)]
enum Observed {
    Rules(Vec<IsolationRule>),
    Quarantine { subject: String, isolated: bool },
    Decision(DecisionSeen),
    Presentation { time: u64, subject: String, reason: ReasonCode },
    Nothing,
}

#[derive(Debug)]
struct DecisionSeen {
    time: u64,
    subject: String,
    quarantined: bool,
    denied: Option<ReasonCode>,
    presented: Option<ReasonCode>,
    measurement: Option<String>,
}

impl Observed {
    fn of(entry: &Entry) -> Observed {
        match entry {
            // An accepted bundle's manifest read when it was checked; one that does not read
            // now (never in a log this engine wrote) has no rules.
            Entry::Activation { check: BundleCheck { accepted: true, .. }, parts } => Observed::Rules(
                serde_json::from_str::<Manifest>(&parts.manifest).map(|m| m.isolation).unwrap_or_default(),
            ),
            Entry::Quarantine { subject, isolated, .. } => {
                Observed::Quarantine { subject: subject.clone(), isolated: *isolated }
            }
            Entry::Decision { time, facts: Some(facts), decision, .. } => {
                let Checked::Ok(identity) = &facts.identity else { return Observed::Nothing };
                Observed::Decision(DecisionSeen {
                    time: *time,
                    subject: identity.subject.clone(),
                    quarantined: facts.quarantined,
                    denied: (decision.outcome == Outcome::Deny).then(|| decision.reasons.first().copied()).flatten(),
                    presented: match &facts.parent_writ {
                        Some(Checked::Failed { reason, .. }) => Some(*reason),
                        _ => None,
                    },
                    measurement: match &facts.attestation {
                        Some(Checked::Ok(a)) => Some(a.measurement.clone()),
                        _ => None,
                    },
                })
            }
            Entry::Presentation { time, subject, reason, .. } => {
                Observed::Presentation { time: *time, subject: subject.clone(), reason: *reason }
            }
            _ => Observed::Nothing,
        }
    }
}

/// Entries held while one before them is not applied yet; beyond this, the missing one is
/// taken as never coming (its applier failed) and skipped.
const MAX_AHEAD: usize = 65_536;

impl Tracker {
    /// Observes the entry stored at `index`: counts what it violates, and makes its
    /// principal due when a rule trips. Entries are counted in index order (as a rebuild
    /// and `writ log replay` read them), whatever the order they are applied in.
    pub(crate) fn observe(&mut self, entry: &Entry, index: u64) {
        if index < self.next {
            return;
        }
        let seen = Observed::of(entry);
        if index > self.next {
            self.ahead.insert(index, seen);
            if self.ahead.len() <= MAX_AHEAD {
                return;
            }
            if let Some(first) = self.ahead.keys().next() {
                self.next = *first;
            }
        } else {
            self.count(seen, index);
            self.next = index.saturating_add(1);
        }
        while let Some(seen) = self.ahead.remove(&self.next) {
            self.count(seen, self.next);
            self.next = self.next.saturating_add(1);
        }
    }

    fn count(&mut self, seen: Observed, index: u64) {
        match seen {
            Observed::Rules(rules) => self.set_rules(rules),
            Observed::Quarantine { subject, isolated } => {
                for by_subject in self.windows.values_mut() {
                    by_subject.remove(&subject);
                }
                self.due.remove(&subject);
                if isolated {
                    self.quarantined.insert(subject);
                } else {
                    self.quarantined.remove(&subject);
                }
            }
            Observed::Decision(DecisionSeen { time, subject, quarantined, denied, presented, measurement }) => {
                let time = &time;
                self.latest = self.latest.max(*time);
                let subject = subject.as_str();
                if self.rules.is_empty() || quarantined || self.quarantined.contains(subject) {
                    return;
                }
                let measurement = measurement.as_deref();
                let mut tripped = None;
                // Every rule observes the entry (windows and the baseline move); the first
                // to trip, in the manifest's order, is the one recorded.
                for rule in &self.rules {
                    let found = match rule.trigger() {
                        Trigger::Denials { reasons, count, window_seconds } => match denied {
                            Some(r) if reasons.contains(&r) => {
                                // Looked up before inserting: no allocation for a principal
                                // already counted.
                                if !self.windows.contains_key(rule.name()) {
                                    self.windows.insert(rule.name().to_owned(), HashMap::new());
                                }
                                let Some(by_subject) = self.windows.get_mut(rule.name()) else { continue };
                                if !by_subject.contains_key(subject) {
                                    by_subject.insert(subject.to_owned(), VecDeque::new());
                                }
                                let Some(window) = by_subject.get_mut(subject) else { continue };
                                count_in(window, *time, index, *window_seconds, *count).map(|triggers| Due {
                                    rule: rule.name().to_owned(),
                                    reason: format!(
                                        "isolation rule {:?}: {} denials ({}) within {window_seconds} s",
                                        rule.name(),
                                        triggers.len(),
                                        codes(reasons)
                                    ),
                                    triggers,
                                })
                            }
                            _ => None,
                        },
                        Trigger::Presented(reasons) => match presented {
                            Some(r) if reasons.contains(&r) => Some(Due {
                                rule: rule.name().to_owned(),
                                triggers: vec![index],
                                reason: format!(
                                    "isolation rule {:?}: presented a parent writ refused as {r}",
                                    rule.name()
                                ),
                            }),
                            _ => None,
                        },
                        Trigger::AttestationChanged => measurement.and_then(|m| match self.measurements.get(subject) {
                            Some((before, at)) if before != m => Some(Due {
                                rule: rule.name().to_owned(),
                                triggers: vec![*at, index],
                                reason: format!(
                                    "isolation rule {:?}: attestation measurement changed from {before} to {m}",
                                    rule.name()
                                ),
                            }),
                            _ => None,
                        }),
                    };
                    if tripped.is_none() {
                        tripped = found;
                    }
                }
                if let Some(m) = measurement
                    && self.reads_attestation()
                {
                    match self.measurements.get_mut(subject) {
                        Some(last) if last.0 == m => last.1 = index,
                        _ => {
                            self.measurements.insert(subject.to_owned(), (m.to_owned(), index));
                        }
                    }
                }
                if let Some(due) = tripped {
                    self.due.entry(subject.to_owned()).or_insert(due);
                }
                self.sweep();
            }
            Observed::Presentation { time, subject, reason } => {
                self.latest = self.latest.max(time);
                if self.quarantined.contains(&subject) {
                    return;
                }
                let rule =
                    self.rules.iter().find(|r| matches!(r.trigger(), Trigger::Presented(c) if c.contains(&reason)));
                if let Some(rule) = rule {
                    let due = Due {
                        rule: rule.name().to_owned(),
                        triggers: vec![index],
                        reason: format!(
                            "isolation rule {:?}: one of its writs was presented and refused as {reason}",
                            rule.name()
                        ),
                    };
                    self.due.entry(subject).or_insert(due);
                }
            }
            Observed::Nothing => {}
        }
    }

    /// The rules of a newly active bundle. Windows of a rule the new bundle keeps exactly
    /// (same name, same definition) keep their counts; the others are dropped.
    fn set_rules(&mut self, rules: Vec<IsolationRule>) {
        self.windows.retain(|name, _| {
            let old = self.rules.iter().find(|r| r.name() == name);
            let new = rules.iter().find(|r| r.name() == name);
            old.is_some() && old == new
        });
        self.rules = rules;
        if !self.reads_attestation() {
            self.measurements.clear();
        }
    }

    fn reads_attestation(&self) -> bool {
        self.rules.iter().any(|r| matches!(r.trigger(), Trigger::AttestationChanged))
    }

    /// Drops the principals whose windows hold nothing still inside them, once the count
    /// of tracked principals has doubled since the last sweep, or the longest window has
    /// passed since it (amortised constant time).
    fn sweep(&mut self) {
        let tracked: usize = self.windows.values().map(HashMap::len).sum();
        let longest = self
            .rules
            .iter()
            .filter_map(|r| match r.trigger() {
                Trigger::Denials { window_seconds, .. } => Some(*window_seconds),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let grown = tracked > self.sweep_at.max(SWEEP_FLOOR);
        let aged = tracked > SWEEP_FLOOR && self.latest >= self.swept.saturating_add(longest);
        if !grown && !aged {
            return;
        }
        self.swept = self.latest;
        let latest = self.latest;
        for (name, by_subject) in &mut self.windows {
            let window = self.rules.iter().find_map(|r| match r.trigger() {
                Trigger::Denials { window_seconds, .. } if r.name() == name => Some(*window_seconds),
                _ => None,
            });
            let Some(window) = window else {
                by_subject.clear();
                continue;
            };
            by_subject.retain(|_, w| {
                prune(w, latest, window);
                !w.is_empty()
            });
        }
        self.sweep_at = self.windows.values().map(HashMap::len).sum::<usize>().saturating_mul(2);
    }

    /// The principals a rule has tripped for that are not isolated yet.
    pub(crate) fn due(&self) -> Vec<(String, Due)> {
        self.due.iter().map(|(s, d)| (s.clone(), d.clone())).collect()
    }

    /// What tripped for `subject`, if anything.
    pub(crate) fn due_for(&self, subject: &str) -> Option<&Due> {
        self.due.get(subject)
    }

    /// Whether any principal is due.
    pub(crate) fn any_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// Whether a `presented` rule of the active bundle counts this refusal of a writ of
    /// `subject` (not isolated, not already due): whether a `presentation` entry is due.
    pub(crate) fn counts_presentation(&self, subject: &str, reason: ReasonCode) -> bool {
        !self.quarantined.contains(subject)
            && !self.due.contains_key(subject)
            && self.rules.iter().any(|r| matches!(r.trigger(), Trigger::Presented(c) if c.contains(&reason)))
    }

    /// Principals tracked in `denials` windows (for the tests of the bound).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.windows.values().map(HashMap::len).sum()
    }
}

/// Drops the entries of `w` no longer inside a window of `secs` seconds ending at `now`.
fn prune(w: &mut VecDeque<(u64, u64)>, now: u64, secs: u64) {
    while w.front().is_some_and(|(t, _)| t.saturating_add(secs) <= now) {
        w.pop_front();
    }
}

/// Adds a denial at `time` (entry `index`) to a window of `secs` seconds; the entries that
/// trip the rule once it holds `count`.
fn count_in(w: &mut VecDeque<(u64, u64)>, time: u64, index: u64, secs: u64, count: u64) -> Option<Vec<u64>> {
    prune(w, time, secs);
    w.push_back((time, index));
    let held = u64::try_from(w.len()).unwrap_or(u64::MAX);
    if held >= count {
        let triggers = w.iter().map(|(_, i)| *i).collect();
        w.clear();
        return Some(triggers);
    }
    None
}

fn codes(reasons: &[ReasonCode]) -> String {
    reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use serde_json::json;

    use super::*;

    fn denial(subject: &str, time: u64) -> Entry {
        serde_json::from_value(json!({
            "kind": "decision", "id": "d", "time": time, "bundle": null, "writ": null,
            "request": {"action": "write", "arguments": {}, "audience": "a", "credentials": {},
                        "digest": "sha256:00", "parent": null, "request_id": null, "resource": "r"},
            "facts": {"attestation": null, "delegation": {}, "parent": null, "quarantined": false,
                      "identity": {"ok": {"claims": {}, "issuer": "i", "subject": subject, "trust_domain": "t"}},
                      "usage": {"last_hour": 0, "last_minute": 0}},
            "limits": {"max_depth": 3},
            "decision": {"detail": "", "outcome": "deny", "policies": [], "reasons": ["policy.denied"]},
        }))
        .unwrap()
    }

    /// Entries applied out of index order (one commit batch, several tasks) are counted in
    /// index order: the triggers are those a replay finds.
    #[test]
    fn entries_applied_out_of_order_are_counted_in_log_order() {
        let rule: IsolationRule = serde_json::from_value(json!(
            {"name": "r", "denials": {"reasons": ["policy.denied"], "count": 2, "window_seconds": 60}}
        ))
        .unwrap();
        let mut t = Tracker::default();
        t.set_rules(vec![rule]);
        t.observe(&denial("spiffe://t/a", 1000), 0);
        t.observe(&denial("spiffe://t/a", 1000), 2);
        assert!(!t.any_due(), "index 1 is not applied yet");
        t.observe(&denial("spiffe://t/b", 1000), 1);
        assert_eq!(t.due().first().map(|(_, d)| d.triggers.clone()), Some(vec![0, 2]));
    }

    /// Many principals with one denial each are forgotten once their window has passed:
    /// the tracker's memory follows the principals active in the window, not all ever seen.
    #[test]
    fn windows_are_pruned_of_principals_gone_quiet() {
        let rule: IsolationRule = serde_json::from_value(json!(
            {"name": "r", "denials": {"reasons": ["policy.denied"], "count": 3, "window_seconds": 60}}
        ))
        .unwrap();
        let mut t = Tracker::default();
        t.set_rules(vec![rule]);
        for i in 0..5000u64 {
            t.observe(&denial(&format!("spiffe://t/agent/{i}"), 1000), i);
        }
        assert!(t.tracked() >= 4000, "within the window every one is counted");
        for i in 0..3000u64 {
            t.observe(&denial(&format!("spiffe://t/late/{i}"), 2000), 5000 + i);
        }
        assert!(t.tracked() <= 3000 + SWEEP_FLOOR, "{} tracked", t.tracked());
        assert!(!t.any_due());
    }
}
