//! The public routes: authorize, verify, the log, receipts, keys, health, readiness and
//! metrics. None changes state except authorize and renew, which authenticate by the
//! request's own workload credential inside the pipeline.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use writ_core::{ReasonCode, request_digest};
use writ_engine::Decision;
use writ_log::{Hash, Receipt};

use crate::error::{ApiError, ErrorBody, ServerFailures};
use crate::extract::{Body, Limited, Path, Query};
use crate::schema::{
    AuthorizeRequestDoc, ConsistencyAnswer, DecisionDoc, EntriesAnswer, InclusionAnswer, RenewRequestDoc, StatsDoc,
    VerifyAnswer, VerifyBody,
};
use crate::{AppState, MAX_ENTRIES, PROBE_EVERY};

/// The detail of a deny the control plane could not record because of its own failure.
pub(crate) const UNRECORDED: &str =
    "the control plane failed to decide or record this request; its log names the cause under this decision id";

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Decide one execution request.
///
/// A deny is an answer (`200`, `outcome: deny`, reason codes), not an error. On allow the
/// writ is returned only after the decision is durable in the log. `outcome: pending`: the
/// policy needs an operator's approval; the writ is collected from `GET /v1/approvals/{id}`
/// once an operator approved.
#[utoipa::path(post, path = "/v1/authorize", tag = "decisions",
    request_body(content = AuthorizeRequestDoc, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "The decision", body = DecisionDoc),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Overloaded or timed out", body = ErrorBody),
    ))]
pub(crate) async fn authorize(State(s): State<AppState>, Limited(body): Body) -> Result<Response, ApiError> {
    let start = Instant::now();
    let decision = s.to_completion(|e| async move { e.authorize(&body).await }).await?;
    s.metrics.decision(&decision, start.elapsed());
    Ok(Json(answered(decision)).into_response())
}

/// A decision as the caller sees it. The control plane's own failure (the log store, a
/// key, a panicked stage) is not told: the engine logged its cause under the decision id.
/// A failed self-verification is told (it names the failed check, which `GET /v1/health`
/// publishes anyway).
fn answered(mut decision: Decision) -> Decision {
    if decision.log_index.is_none()
        && matches!(decision.reason(), Some(ReasonCode::Internal | ReasonCode::LogUnavailable))
        && !decision.detail.starts_with(writ_engine::SELF_VERIFICATION_FAILED)
    {
        decision.detail = UNRECORDED.to_owned();
    }
    decision
}

/// Renew a writ before it expires.
///
/// A new decision under the bundle active now, from the request the writ's decision
/// recorded, for the writ's own principal (its workload credential in `credentials`),
/// recorded with `renews: <jti>`. On allow a new writ: new `jti`, same `req`, `par` and
/// `root`. A refused renewal is a deny (`200`, `outcome: deny`): `writ.bad_signature`,
/// `writ.expired` (no grace after `exp`), `writ.revoked` (it or a writ above it, or no
/// writ of that id was issued), `writ.replayed` (already renewed), `writ.binding_mismatch`
/// (another principal's writ), `quarantined`, `policy.denied`, or any reason an
/// authorization gives.
#[utoipa::path(post, path = "/v1/renew", tag = "decisions",
    request_body(content = RenewRequestDoc, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "The renewal decision", body = DecisionDoc),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Overloaded or timed out", body = ErrorBody),
    ))]
pub(crate) async fn renew(State(s): State<AppState>, Limited(body): Body) -> Result<Response, ApiError> {
    let start = Instant::now();
    let decision = s.to_completion(|e| async move { e.renew(&body).await }).await?;
    s.metrics.decision(&decision, start.elapsed());
    Ok(Json(answered(decision)).into_response())
}

/// Check a writ against the call about to run.
///
/// Signature, time window, audience, binding to the call (`req` digest), revocation and
/// single use at this control plane. A refusal that an isolation rule of the active bundle
/// counts (a writ of a proven principal refused with a code a `presented` rule lists) is
/// recorded in the log and isolates that principal.
#[utoipa::path(post, path = "/v1/verify", tag = "decisions",
    request_body(content = VerifyBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "Whether the writ authorizes the call", body = VerifyAnswer),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
    ))]
pub(crate) async fn verify(State(s): State<AppState>, Limited(body): Body) -> Result<Response, ApiError> {
    let v: VerifyBody = crate::admin::parse(&body, "verify body")?;
    if !v.request.arguments.is_object() {
        return Err(ApiError::bad_request("request.arguments must be an object"));
    }
    let digest = request_digest(&v.request.action, &v.request.resource, &v.request.arguments)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let writ = v.writ;
    Ok(match s.to_completion(|e| async move { e.verify_presented(&writ, &digest).await }).await? {
        Ok(w) => {
            s.metrics.verification(true, "");
            Json(json!({ "ok": true, "claims": w.claims })).into_response()
        }
        Err(r) => {
            s.metrics.verification(false, r.reason.as_str());
            Json(json!({ "ok": false, "reason": r.reason, "detail": r.detail })).into_response()
        }
    })
}

/// The newest signed checkpoint (C2SP tlog-checkpoint signed note).
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log",
    responses(
        ServerFailures,
        (status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        (status = 503, description = "No checkpoint yet", body = ErrorBody),
    ))]
pub(crate) async fn checkpoint(State(s): State<AppState>) -> Result<Response, ApiError> {
    let cp = s.engine.log().latest_checkpoint().ok_or_else(|| ApiError::log_unavailable("no checkpoint yet"))?;
    Ok(text(cp.note().to_owned()))
}

/// The log's verifier key (C2SP signed-note vkey).
#[utoipa::path(get, path = "/v1/log/key", tag = "log",
    responses(ServerFailures, (status = 200, description = "The vkey", body = String, content_type = "text/plain")))]
pub(crate) async fn log_key(State(s): State<AppState>) -> Response {
    text(format!("{}\n", s.engine.log().verifier().to_vkey()))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Range {
    /// First index.
    start: u64,
    /// One past the last index (at most 1,000 more than `start`).
    end: u64,
}

/// Entries in `[start, end)`.
#[utoipa::path(get, path = "/v1/log/entries", tag = "log", params(Range),
    responses(
        ServerFailures,
        (status = 200, description = "The entries", body = EntriesAnswer),
        (status = 400, description = "Bad range", body = ErrorBody),
    ))]
pub(crate) async fn entries(State(s): State<AppState>, Query(r): Query<Range>) -> Result<Response, ApiError> {
    if r.end < r.start || r.end - r.start > MAX_ENTRIES {
        return Err(ApiError::bad_request(format!("end must be at least start and at most {MAX_ENTRIES} more")));
    }
    let list = s.engine.log().entries(r.start, r.end)?;
    let out: Vec<Value> = list
        .iter()
        .zip(r.start..)
        .map(|(e, index)| {
            let entry =
                serde_json::from_slice::<Value>(e).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(e).into()));
            // The exact bytes, for auditors who hash them, and the parsed JSON to read.
            json!({ "index": index, "leaf_hash": Hash::leaf(e).to_base64(), "entry_base64": B64.encode(e), "entry": entry })
        })
        .collect();
    Ok(Json(json!({ "entries": out })).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionQuery {
    /// Entry index.
    index: u64,
    /// Tree size (default: the newest checkpoint's).
    size: Option<u64>,
}

/// Inclusion proof of entry `index` in the tree of `size`.
#[utoipa::path(get, path = "/v1/log/proof/inclusion", tag = "log", params(InclusionQuery),
    responses(
        ServerFailures,
        (status = 200, description = "The proof", body = InclusionAnswer),
        (status = 400, description = "Out of range", body = ErrorBody),
    ))]
pub(crate) async fn inclusion(
    State(s): State<AppState>,
    Query(q): Query<InclusionQuery>,
) -> Result<Response, ApiError> {
    let log = s.engine.log();
    let size = q.size.unwrap_or_else(|| log.latest_checkpoint().map_or(log.size(), |c| c.checkpoint().size));
    let proof = log.inclusion_proof(q.index, size)?;
    let leaf = log.leaf_hash(q.index)?;
    Ok(Json(json!({
        "index": q.index,
        "tree_size": size,
        "leaf_hash": leaf.to_base64(),
        "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyQuery {
    /// Older tree size.
    from: u64,
    /// Newer tree size.
    to: u64,
}

/// Consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/log/proof/consistency", tag = "log", params(ConsistencyQuery),
    responses(
        ServerFailures,
        (status = 200, description = "The proof", body = ConsistencyAnswer),
        (status = 400, description = "Out of range", body = ErrorBody),
    ))]
pub(crate) async fn consistency(
    State(s): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let proof = s.engine.log().consistency_proof(q.from, q.to)?;
    Ok(Json(json!({
        "from": q.from,
        "to": q.to,
        "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// A C2SP `tlog-proof` receipt for entry `index`: the inclusion proof and the signed
/// checkpoint it verifies against, offline, with the log key alone.
#[utoipa::path(get, path = "/v1/log/receipt/{index}", tag = "log",
    params(("index" = u64, Path, description = "Entry index")),
    responses(
        ServerFailures,
        (status = 200, description = "The receipt", body = String, content_type = "text/plain"),
        (status = 400, description = "Not an index", body = ErrorBody),
        (status = 404, description = "No such entry", body = ErrorBody),
    ))]
pub(crate) async fn receipt(State(s): State<AppState>, Path(index): Path<u64>) -> Result<Response, ApiError> {
    let log = s.engine.log();
    if index >= log.size() {
        return Err(ApiError::not_found(format!("the log holds {} entries", log.size())));
    }
    let mut cp = log.latest_checkpoint();
    if cp.as_ref().is_none_or(|c| c.checkpoint().size <= index) {
        // The entry is newer than the newest checkpoint: publish one now.
        cp = Some(log.checkpoint_now().await?);
    }
    let cp = cp.ok_or_else(|| ApiError::log_unavailable("no checkpoint"))?;
    let proof = log.inclusion_proof(index, cp.checkpoint().size)?;
    let receipt = Receipt { extra: None, index, proof, checkpoint: cp.note().to_owned() };
    Ok(text(receipt.to_text()))
}

/// Decision totals since the log's first entry: allow, deny and pending, by primary reason
/// code, approvals, anonymous attempts counted in summaries, and entries by kind. Kept by
/// the engine as each entry is applied (rebuilt from the log when it opens), so the totals
/// are of the whole log, not of a window; `size` is the log size they are of.
#[utoipa::path(get, path = "/v1/stats", tag = "log",
    responses(ServerFailures, (status = 200, description = "The totals", body = StatsDoc)))]
pub(crate) async fn stats(State(s): State<AppState>) -> Result<Response, ApiError> {
    s.engine.state_readable()?;
    Ok(Json(s.engine.stats()).into_response())
}

/// The writ signing keys (JWKS).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "service",
    responses(ServerFailures, (status = 200, description = "The JWKS", body = Object)))]
pub(crate) async fn jwks(State(s): State<AppState>) -> Response {
    Json(s.engine.jwks()).into_response()
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses(ServerFailures, (status = 200, description = "Alive", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Whether the log takes writes. Asked, not assumed: a synced write probe, at most once per
/// [`PROBE_EVERY`] however often anonymous callers ask (concurrent callers wait for the one
/// in progress). `/readyz` and `GET /v1/health` both answer from it.
pub(crate) async fn log_writable(s: &AppState) -> bool {
    let mut probed = s.probed.lock().await;
    match *probed {
        Some((at, ok)) if at.elapsed() < PROBE_EVERY => ok,
        _ => {
            let ok = s.engine.log().probe_writes().await.is_ok();
            *probed = Some((Instant::now(), ok));
            ok
        }
    }
}

/// Readiness: the node's verification loop has not failed, a bundle is active and the log
/// takes writes (a write probe of the store, reused for a second).
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        ServerFailures,
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready", body = Object),
    ))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    let verification = s.engine.verification();
    if verification.state == writ_engine::VerificationState::Failed {
        let first = verification.problems.first();
        let reason = first.map_or(ReasonCode::Internal, writ_engine::VerificationProblem::reason);
        let why =
            first.map_or_else(|| "the last run failed".to_owned(), |p| format!("{} check: {}", p.check, p.detail));
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ready": false,
                "error": reason,
                "message": format!("the node's self-verification failed ({why}): every decision is denied until a later run passes"),
                "verification": verification,
            })),
        )
            .into_response();
    }
    let bundle = s.engine.active_bundle();
    let log = s.engine.log();
    let writable = log_writable(&s).await;
    match (bundle, writable) {
        (Some((name, version, digest)), true) => Json(json!({
            "ready": true,
            "bundle": { "name": name, "version": version, "digest": digest.to_string() },
            "log": {
                "size": log.size(),
                "checkpoint_size": log.latest_checkpoint().map_or(0, |c| c.checkpoint().size),
                "origin": log.origin(),
            },
        }))
        .into_response(),
        (None, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": ReasonCode::PolicyNoActiveBundle, "message": "no active policy bundle" })),
        )
            .into_response(),
        (Some(_), false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": ReasonCode::LogUnavailable, "message": "the log does not take writes" })),
        )
            .into_response(),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(ServerFailures, (status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let body = s
        .metrics
        .render()
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}
