//! What the engine writes to the log: one canonical JSON object (RFC 8785) per entry.
//!
//! A decision entry records every input of the decision, so that `writ log replay` can
//! re-evaluate it: the request (credentials by SHA-256 only: bearer tokens never enter the
//! log), the facts each stage established (verified identity claims or the stage's
//! failure, attestation, quarantine, the parent writ, usage counters), the limits in
//! force, the bundle digest, the evaluation time, the decision, and the writ issued.
//!
//! [`Entry::canonical`] gives the bytes the log stores. A decision entry, written once per
//! decision, is encoded by `serde_json` from structs whose fields are declared in RFC 8785
//! order (ASCII keys, so byte order is UTF-16 order), with the free-form parts (the
//! arguments, the identity claims) canonicalized by `serde_jcs` and embedded as raw JSON:
//! about a fifth of the cost of `serde_jcs` over the whole entry. Every other entry goes
//! through `serde_jcs`. Tests check that both give the same bytes for arbitrary entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use writ_core::ReasonCode;

use writ_verify::Scope;

/// A stage's finding: what it verified, or why it failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checked<T> {
    /// Verified.
    Ok(T),
    /// Failed with this reason.
    Failed {
        /// Detail.
        detail: String,
        /// The reason code.
        reason: ReasonCode,
    },
}

/// The verified facts of a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFact {
    /// Non-registered claims (zone, env, scope, …).
    pub claims: Map<String, Value>,
    /// Issuer.
    pub issuer: String,
    /// SPIFFE ID.
    pub subject: String,
    /// Trust domain.
    pub trust_domain: String,
}

/// The verified facts of a runtime attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationFact {
    /// Environment.
    pub environment: String,
    /// Image or binary digest.
    pub measurement: String,
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
        /// Its action.
        action: String,
        /// Whether it was allowed.
        allowed: bool,
        /// Its depth.
        depth: u32,
        /// Its expiry.
        exp: u64,
        /// Whether it has been revoked.
        revoked: bool,
        /// Its lineage root.
        root: String,
        /// The scope it hands to children.
        scope: Option<Scope>,
        /// Its principal (recorded since lineage is proven by possession; absent before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
}

/// Usage counters of the principal for the action (allowed decisions before this one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// In the last 3,600 seconds.
    pub last_hour: u64,
    /// In the last 60 seconds.
    pub last_minute: u64,
}

/// Everything the stages established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    /// The runtime attestation, if one was presented.
    pub attestation: Option<Checked<AttestationFact>>,
    /// Delegation credentials by role (operator, orchestrator, machine, runtime).
    pub delegation: BTreeMap<String, Checked<IdentityFact>>,
    /// The workload credential.
    pub identity: Checked<IdentityFact>,
    /// The parent writ, if one was named.
    pub parent: Option<ParentFact>,
    /// The parent writ presented as proof of possession: its id once its signature verified,
    /// or why it did not (absent when none was presented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_writ: Option<Checked<String>>,
    /// Whether the principal was quarantined.
    pub quarantined: bool,
    /// For a renewal (`POST /v1/renew`): the writ presented for renewal, its id once it
    /// stood (issued by an allow, the caller its subject, unexpired, not renewed before, no
    /// writ of its lineage revoked, no principal of it isolated), or why not (absent for
    /// any other decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<Checked<String>>,
    /// Usage counters.
    pub usage: Usage,
}

/// The request as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// Action.
    pub action: String,
    /// Arguments.
    pub arguments: Value,
    /// Audience of the writ.
    pub audience: String,
    /// SHA-256 of each credential presented, by role.
    pub credentials: BTreeMap<String, String>,
    /// Request digest (`sha256:…`).
    pub digest: String,
    /// Parent writ id.
    pub parent: Option<String>,
    /// Caller's request id.
    pub request_id: Option<String>,
    /// Resource.
    pub resource: String,
    /// For a request without a verified identity, its arguments are not recorded (they
    /// are `null`): only their digest and size are, so that an anonymous caller cannot
    /// write what it likes into the permanent log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

/// What the log keeps of arguments it does not record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withheld {
    /// SHA-256 of the arguments' RFC 8785 form, `sha256:<hex>`.
    pub arguments_digest: String,
    /// Size of that form, in bytes.
    pub arguments_size: u64,
}

/// Limits in force for the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedLimits {
    /// Whether a child must prove possession of its parent writ and its principal's
    /// delegation (true for every decision since; absent in entries written before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lineage_by_possession: bool,
    /// Deepest lineage allowed (a root is depth 0).
    pub max_depth: u32,
}

/// Allow, deny, or wait for a human.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed: a writ was issued.
    Allow,
    /// Denied.
    Deny,
    /// Policy permits only with an operator's approval: no writ until an
    /// [`Entry::Approval`] approves it.
    Pending,
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionOutcome {
    /// Human-readable detail.
    pub detail: String,
    /// Allow or deny.
    pub outcome: Outcome,
    /// Determining policies.
    pub policies: Vec<String>,
    /// Reason codes; the first is the primary one. Empty for an allow.
    pub reasons: Vec<ReasonCode>,
}

/// The writ issued with an allow, as recorded (its `log` claim points at this entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritRecord {
    /// Audience.
    pub aud: String,
    /// Depth.
    pub dep: u32,
    /// Expiry.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Writ id.
    pub jti: String,
    /// Not before.
    pub nbf: u64,
    /// Lineage root.
    pub root: String,
    /// Scope handed to children.
    pub scp: Scope,
    /// Subject.
    pub sub: String,
}

/// The shadow bundle's verdict on a decision, recorded on the decision entry when its
/// outcome differs from the real one (see the engine's `shadow` module).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowVerdict {
    /// The shadow bundle's digest.
    pub bundle: String,
    /// What it would have decided.
    pub outcome: Outcome,
    /// Its reason codes, primary first (empty for an allow or a pending decision).
    pub reasons: Vec<ReasonCode>,
}

/// The fields an activation and an upload entry share: what checking a bundle found (its
/// signature by a trusted policy key, its validation against its schema), and who asked.
/// Flattened into both entries, so their JSON is what it was when each listed the fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleCheck {
    /// Time.
    pub time: u64,
    /// Bundle digest.
    pub digest: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Whether it was accepted (signed by a trusted key and valid against its schema).
    pub accepted: bool,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The policy key that signed it.
    pub signer: Option<String>,
    /// The signature note.
    pub signature: String,
    /// Who asked.
    pub operator: Option<String>,
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
        /// For a renewal: the id of the writ presented for renewal (for one whose signature
        /// does not verify, the id it claims). Absent for any other decision.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renews: Option<String>,
        /// The writ issued. For a pending decision, the writ an approval would issue:
        /// its lineage fields, and as `exp` the deadline by which an operator must approve.
        writ: Option<WritRecord>,
        /// The shadow bundle's verdict, when one was set and its outcome differed from this
        /// decision's; absent otherwise (never enforced: see [`ShadowVerdict`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shadow: Option<ShadowVerdict>,
    },
    /// An operator approved or rejected a pending decision.
    Approval {
        /// Time.
        time: u64,
        /// The pending decision's id (the writ's `jti` once approved).
        id: String,
        /// True: approved; false: rejected.
        approved: bool,
        /// Who.
        operator: Option<String>,
        /// Why.
        reason: String,
        /// The writ issued by an approval (its `log` claim points at this entry).
        writ: Option<WritRecord>,
    },
    /// A policy bundle became active (or was refused).
    Activation {
        /// What checking the bundle found, and who asked.
        #[serde(flatten)]
        check: BundleCheck,
        /// The bundle's parts, so that replay can rebuild it from the log alone.
        parts: BundleParts,
    },
    /// A writ was revoked: by an operator, or by the re-evaluation that follows an
    /// activation (then `bundle` names the bundle that would now deny it, or `ancestor` the
    /// revoked writ above it).
    Revocation {
        /// Time.
        time: u64,
        /// Writ id.
        jti: String,
        /// Who (the activation's operator, for a re-evaluation).
        operator: Option<String>,
        /// Why.
        reason: String,
        /// The digest of the activated bundle whose re-evaluation revoked the writ.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<String>,
        /// The writ above this one whose revocation by the same re-evaluation (or
        /// isolation) revoked it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ancestor: Option<String>,
        /// The log index of the automatic isolation (`quarantine` entry) whose principal's
        /// writ this is, or is below.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isolation: Option<u64>,
    },
    /// The re-evaluation of the outstanding writs that follows an activation (or a
    /// rollback) ended: every writ it revoked is recorded before this entry. An activation
    /// with no such entry after it was interrupted, and is re-evaluated again on open.
    Reevaluation {
        /// Time.
        time: u64,
        /// The activated bundle's digest.
        bundle: String,
        /// The log index of its activation entry.
        activation: u64,
        /// Unexpired, unrevoked allowed writs evaluated again.
        reevaluated: u64,
        /// Those the bundle would now deny (or would not allow without an approval they
        /// never had), revoked.
        revoked: u64,
        /// Unexpired writs below those, revoked with them.
        descendants: u64,
        /// Who activated the bundle.
        operator: Option<String>,
    },
    /// A signed bundle was uploaded for later activation (or refused).
    Upload {
        /// What checking the bundle found, and who uploaded it.
        #[serde(flatten)]
        check: BundleCheck,
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
    /// The writ signing key was rotated (key ids only; no secret enters the log).
    KeyRotation {
        /// Time.
        time: u64,
        /// The new current key.
        kid: String,
        /// Every published key after the rotation, oldest first.
        kids: Vec<String>,
        /// Who.
        operator: Option<String>,
    },
    /// Requests without a verified identity that were answered (denied) but not recorded
    /// one by one, because they came faster than the anonymous record budget allows: the
    /// attempts are counted here, by reason code, when the budget allows a record again.
    AnonymousAttempts {
        /// Time of this summary.
        time: u64,
        /// Time of the first attempt it counts.
        since: u64,
        /// Time of the last attempt it counts.
        until: u64,
        /// Attempts, by primary reason code.
        reasons: BTreeMap<ReasonCode, u64>,
    },
    /// The shadow bundle was set (`bundle`: its digest) or cleared (`bundle: None`): a
    /// bundle evaluated beside the active one on every decision, never enforced.
    Shadow {
        /// Time.
        time: u64,
        /// The shadow bundle's digest; `None` when the shadow was cleared.
        bundle: Option<String>,
        /// Who.
        operator: Option<String>,
        /// Why.
        reason: String,
    },
    /// An identity was isolated or released: by an operator, or automatically by an
    /// isolation rule of the active bundle (then `rule` and `triggers` say which and why).
    Quarantine {
        /// Time.
        time: u64,
        /// SPIFFE ID.
        subject: String,
        /// True: isolated; false: released.
        isolated: bool,
        /// Who (`None` for an automatic isolation, and for the local CLI).
        operator: Option<String>,
        /// Why.
        reason: String,
        /// The isolation rule that isolated the identity automatically.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// The log indices of the entries that tripped the rule, oldest first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        triggers: Vec<u64>,
    },
    /// A writ presented at `POST /v1/verify` was refused, and an isolation rule of the
    /// active bundle counts that refusal: recorded so that the isolation can name it. Only
    /// for a writ whose signature verified (its `sub` is proven), and never for a principal
    /// already isolated. The writ itself is not recorded (a bearer token), only its digest.
    Presentation {
        /// Time.
        time: u64,
        /// The writ's id.
        jti: String,
        /// The writ's principal.
        subject: String,
        /// Why it was refused.
        reason: ReasonCode,
        /// Detail.
        detail: String,
        /// SHA-256 of the writ as presented, `sha256:<hex>`.
        writ_digest: String,
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
    /// It ran until its authority ended (a renewal of its writ refused, or the writ expired
    /// before it could be renewed), and the enforcement point stopped it.
    Stopped,
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

impl Entry {
    /// True for the entries the revocation feed publishes: revocations, quarantine changes
    /// and accepted activations.
    pub fn feeds(&self) -> bool {
        matches!(
            self,
            Entry::Revocation { .. }
                | Entry::Quarantine { .. }
                | Entry::Activation { check: BundleCheck { accepted: true, .. }, .. }
        )
    }

    /// The entry's `kind` and who caused it (the operator, or an outcome's reporter), for
    /// the control plane's own log.
    pub fn kind_and_operator(&self) -> (&'static str, Option<&str>) {
        match self {
            Entry::Decision { .. } => ("decision", None),
            Entry::Activation { check, .. } => ("activation", check.operator.as_deref()),
            Entry::Revocation { operator, .. } => ("revocation", operator.as_deref()),
            Entry::Reevaluation { operator, .. } => ("reevaluation", operator.as_deref()),
            Entry::Upload { check, .. } => ("upload", check.operator.as_deref()),
            Entry::Outcome { reporter, .. } => ("outcome", Some(reporter)),
            Entry::KeyRotation { operator, .. } => ("key_rotation", operator.as_deref()),
            Entry::Quarantine { operator, .. } => ("quarantine", operator.as_deref()),
            Entry::Approval { operator, .. } => ("approval", operator.as_deref()),
            Entry::AnonymousAttempts { .. } => ("anonymous_attempts", None),
            Entry::Shadow { operator, .. } => ("shadow", operator.as_deref()),
            Entry::Presentation { .. } => ("presentation", None),
        }
    }

    /// The entry's RFC 8785 canonical JSON: the bytes the log stores.
    pub fn canonical(&self) -> Result<Vec<u8>, serde_json::Error> {
        let Entry::Decision { id, time, request, body_digest, facts, limits, bundle, decision, renews, writ, shadow } =
            self
        else {
            return serde_jcs::to_vec(self);
        };
        if !self.exact_numbers() {
            return serde_jcs::to_vec(self);
        }
        let canon = DecisionCanon {
            body_digest: body_digest.as_deref(),
            bundle: bundle.as_deref(),
            decision,
            facts: facts.as_ref().map(FactsCanon::of).transpose()?,
            id,
            kind: "decision",
            limits,
            renews: renews.as_deref(),
            request: request.as_ref().map(RequestCanon::of).transpose()?,
            shadow: shadow.as_ref(),
            time: *time,
            writ: writ.as_ref(),
        };
        serde_json::to_vec(&canon)
    }
}

impl Entry {
    /// RFC 8785 writes numbers as IEEE 754 doubles: an integer above 2^53 would not be
    /// written as its digits. True if no integer field of a decision is that large (none
    /// is in practice: times, counters); otherwise the general encoder handles the entry.
    fn exact_numbers(&self) -> bool {
        let Entry::Decision { time, facts, writ, .. } = self else {
            return false;
        };
        let parent_exp = match facts.as_ref().and_then(|f| f.parent.as_ref()) {
            Some(ParentFact::Known { exp, .. }) => *exp,
            _ => 0,
        };
        let usage = facts.as_ref().map(|f| f.usage).unwrap_or_default();
        let writ_times = writ.as_ref().map_or([0; 3], |w| [w.iat, w.nbf, w.exp]);
        [*time, parent_exp, usage.last_hour, usage.last_minute].into_iter().chain(writ_times).all(|n| n <= MAX_EXACT)
    }
}

/// The largest integer an IEEE 754 double holds exactly (2^53 - 1).
const MAX_EXACT: u64 = (1 << 53) - 1;

/// RFC 8785 canonical JSON of a free-form value, ready to embed.
fn raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    RawValue::from_string(serde_jcs::to_string(value)?)
}

// The mirrors below are `Entry::Decision` and the structs holding free-form JSON, with
// their fields in RFC 8785 order (the `kind` tag where it sorts, not first); every other
// record struct declares its fields in that order itself.

#[derive(Serialize)]
struct DecisionCanon<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    body_digest: Option<&'a str>,
    bundle: Option<&'a str>,
    decision: &'a DecisionOutcome,
    facts: Option<FactsCanon<'a>>,
    id: &'a str,
    kind: &'static str,
    limits: &'a RecordedLimits,
    #[serde(skip_serializing_if = "Option::is_none")]
    renews: Option<&'a str>,
    request: Option<RequestCanon<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<&'a ShadowVerdict>,
    time: u64,
    writ: Option<&'a WritRecord>,
}

#[derive(Serialize)]
struct RequestCanon<'a> {
    action: &'a str,
    arguments: Box<RawValue>,
    audience: &'a str,
    credentials: &'a BTreeMap<String, String>,
    digest: &'a str,
    parent: Option<&'a str>,
    request_id: Option<&'a str>,
    resource: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    withheld: Option<&'a Withheld>,
}

impl<'a> RequestCanon<'a> {
    fn of(r: &'a RecordedRequest) -> Result<Self, serde_json::Error> {
        Ok(RequestCanon {
            action: &r.action,
            arguments: raw(&r.arguments)?,
            audience: &r.audience,
            credentials: &r.credentials,
            digest: &r.digest,
            parent: r.parent.as_deref(),
            request_id: r.request_id.as_deref(),
            resource: &r.resource,
            withheld: r.withheld.as_ref(),
        })
    }
}

#[derive(Serialize)]
struct FactsCanon<'a> {
    attestation: Option<&'a Checked<AttestationFact>>,
    delegation: BTreeMap<&'a str, CheckedCanon<'a>>,
    identity: CheckedCanon<'a>,
    parent: Option<&'a ParentFact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_writ: Option<&'a Checked<String>>,
    quarantined: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal: Option<&'a Checked<String>>,
    usage: &'a Usage,
}

impl<'a> FactsCanon<'a> {
    fn of(f: &'a Facts) -> Result<Self, serde_json::Error> {
        Ok(FactsCanon {
            attestation: f.attestation.as_ref(),
            delegation: f
                .delegation
                .iter()
                .map(|(k, v)| Ok((k.as_str(), CheckedCanon::of(v)?)))
                .collect::<Result<_, serde_json::Error>>()?,
            identity: CheckedCanon::of(&f.identity)?,
            parent: f.parent.as_ref(),
            parent_writ: f.parent_writ.as_ref(),
            quarantined: f.quarantined,
            renewal: f.renewal.as_ref(),
            usage: &f.usage,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum CheckedCanon<'a> {
    Ok(IdentityCanon<'a>),
    Failed { detail: &'a str, reason: ReasonCode },
}

impl<'a> CheckedCanon<'a> {
    fn of(c: &'a Checked<IdentityFact>) -> Result<Self, serde_json::Error> {
        Ok(match c {
            Checked::Ok(i) => CheckedCanon::Ok(IdentityCanon {
                claims: raw(&i.claims)?,
                issuer: &i.issuer,
                subject: &i.subject,
                trust_domain: &i.trust_domain,
            }),
            Checked::Failed { reason, detail } => CheckedCanon::Failed { detail, reason: *reason },
        })
    }
}

#[derive(Serialize)]
struct IdentityCanon<'a> {
    claims: Box<RawValue>,
    issuer: &'a str,
    subject: &'a str,
    trust_domain: &'a str,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The bytes an activation and an upload entry (accepted and refused) were written as
    /// before their shared fields moved into [`BundleCheck`]: entries already in logs parse
    /// into the same entry, and new ones serialise to the same bytes.
    #[test]
    fn regression_bundle_entries_keep_their_bytes() {
        let parts = r#"{"entities":null,"manifest":"{}","policies":"permit(principal, action, resource);","schema":"","tests":"[]"}"#;
        let pinned = [
            format!(
                r#"{{"accepted":true,"digest":"sha256:00ff","kind":"activation","name":"starter","operator":"spiffe://example.org/op","parts":{parts},"signature":"note","signer":"policy-key","time":1700000000,"version":"1.2.3"}}"#
            ),
            r#"{"accepted":false,"digest":"sha256:00ff","kind":"activation","name":"starter","operator":null,"parts":{"entities":null,"manifest":"","policies":"","schema":"","tests":null},"refusal":"bad signature","signature":"note","signer":null,"time":1700000001,"version":"1.2.3"}"#.to_owned(),
            format!(
                r#"{{"accepted":true,"digest":"sha256:00ff","kind":"upload","name":"starter","operator":"spiffe://example.org/op","parts":{parts},"signature":"note","signer":"policy-key","time":1700000002,"version":"1.2.3"}}"#
            ),
            r#"{"accepted":false,"digest":"sha256:00ff","kind":"upload","name":"starter","operator":null,"parts":null,"refusal":"invalid schema","signature":"note","signer":null,"time":1700000003,"version":"1.2.3"}"#.to_owned(),
        ];
        let mut kinds = Vec::new();
        for text in &pinned {
            let entry: Entry = serde_json::from_str(text).unwrap();
            assert_eq!(String::from_utf8(entry.canonical().unwrap()).unwrap(), *text);
            let (kind, accepted) = match &entry {
                Entry::Activation { check, .. } => ("activation", check.accepted),
                Entry::Upload { check, parts, .. } => {
                    assert_eq!(parts.is_some(), check.accepted);
                    ("upload", check.accepted)
                }
                other => panic!("{other:?}"),
            };
            kinds.push((kind, accepted));
        }
        assert_eq!(kinds, [("activation", true), ("activation", false), ("upload", true), ("upload", false)]);
        // A refused entry names why, an accepted one does not.
        let refused: Entry = serde_json::from_str(&pinned[3]).unwrap();
        let Entry::Upload { check, .. } = refused else { panic!() };
        assert_eq!(check.refusal.as_deref(), Some("invalid schema"));
        assert_eq!(check.operator, None);
    }

    /// Any text: ASCII, control characters, quotes and backslashes, characters beyond the
    /// BMP and around U+E000 (where UTF-8 and UTF-16 orders differ).
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{0,8}",
            any::<String>(),
            prop::collection::vec(
                prop_oneof![
                    Just('\u{0}'),
                    Just('\u{1f}'),
                    Just('"'),
                    Just('\\'),
                    Just('\u{7f}'),
                    Just('\u{e000}'),
                    Just('\u{ffff}'),
                    Just('\u{1f600}'),
                    Just('\u{10ffff}'),
                    Just('\u{2028}'),
                    any::<char>()
                ],
                0..6
            )
            .prop_map(|v| v.into_iter().collect()),
        ]
    }

    /// Mostly integers a double holds exactly; sometimes any (the general encoder's case).
    fn num() -> impl Strategy<Value = u64> {
        prop_oneof![9 => 0..=MAX_EXACT, 1 => any::<u64>()]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Fractions and exponents, where RFC 8785 number formatting matters.
            (-1e30f64..1e30).prop_map(Value::from),
            prop_oneof![Just(1e21), Just(1e-7), Just(-0.0), Just(5e-324), Just(0.1)].prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((text(), inner), 0..5).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn claims() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::vec((text(), json()), 0..4).prop_map(|kv| kv.into_iter().collect())
    }

    fn reason() -> impl Strategy<Value = ReasonCode> {
        prop::sample::select(ReasonCode::ALL.to_vec())
    }

    fn checked_identity() -> impl Strategy<Value = Checked<IdentityFact>> {
        prop_oneof![
            (claims(), text(), text(), text()).prop_map(|(claims, issuer, subject, trust_domain)| Checked::Ok(
                IdentityFact { claims, issuer, subject, trust_domain }
            )),
            (text(), reason()).prop_map(|(detail, reason)| Checked::Failed { detail, reason }),
        ]
    }

    fn scope() -> impl Strategy<Value = Scope> {
        (prop::collection::vec(text(), 0..3), text()).prop_map(|(actions, zone)| Scope { actions, zone })
    }

    fn facts() -> impl Strategy<Value = Facts> {
        let attestation = prop::option::of(prop_oneof![
            (text(), text(), text()).prop_map(|(environment, measurement, region)| Checked::Ok(AttestationFact {
                environment,
                measurement,
                region
            })),
            (text(), reason()).prop_map(|(detail, reason)| Checked::Failed { detail, reason }),
        ]);
        let parent = prop::option::of(prop_oneof![
            Just(ParentFact::Unknown),
            (
                text(),
                any::<bool>(),
                any::<u32>(),
                num(),
                any::<bool>(),
                text(),
                prop::option::of(scope()),
                prop::option::of(text())
            )
                .prop_map(|(action, allowed, depth, exp, revoked, root, scope, subject)| {
                    ParentFact::Known { action, allowed, depth, exp, revoked, root, scope, subject }
                }),
        ]);
        let checked_text = || {
            prop::option::of(prop_oneof![
                text().prop_map(Checked::Ok),
                (text(), reason()).prop_map(|(detail, reason)| Checked::Failed { detail, reason }),
            ])
        };
        (
            attestation,
            prop::collection::btree_map("[a-z]{1,12}", checked_identity(), 0..3),
            checked_identity(),
            (parent, checked_text()),
            (any::<bool>(), checked_text()),
            (num(), num()),
        )
            .prop_map(
                |(
                    attestation,
                    delegation,
                    identity,
                    (parent, parent_writ),
                    (quarantined, renewal),
                    (last_hour, last_minute),
                )| {
                    Facts {
                        attestation,
                        delegation,
                        identity,
                        parent,
                        parent_writ,
                        quarantined,
                        renewal,
                        usage: Usage { last_hour, last_minute },
                    }
                },
            )
    }

    fn request() -> impl Strategy<Value = RecordedRequest> {
        (
            (text(), json(), text(), prop::collection::btree_map("[a-z]{1,12}", "[0-9a-f]{64}", 0..3)),
            (text(), prop::option::of(text()), prop::option::of(text()), text()),
        )
            .prop_map(
                |((action, arguments, audience, credentials), (digest, parent, request_id, resource))| {
                    RecordedRequest {
                        action,
                        arguments,
                        audience,
                        credentials,
                        digest,
                        parent,
                        request_id,
                        resource,
                        withheld: None,
                    }
                },
            )
    }

    fn writ() -> impl Strategy<Value = WritRecord> {
        ((text(), any::<u32>(), num(), num()), (text(), num(), text(), scope(), text())).prop_map(
            |((aud, dep, exp, iat), (jti, nbf, root, scp, sub))| WritRecord {
                aud,
                dep,
                exp,
                iat,
                jti,
                nbf,
                root,
                scp,
                sub,
            },
        )
    }

    fn decision() -> impl Strategy<Value = Entry> {
        (
            (text(), num(), prop::option::of(request()), prop::option::of("[0-9a-f]{64}")),
            (prop::option::of(facts()), any::<u32>(), prop::option::of(text()), any::<bool>()),
            (text(), 0..3u8, prop::collection::vec(text(), 0..3), prop::collection::vec(reason(), 0..3)),
            (prop::option::of(writ()), prop::option::of(text())),
            prop::option::of((text(), 0..3u8, prop::collection::vec(reason(), 0..3))),
        )
            .prop_map(
                |(
                    (id, time, request, body_digest),
                    (facts, max_depth, bundle, lineage_by_possession),
                    (detail, outcome, policies, reasons),
                    (writ, renews),
                    shadow,
                )| {
                    Entry::Decision {
                        id,
                        time,
                        request,
                        body_digest,
                        facts,
                        limits: RecordedLimits { lineage_by_possession, max_depth },
                        bundle,
                        decision: DecisionOutcome {
                            detail,
                            outcome: [Outcome::Allow, Outcome::Deny, Outcome::Pending][usize::from(outcome)],
                            policies,
                            reasons,
                        },
                        renews,
                        writ,
                        shadow: shadow.map(|(bundle, outcome, reasons)| ShadowVerdict {
                            bundle,
                            outcome: [Outcome::Allow, Outcome::Deny, Outcome::Pending][usize::from(outcome)],
                            reasons,
                        }),
                    }
                },
            )
    }

    static FAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        fn encodes_as_serde_jcs(entry in decision()) {
            let ours = entry.canonical().unwrap();
            FAST.fetch_add(u64::from(entry.exact_numbers()), std::sync::atomic::Ordering::Relaxed);
            prop_assert_eq!(String::from_utf8(ours.clone()).unwrap(), String::from_utf8(serde_jcs::to_vec(&entry).unwrap()).unwrap());
            let back: Entry = serde_json::from_slice(&ours).unwrap();
            prop_assert_eq!(back.canonical().unwrap(), ours);
        }
    }

    /// The decision encoder gives exactly what `serde_jcs` gives over the whole entry, and
    /// the bytes read back as the same entry; most cases go through the decision encoder,
    /// not the fallback for huge integers.
    #[test]
    fn decision_encoding_is_rfc8785() {
        encodes_as_serde_jcs();
        assert!(FAST.load(std::sync::atomic::Ordering::Relaxed) > 500, "{FAST:?}");
    }
}
