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
    // INVARIANT: each deque is sorted by time (entries are applied in log order and
    // decision times never go backwards by more than the clock does).
    usage: HashMap<(String, String), VecDeque<u64>>,
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
                    let window = self.usage.entry((identity.subject.clone(), request.action.clone())).or_default();
                    window.push_back(*time);
                    while window.front().is_some_and(|t| t + HOUR < *time) {
                        window.pop_front();
                    }
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
        let in_last = |secs: u64| window.iter().filter(|t| **t <= now && **t + secs > now).count() as u64;
        Usage { last_minute: in_last(60), last_hour: in_last(HOUR) }
    }
}
