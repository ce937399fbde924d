//! Bodies of the API as OpenAPI schemas (utoipa `ToSchema`). Request bodies that handlers
//! parse are the very types they deserialize; the authorize request, which the engine
//! parses from raw bytes, and the engine's answers are described by mirror types here, and
//! the router tests check that the mirrors and the real types agree.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Credentials of an execution request (JWTs, JWS compact).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsDoc {
    /// The acting agent's workload credential (required for an allow).
    pub workload: Option<String>,
    /// The human operator on whose behalf it acts.
    pub operator: Option<String>,
    /// The orchestrator that started it.
    pub orchestrator: Option<String>,
    /// The machine it runs on.
    pub machine: Option<String>,
    /// Its runtime environment.
    pub runtime: Option<String>,
    /// A delegation credential of the parent writ's principal whose `may_act` claim
    /// (`{"sub": <SPIFFE ID>}`) names the acting agent: needed when a child is another
    /// principal than its parent.
    pub delegation: Option<String>,
}

/// An execution request (SPEC.md §1).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequestDoc {
    /// Caller's id, echoed in the decision.
    pub request_id: Option<String>,
    /// Credentials.
    pub credentials: Option<CredentialsDoc>,
    /// Signed runtime attestation (JWT).
    pub attestation: Option<String>,
    /// The action, e.g. `read`.
    #[schema(example = "read")]
    pub action: String,
    /// The resource, e.g. `docs/handbook.md`.
    pub resource: String,
    /// The tool arguments.
    #[schema(value_type = Object)]
    pub arguments: Option<Value>,
    /// The parent writ's id (optional when `parent_writ` is given; naming it alone is
    /// `lineage.parent_unknown`).
    pub parent: Option<String>,
    /// The parent writ itself (JWS compact): lineage is proven by possession. Verified,
    /// not consumed.
    pub parent_writ: Option<String>,
    /// The audience of the writ.
    pub audience: Option<String>,
}

/// A renewal request (`POST /v1/renew`): the writ to renew and the caller's credentials,
/// as in an authorization request. The renewal decides the writ's own recorded request again.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequestDoc {
    /// The writ to renew (JWS compact): unexpired, the caller's own, not renewed before.
    pub writ: String,
    /// Credentials: the workload credential of the writ's `sub`, and whatever else the
    /// action needs (delegation, vouching credentials).
    pub credentials: Option<CredentialsDoc>,
    /// Signed runtime attestation (JWT), for an action whose bundle requires one.
    pub attestation: Option<String>,
    /// Caller's id, echoed in the decision.
    pub request_id: Option<String>,
}

/// A decision.
#[derive(Serialize, ToSchema)]
pub struct DecisionDoc {
    /// Decision id (the writ's `jti` on allow).
    pub id: String,
    /// The caller's request id.
    pub request_id: Option<String>,
    /// `allow`, `deny`, or `pending`: policy needs an operator's approval, and the writ is
    /// collected from `GET /v1/approvals/{id}` once approved.
    #[schema(example = "deny")]
    pub outcome: String,
    /// Reason codes, primary first (empty on allow).
    pub reasons: Vec<String>,
    /// Determining policies.
    pub policies: Vec<String>,
    /// Detail for humans. For a `policy.denied` deny, the text of `explanation`.
    pub detail: String,
    /// For a `policy.denied` deny by the bundle's policies: the forbids that decided or the
    /// permits that came closest, in the bundle author's words (`@reason`). Human text, not
    /// something to branch on: the reason codes say what was decided.
    pub explanation: Option<ExplanationDoc>,
    /// The decision's index in the log.
    pub log_index: Option<u64>,
    /// The writ (JWT), on allow.
    pub writ: Option<String>,
}

/// Why the policies denied.
#[derive(Serialize, ToSchema)]
pub struct ExplanationDoc {
    /// When no permit applied: the permits whose scope matched this action and resource
    /// but whose conditions did not hold, by policy id (at most 8).
    pub closest_permits: Vec<ClosestPermitDoc>,
    /// Closest permits left out beyond the 8 listed (absent when none).
    pub more_permits: Option<u64>,
    /// The forbid policies that decided.
    pub forbidden_by: Vec<ForbiddenByDoc>,
}

/// A permit that came closest.
#[derive(Serialize, ToSchema)]
pub struct ClosestPermitDoc {
    /// The policy's `@id`.
    pub policy: String,
    /// What it requires: its `@reason` (at most 280 characters, control characters
    /// escaped), or `(no @reason given)`.
    pub requires: String,
}

/// A forbid that decided.
#[derive(Serialize, ToSchema)]
pub struct ForbiddenByDoc {
    /// The policy's `@id`.
    pub policy: String,
    /// Why it forbids: its `@reason`, or `(no @reason given)`.
    pub reason: String,
}

/// The call a writ is checked against.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallDoc {
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Arguments (an empty object if absent).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// `POST /v1/verify`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The writ.
    pub writ: String,
    /// The call about to run.
    pub request: CallDoc,
}

/// The answer of `POST /v1/verify`.
#[derive(Serialize, ToSchema)]
pub struct VerifyAnswer {
    /// Whether the writ authorizes the call.
    pub ok: bool,
    /// The writ's claims, when it does.
    #[schema(value_type = Object)]
    pub claims: Option<Value>,
    /// The reason code, when it does not.
    pub reason: Option<String>,
    /// Detail.
    pub detail: Option<String>,
}

/// A bundle's parts as text.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleDoc {
    /// `manifest.json`.
    pub manifest: String,
    /// `policies.cedar`.
    pub policies: String,
    /// `schema.cedarschema`.
    pub schema: String,
    /// `entities.json`.
    pub entities: Option<String>,
    /// `tests.json`.
    pub tests: Option<String>,
}

/// `POST /v1/bundles`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadBody {
    /// The bundle.
    pub bundle: BundleDoc,
    /// Its signature: a signed note by a trusted policy key (`writ policy sign`).
    pub signature: String,
    /// Activate it at once.
    #[serde(default)]
    pub activate: bool,
}

/// `POST /v1/revocations`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// The writ id.
    pub jti: String,
    /// Why.
    pub reason: String,
}

/// `POST /v1/approvals/{id}/approve` and `/v1/approvals/{id}/reject`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// Why (recorded in the log with the operator's identity).
    pub reason: String,
}

/// `POST /v1/quarantine/isolate` and `/v1/quarantine/release`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineBody {
    /// The identity (SPIFFE ID).
    pub subject: String,
    /// Why.
    pub reason: String,
}

/// How an execution ended.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatusDoc {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
    /// It did not run.
    NotRun,
    /// It ran until its authority ended (a renewal of its writ refused, or the writ expired
    /// unrenewed), and the enforcement point stopped it.
    Stopped,
}

/// `POST /v1/outcomes`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    /// The writ id of the execution.
    pub jti: String,
    /// How it ended.
    pub status: ExecStatusDoc,
    /// Exit code, for commands.
    pub exit_code: Option<i64>,
    /// Detail (at most 4 KiB).
    #[serde(default)]
    pub detail: String,
}

/// The log index of a recorded operator action.
#[derive(Serialize, ToSchema)]
pub struct Recorded {
    /// Index of the log entry recording it.
    pub log_index: u64,
}

/// A writ key rotation in force.
#[derive(Serialize, ToSchema)]
pub struct RotationAnswer {
    /// The key that signs writs from now on (RFC 7638 thumbprint).
    pub kid: String,
    /// Every published key, oldest first (also at `/.well-known/jwks.json`).
    pub kids: Vec<String>,
    /// Index of the log entry recording the rotation.
    pub log_index: u64,
    /// Set when the rotation is in force but a side effect (the JWKS file) failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A bundle the log holds.
#[derive(Serialize, ToSchema)]
pub struct BundleSummaryDoc {
    /// Digest.
    pub digest: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Signing policy key.
    pub signer: Option<String>,
    /// First seen.
    pub first_seen: u64,
    /// Last activation.
    pub last_activated: Option<u64>,
    /// Who activated it last (absent: the local CLI, or never activated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activated_by: Option<String>,
    /// Active now.
    pub active: bool,
}

/// One activation of a bundle.
#[derive(Serialize, ToSchema)]
pub struct ActivationDoc {
    /// When (Unix seconds).
    pub time: u64,
    /// Who (operator SPIFFE ID; absent for the local CLI).
    pub operator: Option<String>,
    /// Empty: an activation records no reason.
    pub reason: String,
    /// The activation's log entry.
    pub log_index: u64,
}

/// A bundle's files as text.
#[derive(Serialize, ToSchema)]
pub struct BundlePartsDoc {
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

/// A bundle the log holds, with its text and its newest activations.
#[derive(Serialize, ToSchema)]
pub struct BundleDetailDoc {
    /// What `GET /v1/bundles` says of it.
    #[serde(flatten)]
    pub summary: BundleSummaryDoc,
    /// Its newest activations (at most 50), oldest first.
    pub activations: Vec<ActivationDoc>,
    /// Its files.
    pub parts: BundlePartsDoc,
}

/// Decision totals since the log's first entry.
#[derive(Serialize, ToSchema)]
pub struct StatsDoc {
    /// Entries these totals are of (the log size when they were taken).
    pub size: u64,
    /// Decisions recorded one by one.
    pub decisions: u64,
    /// Allowed when decided.
    pub allow: u64,
    /// Denied.
    pub deny: u64,
    /// Sent to an operator for approval.
    pub pending: u64,
    /// Pending decisions an operator approved.
    pub approved: u64,
    /// Pending decisions an operator rejected.
    pub rejected: u64,
    /// Denied requests without a verified identity counted in `anonymous_attempts`
    /// summaries instead of recorded one by one.
    pub anonymous_denied: u64,
    /// Counts by outcome (`allow`, `deny`, `pending`), then primary reason code (`""`
    /// when none).
    #[schema(value_type = Object)]
    pub by_reason: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    /// Entries by kind.
    #[schema(value_type = Object)]
    pub entries: std::collections::BTreeMap<String, u64>,
}

/// A run of the built-in demo scenario.
#[derive(Serialize, ToSchema)]
pub struct DemoRunDoc {
    /// Run id.
    pub id: String,
    /// `running`, `succeeded` (every step went as expected), `failed` (a step did not) or
    /// `error` (the run stopped: its last event says why).
    pub status: String,
    /// When it started (Unix seconds).
    pub started: u64,
    /// When it ended.
    pub finished: Option<u64>,
    /// The operator who started it.
    pub operator: String,
    /// Its narration so far: `section`, `step`, `note` and a final `summary` event, each
    /// with its sequence number `seq`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// An inclusion proof.
#[derive(Serialize, ToSchema)]
pub struct InclusionAnswer {
    /// Entry index.
    pub index: u64,
    /// Tree size.
    pub tree_size: u64,
    /// RFC 6962 leaf hash, base64.
    pub leaf_hash: String,
    /// Proof hashes, base64.
    pub proof: Vec<String>,
}

/// A consistency proof.
#[derive(Serialize, ToSchema)]
pub struct ConsistencyAnswer {
    /// Older size.
    pub from: u64,
    /// Newer size.
    pub to: u64,
    /// Proof hashes, base64.
    pub proof: Vec<String>,
}

/// One log entry.
#[derive(Serialize, ToSchema)]
pub struct EntryDoc {
    /// Index.
    pub index: u64,
    /// RFC 6962 leaf hash, base64.
    pub leaf_hash: String,
    /// The exact bytes, base64.
    pub entry_base64: String,
    /// The entry parsed.
    #[schema(value_type = Object)]
    pub entry: Value,
}

/// `GET /v1/log/entries`.
#[derive(Serialize, ToSchema)]
pub struct EntriesAnswer {
    /// Entries, in index order.
    pub entries: Vec<EntryDoc>,
}

/// One candidate call of a preview.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateDoc {
    /// The action, e.g. `mcp:fs/write_file`.
    pub action: String,
    /// The resource, e.g. `mcp:fs`.
    pub resource: String,
}

/// `POST /v1/authorize/preview`: which candidate calls the caller could be allowed to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// The caller's credentials, as in an execution request.
    #[schema(value_type = Option<CredentialsDoc>)]
    #[serde(default)]
    pub credentials: Option<writ_core::Credentials>,
    /// Signed runtime attestation (JWT).
    #[serde(default)]
    pub attestation: Option<String>,
    /// The parent writ the calls would be made under: its scope narrows what is possible.
    #[serde(default)]
    pub parent_writ: Option<String>,
    /// The candidate calls (at most 1,000).
    pub candidates: Vec<CandidateDoc>,
}

/// One candidate's answer.
#[derive(Serialize, ToSchema)]
pub struct PossibleDoc {
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// False only when every call with this action and resource would be denied.
    pub possible: bool,
    /// When impossible: the reason code such calls are denied with.
    pub reason: Option<String>,
    /// When impossible: why, in words.
    pub detail: Option<String>,
}

/// The answer to a preview.
#[derive(Serialize, ToSchema)]
pub struct PreviewAnswerDoc {
    /// The digest of the active bundle that answered (null: none active).
    pub bundle: Option<String>,
    /// The candidates, in the order asked.
    pub candidates: Vec<PossibleDoc>,
}

/// The revocation feed's snapshot.
#[derive(Serialize, ToSchema)]
pub struct FeedSnapshotAnswer {
    /// A JWS compact signed by the feed key (`typ: writ-feed+jwt`), payload `{iss, kind:
    /// "snapshot", size, iat, bundle, changed_at, revoked: [{jti, exp}], quarantined: [SPIFFE
    /// ID], isolated_lineage: [{jti, exp}]}`.
    pub snapshot: String,
}

/// A lineage root found by `GET /v1/lineage` (mirrors `writ_engine::LineageRoot`).
#[derive(Serialize, ToSchema)]
pub struct LineageRootDoc {
    /// The root decision id.
    pub root: String,
    /// Its principal.
    pub subject: String,
    /// Its action.
    pub action: String,
    /// Its outcome: allow, deny or pending.
    pub outcome: String,
    /// Its decision time (Unix seconds).
    pub time: u64,
    /// Its log index.
    pub log_index: u64,
    /// How many decisions under it the search selected.
    pub matched: u64,
}

/// The answer of `GET /v1/lineage`.
#[derive(Serialize, ToSchema)]
pub struct LineageRootsAnswer {
    /// The roots, newest first.
    pub roots: Vec<LineageRootDoc>,
}
