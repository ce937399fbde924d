//! Automatic isolation rules (issue 17): the part of a bundle's manifest that says when the
//! control plane quarantines an identity by itself, without an operator. The rules are
//! configuration, not code: they travel in `manifest.json` (and so in the bundle's digest
//! and signature), and are validated strictly when the bundle is read, so that a bundle
//! with a rule that cannot mean what its author wrote is refused before it is signed or
//! activated.
//!
//! Three kinds, one per rule:
//!
//! - `denials`: `count` decisions denied with one of `reasons` (the primary reason code,
//!   SPEC.md §6) within `window_seconds`.
//! - `presented`: a writ refused with one of `reasons` (`writ.*` codes) was presented.
//! - `attestation_changed`: the runtime attestation's measurement differs from the last one
//!   recorded for the principal.
//!
//! What counts, and for whom, is the engine's (`writ-engine`, module `isolation`); this
//! module owns only the rules' form and their validation.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use writ_core::ReasonCode;

/// Most rules a manifest may hold.
pub const MAX_ISOLATION_RULES: usize = 32;
/// Largest `count` of a `denials` rule (the engine keeps at most this many entries per
/// principal and rule).
pub const MAX_DENIALS_COUNT: u64 = 1000;
/// Longest `window_seconds` of a `denials` rule (seven days).
pub const MAX_WINDOW_SECONDS: u64 = 7 * 24 * 3600;
/// Longest rule name, in bytes.
pub const MAX_RULE_NAME: usize = 64;

/// One automatic isolation rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RuleSpec", into = "RuleSpec")]
pub struct IsolationRule {
    name: String,
    trigger: Trigger,
}

/// What trips a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `count` decisions of one principal denied with one of `reasons` (primary reason
    /// code) within `window_seconds`.
    Denials {
        /// The primary reason codes counted.
        reasons: Vec<ReasonCode>,
        /// How many trip the rule (at least 1).
        count: u64,
        /// Within how many seconds (at least 1): denials at `t` count while `t + window > now`.
        window_seconds: u64,
    },
    /// A writ refused with one of these reason codes was presented.
    Presented(Vec<ReasonCode>),
    /// The runtime attestation's measurement changed.
    AttestationChanged,
}

impl IsolationRule {
    /// The rule's name: what a quarantine entry and the metrics name it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What trips it.
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }
}

/// The decision deny codes a `denials` rule may count: those of a decision whose principal
/// is proven and that are the principal's doing. Not `identity.*` (no proven principal to
/// isolate), `quarantined` (already isolated), `writ.*` (a decision never denies with them:
/// a presented writ is `presented`'s), the bundle's or the control plane's own failures
/// (`policy.no_active_bundle`, `policy.bundle_untrusted`, `log.unavailable`, `internal`).
pub const DENIAL_REASONS: &[ReasonCode] = &[
    ReasonCode::AttestationMissing,
    ReasonCode::AttestationInvalid,
    ReasonCode::LineageParentUnknown,
    ReasonCode::LineageParentDenied,
    ReasonCode::LineageParentExpired,
    ReasonCode::LineageParentRevoked,
    ReasonCode::LineageDepthExceeded,
    ReasonCode::LineageScopeEscalation,
    ReasonCode::PolicyDenied,
    ReasonCode::PolicyEvaluationError,
    ReasonCode::RequestMalformed,
];

/// The refusals of a presented writ a `presented` rule may count.
pub const PRESENTED_REASONS: &[ReasonCode] = &[
    ReasonCode::WritBadSignature,
    ReasonCode::WritExpired,
    ReasonCode::WritAudience,
    ReasonCode::WritBindingMismatch,
    ReasonCode::WritReplayed,
    ReasonCode::WritRevoked,
];

/// A rule as written in `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    denials: Option<DenialsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    presented: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attestation_changed: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenialsSpec {
    reasons: Vec<String>,
    count: u64,
    window_seconds: u64,
}

/// Parses a list of reason codes: each one of `allowed`, none twice, at least one.
fn reasons(rule: &str, field: &str, codes: &[String], allowed: &[ReasonCode]) -> Result<Vec<ReasonCode>, String> {
    if codes.is_empty() {
        return Err(format!("isolation rule {rule:?}: {field} lists no reason code"));
    }
    let mut out: Vec<ReasonCode> = Vec::with_capacity(codes.len());
    for c in codes {
        let code: ReasonCode = c.parse().map_err(|e| format!("isolation rule {rule:?}: {field}: {e}"))?;
        if !allowed.contains(&code) {
            let list: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            return Err(format!(
                "isolation rule {rule:?}: {field}: {code} cannot be counted here (one of {})",
                list.join(", ")
            ));
        }
        if out.contains(&code) {
            return Err(format!("isolation rule {rule:?}: {field} lists {code} twice"));
        }
        out.push(code);
    }
    Ok(out)
}

impl TryFrom<RuleSpec> for IsolationRule {
    type Error = String;

    fn try_from(s: RuleSpec) -> Result<Self, String> {
        let name = s.name;
        if name.is_empty()
            || name.len() > MAX_RULE_NAME
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "isolation rule {name:?}: a name is 1 to {MAX_RULE_NAME} characters of a-z, 0-9, '-', '_', '.'"
            ));
        }
        let trigger = match (s.denials, s.presented, s.attestation_changed) {
            (Some(d), None, None) => {
                let reasons = reasons(&name, "denials.reasons", &d.reasons, DENIAL_REASONS)?;
                if d.count == 0 || d.count > MAX_DENIALS_COUNT {
                    return Err(format!("isolation rule {name:?}: denials.count must be 1 to {MAX_DENIALS_COUNT}"));
                }
                if d.window_seconds == 0 || d.window_seconds > MAX_WINDOW_SECONDS {
                    return Err(format!(
                        "isolation rule {name:?}: denials.window_seconds must be 1 to {MAX_WINDOW_SECONDS}"
                    ));
                }
                Trigger::Denials { reasons, count: d.count, window_seconds: d.window_seconds }
            }
            (None, Some(p), None) => Trigger::Presented(reasons(&name, "presented", &p, PRESENTED_REASONS)?),
            (None, None, Some(true)) => Trigger::AttestationChanged,
            (None, None, Some(false)) => {
                return Err(format!(
                    "isolation rule {name:?}: attestation_changed: false never fires; remove the rule"
                ));
            }
            _ => {
                return Err(format!("isolation rule {name:?}: exactly one of denials, presented, attestation_changed"));
            }
        };
        Ok(IsolationRule { name, trigger })
    }
}

impl From<IsolationRule> for RuleSpec {
    fn from(r: IsolationRule) -> RuleSpec {
        let strings = |v: &[ReasonCode]| v.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
        let mut spec = RuleSpec { name: r.name, denials: None, presented: None, attestation_changed: None };
        match r.trigger {
            Trigger::Denials { reasons, count, window_seconds } => {
                spec.denials = Some(DenialsSpec { reasons: strings(&reasons), count, window_seconds });
            }
            Trigger::Presented(reasons) => spec.presented = Some(strings(&reasons)),
            Trigger::AttestationChanged => spec.attestation_changed = Some(true),
        }
        spec
    }
}

/// Checks a manifest's rules as a whole: at most [`MAX_ISOLATION_RULES`], names unique.
pub(crate) fn check_rules(rules: &[IsolationRule]) -> Result<(), String> {
    if rules.len() > MAX_ISOLATION_RULES {
        return Err(format!("isolation: at most {MAX_ISOLATION_RULES} rules"));
    }
    let mut names = HashSet::new();
    for r in rules {
        if !names.insert(r.name()) {
            return Err(format!("isolation: two rules are named {:?}", r.name()));
        }
    }
    Ok(())
}
