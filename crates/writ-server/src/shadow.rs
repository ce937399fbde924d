//! The shadow bundle's operator routes (`/v1/policy/shadow`): where it stands, set, clear,
//! promote. Each authenticates an operator first (see [`crate::auth`]); every change is the
//! engine's, recorded in the log with the operator's SPIFFE ID (see the engine's `shadow`
//! module and docs/policy-bundles.md).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::AppState;
use crate::admin::{OperatorRefusals, activated_body, parse};
use crate::auth::Operator;
use crate::error::{ApiError, ErrorBody, ServerFailures};
use crate::extract::{Body, Limited};

/// `PUT /v1/policy/shadow`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowBody {
    /// The digest (`sha256:…`) of a bundle the log holds (uploaded, or active before).
    pub digest: String,
    /// Why.
    pub reason: String,
}

/// `DELETE /v1/policy/shadow` and `POST /v1/policy/shadow/promote`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowReasonBody {
    /// Why.
    pub reason: String,
}

/// The shadow bundle set.
#[derive(Serialize, ToSchema)]
pub struct ShadowBundleDoc {
    /// Manifest name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// Digest (`sha256:…`).
    pub digest: String,
    /// When it was set (Unix seconds).
    pub set_at: u64,
    /// Who set it (operator SPIFFE ID; `null` for the local CLI).
    pub set_by: Option<String>,
    /// The `shadow` log entry that set it.
    pub log_index: u64,
}

/// `GET /v1/policy/shadow`.
#[derive(Serialize, ToSchema)]
pub struct ShadowAnswer {
    /// The shadow bundle, `null` when none is set.
    pub bundle: Option<ShadowBundleDoc>,
    /// Decisions evaluated under the shadow (and recorded) since the server started.
    pub evaluated: u64,
    /// Those whose shadow outcome differed from the real one (each recorded on its decision entry).
    pub disagreements: u64,
}

fn answer(s: &AppState) -> Result<ShadowAnswer, ApiError> {
    s.engine.state_readable()?;
    let status = s.engine.shadow();
    Ok(ShadowAnswer {
        bundle: status.bundle.map(|b| ShadowBundleDoc {
            name: b.name,
            version: b.version,
            digest: b.digest,
            set_at: b.set_at,
            set_by: b.set_by,
            log_index: b.log_index,
        }),
        evaluated: status.evaluated,
        disagreements: status.disagreements,
    })
}

/// A reason body; an empty body is the default reason.
fn reason(body: &[u8], default: &str) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(default.to_owned());
    }
    Ok(parse::<ShadowReasonBody>(body, "shadow")?.reason)
}

/// The shadow bundle, and the decisions evaluated under it and disagreements since the
/// server started.
#[utoipa::path(get, path = "/v1/policy/shadow", tag = "admin", security(("bearer" = [])),
    responses(
        ServerFailures,
        (status = 200, description = "The shadow bundle and the counts", body = ShadowAnswer),
        OperatorRefusals,
    ))]
pub(crate) async fn status(State(s): State<AppState>, _op: Operator) -> Result<Response, ApiError> {
    Ok(Json(answer(&s)?).into_response())
}

/// Set the shadow bundle: a bundle the log holds whose signature verifies against the
/// policy keys trusted now, not the active one. Evaluated beside the active bundle on every
/// decision from now on, never enforced; each disagreement is recorded on its decision entry.
#[utoipa::path(put, path = "/v1/policy/shadow", tag = "admin", security(("bearer" = [])),
    request_body(content = ShadowBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Set (recorded)", body = ShadowAnswer),
        (status = 400, description = "Malformed body or digest, or its signature is not trusted", body = ErrorBody),
        (status = 404, description = "The log holds no accepted bundle with that digest", body = ErrorBody),
        (status = 409, description = "It is the active bundle", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The log is unavailable (made even while the verification loop reports a failure: the node still issues no allow until its checks pass, and an activation is how an operator repairs a bundle the loop found altered)", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn set(
    State(s): State<AppState>,
    Operator(op): Operator,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    let b: ShadowBody = parse(&body, "shadow")?;
    crate::admin::bundle_digest(&b.digest)?;
    s.to_completion(|e| async move { e.set_shadow(&b.digest, Some(&op), &b.reason).await }).await??;
    Ok(Json(answer(&s)?).into_response())
}

/// Clear the shadow bundle (recorded).
#[utoipa::path(delete, path = "/v1/policy/shadow", tag = "admin", security(("bearer" = [])),
    request_body(content = ShadowReasonBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Cleared (recorded)", body = Object),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "No shadow bundle is set", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The log is unavailable (made even while the verification loop reports a failure: the node still issues no allow until its checks pass, and an activation is how an operator repairs a bundle the loop found altered)", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn clear(
    State(s): State<AppState>,
    Operator(op): Operator,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    let why = reason(&body, "cleared by an operator")?;
    let index = s.to_completion(|e| async move { e.clear_shadow(Some(&op), &why).await }).await??;
    Ok(Json(json!({ "cleared": true, "log_index": index })).into_response())
}

/// Promote the shadow bundle: an activation of it (the outstanding writs re-evaluated under
/// it, as every activation does), then no shadow. Answers as an activation does, with the
/// index of the entry that cleared the shadow.
#[utoipa::path(post, path = "/v1/policy/shadow/promote", tag = "admin", security(("bearer" = [])),
    request_body(content = ShadowReasonBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Active; no shadow", body = Object),
        (status = 400, description = "Malformed body, or its signature is no longer trusted", body = ErrorBody),
        (status = 404, description = "No shadow bundle is set", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The log is unavailable (made even while the verification loop reports a failure: the node still issues no allow until its checks pass, and an activation is how an operator repairs a bundle the loop found altered)", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn promote(
    State(s): State<AppState>,
    Operator(op): Operator,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    let why = reason(&body, "promoted by an operator")?;
    let p = s.to_completion(|e| async move { e.promote_shadow(Some(&op), &why).await }).await??;
    let mut out = activated_body(&p.activated);
    if let Some(o) = out.as_object_mut() {
        o.insert("shadow_cleared".into(), json!(p.cleared));
    }
    Ok(Json(out).into_response())
}
