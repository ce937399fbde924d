//! Denies that explain themselves: the `@reason("…")` annotation of a policy (for a permit,
//! what it requires; for a forbid, why it forbids) and, for a `policy.denied` deny, which
//! policies forbade it or which permits came closest.
//!
//! The "closest permits" of a request are the bundle's permit policies whose *scope* could
//! hold for it: the action constraint is absent, `==` the request's action, or `in` a list
//! holding it (or one of its action groups); and the resource constraint is absent, or
//! names this resource or an ancestor of it, or its type. Their conditions (`when`/`unless`)
//! did not hold, and their `@reason` says what those conditions require. Scopes are read
//! through `cedar-policy`'s public API ([`Policy::action_constraint`],
//! [`Policy::resource_constraint`]), never by parsing Cedar text.
//!
//! Annotation texts come from the bundle author, and the answer goes to agents, terminals
//! and the console: each text is bounded ([`MAX_REASON_CHARS`]) and its control characters
//! are written as `\u{…}` escapes when the bundle compiles, and at most [`MAX_CLOSEST`]
//! permits are named. The reason codes of a decision never change: this is human text and
//! a structured mirror of it, nothing a client should branch on.

use std::collections::HashSet;

use cedar_policy::{ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, ResourceConstraint};
use serde::{Deserialize, Serialize};

/// The annotation that carries a policy's human reason.
pub const REASON_ANNOTATION: &str = "reason";

/// Longest `@reason` text kept, in characters (longer texts end in `…`).
pub const MAX_REASON_CHARS: usize = 280;

/// Most permits named as the closest ones (the rest are counted).
pub const MAX_CLOSEST: usize = 8;

/// The text used for a policy without `@reason`.
pub const NO_REASON: &str = "(no @reason given)";

/// Why a `policy.denied` deny happened, in the bundle author's words.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Explanation {
    /// The permits that came closest (same action, resource admitted by their scope),
    /// when no permit applied; by policy id, at most [`MAX_CLOSEST`].
    #[serde(default)]
    pub closest_permits: Vec<ClosestPermit>,
    /// Closest permits left out beyond [`MAX_CLOSEST`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_permits: usize,
    /// The forbid policies that decided, by policy id.
    #[serde(default)]
    pub forbidden_by: Vec<ForbiddenBy>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A permit whose scope matched but whose conditions did not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosestPermit {
    /// The policy's `@id`.
    pub policy: String,
    /// What it requires (its `@reason`, or [`NO_REASON`]).
    pub requires: String,
}

/// A forbid that decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForbiddenBy {
    /// The policy's `@id`.
    pub policy: String,
    /// Why it forbids (its `@reason`, or [`NO_REASON`]).
    pub reason: String,
}

impl Explanation {
    /// The one-line human form, for a decision's `detail`.
    pub fn text(&self) -> String {
        if !self.forbidden_by.is_empty() {
            let each: Vec<String> = self.forbidden_by.iter().map(|f| format!("{} ({})", f.policy, f.reason)).collect();
            return format!("forbidden by {}", each.join("; "));
        }
        if self.closest_permits.is_empty() {
            return "no policy permits this (no permit policy applies to this action and resource)".to_owned();
        }
        let each: Vec<String> =
            self.closest_permits.iter().map(|p| format!("{} requires: {}", p.policy, p.requires)).collect();
        let more = if self.more_permits > 0 { format!("; and {} more", self.more_permits) } else { String::new() };
        format!("no policy permits this; closest: {}{more}", each.join("; "))
    }
}

/// A policy's `@reason`, bounded and with control characters escaped; `None` without one.
pub(crate) fn reason_of(p: &Policy) -> Option<String> {
    p.annotation(REASON_ANNOTATION).map(sanitize)
}

/// At most [`MAX_REASON_CHARS`] characters, control characters (C0, DEL, C1, and the
/// Unicode line/paragraph separators and bidirectional overrides) written as `\u{…}`.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_REASON_CHARS * 4));
    for (n, c) in text.chars().enumerate() {
        if n >= MAX_REASON_CHARS {
            out.push('…');
            break;
        }
        let unsafe_char =
            c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if unsafe_char {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A permit's scope, as far as the closest-permit search reads it.
pub(crate) struct PermitScope {
    pub(crate) id: String,
    /// The actions (ids of `Writ::Action`) its action constraint admits; `None`: any.
    actions: Option<HashSet<String>>,
    resource: ResourceConstraint,
    pub(crate) requires: String,
}

impl PermitScope {
    /// Reads a permit's scope. `actions` are the schema's declared actions with the action
    /// entities (for groups), to resolve `action in [...]` once, here.
    pub(crate) fn new(id: &str, p: &Policy, declared: &[EntityUid], action_entities: &Entities) -> Self {
        let covers = |targets: &[EntityUid]| -> HashSet<String> {
            declared
                .iter()
                .filter(|a| targets.iter().any(|t| t == *a || action_entities.is_ancestor_of(t, a)))
                .map(|a| a.id().unescaped().to_owned())
                .collect()
        };
        let actions = match p.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(a) => Some(covers(std::slice::from_ref(&a))),
            ActionConstraint::In(list) => Some(covers(&list)),
        };
        PermitScope {
            id: id.to_owned(),
            actions,
            resource: p.resource_constraint(),
            requires: reason_of(p).unwrap_or_else(|| NO_REASON.to_owned()),
        }
    }

    /// Whether this scope could hold for the action and resource.
    pub(crate) fn admits(
        &self,
        action: &str,
        resource: &EntityUid,
        resource_type: &EntityTypeName,
        entities: &Entities,
    ) -> bool {
        if self.actions.as_ref().is_some_and(|a| !a.contains(action)) {
            return false;
        }
        let within = |target: &EntityUid| target == resource || entities.is_ancestor_of(target, resource);
        match &self.resource {
            ResourceConstraint::Any => true,
            ResourceConstraint::Eq(target) => target == resource,
            ResourceConstraint::In(target) => within(target),
            ResourceConstraint::Is(ty) => ty == resource_type,
            ResourceConstraint::IsIn(ty, target) => ty == resource_type && within(target),
        }
    }
}
