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
use writ_policy::{CompiledBundle, EntityInput, PolicyInput, PolicyOutcome};

use crate::clock::rfc3339;
use crate::record::{
    Checked, DecisionOutcome, Facts, IdentityFact, Outcome, ParentFact, RecordedLimits, RecordedRequest,
};
use crate::writ::Scope;

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
    }
}

fn zone_of(identity: &IdentityFact) -> String {
    identity.claims.get("zone").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The actions a principal's credential lets it delegate (`scope` claim), if it narrows.
fn requested_scope(identity: &IdentityFact) -> Option<Vec<String>> {
    identity
        .claims
        .get("scope")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
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
    // 4. Lineage.
    let zone = zone_of(identity);
    let requested = requested_scope(identity);
    let placement = match (&request.parent, &facts.parent) {
        (None, _) => {
            let all = Scope { zone: zone.clone(), actions: vec!["*".to_owned()] };
            Placement { root: None, depth: 0, scope: all.narrow(&zone, requested.as_deref()) }
        }
        (Some(parent), None) | (Some(parent), Some(ParentFact::Unknown)) => {
            return deny(ReasonCode::LineageParentUnknown, format!("parent writ {parent} is not in the log"));
        }
        (Some(parent), Some(ParentFact::Known { allowed, exp, revoked, root, depth, scope, .. })) => {
            if !allowed {
                return deny(ReasonCode::LineageParentDenied, format!("parent writ {parent} was denied"));
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
    let mut attrs = Map::new();
    attrs.insert("trust_domain".into(), json!(identity.trust_domain));
    if let Some(z) = identity.claims.get("zone") {
        attrs.insert("zone".into(), z.clone());
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
        principal: EntityInput { id: identity.subject.clone(), attrs },
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
        },
        PolicyOutcome::Approval { policies, detail } => Decided {
            outcome: DecisionOutcome { outcome: Outcome::Pending, reasons: Vec::new(), detail, policies },
            placement: Some(placement),
        },
        PolicyOutcome::Deny { reason, policies, detail } => Decided {
            outcome: DecisionOutcome { outcome: Outcome::Deny, reasons: vec![reason], policies, detail },
            placement: None,
        },
    }
}
