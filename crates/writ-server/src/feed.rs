//! What enforcement points need from the control plane besides decisions: which calls a
//! caller could be allowed to make (`POST /v1/authorize/preview`, for `tools/list`), and the
//! revocation feed (`GET /v1/feed/snapshot`, `GET /v1/feed/stream`, and the feed key at
//! `GET /.well-known/writ-feed-keys.json`).
//!
//! The feed's documents are signed by the engine's [`FeedSigner`] (their format is in
//! `writ_engine::feed` and docs/http-api.md). The stream is server-sent events (the HTML
//! Living Standard's `text/event-stream`): on connect a `snapshot` event, unless the client
//! resumes (`Last-Event-ID`, or `?from=`) with a view that nothing changed since; a new
//! `snapshot` each time a revocation, quarantine change or activation is applied; a
//! `heartbeat` every [`FeedSettings::heartbeat`]. Every event's `id` is the `size` of the
//! newest snapshot the client holds, so that a reconnect resumes from it. Streams are
//! bounded in number ([`FeedSettings::max_streams`]) and in age ([`FeedSettings::max_age`]:
//! the client reconnects and resumes), and end when the server stops.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;
use writ_core::{Credentials, ReasonCode};
use writ_engine::{FeedSigner, MAX_PREVIEW_CANDIDATES};

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ServerFailures};
use crate::extract::{Body, Limited, Query};
use crate::schema::{FeedSnapshotAnswer, PreviewAnswerDoc, PreviewBody};

/// How the feed stream behaves.
#[derive(Clone, Copy, Debug)]
pub struct FeedSettings {
    /// Time between heartbeats on a stream.
    pub heartbeat: Duration,
    /// Streams open at once; more are refused `503`.
    pub max_streams: usize,
    /// Streams open at once from one client address; more from it are refused `503`.
    pub max_streams_per_peer: usize,
    /// Longest a stream stays open; the client then reconnects and resumes.
    pub max_age: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            heartbeat: Duration::from_secs(1),
            max_streams: 256,
            max_streams_per_peer: 32,
            max_age: Duration::from_secs(600),
        }
    }
}

/// Marks an answer whose body is a long-lived stream: its connection's deadline then counts
/// from its last write that got through, not from the request (see the `conn` module).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streaming;

/// Which calls the caller could be allowed to make.
///
/// For each candidate (action, resource): `possible: false` only when every call with that
/// action and resource would be denied whatever its arguments, time, lineage and usage (the
/// credential fails, the principal is isolated, the action is undeclared, or Cedar's partial
/// evaluation with the context unknown denies), with the reason code such calls get.
/// Decides nothing and records nothing: every call is still decided by `POST /v1/authorize`.
#[utoipa::path(post, path = "/v1/authorize/preview", tag = "decisions",
    request_body(content = PreviewBody, content_type = "application/json"),
    responses(
        ServerFailures,
        (status = 200, description = "The candidates, in the order asked", body = PreviewAnswerDoc),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
    ))]
pub(crate) async fn preview(State(s): State<AppState>, Limited(body): Body) -> Result<Response, ApiError> {
    let p: PreviewBody = crate::admin::parse(&body, "preview body")?;
    if p.candidates.len() > MAX_PREVIEW_CANDIDATES {
        return Err(ApiError::bad_request(format!("at most {MAX_PREVIEW_CANDIDATES} candidates")));
    }
    let limits = s.engine.request_limits();
    let too_long = |what: &str, v: &str, max: usize| {
        (v.len() > max).then(|| ApiError::bad_request(format!("{what} is longer than {max} bytes")))
    };
    let credentials: Credentials = p.credentials.unwrap_or_default();
    let tokens = [
        credentials.workload.as_deref(),
        credentials.operator.as_deref(),
        credentials.orchestrator.as_deref(),
        credentials.machine.as_deref(),
        credentials.runtime.as_deref(),
        credentials.delegation.as_deref(),
        p.attestation.as_deref(),
        p.parent_writ.as_deref(),
    ];
    if let Some(e) = tokens.iter().flatten().find_map(|t| too_long("a credential", t, limits.max_credential)) {
        return Err(e);
    }
    let mut candidates = Vec::with_capacity(p.candidates.len());
    for c in p.candidates {
        if let Some(e) = too_long("an action", &c.action, limits.max_name) {
            return Err(e);
        }
        if let Some(e) = too_long("a resource", &c.resource, limits.max_name) {
            return Err(e);
        }
        candidates.push((c.action, c.resource));
    }
    let answer = s.engine.preview(&credentials, p.attestation.as_deref(), p.parent_writ.as_deref(), &candidates);
    Ok(Json(answer).into_response())
}

/// The feed signing key (JWKS).
///
/// The key that signs the revocation feed's documents (`use: "writ-feed"`); never a writ
/// key, so a feed document cannot pass for a writ nor the reverse.
#[utoipa::path(get, path = "/.well-known/writ-feed-keys.json", tag = "service",
    responses(ServerFailures, (status = 200, description = "The JWKS of the feed key", body = Object)))]
pub(crate) async fn feed_keys(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(signer(&s)?.jwks()).into_response())
}

/// The feed key, or `503` when the server has none (no randomness to make one).
fn signer(s: &AppState) -> Result<&FeedSigner, ApiError> {
    s.feed.as_deref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ReasonCode::Internal, "this server has no feed key")
    })
}

/// The revocation feed's current snapshot.
///
/// A JWS signed by the feed key: every writ still inside its window that is revoked (or
/// below a revoked writ), every isolated principal, every writ below an isolated principal,
/// the active bundle, and the log size it reflects.
#[utoipa::path(get, path = "/v1/feed/snapshot", tag = "decisions",
    responses(
        ServerFailures,
        (status = 200, description = "The signed snapshot", body = FeedSnapshotAnswer),
        (status = 503, description = "The state could not be read", body = ErrorBody),
    ))]
pub(crate) async fn snapshot(State(s): State<AppState>) -> Result<Response, ApiError> {
    let signed = signed_snapshot(&s).await?.1;
    Ok(Json(serde_json::json!({ "snapshot": signed })).into_response())
}

/// How long a signed snapshot is served again while nothing the feed publishes was recorded.
pub(crate) const SNAPSHOT_REUSE: Duration = Duration::from_secs(1);

/// The newest signed snapshot, kept for [`SNAPSHOT_REUSE`].
pub(crate) struct SignedSnapshot {
    changed_at: Option<u64>,
    signed_at: Instant,
    size: u64,
    signed: String,
}

/// The feed's signed snapshot and the log size it reflects. Computing one walks the
/// revocations and the quarantine under the operator-action lock and the state's lock, so
/// it is computed once for everybody: the snapshot route and every stream share the newest
/// one until the feed changes (a revocation, a quarantine change or an activation is
/// applied) or [`SNAPSHOT_REUSE`] has passed. Found in review: fifty anonymous clients
/// asking for snapshots in a loop held the state's lock for good, stalled every decision,
/// and queued every operator's revocation behind them until it timed out.
async fn signed_snapshot(s: &AppState) -> Result<(u64, String), ApiError> {
    let mut newest = s.snapshots.lock().await;
    let changed_at = *s.engine.feed_changes().borrow();
    if let Some(c) = newest.as_ref().filter(|c| c.changed_at == changed_at && c.signed_at.elapsed() < SNAPSHOT_REUSE) {
        return Ok((c.size, c.signed.clone()));
    }
    let view = s.engine.feed_view().await?;
    let signed = signer(s)?.snapshot(&view, s.engine.now())?;
    *newest = Some(SignedSnapshot {
        changed_at: view.changed_at,
        signed_at: Instant::now(),
        size: view.size,
        signed: signed.clone(),
    });
    Ok((view.size, signed))
}

/// Where a resuming client stands.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// The `size` of the newest snapshot the client holds (as `Last-Event-ID`, which wins).
    from: Option<u64>,
}

/// The revocation feed as server-sent events.
///
/// `event: snapshot` (a signed snapshot) on connect, unless the client resumes from a size
/// (`Last-Event-ID` or `from`) and nothing feed-relevant was recorded at or after it; then a
/// new `snapshot` whenever a revocation, quarantine change or activation is recorded, and a
/// signed `event: heartbeat` every second. Each event's `id` is the size of the newest
/// snapshot sent, to resume from.
#[utoipa::path(get, path = "/v1/feed/stream", tag = "decisions", params(StreamQuery),
    responses(
        ServerFailures,
        (status = 200, description = "The event stream", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A malformed Last-Event-ID or from", body = ErrorBody),
        (status = 503, description = "Too many streams open", body = ErrorBody),
    ))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    peer: Option<axum::Extension<crate::conn::Peer>>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let from = match headers.get("last-event-id") {
        None => q.from,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a log size (a decimal number)"))?,
        ),
    };
    signer(&s)?;
    let Some(mine) = s.feed_peers.take(peer.map(|p| p.0)) else {
        return Err(peer_full(s.feed_settings.max_streams_per_peer, "feed"));
    };
    let permit = stream_slot(&s.feed_streams, "feed")?;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let state = s.clone();
    tokio::spawn(async move {
        let _held = (permit, mine);
        if let Err(e) = run_stream(&state, from, &tx).await {
            tracing::warn!(error = ?e, "feed stream ended");
        }
    });
    Ok(event_stream(rx))
}

fn event(kind: &str, id: u64, data: &str) -> Bytes {
    Bytes::from(format!("event: {kind}\nid: {id}\ndata: {data}\n\n"))
}

/// Feeds one client until it goes away, the stream's age runs out or the server stops.
async fn run_stream(s: &AppState, from: Option<u64>, tx: &mpsc::Sender<Bytes>) -> Result<(), ApiError> {
    let settings = s.feed_settings;
    let mut changes = s.engine.feed_changes();
    let mut closing = s.closing.subscribe();
    let until = tokio::time::Instant::now() + settings.max_age;
    let changed_at = *changes.borrow_and_update();
    // The client holds every change below `from`: it needs a snapshot only if one was
    // recorded at or after it (or it names a size this log never had).
    let mut held = match from {
        Some(f) if f <= s.engine.log().size() && changed_at.is_none_or(|c| c < f) => f,
        _ => {
            let (size, signed) = signed_snapshot(s).await?;
            if tx.send(event("snapshot", size, &signed)).await.is_err() {
                return Ok(());
            }
            size
        }
    };
    let mut tick = tokio::time::interval(settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let sent = tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                changes.borrow_and_update();
                let (size, signed) = signed_snapshot(s).await?;
                held = size;
                tx.send(event("snapshot", size, &signed)).await
            }
            _ = tick.tick() => {
                // `changed_at` read before the size: a change applied between the two reads is
                // below the size either way.
                let changed_at = *changes.borrow();
                let signed = signer(s)?.heartbeat(s.engine.log().size(), changed_at, s.engine.now())?;
                tx.send(event("heartbeat", held, &signed)).await
            }
            _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => return Ok(()),
            () = tokio::time::sleep_until(until) => return Ok(()),
        };
        if sent.is_err() {
            // The client went away.
            return Ok(());
        }
    }
}

/// The answer of an event stream (`text/event-stream`, never cached nor buffered by a
/// proxy) whose events are what the task holding `rx`'s sender sends; it ends when that
/// task drops the sender. Marked [`Streaming`], so the edge's timeout does not cut it.
/// A slot among `streams` for one more stream of `what` (`log`, `feed`, …), or 503.
pub(crate) fn stream_slot(
    streams: &std::sync::Arc<tokio::sync::Semaphore>,
    what: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::Internal,
            format!("too many {what} streams are open; retry later"),
        )
    })
}

/// 503 for a client address that already holds `most` streams of `what`.
pub(crate) fn peer_full(most: usize, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::Internal,
        format!("this client address holds {most} {what} streams, the most one address may; close one or retry later"),
    )
}

pub(crate) fn event_stream(rx: mpsc::Receiver<Bytes>) -> Response {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response();
    response.extensions_mut().insert(Streaming);
    response
}
