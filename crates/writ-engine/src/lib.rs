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
//! - [`WritSigner`]: the writ's JWT form; [`WritVerifier`] (from `writ-verify`, re-exported):
//!   its verification at an enforcement point; [`WritKeyStore`]: where the signing keys are kept, rotated only
//!   through [`Engine::rotate_writ_key_with`], which records every rotation in the log.
//! - [`Entry`]: what the engine writes to the log.
//! - [`Engine::verify_now`], [`spawn_verification`]: the verification loop, in which a
//!   serving node re-verifies its log, checkpoints, active bundle and signing keys, and
//!   fails closed while a check fails.

mod candidate;
mod clock;
mod decide;
mod engine;
mod feed;
mod isolation;
mod keys;
mod record;
mod replay;
mod state;
#[cfg(feature = "testkit")]
pub mod testkit;
mod writ;

pub use candidate::{BundleCounts, CandidateRange, CandidateReport, Change, Resolved, Verdict, replay_candidate};
pub use clock::{Clock, FixedClock, SystemClock, parse_rfc3339, rfc3339};
pub use decide::{Decided, Placement, decide};
pub use engine::{
    Activated, AuthFailure, DURATION_BOUNDS, Decision, Engine, EngineConfig, EngineParts, Isolated, MAX_OUTCOME_DETAIL,
    MAX_PREVIEW_CANDIDATES, Possible, Preview, Promoted, PublishedJwks, Reevaluation, SELF_VERIFICATION_FAILED,
    ShadowStatus, VerificationConfig, VerificationProblem, VerificationState, VerificationStats, VerificationStatus,
    spawn_verification,
};
pub use feed::{FEED_TYP, FeedSigner, FeedView};
pub use keys::{Rotation, WritKeyStore};
pub use record::{
    AttestationFact, BundleCheck, BundleParts, Checked, DecisionOutcome, Entry, ExecStatus, Facts, IdentityFact,
    Outcome, ParentFact, RecordedLimits, RecordedRequest, ShadowVerdict, Usage, Withheld, WritRecord,
};
pub use replay::{Mismatch, ReplayReport, replay};
pub use state::{
    Approval, ApprovalStatus, BundleDetail, BundleSummary, FeedLists, Lineage, LineageNode, LineageRoot, LineageSearch,
    MAX_LINEAGE_NODES, OperatorAction, Resolution, ShadowSetting, Standing, Stats,
};
pub use writ::{WritSigner, new_writ_id};
// The verifier and the writ's claims live in `writ-verify` (the enforcement points'
// library); re-exported so that the engine's users see one set of names.
pub use writ_verify::{LogRef, Scope, UsedWrits, VerifiedWrit, WritClaims, WritRejection, WritVerifier};

/// Errors of engine operations other than decisions (which always answer). Each variant
/// says what failed; a dependency's failure is its `source` ([`Cause`]), never its text
/// folded into a string. Which HTTP status an error answers is `writ-server`'s decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A writ key is missing, malformed or cannot sign, or the key store and the log
    /// disagree.
    #[error("key")]
    Key(#[from] KeyError),
    /// The log failed.
    #[error("log")]
    Log(#[from] writ_log::Error),
    /// The re-evaluation of the outstanding writs after an activation could not run.
    #[error("re-evaluating the outstanding writs")]
    Reevaluation(#[source] Cause),
    /// The log holds an entry that is not an engine entry.
    #[error("corrupt log: entry {index} is not an engine entry")]
    UnreadableEntry {
        /// The entry's index.
        index: u64,
        /// Why it does not parse.
        #[source]
        source: Cause,
    },
    /// The log holds a decision the engine could not have recorded.
    #[error(
        "corrupt log: entry {index} is a decision the engine could not have recorded (request, facts and outcome do not fit)"
    )]
    ImpossibleDecision {
        /// The entry's index.
        index: u64,
    },
    /// An activation entry's parts do not hash to the digest it records.
    #[error("corrupt log: entry {index}: the recorded parts do not hash to the recorded digest")]
    PartsMismatch {
        /// The entry's index.
        index: u64,
    },
    /// A bundle was refused: its signature, or its validation.
    #[error("untrusted bundle")]
    BundleUntrusted(#[from] writ_policy::PolicyError),
    /// What the operation names does not exist.
    #[error("not found: {0}")]
    NotFound(Missing),
    /// An outcome for this writ is already recorded (one per writ).
    #[error("conflict: an outcome for {jti} is already recorded")]
    OutcomeAlreadyRecorded {
        /// The writ.
        jti: String,
    },
    /// The approval window closed.
    #[error("conflict: the approval window of {id} closed at {deadline}")]
    PastDeadline {
        /// The decision.
        id: String,
        /// Its deadline (Unix seconds).
        deadline: u64,
    },
    /// The decision was already approved or rejected.
    #[error("conflict: {id} was already answered")]
    ApprovalAlreadyAnswered {
        /// The decision.
        id: String,
    },
    /// Another bundle is active than the one that decided: the request must be asked again.
    #[error(
        "conflict: the policy changed since {id} was decided (active bundle {}); the request must be asked again",
        active.as_deref().unwrap_or("none")
    )]
    PolicyChanged {
        /// The decision.
        id: String,
        /// The digest of the bundle active now, if any.
        active: Option<String>,
    },
    /// The principal is quarantined.
    #[error("conflict: {subject} is quarantined")]
    Quarantined {
        /// The principal.
        subject: String,
    },
    /// The writ was revoked.
    #[error("conflict: {id} was revoked")]
    Revoked {
        /// The writ (decision) id.
        id: String,
    },
    /// The parent writ was revoked.
    #[error("conflict: its parent writ {parent} was revoked")]
    ParentRevoked {
        /// The parent writ.
        parent: String,
    },
    /// The parent writ expired.
    #[error("conflict: its parent writ {parent} expired at {exp}")]
    ParentExpired {
        /// The parent writ.
        parent: String,
        /// Its expiry (Unix seconds).
        exp: u64,
    },
    /// The reporter is neither an operator nor the writ's subject.
    #[error("forbidden: {reporter} may not report for a writ issued to {subject}")]
    NotTheSubject {
        /// Who reported.
        reporter: String,
        /// The writ's subject.
        subject: String,
    },
    /// A text field is longer than allowed.
    #[error("invalid: {field} is longer than {max} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its bound in bytes.
        max: usize,
    },
    /// The shadow bundle named is the active bundle: the shadow must be another.
    #[error("conflict: {digest} is the active bundle; the shadow bundle must be another")]
    ShadowIsActive {
        /// The digest named.
        digest: String,
    },
    /// A rotation must keep every present key, in order, and add at least one.
    #[error("invalid: a rotation keeps every present key, in order, and adds at least one")]
    RotationShape,
    /// A candidate replay's range starts past the log's end.
    #[error("invalid: --from {from} is past the log's end (it holds {size} entries)")]
    FromPastEnd {
        /// The range's start.
        from: u64,
        /// The log's size.
        size: u64,
    },
    /// A candidate replay's range ends before it starts.
    #[error("invalid: --to {to} is before --from {from}")]
    ToBeforeFrom {
        /// The range's start.
        from: u64,
        /// The range's end.
        to: u64,
    },
    /// No decision of a candidate replay's range was made by the bundle named.
    #[error("invalid: no decision in entries {from}..{to} was made by bundle {bundle}")]
    NotDecidedBy {
        /// The bundle digest named.
        bundle: String,
        /// The range's start.
        from: u64,
        /// The range's end.
        to: u64,
    },
    /// The node's self-verification failed (the verification loop): no approval is given
    /// until a later run passes.
    #[error("unavailable: {detail}")]
    IntegrityFailed {
        /// The failed check's reason code (`log.unavailable`, `policy.bundle_untrusted` or
        /// `internal`).
        reason: writ_core::ReasonCode,
        /// Which check failed, and why.
        detail: String,
    },
    /// A lock of the engine is poisoned (a thread panicked holding it).
    #[error("internal: {0} lock poisoned")]
    Poisoned(&'static str),
    /// The task that appends an entry and applies it ended without an answer (it panicked):
    /// whether the entry was recorded is unknown to this caller.
    #[error("the task appending an entry ended without an answer")]
    AppendTask(#[source] Cause),
    /// An entry could not be encoded.
    #[error("internal: encoding a log entry")]
    Encoding(#[source] Cause),
    /// The entry an approval's writ points at is not in the log.
    #[error("internal: approval entry {index} is missing")]
    ApprovalEntryMissing {
        /// Its index.
        index: u64,
    },
    /// An approval recorded a moment ago is not in the state.
    #[error("internal: the answered approval of {id} vanished")]
    AnswerVanished {
        /// The decision.
        id: String,
    },
}

/// What an [`EngineError::NotFound`] did not find.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Missing {
    /// No accepted bundle with this digest in the log.
    #[error("the log holds no accepted bundle {0}")]
    Bundle(String),
    /// No allowed decision with this id.
    #[error("no allowed decision {0} in the log")]
    AllowedDecision(String),
    /// No decision with this id awaits approval (to answer).
    #[error("no decision {0} awaits approval")]
    PendingApproval(String),
    /// No decision with this id awaited approval (to fetch its writ).
    #[error("no decision {0} awaited approval")]
    Approval(String),
    /// No shadow bundle is set (to clear or promote).
    #[error("no shadow bundle is set")]
    Shadow,
}

/// Why a writ key failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The system gave no randomness.
    #[error("no randomness")]
    NoRandomness(#[source] Cause),
    /// The signer holds no key.
    #[error("no writ signing key")]
    NoKey,
    /// A seed is not an Ed25519 seed.
    #[error("not an Ed25519 seed")]
    NotASeed(#[source] Cause),
    /// A public key of the wrong length.
    #[error("an Ed25519 public key is not 32 bytes")]
    PublicKeyLength,
    /// The claims could not be encoded.
    #[error("encoding claims")]
    Claims(#[source] Cause),
    /// A JWKS key that does not decode.
    #[error("JWKS key")]
    JwksKey(#[source] Cause),
    /// The key store could not add a key.
    #[error("storing the new key")]
    Store(#[source] Cause),
    /// A rotation failed and its key could not be taken out of the key store again.
    #[error(
        "{failure}; and the new key could not be removed from the key store (the next start refuses the store until it is removed)"
    )]
    NotUndone {
        /// Why the rotation failed.
        failure: Box<EngineError>,
        /// Why the removal failed.
        #[source]
        undo: Cause,
    },
    /// The key store holds more than the first key and the log records no rotation.
    #[error(
        "the writ key store holds {} keys but the log records no key rotation: only the first key may sign before a \
         recorded rotation; the keys after it ({}) were added behind the log's back or by a rotation that was never \
         recorded, and must not sign (remove them from the key store; rotate with `writ keys rotate` or POST \
         /v1/keys/rotate, which record the rotation)",
        kids.len(),
        kids.get(1..).unwrap_or_default().join(", ")
    )]
    NoRotationRecorded {
        /// The keys held, oldest first.
        kids: Vec<String>,
    },
    /// The key store holds keys the log's latest rotation does not list.
    #[error(
        "the writ key store holds {} that the log never recorded (its latest key rotation, entry {index}, lists {}): \
         a key added behind the log's back, or by a rotation whose record failed, must not sign (remove it from the \
         key store; rotate with `writ keys rotate` or POST /v1/keys/rotate, which record the rotation)",
        unrecorded.join(", "),
        listed.join(", ")
    )]
    Unrecorded {
        /// The keys the log never recorded.
        unrecorded: Vec<String>,
        /// The latest `key_rotation` entry.
        index: u64,
        /// The keys it lists.
        listed: Vec<String>,
    },
    /// The key store holds its keys in another order than the log's latest rotation.
    #[error(
        "the writ key store holds its keys in another order than the log's latest key rotation (entry {index}) lists \
         them: [{}] against [{}]",
        kids.join(", "),
        listed.join(", ")
    )]
    Order {
        /// The keys held, oldest first.
        kids: Vec<String>,
        /// The latest `key_rotation` entry.
        index: u64,
        /// The keys it lists.
        listed: Vec<String>,
    },
}

/// A dependency's error (or a key store's text), kept as the `source` of an engine error
/// without its type appearing in writ's API.
#[derive(Debug)]
pub struct Cause(Box<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(Box::new(e))
    }

    pub(crate) fn text(text: impl Into<String>) -> Self {
        Cause(text.into().into())
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl EngineError {
    /// This error and its causes, joined by `: ` (what `{:#}` prints at the binary's edge).
    pub fn detail(&self) -> String {
        let mut text = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            text.push_str(": ");
            text.push_str(&e.to_string());
            next = e.source();
        }
        text
    }
}
