//! The decision as a pure function of its recorded inputs (SPEC.md §1): request, stage
//! facts, limits, evaluation time and the policy bundle. The live pipeline gathers the
//! facts and calls [`decide`]; `writ log replay` calls the same function on what the log
//! recorded, so a decision reproduces bit for bit or the difference is reported.
//!
//! The stages run in the SPEC's order and each can only narrow the outcome: identity,
//! runtime attestation, quarantine, lineage, policy. The first failing stage gives the
//! primary reason code.

use serde_json::{Map, Value, json};
use writ_core::ReasonCode;
use writ_policy::{CompiledBundle, EntityInput, Explanation, PolicyInput, PolicyOutcome};

use crate::clock::rfc3339;
use crate::record::{
    Checked, DecisionOutcome, Facts, IdentityFact, Outcome, ParentFact, RecordedLimits, RecordedRequest,
};
use writ_verify::Scope;

/// The lineage position an allow gives the new writ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The root writ id; `None` when the new writ is itself a root.
    pub root: Option<String>,
    /// Depth (0 for a root).
    pub depth: u32,
    /// Scope handed to its children.
    pub scope: Scope,
}

/// A decision and, for an allow or a pending decision, the writ's place in the lineage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// The decision.
    pub outcome: DecisionOutcome,
    /// Lineage placement (allow and pending only).
    pub placement: Option<Placement>,
    /// For a `policy.denied` deny by the bundle's policies: the forbids that decided or the
    /// permits that came closest, with their `@reason` (its text is also the `detail`).
    /// Not recorded in the log: a function of the recorded request and bundle.
    pub explanation: Option<Explanation>,
}

fn deny(reason: ReasonCode, detail: impl Into<String>) -> Decided {
    Decided {
        outcome: DecisionOutcome {
            outcome: Outcome::Deny,
            reasons: vec![reason],
            policies: Vec::new(),
            detail: detail.into(),
        },
        placement: None,
        explanation: None,
    }
}

/// The principal's trust zone (`zone` claim; none is the empty zone). A claim of another
/// type is refused here too, not read as absent (the identity stage refuses it first).
fn zone_of(identity: &IdentityFact) -> Result<String, String> {
    match identity.claims.get("zone") {
        None => Ok(String::new()),
        Some(Value::String(z)) => Ok(z.clone()),
        Some(other) => Err(format!("claim \"zone\" is not a string: {other}")),
    }
}

/// The actions a principal's credential lets it delegate (`scope` claim), if it narrows.
/// Anything but an array of strings is refused: read as "no restriction", a mistyped
/// `scope` would hand children every action.
fn requested_scope(identity: &IdentityFact) -> Result<Option<Vec<String>>, String> {
    let Some(scope) = identity.claims.get("scope") else { return Ok(None) };
    let bad = || format!("claim \"scope\" is not an array of strings: {scope}");
    let items = scope.as_array().ok_or_else(bad)?;
    items.iter().map(|i| i.as_str().map(str::to_owned).ok_or_else(bad)).collect::<Result<Vec<_>, _>>().map(Some)
}

/// Whether the parent writ's principal let this one act under it: the same principal, or a
/// verified delegation credential of the parent's principal whose `may_act` names this one.
fn delegated(parent: Option<&str>, identity: &IdentityFact, facts: &Facts) -> Result<(), String> {
    let Some(parent) = parent else { return Err("its principal is not recorded".into()) };
    if parent == identity.subject {
        return Ok(());
    }
    let Some(Checked::Ok(d)) = facts.delegation.get(writ_core::Presented::Delegation.name()) else {
        return Err(format!("{parent} did not delegate to {} (no delegation credential)", identity.subject));
    };
    let delegate = d.claims.get(writ_identity::MAY_ACT).and_then(|m| m.get("sub")).and_then(Value::as_str);
    if d.subject != parent || delegate != Some(identity.subject.as_str()) {
        return Err(format!(
            "the delegation credential is {}'s naming {}, not {parent}'s naming {}",
            d.subject,
            delegate.unwrap_or("nobody"),
            identity.subject
        ));
    }
    Ok(())
}

/// Decides. Deterministic: no clock, no randomness, no I/O.
pub fn decide(
    request: &RecordedRequest,
    facts: &Facts,
    limits: &RecordedLimits,
    time: u64,
    bundle: Option<&CompiledBundle>,
) -> Decided {
    // 1. Identity: the workload credential, then the delegation chain.
    let identity = match &facts.identity {
        Checked::Ok(i) => i,
        Checked::Failed { reason, detail } => return deny(*reason, format!("workload credential: {detail}")),
    };
    for (role, checked) in &facts.delegation {
        if let Checked::Failed { reason, detail } = checked {
            return deny(*reason, format!("{role} credential: {detail}"));
        }
    }
    // The claims the later stages read, with their types.
    let (zone, requested) = match zone_of(identity).and_then(|z| requested_scope(identity).map(|r| (z, r))) {
        Ok(claims) => claims,
        Err(why) => return deny(ReasonCode::IdentityMalformed, format!("workload credential: {why}")),
    };
    // A renewal: the writ presented must still stand, and be the caller's.
    if let Some(Checked::Failed { reason, detail }) = &facts.renewal {
        return deny(*reason, format!("renewal: {detail}"));
    }
    // 2. Runtime attestation (policy decides whether one is required).
    let runtime = match &facts.attestation {
        None => None,
        Some(Checked::Ok(a)) => Some(a),
        Some(Checked::Failed { detail, .. }) => {
            return deny(ReasonCode::AttestationInvalid, format!("attestation: {detail}"));
        }
    };
    // 3. Quarantine.
    if facts.quarantined {
        return deny(
            ReasonCode::Quarantined,
            format!("{} is isolated until an operator releases it", identity.subject),
        );
    }
    // 4. Lineage. A parent is proven by possession of its writ, not by naming it (ids are
    // public in the log), and its principal must have delegated to this one.
    if limits.lineage_by_possession {
        match (&request.parent, &facts.parent_writ) {
            // A parent writ that does not verify (its own `writ.*` code recorded, or
            // `lineage.parent_unknown` in entries written before) proves no parent.
            (_, Some(Checked::Failed { reason, detail })) => {
                let reason =
                    if reason.as_str().starts_with("writ.") { ReasonCode::LineageParentUnknown } else { *reason };
                return deny(reason, detail.clone());
            }
            (Some(parent), None) => {
                return deny(
                    ReasonCode::LineageParentUnknown,
                    format!(
                        "parent writ {parent} is named but not presented: a child proves its parent by presenting the parent writ (parent_writ)"
                    ),
                );
            }
            _ => {}
        }
    }
    let placement = match (&request.parent, &facts.parent) {
        (None, _) => {
            let all = Scope { zone: zone.clone(), actions: vec!["*".to_owned()] };
            Placement { root: None, depth: 0, scope: all.narrow(&zone, requested.as_deref()) }
        }
        (Some(parent), None) | (Some(parent), Some(ParentFact::Unknown)) => {
            return deny(ReasonCode::LineageParentUnknown, format!("parent writ {parent} is not in the log"));
        }
        (Some(parent), Some(ParentFact::Known { allowed, exp, revoked, root, depth, scope, subject, .. })) => {
            if !allowed {
                return deny(ReasonCode::LineageParentDenied, format!("parent writ {parent} was denied"));
            }
            if limits.lineage_by_possession
                && let Err(why) = delegated(subject.as_deref(), identity, facts)
            {
                return deny(ReasonCode::LineageScopeEscalation, format!("parent writ {parent}: {why}"));
            }
            if *revoked {
                return deny(ReasonCode::LineageParentRevoked, format!("parent writ {parent} was revoked"));
            }
            if time >= *exp {
                return deny(ReasonCode::LineageParentExpired, format!("parent writ {parent} expired at {exp}"));
            }
            let child_depth = depth.saturating_add(1);
            if child_depth > limits.max_depth {
                return deny(
                    ReasonCode::LineageDepthExceeded,
                    format!("depth {child_depth} exceeds the limit of {}", limits.max_depth),
                );
            }
            let Some(parent_scope) = scope else {
                return deny(ReasonCode::LineageParentDenied, format!("parent writ {parent} carries no scope"));
            };
            if parent_scope.zone != zone {
                return deny(
                    ReasonCode::LineageScopeEscalation,
                    format!("zone {zone:?} is outside the parent's zone {:?}", parent_scope.zone),
                );
            }
            if !parent_scope.allows(&request.action) {
                return deny(
                    ReasonCode::LineageScopeEscalation,
                    format!("action {:?} is outside the parent's scope {:?}", request.action, parent_scope.actions),
                );
            }
            Placement {
                root: Some(root.clone()),
                depth: child_depth,
                scope: parent_scope.narrow(&zone, requested.as_deref()),
            }
        }
    };
    // 5. Policy (and the bundle's attestation requirement).
    let Some(bundle) = bundle else {
        return deny(ReasonCode::PolicyNoActiveBundle, "no policy bundle is active");
    };
    if runtime.is_none() && bundle.requires_attestation(&request.action) {
        return deny(
            ReasonCode::AttestationMissing,
            format!("the active bundle requires a runtime attestation for {:?}", request.action),
        );
    }
    let mut lineage = Map::new();
    lineage.insert("depth".into(), json!(placement.depth));
    lineage.insert("root".into(), json!(placement.root.clone().unwrap_or_else(|| "self".to_owned())));
    if let Some(ParentFact::Known { action, .. }) = &facts.parent {
        lineage.insert("parent_action".into(), json!(action));
    }
    let mut context = Map::new();
    context.insert("lineage".into(), Value::Object(lineage));
    context.insert("usage".into(), json!({"last_minute": facts.usage.last_minute, "last_hour": facts.usage.last_hour}));
    if let Some(a) = runtime {
        context.insert(
            "runtime".into(),
            json!({"measurement": a.measurement, "environment": a.environment, "region": a.region}),
        );
    }
    context.insert("arguments".into(), request.arguments.clone());
    let input = PolicyInput {
        principal: principal_of(identity),
        action: request.action.clone(),
        resource: request.resource.clone(),
        now: rfc3339(time),
        context,
    };
    match bundle.evaluate(&input) {
        PolicyOutcome::Allow { policies } => Decided {
            outcome: DecisionOutcome {
                outcome: Outcome::Allow,
                reasons: Vec::new(),
                detail: format!("permitted by {}", policies.join(", ")),
                policies,
            },
            placement: Some(placement),
            explanation: None,
        },
        PolicyOutcome::Approval { policies, detail } => Decided {
            outcome: DecisionOutcome { outcome: Outcome::Pending, reasons: Vec::new(), detail, policies },
            placement: Some(placement),
            explanation: None,
        },
        PolicyOutcome::Deny { reason, policies, detail, explanation } => Decided {
            outcome: DecisionOutcome { outcome: Outcome::Deny, reasons: vec![reason], policies, detail },
            placement: None,
            explanation,
        },
    }
}

/// The principal as policy sees it: its SPIFFE ID, with the attributes taken from its
/// verified credential (its trust domain, and its `zone` claim when it has one).
pub(crate) fn principal_of(identity: &IdentityFact) -> EntityInput {
    let mut attrs = Map::new();
    attrs.insert("trust_domain".into(), json!(identity.trust_domain));
    if let Some(z) = identity.claims.get("zone") {
        attrs.insert("zone".into(), z.clone());
    }
    EntityInput { id: identity.subject.clone(), attrs }
}
