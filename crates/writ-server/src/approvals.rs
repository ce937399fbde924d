//! Human approvals (SPEC.md §1): decisions that policy sent to an operator (`pending`), the
//! operator's answer, and the writ the asking workload collects once approved. Listing and
//! answering are operator routes; one approval's status is for an operator or for the
//! workload that asked, and only that workload receives the writ.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use writ_core::ReasonCode;

use crate::AppState;
use crate::admin::{OperatorRefusals, parse};
use crate::auth::{Operator, Reporter};
use crate::error::{ApiError, ErrorBody, ServerFailures};
use crate::extract::{Body, Limited, Path, Query};
use crate::schema::ApprovalBody;

/// Most approvals one listing returns.
const MAX_LISTED: usize = 1000;

/// Which approvals to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApprovalsQuery {
    /// `pending` (default): those still waiting; `all`: every one, newest first.
    status: Option<String>,
}

/// Decisions that need an operator's approval.
#[utoipa::path(get, path = "/v1/approvals", tag = "admin", security(("bearer" = [])), params(ApprovalsQuery),
    responses(
        ServerFailures,
        (status = 200, description = "Approvals, newest first", body = Object),
        (status = 400, description = "Unknown status filter", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn list_approvals(
    State(s): State<AppState>,
    _op: Operator,
    Query(q): Query<ApprovalsQuery>,
) -> Result<Response, ApiError> {
    let pending_only = match q.status.as_deref() {
        None | Some("pending") => true,
        Some("all") => false,
        Some(other) => return Err(ApiError::bad_request(format!("status must be pending or all, not {other:?}"))),
    };
    s.engine.state_readable()?;
    Ok(Json(json!({ "approvals": s.engine.approvals(pending_only, MAX_LISTED) })).into_response())
}

/// Where one approval stands. For the workload that asked, an approved decision's answer
/// carries the writ; an operator sees the approval without it.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "decisions", security(("bearer" = [])),
    params(("id" = String, Path, description = "The pending decision's id")),
    responses(
        ServerFailures,
        (status = 200, description = "The approval, with the writ once approved (for the workload that asked)", body = Object),
        (status = 400, description = "An id longer than 256 bytes", body = ErrorBody),
        (status = 401, description = "No or invalid credential", body = ErrorBody),
        (status = 403, description = "Neither the workload that asked nor an operator", body = ErrorBody),
        (status = 404, description = "No decision with that id awaited approval", body = ErrorBody),
        (status = 409, description = "Approved, but the writ was revoked or the principal quarantined since", body = ErrorBody),
    ))]
pub(crate) async fn approval(
    State(s): State<AppState>,
    caller: Reporter,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let a = s.engine.approval(&id).ok_or_else(|| ApiError::not_found(format!("no decision {id} awaited approval")))?;
    let own = !caller.operator && a.subject == caller.subject;
    if !own && !caller.operator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ReasonCode::IdentityUntrustedIssuer,
            format!("forbidden: {} did not ask for {id}", caller.subject),
        ));
    }
    let writ = if own { s.engine.approved_writ(&id)? } else { None };
    let mut body = serde_json::to_value(&a)
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, e.to_string()))?;
    if let (Some(w), Some(obj)) = (writ, body.as_object_mut()) {
        obj.insert("writ".into(), json!(w));
    }
    Ok(Json(body).into_response())
}

async fn answer(s: &AppState, op: &str, id: &str, body: &[u8], approve: bool) -> Result<Response, ApiError> {
    let b: ApprovalBody = parse(body, "approval")?;
    let (id, op) = (id.to_owned(), op.to_owned());
    let a = s.to_completion(|e| async move { e.resolve_approval(&id, approve, Some(&op), &b.reason).await }).await??;
    Ok(Json(a).into_response())
}

/// Approve a pending decision: the writ is issued (recorded with the operator's identity)
/// and the workload that asked collects it from `GET /v1/approvals/{id}`.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The pending decision's id")),
    request_body(content = ApprovalBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Approved and recorded", body = Object),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "No decision with that id awaits approval", body = ErrorBody),
        (status = 409, description = "Already answered, past its deadline, another bundle active since, or the principal quarantined or the writ or its parent revoked", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn approve(
    State(s): State<AppState>,
    Operator(op): Operator,
    Path(id): Path<String>,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    answer(&s, &op, &id, &body, true).await
}

/// Reject a pending decision: no writ will be issued for it.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "The pending decision's id")),
    request_body(content = ApprovalBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Rejected and recorded", body = Object),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "No decision with that id awaits approval", body = ErrorBody),
        (status = 409, description = "Already answered or past its deadline", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn reject(
    State(s): State<AppState>,
    Operator(op): Operator,
    Path(id): Path<String>,
    Limited(body): Body,
) -> Result<Response, ApiError> {
    answer(&s, &op, &id, &body, false).await
}
