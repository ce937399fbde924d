//! writ's policy layer (SPEC.md §1 stage 5): Cedar policy bundles.
//!
//! A bundle is a manifest, Cedar policies, a Cedar schema, optional entities and optional
//! test cases ([`Bundle`]). Its digest ([`BundleDigest`]) is SHA-256 over the RFC 8785
//! canonical JSON of all its parts; a policy-signing key signs that digest in a C2SP
//! signed note ([`sign_bundle`], [`verify_bundle_signature`]). [`Bundle::compile`]
//! validates the policies against the schema in Cedar's strict mode and yields a
//! [`CompiledBundle`], the only thing that evaluates.
//!
//! Evaluation is fail-closed ([`CompiledBundle::evaluate`]): any Cedar evaluation error
//! denies with `policy.evaluation_error` (Cedar itself would skip an erroring policy, so an
//! erroring `forbid` would vanish), a panic inside Cedar is caught and denies, arguments
//! that do not match the action's declared context deny with `request.malformed`, and an
//! action the schema does not declare denies with `policy.denied`.
//!
//! A `policy.denied` deny explains itself ([`Explanation`]): a policy may carry
//! `@reason("…")` (for a permit, what it requires; for a forbid, why it forbids), and a
//! deny names the forbids that decided with their reason or, when no permit applied, the
//! permits that came closest (same action, resource admitted by their scope) with what they
//! require. The reason codes stay as they are.
//!
//! Conventions every bundle follows: principals are `Writ::Agent` entities (id = SPIFFE
//! ID), resources `Writ::Resource`, actions `Writ::Action`; every action's context has
//! `now` (a Cedar `datetime`).

mod bundle;
mod compiled;
mod explain;
mod isolation;
mod testcases;

pub use bundle::{Bundle, BundleDigest, Manifest, sign_bundle, verify_bundle_signature};
pub use compiled::{CompiledBundle, EntityInput, PolicyInput, PolicyOutcome, Possibility};
pub use explain::{
    ClosestPermit, Explanation, ForbiddenBy, MAX_CLOSEST, MAX_REASON_CHARS, NO_REASON, REASON_ANNOTATION,
};
pub use isolation::{
    DENIAL_REASONS, IsolationRule, MAX_DENIALS_COUNT, MAX_ISOLATION_RULES, MAX_RULE_NAME, MAX_WINDOW_SECONDS,
    PRESENTED_REASONS, Trigger,
};
pub use testcases::{Expect, TestCase, TestReport, TestResult};

use writ_core::ReasonCode;

/// Everything that can go wrong with a bundle.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A bundle part is missing or unreadable.
    #[error("bundle: {0}")]
    Bundle(String),
    /// Policies, schema or entities do not parse or do not validate.
    #[error("invalid bundle: {0}")]
    Invalid(String),
    /// The bundle's signature is missing, malformed, or not by a trusted key.
    #[error("untrusted bundle: {0}")]
    Untrusted(String),
}

impl PolicyError {
    /// The reason code a decision carries when activation or evaluation fails for this.
    pub fn reason(&self) -> ReasonCode {
        ReasonCode::PolicyBundleUntrusted
    }
}

/// The starter bundle that `writ serve` activates on first start (files in `starter/`).
pub fn starter_bundle() -> Result<Bundle, PolicyError> {
    Bundle::from_parts(
        include_str!("../starter/manifest.json"),
        include_str!("../starter/policies.cedar"),
        include_str!("../starter/schema.cedarschema"),
        Some(include_str!("../starter/entities.json")),
        Some(include_str!("../starter/tests.json")),
    )
}
