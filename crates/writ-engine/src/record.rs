//! What the engine writes to the log: one canonical JSON object (RFC 8785) per entry.
//!
//! A decision entry records every input of the decision, so that `writ log replay` can
//! re-evaluate it: the request (credentials by SHA-256 only: bearer tokens never enter the
//! log), the facts each stage established (verified identity claims or the stage's
//! failure, attestation, quarantine, the parent writ, usage counters), the limits in
//! force, the bundle digest, the evaluation time, the decision, and the writ issued.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use writ_core::ReasonCode;

use crate::writ::Scope;

/// A stage's finding: what it verified, or why it failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checked<T> {
    /// Verified.
    Ok(T),
    /// Failed with this reason.
    Failed {
        /// The reason code.
        reason: ReasonCode,
        /// Detail.
        detail: String,
    },
}

/// The verified facts of a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFact {
    /// SPIFFE ID.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Trust domain.
    pub trust_domain: String,
    /// Non-registered claims (zone, env, scope, …).
    pub claims: Map<String, Value>,
}

/// The verified facts of a runtime attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationFact {
    /// Image or binary digest.
    pub measurement: String,
    /// Environment.
    pub environment: String,
    /// Region.
    pub region: String,
}

/// What the log says about the parent writ a request names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentFact {
    /// No such writ in the log.
    Unknown,
    /// The parent's decision and state at evaluation time.
    Known {
        /// Whether it was allowed.
        allowed: bool,
        /// Its expiry.
        exp: u64,
        /// Whether it has been revoked.
        revoked: bool,
        /// Its lineage root.
        root: String,
        /// Its depth.
        depth: u32,
        /// The scope it hands to children.
        scope: Option<Scope>,
        /// Its action.
        action: String,
    },
}

/// Usage counters of the principal for the action (allowed decisions before this one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// In the last 60 seconds.
    pub last_minute: u64,
    /// In the last 3,600 seconds.
    pub last_hour: u64,
}

/// Everything the stages established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    /// The workload credential.
    pub identity: Checked<IdentityFact>,
    /// Delegation credentials by role (operator, orchestrator, machine, runtime).
    pub delegation: BTreeMap<String, Checked<IdentityFact>>,
    /// The runtime attestation, if one was presented.
    pub attestation: Option<Checked<AttestationFact>>,
    /// Whether the principal was quarantined.
    pub quarantined: bool,
    /// The parent writ, if one was named.
    pub parent: Option<ParentFact>,
    /// Usage counters.
    pub usage: Usage,
}

/// The request as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// Caller's request id.
    pub request_id: Option<String>,
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Arguments.
    pub arguments: Value,
    /// Parent writ id.
    pub parent: Option<String>,
    /// Audience of the writ.
    pub audience: String,
    /// Request digest (`sha256:…`).
    pub digest: String,
    /// SHA-256 of each credential presented, by role.
    pub credentials: BTreeMap<String, String>,
}

/// Limits in force for the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedLimits {
    /// Deepest lineage allowed (a root is depth 0).
    pub max_depth: u32,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed: a writ was issued.
    Allow,
    /// Denied.
    Deny,
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionOutcome {
    /// Allow or deny.
    pub outcome: Outcome,
    /// Reason codes; the first is the primary one. Empty for an allow.
    pub reasons: Vec<ReasonCode>,
    /// Determining policies.
    pub policies: Vec<String>,
    /// Human-readable detail.
    pub detail: String,
}

/// The writ issued with an allow, as recorded (its `log` claim points at this entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritRecord {
    /// Writ id.
    pub jti: String,
    /// Subject.
    pub sub: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Audience.
    pub aud: String,
    /// Lineage root.
    pub root: String,
    /// Depth.
    pub dep: u32,
    /// Scope handed to children.
    pub scp: Scope,
}

/// One log entry written by the engine.
#[allow(clippy::large_enum_variant, reason = "built once per decision and serialized at once; boxing buys nothing")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// An authorization decision.
    Decision {
        /// Decision id; the writ's `jti` for an allow, and what a child names as parent.
        id: String,
        /// Evaluation time (Unix seconds).
        time: u64,
        /// The request, or `None` when it could not be parsed.
        request: Option<RecordedRequest>,
        /// SHA-256 of the raw body when the request could not be parsed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_digest: Option<String>,
        /// Stage facts (absent for an unparseable request).
        facts: Option<Facts>,
        /// Limits in force.
        limits: RecordedLimits,
        /// Active bundle digest.
        bundle: Option<String>,
        /// The decision.
        decision: DecisionOutcome,
        /// The writ issued.
        writ: Option<WritRecord>,
    },
    /// A policy bundle became active (or was refused).
    Activation {
        /// Time.
        time: u64,
        /// Bundle digest.
        digest: String,
        /// Name and version.
        name: String,
        /// Version.
        version: String,
        /// Whether it became active.
        accepted: bool,
        /// Why it was refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
        /// The policy key that signed it.
        signer: Option<String>,
        /// The signature note.
        signature: String,
        /// Who asked.
        operator: Option<String>,
        /// The bundle's parts, so that replay can rebuild it from the log alone.
        parts: BundleParts,
    },
    /// A writ was revoked.
    Revocation {
        /// Time.
        time: u64,
        /// Writ id.
        jti: String,
        /// Who.
        operator: Option<String>,
        /// Why.
        reason: String,
    },
    /// A signed bundle was uploaded for later activation (or refused).
    Upload {
        /// Time.
        time: u64,
        /// Bundle digest.
        digest: String,
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// Whether it was accepted (signed by a trusted key and valid against its schema).
        accepted: bool,
        /// Why it was refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
        /// The policy key that signed it.
        signer: Option<String>,
        /// The signature note.
        signature: String,
        /// Who uploaded it.
        operator: Option<String>,
        /// The bundle's parts (absent when it was refused: a refused bundle is not kept).
        parts: Option<BundleParts>,
    },
    /// What happened when an allowed execution ran, as its enforcement point reported it.
    Outcome {
        /// Time of the report.
        time: u64,
        /// The writ.
        jti: String,
        /// Who reported it (SPIFFE ID of the workload or operator).
        reporter: String,
        /// How it ended.
        status: ExecStatus,
        /// The process exit code, for commands.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        /// Detail (bounded).
        detail: String,
    },
    /// An identity was isolated or released.
    Quarantine {
        /// Time.
        time: u64,
        /// SPIFFE ID.
        subject: String,
        /// True: isolated; false: released.
        isolated: bool,
        /// Who.
        operator: Option<String>,
        /// Why.
        reason: String,
    },
}

/// How an execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
    /// It was not run after all (the enforcement point refused or gave up).
    NotRun,
}

/// A bundle's parts as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleParts {
    /// manifest.json.
    pub manifest: String,
    /// policies.cedar.
    pub policies: String,
    /// schema.cedarschema.
    pub schema: String,
    /// entities.json.
    pub entities: Option<String>,
    /// tests.json.
    pub tests: Option<String>,
}
