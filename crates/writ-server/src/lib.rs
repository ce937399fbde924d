//! The control plane's HTTP API (SPEC.md §4): the `/v1` routes around one [`Engine`].
//!
//! [`app`] builds the whole router from its state, so every route is tested without a
//! socket. Only this crate knows HTTP. Answers are JSON; errors are JSON objects with a
//! stable reason code and a human message; a denied request is a `200` whose decision says
//! `deny` (the deny is the answer, not a failure). Bodies above [`MAX_BODY`] are `413`.
//! No administrative route exists yet: nothing that changes state is reachable except
//! `/v1/authorize`, which authenticates by the request's own workload credential.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use writ_core::{ReasonCode, request_digest};
use writ_engine::Engine;
use writ_log::Hash;

/// Largest request body accepted, in bytes (the engine's own request limit).
pub const MAX_BODY: usize = 64 * 1024;
/// Most entries one `/v1/log/entries` call returns.
pub const MAX_ENTRIES: u64 = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    engine: Arc<Engine>,
}

impl AppState {
    /// State over an open engine.
    pub fn new(engine: Arc<Engine>) -> Self {
        AppState { engine }
    }
}

/// The router: every route of the API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/authorize", post(authorize))
        .route("/v1/verify", post(verify))
        .route("/v1/log/checkpoint", get(checkpoint))
        .route("/v1/log/key", get(log_key))
        .route("/v1/log/entries", get(entries))
        .route("/v1/log/proof/inclusion", get(inclusion))
        .route("/v1/log/proof/consistency", get(consistency))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An error answer: status, reason code, message.
struct ApiError(StatusCode, ReasonCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1, "message": self.2 }))).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, ReasonCode::RequestMalformed, msg.into())
}

fn log_error(e: writ_log::Error) -> ApiError {
    match e {
        writ_log::Error::OutOfRange(m) => bad_request(m),
        other => ApiError(StatusCode::SERVICE_UNAVAILABLE, ReasonCode::LogUnavailable, other.to_string()),
    }
}

async fn authorize(State(s): State<AppState>, body: Bytes) -> Response {
    let decision = s.engine.authorize(&body).await;
    axum::Json(decision).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    writ: String,
    request: VerifyRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    action: String,
    resource: String,
    #[serde(default = "empty_object")]
    arguments: Value,
}

fn empty_object() -> Value {
    json!({})
}

async fn verify(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let v: VerifyBody = serde_json::from_slice(&body).map_err(|e| bad_request(format!("verify body: {e}")))?;
    let digest = request_digest(&v.request.action, &v.request.resource, &v.request.arguments)
        .map_err(|e| bad_request(e.to_string()))?;
    Ok(match s.engine.verify(&v.writ, &digest) {
        Ok(w) => axum::Json(json!({ "ok": true, "claims": w.claims })).into_response(),
        Err(r) => axum::Json(json!({ "ok": false, "reason": r.reason, "detail": r.detail })).into_response(),
    })
}

async fn checkpoint(State(s): State<AppState>) -> Result<Response, ApiError> {
    let cp = s.engine.log().latest_checkpoint().ok_or_else(|| {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, ReasonCode::LogUnavailable, "no checkpoint yet".into())
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], cp.note().to_owned()).into_response())
}

async fn log_key(State(s): State<AppState>) -> Response {
    let vkey = format!("{}\n", s.engine.log().verifier().to_vkey());
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], vkey).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    start: u64,
    end: u64,
}

async fn entries(State(s): State<AppState>, Query(r): Query<Range>) -> Result<Response, ApiError> {
    if r.end < r.start || r.end - r.start > MAX_ENTRIES {
        return Err(bad_request(format!("end must be at least start and at most {MAX_ENTRIES} more")));
    }
    let list = s.engine.log().entries(r.start, r.end).map_err(log_error)?;
    let out: Vec<Value> = list
        .iter()
        .zip(r.start..)
        .map(|(e, index)| {
            let entry = serde_json::from_slice::<Value>(e).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(e).into()));
            // The exact bytes, for auditors who hash them, and the parsed JSON to read.
            json!({ "index": index, "leaf_hash": Hash::leaf(e).to_base64(), "entry_base64": B64.encode(e), "entry": entry })
        })
        .collect();
    Ok(axum::Json(json!({ "entries": out })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

async fn inclusion(State(s): State<AppState>, Query(q): Query<InclusionQuery>) -> Result<Response, ApiError> {
    let log = s.engine.log();
    let size = q.size.unwrap_or_else(|| log.latest_checkpoint().map_or(log.size(), |c| c.checkpoint().size));
    let proof = log.inclusion_proof(q.index, size).map_err(log_error)?;
    let leaf = log.leaf_hash(q.index).map_err(log_error)?;
    Ok(axum::Json(json!({
        "index": q.index,
        "tree_size": size,
        "leaf_hash": leaf.to_base64(),
        "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn consistency(State(s): State<AppState>, Query(q): Query<ConsistencyQuery>) -> Result<Response, ApiError> {
    let proof = s.engine.log().consistency_proof(q.from, q.to).map_err(log_error)?;
    Ok(axum::Json(json!({
        "from": q.from,
        "to": q.to,
        "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn jwks(State(s): State<AppState>) -> Response {
    axum::Json(s.engine.jwks()).into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    match s.engine.active_bundle() {
        Some((name, version, digest)) => axum::Json(
            json!({ "ready": true, "bundle": { "name": name, "version": version, "digest": digest.to_string() } }),
        )
        .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "error": ReasonCode::PolicyNoActiveBundle })),
        )
            .into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
