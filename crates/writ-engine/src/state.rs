//! The engine's state facts, all derived from the log: every decision by id (for lineage),
//! revocations, quarantined identities and usage windows. Rebuilt by reading the log from
//! the start when the engine opens; updated as each entry is appended.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::record::{Entry, Outcome, ParentFact, Usage};
use crate::writ::Scope;

#[derive(Clone, Debug)]
struct DecisionFact {
    allowed: bool,
    exp: u64,
    root: String,
    depth: u32,
    scope: Option<Scope>,
    action: String,
}

/// Usage windows are kept this long.
const HOUR: u64 = 3600;

/// State facts derived from the log.
#[derive(Debug, Default)]
pub(crate) struct State {
    decisions: HashMap<String, DecisionFact>,
    revoked: HashSet<String>,
    quarantined: HashSet<String>,
    usage: HashMap<(String, String), UsageWindow>,
}

/// Allowed calls of one (subject, action) over the last hour, in per-second buckets with
/// cumulative counts, so that a window's count is two binary searches, and memory is at
/// most 3,600 buckets however hot the principal.
#[derive(Debug, Default)]
struct UsageWindow {
    // INVARIANT: seconds strictly increase and counts never decrease along the deque;
    // `base` is the cumulative count of the buckets already dropped.
    buckets: VecDeque<(u64, u64)>,
    base: u64,
}

impl UsageWindow {
    fn record(&mut self, time: u64) {
        let total = self.buckets.back().map_or(self.base, |b| b.1);
        match self.buckets.back_mut() {
            Some(last) if last.0 == time => last.1 += 1,
            // A decision time behind the newest bucket (the clock stepped back) counts in
            // the newest bucket, keeping the invariant.
            Some(last) if last.0 > time => last.1 += 1,
            _ => self.buckets.push_back((time, total + 1)),
        }
        while let Some(front) = self.buckets.front().copied() {
            if front.0 + HOUR >= time {
                break;
            }
            self.base = front.1;
            self.buckets.pop_front();
        }
    }

    /// Cumulative count of calls at or before second `t`.
    fn upto(&self, t: u64) -> u64 {
        match self.buckets.partition_point(|(s, _)| *s <= t) {
            0 => self.base,
            i => self.buckets.get(i - 1).map_or(self.base, |b| b.1),
        }
    }

    /// Calls in the `secs` seconds up to and including `now`.
    fn within(&self, now: u64, secs: u64) -> u64 {
        self.upto(now).saturating_sub(self.upto(now.saturating_sub(secs)))
    }
}

impl State {
    pub(crate) fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Decision { id, time, request, decision, writ, facts, .. } => {
                let Some(request) = request else { return };
                let allowed = decision.outcome == Outcome::Allow;
                let (exp, root, depth, scope) = match writ {
                    Some(w) => (w.exp, w.root.clone(), w.dep, Some(w.scp.clone())),
                    None => (0, id.clone(), 0, None),
                };
                self.decisions.insert(
                    id.clone(),
                    DecisionFact { allowed, exp, root, depth, scope, action: request.action.clone() },
                );
                if allowed
                    && let Some(facts) = facts
                    && let crate::record::Checked::Ok(identity) = &facts.identity
                {
                    self.usage.entry((identity.subject.clone(), request.action.clone())).or_default().record(*time);
                }
            }
            Entry::Revocation { jti, .. } => {
                self.revoked.insert(jti.clone());
            }
            Entry::Quarantine { subject, isolated, .. } => {
                if *isolated {
                    self.quarantined.insert(subject.clone());
                } else {
                    self.quarantined.remove(subject);
                }
            }
            Entry::Activation { .. } => {}
        }
    }

    pub(crate) fn parent(&self, id: &str) -> ParentFact {
        match self.decisions.get(id) {
            None => ParentFact::Unknown,
            Some(d) => ParentFact::Known {
                allowed: d.allowed,
                exp: d.exp,
                revoked: self.revoked.contains(id),
                root: d.root.clone(),
                depth: d.depth,
                scope: d.scope.clone(),
                action: d.action.clone(),
            },
        }
    }

    pub(crate) fn is_quarantined(&self, subject: &str) -> bool {
        self.quarantined.contains(subject)
    }

    pub(crate) fn is_revoked(&self, id: &str) -> bool {
        self.revoked.contains(id)
    }

    pub(crate) fn quarantined(&self) -> Vec<String> {
        let mut v: Vec<String> = self.quarantined.iter().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn revoked(&self) -> Vec<String> {
        let mut v: Vec<String> = self.revoked.iter().cloned().collect();
        v.sort();
        v
    }

    /// Allowed calls by `subject` for `action` in the minute and hour before `now`.
    pub(crate) fn usage(&self, subject: &str, action: &str, now: u64) -> Usage {
        let Some(window) = self.usage.get(&(subject.to_owned(), action.to_owned())) else {
            return Usage::default();
        };
        Usage { last_minute: window.within(now, 60), last_hour: window.within(now, HOUR) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_windows_count_what_a_scan_would() {
        let times: Vec<u64> = (0..5000u64).map(|i| 1000 + i * 7 / 5).collect();
        let mut w = UsageWindow::default();
        let mut seen: Vec<u64> = Vec::new();
        for t in &times {
            for now in [*t, t + 30, t + 61, t + 3599, t + 3601] {
                let scan = |secs: u64| seen.iter().filter(|x| **x <= now && **x + secs > now).count() as u64;
                assert_eq!(w.within(now, 60), scan(60), "minute at {now}");
                assert_eq!(w.within(now, HOUR), scan(HOUR), "hour at {now}");
            }
            w.record(*t);
            seen.push(*t);
        }
        assert!(w.buckets.len() <= 3601);
    }

    /// A decision time behind the newest (the clock stepped back) is counted as if it were
    /// at the newest second: windows may over-count, never under-count.
    #[test]
    fn a_clock_stepping_back_never_under_counts() {
        let mut w = UsageWindow::default();
        for t in [100, 101, 102, 90, 95, 103] {
            w.record(t);
        }
        assert_eq!(w.within(103, 60), 6);
        assert_eq!(w.within(160, 60), 5);
        assert_eq!(w.within(161, 60), 4);
        assert_eq!(w.within(162, 60), 1);
        assert_eq!(w.within(163, 60), 0);
    }
}
