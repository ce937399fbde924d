//! The operator routes: bundles (list, upload, activate), revocations, quarantine, lineage
//! (one writ's, and a search of the roots),
//! execution outcomes, and writ key rotation. Every one authenticates its caller first (see [`crate::auth`]);
//! every state change is the engine's, recorded in the log with the operator's SPIFFE ID.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::IntoParams;
use writ_core::SpiffeId;
use writ_engine::{EngineError, ExecStatus, LineageSearch};
use writ_policy::Bundle;

use crate::AppState;
use crate::auth::{Operator, Reporter};
use crate::error::{ApiError, ErrorBody, ServerFailures};
use crate::extract::{Body, BundleBody, Limited, Path, Query};
use crate::schema::{
    BundleDetailDoc, BundleSummaryDoc, ExecStatusDoc, LineageRootsAnswer, OutcomeBody, QuarantineBody, Recorded,
    RevokeBody, RotationAnswer, UploadBody,
};

/// The answers of every operator route to a caller that is not an operator.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documentation only: the answers are built by `ApiError`")]
pub(crate) enum OperatorRefusals {
    /// No or invalid credential.
    #[response(status = 401, description = "No or invalid credential")]
    Unauthenticated(#[to_schema] ErrorBody),
    /// Valid, but not an operator's.
    #[response(status = 403, description = "Not an operator")]
    Forbidden(#[to_schema] ErrorBody),
}

/// Parses a JSON body strictly: a repeated member name at any depth is `request.malformed`
/// (see [`writ_core::json`]).
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    writ_core::json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

fn recorded(log_index: u64) -> Response {
    Json(json!({ "log_index": log_index })).into_response()
}

fn subject(s: &str) -> Result<SpiffeId, ApiError> {
    SpiffeId::parse(s).map_err(|e| ApiError::bad_request(format!("subject: {e}")))
}

/// Bundles the log holds, the active one marked.
#[utoipa::path(get, path = "/v1/bundles", tag = "admin", security(("bearer" = [])),
    responses(
        ServerFailures,
        (status = 200, description = "The bundles", body = Vec<BundleSummaryDoc>),
        OperatorRefusals,
    ))]
pub(crate) async fn list_bundles(State(s): State<AppState>, _op: Operator) -> Result<Response, ApiError> {
    s.engine.state_readable()?;
    Ok(Json(json!({ "bundles": s.engine.bundles() })).into_response())
}

/// A bundle the log holds, with its files as text and its newest activations (when, by
/// whom, the log entry): what the console shows and diffs between versions.
#[utoipa::path(get, path = "/v1/policy/bundles/{digest}", tag = "admin", security(("bearer" = [])),
    params(("digest" = String, Path, description = "Bundle digest, sha256:<hex>")),
    responses(
        ServerFailures,
        (status = 200, description = "The bundle", body = BundleDetailDoc),
        (status = 400, description = "Not a bundle digest", body = ErrorBody),
        (status = 404, description = "No such bundle in the log", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn bundle_detail(
    State(s): State<AppState>,
    _op: Operator,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    s.engine.state_readable()?;
    let digest = bundle_digest(&digest)?;
    let detail =
        s.engine.bundle_detail(digest).ok_or_else(|| ApiError::not_found(format!("no bundle {digest} in the log")))?;
    Ok(Json(detail).into_response())
}

/// Upload a signed bundle (and optionally activate it). It must be signed by a trusted
/// policy key and valid against its own schema; a refusal is recorded too.
#[utoipa::path(post, path = "/v1/bundles", tag = "admin", security(("bearer" = [])),
    request_body(content = UploadBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Accepted", body = Object),
        (status = 400, description = "Malformed, unsigned, untrusted or invalid bundle", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn upload_bundle(
    State(s): State<AppState>,
    Operator(op): Operator,
    Limited(body): BundleBody,
) -> Result<Response, ApiError> {
    let (up, bundle) = parse_upload(&body)?;
    if up.activate {
        let signature = up.signature;
        let activated = s.to_completion(|e| async move { e.activate(&bundle, &signature, Some(&op)).await }).await??;
        return Ok(Json(activated_body(&activated)).into_response());
    }
    let signature = up.signature;
    let digest = s.to_completion(|e| async move { e.upload(&bundle, &signature, Some(&op)).await }).await??;
    Ok(Json(json!({ "digest": digest.to_string(), "active": false })).into_response())
}

/// `digest` if it is written as a bundle digest is (`sha256:<64 lowercase hex>`); anything
/// else is malformed (400), not merely absent (404).
pub(crate) fn bundle_digest(digest: &str) -> Result<&str, ApiError> {
    match writ_core::parse_sha256(digest) {
        Some(_) => Ok(digest),
        None => Err(ApiError::bad_request("a bundle digest is written sha256:<64 lowercase hex digits>")),
    }
}

/// An upload body and the bundle built from its parts, before any signature is checked:
/// everything `POST /v1/bundles` reads from the bytes it is sent.
pub(crate) fn parse_upload(body: &[u8]) -> Result<(UploadBody, Bundle), ApiError> {
    let up: UploadBody = parse(body, "upload body")?;
    let b = &up.bundle;
    let bundle = Bundle::from_parts(&b.manifest, &b.policies, &b.schema, b.entities.as_deref(), b.tests.as_deref())
        .map_err(|e| ApiError::bad_request(format!("bundle: {e}")))?;
    Ok((up, bundle))
}

/// Activate a bundle the log holds (uploaded, or active before: a rollback).
#[utoipa::path(post, path = "/v1/bundles/{digest}/activate", tag = "admin", security(("bearer" = [])),
    params(("digest" = String, Path, description = "Bundle digest, sha256:<hex>")),
    responses(
        ServerFailures,
        (status = 200, description = "Active", body = Object),
        (status = 404, description = "No such bundle", body = ErrorBody),
        (status = 400, description = "Not a bundle digest, or its signature is no longer trusted", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn activate_bundle(
    State(s): State<AppState>,
    Operator(op): Operator,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    bundle_digest(&digest)?;
    let activated = s.to_completion(|e| async move { e.activate_known(&digest, Some(&op)).await }).await??;
    Ok(Json(activated_body(&activated)).into_response())
}

/// The answer to an activation: the bundle, and what re-evaluating the outstanding writs
/// under it did.
pub(crate) fn activated_body(a: &writ_engine::Activated) -> serde_json::Value {
    let r = &a.reevaluation;
    json!({
        "digest": a.digest.to_string(),
        "active": true,
        "log_index": a.log_index,
        "reevaluation": {
            "reevaluated": r.reevaluated,
            "revoked": r.revoked,
            "descendants": r.descendants,
            "log_index": r.log_index,
        },
    })
}

/// Revoked writs.
#[utoipa::path(get, path = "/v1/revocations", tag = "admin", security(("bearer" = [])),
    responses(
        ServerFailures,
        (status = 200, description = "Revocations", body = Object),
        OperatorRefusals,
    ))]
pub(crate) async fn list_revocations(State(s): State<AppState>, _op: Operator) -> Result<Response, ApiError> {
    s.engine.state_readable()?;
    let list: Vec<_> = s.engine.revoked().into_iter().map(|(jti, a)| json!({ "jti": jti, "revoked": a })).collect();
    Ok(Json(json!({ "revocations": list })).into_response())
}

/// Revoke a writ: it no longer verifies or serves as a parent.
#[utoipa::path(post, path = "/v1/revocations", tag = "admin", security(("bearer" = [])),
    request_body(content = RevokeBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Recorded", body = Recorded),
        (status = 400, description = "Malformed body", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn revoke(
    State(s): State<AppState>,
    Operator(op): Operator,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    let r: RevokeBody = parse(&body, "revocation")?;
    if r.jti.is_empty() || r.jti.len() > 256 {
        return Err(ApiError::bad_request("jti must be 1 to 256 bytes"));
    }
    Ok(recorded(s.to_completion(|e| async move { e.revoke(&r.jti, Some(&op), &r.reason).await }).await??))
}

/// Isolated identities.
#[utoipa::path(get, path = "/v1/quarantine", tag = "admin", security(("bearer" = [])),
    responses(
        ServerFailures,
        (status = 200, description = "Isolated identities", body = Object),
        OperatorRefusals,
    ))]
pub(crate) async fn list_quarantine(State(s): State<AppState>, _op: Operator) -> Result<Response, ApiError> {
    s.engine.state_readable()?;
    let list: Vec<_> =
        s.engine.quarantined().into_iter().map(|(sub, a)| json!({ "subject": sub, "isolated": a })).collect();
    Ok(Json(json!({ "quarantined": list })).into_response())
}

async fn quarantine(s: &AppState, op: &str, body: &[u8], isolated: bool) -> Result<Response, ApiError> {
    let q: QuarantineBody = parse(body, "quarantine")?;
    let sub = subject(&q.subject)?;
    let op = op.to_owned();
    Ok(recorded(s.to_completion(|e| async move { e.quarantine(&sub, isolated, Some(&op), &q.reason).await }).await??))
}

/// Isolate an identity: it is denied everything (`quarantined`) until released.
#[utoipa::path(post, path = "/v1/quarantine/isolate", tag = "admin", security(("bearer" = [])),
    request_body(content = QuarantineBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Recorded", body = Recorded),
        (status = 400, description = "Malformed body or subject", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn isolate(
    State(s): State<AppState>,
    Operator(op): Operator,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    quarantine(&s, &op, &body, true).await
}

/// Release an isolated identity.
#[utoipa::path(post, path = "/v1/quarantine/release", tag = "admin", security(("bearer" = [])),
    request_body(content = QuarantineBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Recorded", body = Recorded),
        (status = 400, description = "Malformed body or subject", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn release(
    State(s): State<AppState>,
    Operator(op): Operator,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    quarantine(&s, &op, &body, false).await
}

/// The lineage of a writ: every decision under its root, breadth first.
#[utoipa::path(get, path = "/v1/lineage/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Decision or writ id")),
    responses(
        ServerFailures,
        (status = 200, description = "The lineage", body = Object),
        (status = 400, description = "An id longer than 256 bytes", body = ErrorBody),
        (status = 404, description = "No such decision", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn lineage(
    State(s): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    s.engine.state_readable()?;
    let l = s.engine.lineage(&id).ok_or_else(|| ApiError::not_found(format!("no decision {id} in the log")))?;
    Ok(Json(l).into_response())
}

/// A lineage search.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LineageQuery {
    /// Only decisions of this principal (SPIFFE ID).
    principal: Option<String>,
    /// Only decisions made at or after this time (Unix seconds).
    since: Option<u64>,
    /// Only decisions made before this time (Unix seconds).
    until: Option<u64>,
    /// Most roots returned (1 to 1,000; default 50).
    limit: Option<usize>,
}

/// Most roots one lineage search returns.
const MAX_ROOTS: usize = 1000;

/// Search lineages: the roots above the decisions of a principal and/or in a time range,
/// newest root first, each with how many of its decisions matched. Open one with
/// `GET /v1/lineage/{id}`.
#[utoipa::path(get, path = "/v1/lineage", tag = "admin", security(("bearer" = [])), params(LineageQuery),
    responses(
        ServerFailures,
        (status = 200, description = "The roots, newest first", body = LineageRootsAnswer),
        (status = 400, description = "A malformed principal, an empty time range or a bad limit", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn lineage_roots(
    State(s): State<AppState>,
    _op: Operator,
    Query(q): Query<LineageQuery>,
) -> Result<Response, ApiError> {
    if let Some(p) = &q.principal {
        subject(p)?;
    }
    if let (Some(since), Some(until)) = (q.since, q.until)
        && since >= until
    {
        return Err(ApiError::bad_request("since must be before until"));
    }
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_ROOTS {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_ROOTS}")));
    }
    let search = LineageSearch { principal: q.principal, since: q.since, until: q.until, limit };
    let roots = s.engine.lineage_roots(&search).ok_or_else(|| {
        ApiError::internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            writ_core::ReasonCode::Internal,
            "the state is unreadable",
        )
    })?;
    Ok(Json(json!({ "roots": roots })).into_response())
}

/// Report how an allowed execution ended. The caller is the workload the writ was issued
/// to, or an operator; one outcome per writ.
#[utoipa::path(post, path = "/v1/outcomes", tag = "decisions", security(("bearer" = [])),
    request_body(content = OutcomeBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Recorded", body = Recorded),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid credential", body = ErrorBody),
        (status = 403, description = "Not the writ's subject nor an operator", body = ErrorBody),
        (status = 404, description = "No allowed decision with that id", body = ErrorBody),
        (status = 409, description = "An outcome is already recorded", body = ErrorBody),
    ))]
pub(crate) async fn report_outcome(
    State(s): State<AppState>,
    reporter: Reporter,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    let (o, status) = parse_outcome(&body)?;
    let index = s
        .to_completion(|e| async move {
            e.report_outcome(&o.jti, &reporter.subject, reporter.operator, status, o.exit_code, &o.detail).await
        })
        .await??;
    Ok((StatusCode::OK, Json(json!({ "log_index": index }))).into_response())
}

/// An outcome report's body and the status it names: everything `POST /v1/outcomes` reads
/// from the bytes it is sent.
pub(crate) fn parse_outcome(body: &[u8]) -> Result<(OutcomeBody, ExecStatus), ApiError> {
    let o: OutcomeBody = parse(body, "outcome")?;
    let status = match o.status {
        ExecStatusDoc::Succeeded => ExecStatus::Succeeded,
        ExecStatusDoc::Failed => ExecStatus::Failed,
        ExecStatusDoc::NotRun => ExecStatus::NotRun,
        ExecStatusDoc::Stopped => ExecStatus::Stopped,
    };
    Ok((o, status))
}

/// Rotate the writ signing key: a new key signs writs from now on; every older key stays
/// published, so writs already issued keep verifying. The new key is stored before the
/// rotation is recorded (key ids only), and the rotation is recorded before the key signs.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "admin", security(("bearer" = [])),
    responses(
        ServerFailures,
        (status = 200, description = "The rotation is in force", body = RotationAnswer),
        OperatorRefusals,
        (status = 503, description = "No writable key store, or the log is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn rotate_key(State(s): State<AppState>, Operator(op): Operator) -> Result<Response, ApiError> {
    let unavailable =
        |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, writ_core::ReasonCode::Internal, why);
    let keys = s.keys.clone().ok_or_else(|| unavailable("this control plane has no writable key store".into()))?;
    // The engine's one rotation path: store the key, record the rotation, undo on failure,
    // publish.
    let rotated = s.to_completion(|e| async move { e.rotate_writ_key_with(keys.as_ref(), Some(&op)).await }).await?;
    let r = rotated.map_err(|e| match e {
        // The key store (or a key it holds) failed: nothing is in force.
        // Its cause names files: it goes to the server's log, not to the client.
        e @ EngineError::Key(_) => ApiError::internal(
            StatusCode::SERVICE_UNAVAILABLE,
            writ_core::ReasonCode::Internal,
            format!("rotating the writ key: {}", e.detail()),
        ),
        other => ApiError::from(other),
    })?;
    Ok(Json(RotationAnswer { kid: r.kid, kids: r.kids, log_index: r.log_index, warning: r.warning }).into_response())
}
