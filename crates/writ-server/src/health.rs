//! The node's health (issue 17): `GET /v1/health`, public like `/readyz`, says what this
//! node serves (its bundle, its log and the age of its newest checkpoint) and where its
//! verification loop stands (`writ_engine::Engine::verify_now`); `POST /v1/health/verify`
//! (an operator) runs the loop now and answers its state.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use writ_core::ReasonCode;

use crate::AppState;
use crate::admin::OperatorRefusals;
use crate::auth::Operator;
use crate::error::{ApiError, ServerFailures};

/// The health document of this node; `writable` is whether its log takes writes (the
/// probe `/readyz` answers from), so that both say the same of readiness.
pub(crate) fn health_doc(s: &AppState, writable: bool) -> Value {
    let engine = &s.engine;
    let log = engine.log();
    let checkpoint_time = log.latest_checkpoint_time();
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let verification = engine.verification();
    let ready =
        writable && engine.active_bundle().is_some() && verification.state != writ_engine::VerificationState::Failed;
    json!({
        "node": s.node_id(),
        "ready": ready,
        "bundle": engine.active_bundle().map(|(_, version, digest)| json!({"version": version, "digest": digest.to_string()})),
        "log": {
            "size": log.size(),
            "writable": writable,
            "checkpoint_time": checkpoint_time,
            "checkpoint_age_seconds": checkpoint_time.map(|t| wall.saturating_sub(t)),
        },
        "verification": verification,
    })
}

/// This node's health: its bundle, its log and its verification loop.
///
/// `verification.state` is `failed` while the last run of the loop found a problem
/// (`problems` says which check and why): the node then denies every decision and
/// `/readyz` answers 503.
#[utoipa::path(get, path = "/v1/health", tag = "service",
    responses(ServerFailures, (status = 200, description = "The node's health", body = Object)))]
pub(crate) async fn health(State(s): State<AppState>) -> Response {
    let writable = crate::routes::log_writable(&s).await;
    Json(health_doc(&s, writable)).into_response()
}

/// Runs the verification loop now and answers its state (the `verification` object of
/// `GET /v1/health`). Runs never overlap: one asked during a scheduled run waits for it.
#[utoipa::path(post, path = "/v1/health/verify", tag = "admin", security(("bearer" = [])),
    responses(
        ServerFailures,
        (status = 200, description = "The verification loop's state after this run", body = Object),
        OperatorRefusals,
    ))]
pub(crate) async fn verify_now(State(s): State<AppState>, Operator(op): Operator) -> Result<Response, ApiError> {
    let engine = Arc::clone(&s.engine);
    let status = tokio::task::spawn_blocking(move || engine.verify_now())
        .await
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, e.to_string()))?;
    tracing::info!(operator = %op, state = ?status.state, "verification run asked for");
    Ok(Json(status).into_response())
}
