//! The engine's state facts, all derived from the log: every decision by id (for lineage
//! checks and the lineage view), revocations, quarantined identities, usage windows, the
//! bundles the log holds and execution outcomes. Rebuilt by reading the log from the start
//! when the engine opens; updated as each entry is appended.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use writ_core::ReasonCode;

use crate::isolation::{Due, Tracker};
use crate::record::{BundleCheck, BundleParts, Checked, Entry, ExecStatus, Outcome, ParentFact, Usage, WritRecord};
use writ_verify::Scope;

/// Longest chain of parents walked before a lineage counts as unverifiable (far beyond any
/// depth limit; the walk is bounded even if the log held a cycle).
const MAX_LINEAGE_WALK: usize = 256;

#[derive(Clone, Debug)]
struct DecisionFact {
    // Allow, deny or pending; a pending decision becomes an allow when approved.
    outcome: Outcome,
    exp: u64,
    // `None`: the decision is its own root.
    root: Option<String>,
    depth: u32,
    // Interned: most writs hand down one of a few scopes.
    scope: Option<Arc<Scope>>,
    action: Arc<str>,
    subject: Arc<str>,
    parent: Option<String>,
    // For a renewal: the writ it renews. A renewal hangs below the writ it renews (same
    // parent, same root, same depth): walking up its lineage goes through it.
    renews: Option<String>,
    // For a renewal in a chain (see `RenewalChain`): the chain's origin and this renewal's
    // position in it (1 renews the origin).
    chain: Option<(String, u32)>,
    time: u64,
    index: u64,
    reason: Option<ReasonCode>,
}

/// The renewals of one writ (the chain's origin), through renewals of renewals, in order:
/// a writ is renewed at most once, so they form a line. Kept so that checking a renewal's
/// standing costs the same however long its chain has grown: a long-running execution
/// renews every few minutes for as long as it runs, and walking every earlier renewal
/// would make its checks slower with its age (and refuse it past any walk bound).
#[derive(Debug, Default)]
struct RenewalChain {
    // `members[k]` is the renewal at position `k + 1`.
    members: Vec<String>,
    // The lowest position of a revoked renewal: it and every renewal after it are revoked
    // by lineage (each is below it).
    revoked_from: Option<u32>,
    // The first renewal of the chain under which the execution reported its outcome: the
    // execution is over, so no writ of the chain is renewed again.
    ended_by: Option<String>,
}

impl DecisionFact {
    /// The writ above this one: the one it renews, else its parent.
    fn up(&self) -> Option<&str> {
        self.renews.as_deref().or(self.parent.as_deref())
    }
}

/// An operator action on an identity or a writ, for the admin views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OperatorAction {
    /// When (Unix seconds).
    pub time: u64,
    /// Who (operator SPIFFE ID, or absent for the local CLI).
    pub operator: Option<String>,
    /// Why.
    pub reason: String,
    /// The log entry that recorded it.
    pub log_index: u64,
    /// For an automatic isolation: the isolation rule that tripped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For an automatic isolation: the log entries that tripped the rule.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<u64>,
}

/// A bundle the log holds (uploaded or activated), for the admin views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleSummary {
    /// Digest (`sha256:…`).
    pub digest: String,
    /// Manifest name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// The policy key that signed it.
    pub signer: Option<String>,
    /// When the log first held it.
    pub first_seen: u64,
    /// When it was last activated, if ever.
    pub last_activated: Option<u64>,
    /// Who activated it last (operator SPIFFE ID; absent for the local CLI or never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activated_by: Option<String>,
    /// Whether it is the active bundle.
    pub active: bool,
}

/// The shadow bundle set, for the admin views (see the engine's `shadow` module).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShadowSetting {
    /// Manifest name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// Digest (`sha256:…`).
    pub digest: String,
    /// When it was set (Unix seconds).
    pub set_at: u64,
    /// Who set it (operator SPIFFE ID, or absent for the local CLI).
    pub set_by: Option<String>,
    /// The `shadow` entry that set it.
    pub log_index: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct KnownBundle {
    pub(crate) summary: BundleSummary,
    pub(crate) signature: String,
    pub(crate) parts: BundleParts,
    // Its newest activations, oldest first (at most `MAX_ACTIVATIONS_KEPT`).
    pub(crate) activations: VecDeque<OperatorAction>,
}

/// Activations of one bundle kept for its history view ([`BundleDetail::activations`]).
const MAX_ACTIVATIONS_KEPT: usize = 50;

/// A bundle the log holds, with its text, for the console's policy view and diffs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleDetail {
    /// What the listing says of it.
    #[serde(flatten)]
    pub summary: BundleSummary,
    /// Its newest activations (at most 50), oldest first: when, by whom, the log entry.
    pub activations: Vec<OperatorAction>,
    /// Its files as text.
    pub parts: BundleParts,
}

/// Decision totals since the log's first entry, kept as each entry is applied (and so
/// rebuilt whenever the engine opens).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Entries applied (the log size these totals are of).
    pub size: u64,
    /// Decisions recorded one by one.
    pub decisions: u64,
    /// Of those, allowed when decided.
    pub allow: u64,
    /// Denied.
    pub deny: u64,
    /// Sent to an operator for approval.
    pub pending: u64,
    /// Pending decisions an operator approved.
    pub approved: u64,
    /// Pending decisions an operator rejected.
    pub rejected: u64,
    /// Denied requests without a verified identity that were counted in summaries
    /// (`anonymous_attempts` entries) instead of recorded one by one.
    pub anonymous_denied: u64,
    /// Decisions by outcome, then primary reason code (`""` for an allow or a pending
    /// decision without one); anonymous attempts count under `deny`.
    pub by_reason: BTreeMap<String, BTreeMap<String, u64>>,
    /// Entries by kind.
    pub entries: BTreeMap<String, u64>,
}

impl Stats {
    fn count(&mut self, entry: &Entry, index: u64) {
        self.size = self.size.max(index + 1);
        *self.entries.entry(entry.kind_and_operator().0.to_owned()).or_default() += 1;
        match entry {
            Entry::Decision { decision, .. } => {
                self.decisions += 1;
                let outcome = match decision.outcome {
                    Outcome::Allow => {
                        self.allow += 1;
                        "allow"
                    }
                    Outcome::Deny => {
                        self.deny += 1;
                        "deny"
                    }
                    Outcome::Pending => {
                        self.pending += 1;
                        "pending"
                    }
                };
                let reason = decision.reasons.first().map(|r| r.as_str().to_owned()).unwrap_or_default();
                *self.by_reason.entry(outcome.to_owned()).or_default().entry(reason).or_default() += 1;
            }
            Entry::AnonymousAttempts { reasons, .. } => {
                for (reason, n) in reasons {
                    self.anonymous_denied += n;
                    *self
                        .by_reason
                        .entry("deny".to_owned())
                        .or_default()
                        .entry(reason.as_str().to_owned())
                        .or_default() += n;
                }
            }
            _ => {}
        }
    }
}

/// Where a decision that needed a human approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an operator.
    Pending,
    /// Approved: the writ was issued.
    Approved,
    /// Rejected by an operator.
    Rejected,
    /// Nobody approved it before its deadline.
    Expired,
}

/// An operator's answer to a pending decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// Approved (true) or rejected.
    pub approved: bool,
    /// When (Unix seconds).
    pub time: u64,
    /// Who (operator SPIFFE ID, or absent for the local CLI).
    pub operator: Option<String>,
    /// Why.
    pub reason: String,
    /// The log entry that recorded it.
    pub log_index: u64,
}

/// A decision that needed a human approval: what was asked, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The decision id (the writ's `jti` once approved).
    pub id: String,
    /// Where it stands at the time of the view.
    pub status: ApprovalStatus,
    /// The principal that asked.
    pub subject: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The arguments, so that the operator sees exactly what is approved.
    pub arguments: serde_json::Value,
    /// The request digest the writ will be bound to.
    pub digest: String,
    /// The parent writ named, if any.
    pub parent: Option<String>,
    /// The bundle that asked for approval.
    pub bundle: Option<String>,
    /// The policies that permit it, and why approval is needed.
    pub policies: Vec<String>,
    /// Why approval is needed.
    pub detail: String,
    /// When it was asked (Unix seconds).
    pub requested: u64,
    /// The last second an operator may approve it (exclusive).
    pub deadline: u64,
    /// The log entry of the pending decision.
    pub log_index: u64,
    /// The operator's answer, once given.
    pub resolution: Option<Resolution>,
    /// The writ an approval issues (the approved one once approved).
    #[serde(skip)]
    pub(crate) writ: WritRecord,
}

impl Approval {
    fn status_at(&self, now: u64) -> ApprovalStatus {
        match &self.resolution {
            Some(r) if r.approved => ApprovalStatus::Approved,
            Some(_) => ApprovalStatus::Rejected,
            None if now >= self.deadline => ApprovalStatus::Expired,
            None => ApprovalStatus::Pending,
        }
    }
}

/// One node of a lineage view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineageNode {
    /// Decision id (the writ id of an allow).
    pub id: String,
    /// The parent it named.
    pub parent: Option<String>,
    /// The principal.
    pub subject: String,
    /// The action.
    pub action: String,
    /// Allow or deny.
    pub outcome: Outcome,
    /// Primary reason of a deny.
    pub reason: Option<ReasonCode>,
    /// Depth in the chain.
    pub depth: u32,
    /// Decision time.
    pub time: u64,
    /// Log index of the decision.
    pub log_index: u64,
    /// Whether the writ has been revoked.
    pub revoked: bool,
    /// The execution outcome reported for it.
    pub execution: Option<ExecStatus>,
    /// For a renewal: the writ it renews (the node above it in the view, rather than its
    /// parent, which both share).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renews: Option<String>,
}

/// The lineage of one writ: every decision under the same root, parents before children.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lineage {
    /// The root decision id.
    pub root: String,
    /// The writ asked about.
    pub focus: String,
    /// Nodes, breadth first from the root.
    pub nodes: Vec<LineageNode>,
    /// True if the view stopped at [`MAX_LINEAGE_NODES`].
    pub truncated: bool,
}

/// What a lineage search selects ([`crate::Engine::lineage_roots`]); every criterion given
/// must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineageSearch {
    /// Decisions of this principal (SPIFFE ID).
    pub principal: Option<String>,
    /// Decisions made at or after this time (Unix seconds).
    pub since: Option<u64>,
    /// Decisions made before this time (Unix seconds).
    pub until: Option<u64>,
    /// Most roots returned.
    pub limit: usize,
}

/// A lineage root found by a search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineageRoot {
    /// The root decision id.
    pub root: String,
    /// Its principal.
    pub subject: String,
    /// Its action.
    pub action: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// Its decision time.
    pub time: u64,
    /// Its log index.
    pub log_index: u64,
    /// How many decisions under it the search selected.
    pub matched: u64,
}

/// Most nodes one lineage view returns.
pub const MAX_LINEAGE_NODES: usize = 1000;

/// Usage windows are kept this long.
const HOUR: u64 = 3600;

/// The lists of a revocation feed snapshot ([`State::feed_lists`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedLists {
    /// Writs (id, expiry) still inside their window that are revoked or below a revoked writ.
    pub revoked: Vec<(String, u64)>,
    /// Isolated principals.
    pub quarantined: Vec<String>,
    /// Writs (id, expiry) still inside their window below a writ of an isolated principal.
    pub isolated_lineage: Vec<(String, u64)>,
}

/// State facts derived from the log.
#[derive(Debug, Default)]
pub(crate) struct State {
    // Boxed: the table grows by moving its slots under the state lock, and a slot of the
    // fact itself (~176 bytes) made that move up to 180 MB at a million decisions, a stall
    // of up to half a second over HTTP; boxed, a slot is 32 bytes (BENCHMARKS.md, session 12).
    decisions: HashMap<String, Box<DecisionFact>>,
    children: HashMap<String, Vec<String>>,
    revoked: BTreeMap<String, OperatorAction>,
    quarantined: BTreeMap<String, OperatorAction>,
    // By subject, then action.
    usage: HashMap<Arc<str>, HashMap<Arc<str>, UsageWindow>>,
    bundles: BTreeMap<String, KnownBundle>,
    active: Option<String>,
    shadow: Option<ShadowSetting>,
    outcomes: HashMap<String, ExecStatus>,
    // Writs renewed by an allowed renewal, or one waiting for an approval: the id of the
    // writ that renews each.
    renewed_by: HashMap<String, String>,
    // Renewal chains, by origin.
    chains: HashMap<String, RenewalChain>,
    // Decisions that needed a human approval, by id (resolved ones stay, for the views).
    approvals: BTreeMap<String, Approval>,
    interned: HashSet<Arc<str>>,
    scopes: HashSet<Arc<Scope>>,
    // The newest accepted activation (log index, digest, operator) while no `reevaluation`
    // entry has followed it.
    reevaluation_due: Option<(u64, String, Option<String>)>,
    stats: Stats,
    // Violations counted against the active bundle's isolation rules.
    isolation: Tracker,
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
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(k) = self.interned.get(s) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(s);
        if self.interned.len() < 1_000_000 {
            self.interned.insert(k.clone());
        }
        k
    }

    fn intern_scope(&mut self, scope: &Scope) -> Arc<Scope> {
        if let Some(k) = self.scopes.get(scope) {
            return k.clone();
        }
        let k = Arc::new(scope.clone());
        if self.scopes.len() < 100_000 {
            self.scopes.insert(k.clone());
        }
        k
    }

    /// Applies the entry stored at log index `index`.
    pub(crate) fn apply(&mut self, entry: &Entry, index: u64) {
        self.stats.count(entry, index);
        self.isolation.observe(entry, index);
        match entry {
            Entry::Decision { id, time, request, decision, writ, facts, bundle, renews, .. } => {
                let Some(request) = request else { return };
                let allowed = decision.outcome == Outcome::Allow;
                let parent_depth = request.parent.as_ref().and_then(|p| self.decisions.get(p)).map(|p| p.depth + 1);
                let (exp, root, depth, scope) = match writ {
                    Some(w) => {
                        let root = (w.root != *id).then(|| w.root.clone());
                        (w.exp, root, w.dep, Some(self.intern_scope(&w.scp)))
                    }
                    None => (0, None, parent_depth.unwrap_or(0), None),
                };
                let subject = match facts.as_ref().map(|f| &f.identity) {
                    Some(Checked::Ok(identity)) => identity.subject.as_str(),
                    _ => "",
                };
                if let (Outcome::Pending, Some(w)) = (decision.outcome, writ) {
                    let pending = Approval {
                        id: id.clone(),
                        status: ApprovalStatus::Pending,
                        subject: subject.to_owned(),
                        action: request.action.clone(),
                        resource: request.resource.clone(),
                        arguments: request.arguments.clone(),
                        digest: request.digest.clone(),
                        parent: request.parent.clone(),
                        bundle: bundle.clone(),
                        policies: decision.policies.clone(),
                        detail: decision.detail.clone(),
                        requested: *time,
                        deadline: w.exp,
                        log_index: index,
                        resolution: None,
                        writ: w.clone(),
                    };
                    self.approvals.insert(id.clone(), pending);
                }
                let subject = self.intern(subject);
                let action = self.intern(&request.action);
                // A decision waiting for an approval counts as a call from the moment it is
                // asked, so that rate rules bound how many can wait (and be approved).
                // A renewal counts too: its writ is a fresh writ for the same call, which any
                // enforcement point accepts once, so it can run the call once more (found in
                // review: renewing a payment's writ ran it again and again while the rate
                // rule saw one call).
                if (allowed || decision.outcome == Outcome::Pending) && !subject.is_empty() {
                    self.usage.entry(subject.clone()).or_default().entry(action.clone()).or_default().record(*time);
                }
                // A renewal hangs below the writ it renews; anything else below its parent.
                let renews = renews.as_ref().filter(|r| self.decisions.contains_key(*r)).cloned();
                if let Some(up) = renews.as_ref().or(request.parent.as_ref())
                    && self.decisions.contains_key(up)
                {
                    self.children.entry(up.clone()).or_default().push(id.clone());
                }
                // A renewal waiting for an approval is the writ's renewal too: the writ is
                // not renewed again meanwhile (approved later, both would continue one call).
                let mut chain = None;
                if let (Some(r), true) = (&renews, allowed || decision.outcome == Outcome::Pending)
                    && self.renewed_by.entry(r.clone()).or_insert_with(|| id.clone()) == id
                {
                    chain = self.extend_chain(r, id, &subject);
                }
                let fact = DecisionFact {
                    outcome: decision.outcome,
                    // A pending decision's writ record holds the approval deadline, not a
                    // writ's expiry: it is not a writ until approved.
                    exp: if allowed { exp } else { 0 },
                    root,
                    depth,
                    scope,
                    action,
                    subject,
                    parent: request.parent.clone(),
                    renews,
                    chain,
                    time: *time,
                    index,
                    reason: decision.reasons.first().copied(),
                };
                self.decisions.insert(id.clone(), Box::new(fact));
            }
            Entry::Approval { time, id, approved, operator, reason, writ } => {
                let Some(pending) = self.approvals.get_mut(id).filter(|a| a.resolution.is_none()) else {
                    return;
                };
                pending.resolution = Some(Resolution {
                    approved: *approved,
                    time: *time,
                    operator: operator.clone(),
                    reason: reason.clone(),
                    log_index: index,
                });
                if *approved {
                    self.stats.approved += 1;
                } else {
                    self.stats.rejected += 1;
                }
                let (Some(w), true) = (writ, *approved) else { return };
                pending.writ = w.clone();
                if let Some(fact) = self.decisions.get_mut(id) {
                    fact.outcome = Outcome::Allow;
                    fact.exp = w.exp;
                }
            }
            Entry::Revocation { time, jti, operator, reason, .. } => {
                let action = OperatorAction {
                    time: *time,
                    operator: operator.clone(),
                    reason: reason.clone(),
                    log_index: index,
                    rule: None,
                    triggers: Vec::new(),
                };
                self.revoked.entry(jti.clone()).or_insert(action);
                self.chain_revoked(jti);
            }
            // The keys themselves live with the signer; the log keeps the history.
            Entry::KeyRotation { .. } => {}
            Entry::Quarantine { time, subject, isolated, operator, reason, rule, triggers } => {
                if *isolated {
                    let action = OperatorAction {
                        time: *time,
                        operator: operator.clone(),
                        reason: reason.clone(),
                        log_index: index,
                        rule: rule.clone(),
                        triggers: triggers.clone(),
                    };
                    self.quarantined.insert(subject.clone(), action);
                } else {
                    self.quarantined.remove(subject);
                }
            }
            Entry::Activation {
                check: BundleCheck { time, digest, name, version, accepted: true, signer, signature, operator, .. },
                parts,
            } => {
                self.know_bundle(*time, digest, name, version, signer, signature, parts);
                if let Some(b) = self.active.take().and_then(|d| self.bundles.get_mut(&d)) {
                    b.summary.active = false;
                }
                if let Some(b) = self.bundles.get_mut(digest) {
                    b.summary.active = true;
                    b.summary.last_activated = Some(*time);
                    b.summary.last_activated_by = operator.clone();
                    b.activations.push_back(OperatorAction {
                        time: *time,
                        operator: operator.clone(),
                        reason: String::new(),
                        log_index: index,
                        rule: None,
                        triggers: Vec::new(),
                    });
                    if b.activations.len() > MAX_ACTIVATIONS_KEPT {
                        b.activations.pop_front();
                    }
                }
                self.active = Some(digest.clone());
                self.reevaluation_due = Some((index, digest.clone(), operator.clone()));
            }
            Entry::Reevaluation { activation, .. } => {
                if self.reevaluation_due.as_ref().is_some_and(|due| due.0 == *activation) {
                    self.reevaluation_due = None;
                }
            }
            Entry::Upload {
                check: BundleCheck { time, digest, name, version, accepted: true, signer, signature, .. },
                parts: Some(parts),
            } => {
                self.know_bundle(*time, digest, name, version, signer, signature, parts);
            }
            Entry::Outcome { jti, status, .. } => {
                self.outcomes.entry(jti.clone()).or_insert(*status);
                let origin = self.decisions.get(jti).and_then(|d| d.chain.as_ref()).map(|(o, _)| o.clone());
                if let Some(chain) = origin.and_then(|o| self.chains.get_mut(&o)) {
                    chain.ended_by.get_or_insert_with(|| jti.clone());
                }
            }
            Entry::Shadow { time, bundle, operator, .. } => {
                self.shadow = bundle.as_ref().map(|digest| {
                    let (name, version) = self
                        .bundles
                        .get(digest)
                        .map(|b| (b.summary.name.clone(), b.summary.version.clone()))
                        .unwrap_or_default();
                    ShadowSetting {
                        name,
                        version,
                        digest: digest.clone(),
                        set_at: *time,
                        set_by: operator.clone(),
                        log_index: index,
                    }
                });
            }
            // Counted by the isolation tracker above, and nothing else.
            Entry::Presentation { .. } => {}
            Entry::Activation { .. } | Entry::Upload { .. } | Entry::AnonymousAttempts { .. } => {}
        }
    }

    #[allow(clippy::too_many_arguments, reason = "the fields of one entry, destructured by the caller")]
    fn know_bundle(
        &mut self,
        time: u64,
        digest: &str,
        name: &str,
        version: &str,
        signer: &Option<String>,
        signature: &str,
        parts: &BundleParts,
    ) {
        self.bundles.entry(digest.to_owned()).or_insert_with(|| KnownBundle {
            summary: BundleSummary {
                digest: digest.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
                signer: signer.clone(),
                first_seen: time,
                last_activated: None,
                last_activated_by: None,
                active: false,
            },
            signature: signature.to_owned(),
            parts: parts.clone(),
            activations: VecDeque::new(),
        });
    }

    /// What the lineage stage needs of a parent writ. `revoked` is true when the parent or
    /// any writ above it was revoked: a revocation stops every descendant.
    pub(crate) fn parent(&self, id: &str) -> ParentFact {
        match self.decisions.get(id) {
            None => ParentFact::Unknown,
            Some(d) => ParentFact::Known {
                allowed: d.outcome == Outcome::Allow,
                exp: self.renewed_exp(id, d.exp),
                revoked: self.revoked_in_lineage(id).is_some(),
                root: d.root.clone().unwrap_or_else(|| id.to_owned()),
                depth: d.depth,
                scope: d.scope.as_deref().cloned(),
                action: d.action.to_string(),
                subject: Some(d.subject.to_string()),
            },
        }
    }

    /// The expiry of the newest writ renewing `id` (through renewals of renewals), or `exp`
    /// (that of `id`) if it was never renewed: a parent renewed keeps its children's
    /// authority alive (unless that renewal was revoked). The newest renewal is the present
    /// policy's answer, so its expiry is the one that counts; one that waits for an approval
    /// (or was refused one) extends nothing, and only the chain's last renewal can be such.
    fn renewed_exp(&self, id: &str, exp: u64) -> u64 {
        let Some(d) = self.decisions.get(id) else { return exp };
        let (origin, position) = match &d.chain {
            Some((origin, position)) => (origin.as_str(), *position),
            None => (id, 0),
        };
        let Some(chain) = self.chains.get(origin) else { return exp };
        // A revoked renewal extends nothing (nor does any renewal after it).
        let end =
            chain.revoked_from.map_or(chain.members.len(), |q| chain.members.len().min((q as usize).saturating_sub(1)));
        let after = chain.members.get(position as usize..end).unwrap_or_default();
        after
            .iter()
            .rev()
            .filter_map(|m| self.decisions.get(m))
            .find(|m| m.outcome == Outcome::Allow)
            .map_or(exp, |newest| exp.max(newest.exp))
    }

    /// Adds `renewal` (of `subject`), the first renewal of `renewed`, to `renewed`'s chain,
    /// and returns its place there. `None` (the renewal is walked like a parent, as bounded
    /// lineage walks are) if the chain's shape is not the line it must be, or the renewal's
    /// subject is not its chain's: the shortcut relies on both.
    fn extend_chain(&mut self, renewed: &str, renewal: &str, subject: &str) -> Option<(String, u32)> {
        let of = self.decisions.get(renewed)?;
        if &*of.subject != subject {
            return None;
        }
        let (origin, position) = match &of.chain {
            Some((origin, position)) => (origin.clone(), position.checked_add(1)?),
            None if of.renews.is_none() => (renewed.to_owned(), 1),
            // A renewal outside any chain: walked.
            None => return None,
        };
        let chain = self.chains.entry(origin.clone()).or_default();
        if chain.members.len() as u64 + 1 != u64::from(position) {
            return None;
        }
        chain.members.push(renewal.to_owned());
        // A revocation applied before its decision (one commit batch applies out of order).
        if self.revoked.contains_key(renewal) {
            chain.revoked_from = Some(chain.revoked_from.map_or(position, |q| q.min(position)));
        }
        Some((origin, position))
    }

    /// Marks the chain of `jti`, a revoked renewal, revoked from its position on.
    fn chain_revoked(&mut self, jti: &str) {
        let Some((origin, position)) = self.decisions.get(jti).and_then(|d| d.chain.clone()) else { return };
        if let Some(chain) = self.chains.get_mut(&origin) {
            chain.revoked_from = Some(chain.revoked_from.map_or(position, |q| q.min(position)));
        }
    }

    /// The writ a lineage walk goes to next above `d`: for a renewal in a chain, the chain's
    /// origin (the renewals between have the same subject, and of them only a revocation can
    /// refuse, which the chain records); else the writ it renews, else its parent.
    fn above<'a>(&'a self, d: &'a DecisionFact) -> Option<&'a str> {
        match &d.chain {
            Some((origin, _)) => Some(origin),
            None => d.up(),
        }
    }

    /// The revoked renewal of `d`'s chain at or before `d`'s position, if any.
    fn revoked_before<'a>(&'a self, d: &DecisionFact) -> Option<&'a str> {
        let (origin, position) = d.chain.as_ref()?;
        let chain = self.chains.get(origin)?;
        let q = chain.revoked_from.filter(|q| q <= position)?;
        chain.members.get((q as usize).saturating_sub(1)).map(String::as_str)
    }

    /// The writ under which the execution `id` belongs to reported its outcome (`id` itself,
    /// the origin of its renewal chain, or any renewal of that chain: an execution that
    /// reported its end under an older writ of the chain is over too), if it did.
    pub(crate) fn execution_ended<'a>(&'a self, id: &'a str) -> Option<&'a str> {
        let origin = self.decisions.get(id).and_then(|d| d.chain.as_ref()).map_or(id, |(o, _)| o.as_str());
        [id, origin]
            .into_iter()
            .find(|j| self.outcomes.contains_key(*j))
            .or_else(|| self.chains.get(origin).and_then(|c| c.ended_by.as_deref()))
    }

    /// The renewal of `id`, if an allowed one (or one waiting for an approval) was recorded.
    pub(crate) fn renewed_by(&self, id: &str) -> Option<&str> {
        self.renewed_by.get(id).map(String::as_str)
    }

    /// The log index of decision `id`, its outcome and subject.
    pub(crate) fn decision(&self, id: &str) -> Option<(u64, Outcome, &str)> {
        self.decisions.get(id).map(|d| (d.index, d.outcome, &*d.subject))
    }

    /// Walks up from `id` through its parents (and from a renewal through the writ it renews,
    /// or past its whole chain to the chain's origin: [`RenewalChain`]), bounded by
    /// [`MAX_LINEAGE_WALK`], and returns what `found` says of the first writ it says
    /// something of (it sees each id, and its decision if the state holds one; of the
    /// renewals a chain skips, the first revoked one). `Err` with the id where the walk stopped when the
    /// chain cannot be walked to its root: a writ the state does not hold, or a chain
    /// longer than the bound.
    fn find_in_lineage<T>(
        &self,
        id: &str,
        found: impl Fn(&str, Option<&DecisionFact>) -> Option<T>,
    ) -> Result<Option<T>, String> {
        let mut at = id;
        for _ in 0..MAX_LINEAGE_WALK {
            let d = self.decisions.get(at).map(|d| &**d);
            if let Some(t) = found(at, d) {
                return Ok(Some(t));
            }
            let Some(d) = d else { return Err(at.to_owned()) };
            // The renewals between a renewal and its chain's origin: only a revoked one can
            // matter (their subject is this one's), and the chain names the first.
            if let Some(revoked) = self.revoked_before(d)
                && let Some(t) = found(revoked, self.decisions.get(revoked).map(|d| &**d))
            {
                return Ok(Some(t));
            }
            match self.above(d) {
                None => return Ok(None),
                Some(p) => at = p,
            }
        }
        Err(at.to_owned())
    }

    /// The first writ, walking up from `id` through its parents, that was revoked (`id`
    /// itself included); also `Some` when the chain cannot be walked to its root: fail closed.
    pub(crate) fn revoked_in_lineage(&self, id: &str) -> Option<String> {
        self.find_in_lineage(id, |at, _| self.revoked.contains_key(at).then(|| at.to_owned())).unwrap_or_else(Some)
    }

    /// Whether a writ may still be used, beyond its signature and time: its principal (and
    /// every principal above it in its lineage) is not quarantined, and no writ of its
    /// lineage was revoked. The refusal's reason code and detail otherwise.
    pub(crate) fn standing(&self, jti: &str, subject: &str) -> Result<(), (ReasonCode, String)> {
        if self.is_quarantined(subject) {
            return Err((ReasonCode::Quarantined, format!("{subject} is isolated until an operator releases it")));
        }
        let above = |at: &str| if at == jti { String::new() } else { format!("writ {at} above it in its lineage: ") };
        let refusal = self.find_in_lineage(jti, |at, d| {
            if self.revoked.contains_key(at) {
                return Some((ReasonCode::WritRevoked, format!("{}the writ was revoked", above(at))));
            }
            let d = d.filter(|d| self.is_quarantined(&d.subject))?;
            Some((
                ReasonCode::Quarantined,
                format!("{}{} is isolated until an operator releases it", above(at), d.subject),
            ))
        });
        match refusal {
            Ok(None) => Ok(()),
            Ok(Some(r)) => Err(r),
            Err(at) => Err((
                ReasonCode::WritRevoked,
                format!(
                    "{}not in the log, or its lineage is longer than any depth limit: its standing cannot be established",
                    above(&at)
                ),
            )),
        }
    }

    /// What the revocation feed publishes at `now`: every writ still inside its window
    /// (`exp + skew > now`) that is revoked or has a revoked writ above it, every isolated
    /// principal, and every writ still inside its window with an isolated principal above it.
    pub(crate) fn feed_lists(&self, now: u64, skew: u64) -> FeedLists {
        let live = |id: &str| {
            self.decisions
                .get(id)
                .filter(|d| d.outcome == Outcome::Allow && d.exp.saturating_add(skew) > now)
                .map(|d| (id.to_owned(), d.exp))
        };
        // Breadth first under each starting writ; `seen` keeps a writ below two starting
        // points from being listed twice.
        let below = |starts: &mut dyn Iterator<Item = &str>, include_start: bool| {
            let mut seen: HashSet<&str> = HashSet::new();
            let mut out = Vec::new();
            let mut queue: VecDeque<(&str, bool)> = starts.map(|s| (s, include_start)).collect();
            while let Some((at, include)) = queue.pop_front() {
                if !seen.insert(at) {
                    continue;
                }
                if include && let Some(w) = live(at) {
                    out.push(w);
                }
                if let Some(kids) = self.children.get(at) {
                    queue.extend(kids.iter().map(|k| (k.as_str(), true)));
                }
            }
            out.sort();
            out
        };
        let revoked = below(&mut self.revoked.keys().map(String::as_str), true);
        // The writs of isolated principals are refused by their subject; those below them by
        // their id.
        let isolated_lineage = if self.quarantined.is_empty() {
            Vec::new()
        } else {
            let mut starts = self
                .decisions
                .iter()
                .filter(|(_, d)| d.outcome == Outcome::Allow && self.quarantined.contains_key(&*d.subject))
                .map(|(id, _)| id.as_str());
            below(&mut starts, false)
        };
        FeedLists { revoked, quarantined: self.quarantined.keys().cloned().collect(), isolated_lineage }
    }

    /// Every outstanding writ at `now`: allowed, inside its window (`exp + skew > now`), and
    /// neither it nor any writ above it revoked; with the log index of its decision.
    pub(crate) fn outstanding(&self, now: u64, skew: u64) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .decisions
            .iter()
            .filter(|(id, d)| {
                d.outcome == Outcome::Allow && d.exp.saturating_add(skew) > now && self.revoked_in_lineage(id).is_none()
            })
            .map(|(id, d)| (id.clone(), d.index))
            .collect();
        out.sort_by_key(|(_, index)| *index);
        out
    }

    /// The outstanding writs strictly below `id` in its lineage (allowed, inside their
    /// window, not revoked themselves), breadth first.
    pub(crate) fn outstanding_below(&self, id: &str, now: u64, skew: u64) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        let mut queue: VecDeque<&str> = self.children.get(id).into_iter().flatten().map(String::as_str).collect();
        while let Some(at) = queue.pop_front() {
            if !seen.insert(at) {
                continue;
            }
            if self.decisions.get(at).is_some_and(|d| {
                d.outcome == Outcome::Allow && d.exp.saturating_add(skew) > now && !self.revoked.contains_key(at)
            }) {
                out.push(at.to_owned());
            }
            if let Some(kids) = self.children.get(at) {
                queue.extend(kids.iter().map(String::as_str));
            }
        }
        out
    }

    /// The outstanding writs of `subject` at `now` (allowed, inside their window, neither
    /// they nor a writ above them revoked) and its decisions still waiting for an approval
    /// (not revoked): what its automatic isolation revokes.
    pub(crate) fn outstanding_of(&self, subject: &str, now: u64, skew: u64) -> Vec<String> {
        let mut out: Vec<(u64, String)> = self
            .decisions
            .iter()
            .filter(|(id, d)| {
                &*d.subject == subject
                    && match d.outcome {
                        Outcome::Allow => d.exp.saturating_add(skew) > now && self.revoked_in_lineage(id).is_none(),
                        Outcome::Pending => {
                            !self.revoked.contains_key(*id)
                                && self.approvals.get(*id).is_some_and(|a| a.status_at(now) == ApprovalStatus::Pending)
                        }
                        Outcome::Deny => false,
                    }
            })
            .map(|(id, d)| (d.index, id.clone()))
            .collect();
        out.sort();
        out.into_iter().map(|(_, id)| id).collect()
    }

    /// The principals a rule has tripped for that are not isolated yet, with what tripped.
    pub(crate) fn isolation_due(&self) -> Vec<(String, Due)> {
        self.isolation.due()
    }

    /// Whether a principal is due to be isolated.
    pub(crate) fn any_isolation_due(&self) -> bool {
        self.isolation.any_due()
    }

    /// Whether a refusal of a writ of `subject` with `reason` is to be recorded (see
    /// [`Tracker::counts_presentation`]).
    pub(crate) fn counts_presentation(&self, subject: &str, reason: ReasonCode) -> bool {
        self.isolation.counts_presentation(subject, reason)
    }

    /// The principals isolated automatically (subject, rule, quarantine entry index).
    pub(crate) fn quarantined_automatically(&self) -> Vec<(String, String, u64)> {
        self.quarantined
            .iter()
            .filter_map(|(s, a)| a.rule.as_ref().map(|r| (s.clone(), r.clone(), a.log_index)))
            .collect()
    }

    /// The newest activation (log index, digest, operator) if no `reevaluation` entry
    /// follows it.
    pub(crate) fn reevaluation_due(&self) -> Option<(u64, String, Option<String>)> {
        self.reevaluation_due.clone()
    }

    pub(crate) fn is_quarantined(&self, subject: &str) -> bool {
        self.quarantined.contains_key(subject)
    }

    pub(crate) fn is_revoked(&self, id: &str) -> bool {
        self.revoked.contains_key(id)
    }

    pub(crate) fn quarantined(&self) -> Vec<(String, OperatorAction)> {
        self.quarantined.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn revoked(&self) -> Vec<(String, OperatorAction)> {
        self.revoked.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn bundles(&self) -> Vec<BundleSummary> {
        self.bundles.values().map(|b| b.summary.clone()).collect()
    }

    pub(crate) fn shadow(&self) -> Option<&ShadowSetting> {
        self.shadow.as_ref()
    }

    pub(crate) fn bundle(&self, digest: &str) -> Option<&KnownBundle> {
        self.bundles.get(digest)
    }

    pub(crate) fn bundle_detail(&self, digest: &str) -> Option<BundleDetail> {
        self.bundles.get(digest).map(|b| BundleDetail {
            summary: b.summary.clone(),
            activations: b.activations.iter().cloned().collect(),
            parts: b.parts.clone(),
        })
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The subject of an allowed decision, and whether an outcome was already reported.
    pub(crate) fn allowed_writ(&self, jti: &str) -> Option<(&str, bool)> {
        self.decisions
            .get(jti)
            .filter(|d| d.outcome == Outcome::Allow)
            .map(|d| (&*d.subject, self.outcomes.contains_key(jti)))
    }

    /// Every decision under the root of `id`, breadth first from the root.
    pub(crate) fn lineage(&self, id: &str) -> Option<Lineage> {
        let mut top = id.to_owned();
        let mut fact = self.decisions.get(id)?;
        // Walk up through the parents the log knows (bounded: a chain is at most as deep as
        // the decisions that name parents).
        for _ in 0..MAX_LINEAGE_NODES {
            match self.above(fact).and_then(|p| self.decisions.get(p).map(|f| (p, f))) {
                Some((p, f)) => {
                    top = p.to_owned();
                    fact = f;
                }
                None => break,
            }
        }
        let mut nodes = Vec::new();
        let mut queue = VecDeque::from([top.clone()]);
        let mut truncated = false;
        while let Some(next) = queue.pop_front() {
            if nodes.len() >= MAX_LINEAGE_NODES {
                truncated = true;
                break;
            }
            let Some(d) = self.decisions.get(&next) else { continue };
            nodes.push(LineageNode {
                id: next.clone(),
                parent: d.parent.clone(),
                subject: d.subject.to_string(),
                action: d.action.to_string(),
                outcome: d.outcome,
                reason: d.reason,
                depth: d.depth,
                time: d.time,
                log_index: d.index,
                revoked: self.revoked.contains_key(&next),
                execution: self.outcomes.get(&next).copied(),
                renews: d.renews.clone(),
            });
            if let Some(kids) = self.children.get(&next) {
                queue.extend(kids.iter().cloned());
            }
        }
        Some(Lineage { root: top, focus: id.to_owned(), nodes, truncated })
    }

    /// The lineage roots over the decisions a search selects, newest root first, at most
    /// `q.limit` of them: for every decision by `q.principal` (if given) made in
    /// `[q.since, q.until)` (if given), the root its chain of parents leads to. One pass
    /// over the decisions, under the state lock.
    pub(crate) fn lineage_roots(&self, q: &LineageSearch) -> Vec<LineageRoot> {
        let mut matched: HashMap<&str, u64> = HashMap::new();
        for (id, d) in &self.decisions {
            if q.principal.as_deref().is_some_and(|p| &*d.subject != p)
                || q.since.is_some_and(|s| d.time < s)
                || q.until.is_some_and(|u| d.time >= u)
            {
                continue;
            }
            *matched.entry(self.top_of(id)).or_default() += 1;
        }
        let mut out: Vec<LineageRoot> = matched
            .into_iter()
            .filter_map(|(root, n)| {
                let d = self.decisions.get(root)?;
                Some(LineageRoot {
                    root: root.to_owned(),
                    subject: d.subject.to_string(),
                    action: d.action.to_string(),
                    outcome: d.outcome,
                    time: d.time,
                    log_index: d.index,
                    matched: n,
                })
            })
            .collect();
        out.sort_by(|a, b| b.time.cmp(&a.time).then(b.log_index.cmp(&a.log_index)));
        out.truncate(q.limit);
        out
    }

    /// The top of the chain of parents the log knows above decision `id` (as
    /// [`State::lineage`] walks it).
    fn top_of<'a>(&'a self, id: &'a str) -> &'a str {
        let mut top = id;
        for _ in 0..MAX_LINEAGE_NODES {
            // As the lineage view walks: a renewal goes up to the writ it renews (its chain's
            // origin), so that it is never listed as a root of its own.
            match self.decisions.get(top).and_then(|f| self.above(f)) {
                Some(p) if self.decisions.contains_key(p) => top = p,
                _ => break,
            }
        }
        top
    }

    /// The decision `id` that needed an approval, as it stands at `now`.
    pub(crate) fn approval(&self, id: &str, now: u64) -> Option<Approval> {
        self.approvals.get(id).map(|a| Approval { status: a.status_at(now), ..a.clone() })
    }

    /// Decisions that needed an approval, newest first: those still pending at `now` only,
    /// or all of them; at most `limit`.
    pub(crate) fn approvals(&self, now: u64, pending_only: bool, limit: usize) -> Vec<Approval> {
        let mut all: Vec<&Approval> =
            self.approvals.values().filter(|a| !pending_only || a.status_at(now) == ApprovalStatus::Pending).collect();
        all.sort_by_key(|a| std::cmp::Reverse(a.log_index));
        all.into_iter().take(limit).map(|a| Approval { status: a.status_at(now), ..a.clone() }).collect()
    }

    /// Allowed calls by `subject` for `action` in the minute and hour before `now`.
    pub(crate) fn usage(&self, subject: &str, action: &str, now: u64) -> Usage {
        let Some(window) = self.usage.get(subject).and_then(|by_action| by_action.get(action)) else {
            return Usage::default();
        };
        Usage { last_minute: window.within(now, 60), last_hour: window.within(now, HOUR) }
    }
}

/// A read-only view of the standing of issued writs, rebuilt from a log: what an
/// enforcement point outside the control plane (`writ verify`) checks after a writ's
/// signature, time, audience and binding: no writ of its lineage revoked, its principal
/// and every principal above it not isolated.
pub struct Standing(State);

impl std::fmt::Debug for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standing").finish_non_exhaustive()
    }
}

impl Standing {
    /// Reads every entry of `log`. An entry the engine cannot read fails (fail closed: a
    /// revocation it held would otherwise be skipped).
    pub fn from_log(log: &writ_log::Log) -> Result<Standing, crate::EngineError> {
        let mut state = State::default();
        for item in log.entries_from(0) {
            let (i, bytes) = item?;
            let entry: Entry = serde_json::from_slice(&bytes)
                .map_err(|e| crate::EngineError::UnreadableEntry { index: i, source: crate::Cause::new(e) })?;
            state.apply(&entry, i);
        }
        Ok(Standing(state))
    }

    /// Whether the writ with these claims may still be used (see [`Standing`]).
    pub fn check(&self, claims: &crate::WritClaims) -> Result<(), crate::WritRejection> {
        self.0.standing(&claims.jti, &claims.sub).map_err(|(reason, detail)| crate::WritRejection::new(reason, detail))
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
