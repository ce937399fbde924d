//! writ's decision engine (SPEC.md §1, §2): the fail-closed pipeline that turns an execution
//! request into a decision recorded in the log and, on allow, a signed writ bound to that
//! exact request.
//!
//! - [`Engine`]: the live pipeline (identity → attestation → quarantine → lineage → policy
//!   → record → issue), operator actions (bundle activation, revocation, quarantine), and
//!   writ verification.
//! - [`decide`]: the decision as a pure function of its recorded inputs, shared by the
//!   live path, [`replay`] and [`replay_candidate`].
//! - [`replay_candidate`]: what a candidate bundle would have decided otherwise over the
//!   recorded history (`writ policy replay`).
//! - [`WritSigner`], [`WritVerifier`]: the writ's JWT form and its verification at an
//!   enforcement point; [`WritKeyStore`]: where the signing keys are kept, rotated only
//!   through [`Engine::rotate_writ_key_with`], which records every rotation in the log.
//! - [`Entry`]: what the engine writes to the log.

mod candidate;
mod clock;
mod decide;
mod engine;
mod keys;
mod record;
mod replay;
mod state;
mod writ;

pub use candidate::{BundleCounts, CandidateRange, CandidateReport, Change, Resolved, Verdict, replay_candidate};
pub use clock::{Clock, FixedClock, SystemClock, parse_rfc3339, rfc3339};
pub use decide::{Decided, Placement, decide};
pub use engine::{AuthFailure, Decision, Engine, EngineConfig, EngineParts, MAX_OUTCOME_DETAIL};
pub use keys::{Rotation, WritKeyStore};
pub use record::{
    AttestationFact, BundleParts, Checked, DecisionOutcome, Entry, ExecStatus, Facts, IdentityFact, Outcome,
    ParentFact, RecordedLimits, RecordedRequest, Usage, Withheld, WritRecord,
};
pub use replay::{Mismatch, ReplayReport, replay};
pub use state::{
    Approval, ApprovalStatus, BundleSummary, Lineage, LineageNode, MAX_LINEAGE_NODES, OperatorAction, Resolution,
    Standing,
};
pub use writ::{
    LogRef, Scope, UsedWrits, VerifiedWrit, WritClaims, WritRejection, WritSigner, WritVerifier, new_writ_id,
};

use writ_core::ReasonCode;

/// Errors of engine operations other than decisions (which always answer).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A key is missing, malformed, or cannot sign.
    #[error("key: {0}")]
    Key(String),
    /// The log failed.
    #[error("log: {0}")]
    Log(String),
    /// The log holds something the engine cannot read.
    #[error("corrupt log: {0}")]
    Corrupt(String),
    /// A bundle was refused.
    #[error("untrusted bundle: {0}")]
    BundleUntrusted(String),
    /// What the operation names does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The operation conflicts with what the log already records.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The operation's input is not acceptable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Anything else.
    #[error("internal: {0}")]
    Internal(String),
}

impl EngineError {
    /// The reason code for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            EngineError::Log(_) => ReasonCode::LogUnavailable,
            EngineError::BundleUntrusted(_) => ReasonCode::PolicyBundleUntrusted,
            EngineError::NotFound(_) | EngineError::Conflict(_) | EngineError::Invalid(_) => {
                ReasonCode::RequestMalformed
            }
            EngineError::Forbidden(_) => ReasonCode::IdentityUntrustedIssuer,
            _ => ReasonCode::Internal,
        }
    }
}

impl From<writ_log::Error> for EngineError {
    fn from(e: writ_log::Error) -> Self {
        EngineError::Log(e.to_string())
    }
}

impl From<writ_policy::PolicyError> for EngineError {
    fn from(e: writ_policy::PolicyError) -> Self {
        EngineError::BundleUntrusted(e.to_string())
    }
}
