//! The log as server-sent events (`GET /v1/log/stream`): every entry appended, as it is
//! appended, for the console's live decision stream and any other watcher. Public, like
//! `GET /v1/log/entries`, whose items it sends.
//!
//! The format is the HTML Living Standard's `text/event-stream`: one `event: entry` per log
//! entry, its `id` the entry's index, its `data` the same JSON object as an item of
//! `/v1/log/entries` without the raw bytes (`index`, `leaf_hash`, `entry`); and an
//! `event: size` every [`HEARTBEAT`] with the log size (which keeps the connection's deadline
//! moving; see the `conn` module). A client resumes after a drop with `Last-Event-ID` (the
//! last index it holds: the stream starts after it) or `?from=` (the first index it wants);
//! without either it starts [`DEFAULT_TAIL`] entries before the end. Streams are bounded in
//! number ([`MAX_STREAMS`], more are `503`) and age ([`MAX_AGE`]: the client reconnects and
//! resumes); the entries are read in pages of [`PAGE`] into a channel of a few pages, so a
//! slow reader holds a few pages of memory, not the log. They end when the server stops.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::IntoParams;
use writ_core::ReasonCode;
use writ_log::Hash;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ServerFailures};
use crate::extract::Query;

/// Entries sent before the end when the client names no position.
pub const DEFAULT_TAIL: u64 = 200;
/// Streams open at once.
pub const MAX_STREAMS: usize = 64;

/// Log streams open at once from one client address (a console tab holds one).
pub const MAX_STREAMS_PER_PEER: usize = 8;
/// Longest a stream stays open.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Time between `size` events.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// How often the log's size is looked at for new entries.
const POLL: Duration = Duration::from_millis(200);
/// Entries read at once.
const PAGE: u64 = 200;

/// Where the client starts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogStreamQuery {
    /// The first index to send (`Last-Event-ID`, the last index held, wins).
    from: Option<u64>,
}

/// The log's entries as server-sent events, from a position on, then live.
///
/// `event: entry` per entry (`id`: its index; `data`: `{index, leaf_hash, entry}`), and
/// `event: size` every 3 s (`data`: `{"size": n}`). Resume with `Last-Event-ID` (the last
/// index held) or `from` (the first index wanted); neither: the last 200 entries, then live.
#[utoipa::path(get, path = "/v1/log/stream", operation_id = "log_stream", tag = "log", params(LogStreamQuery),
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
    Query(q): Query<LogStreamQuery>,
) -> Result<Response, ApiError> {
    let size = s.engine.log().size();
    let start = match headers.get("last-event-id") {
        Some(v) => {
            let last = v
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a log index (a decimal number)"))?;
            // Past any log (found in review: it was called not a number).
            last.checked_add(1).ok_or_else(|| {
                ApiError::bad_request(format!("the log holds {size} entries: no index after {last} to start from"))
            })?
        }
        None => q.from.unwrap_or_else(|| size.saturating_sub(DEFAULT_TAIL)),
    };
    if start > size {
        return Err(ApiError::bad_request(format!("the log holds {size} entries: no index {start} to start from")));
    }
    let Some(mine) = s.log_peers.take(peer.map(|p| p.0)) else {
        return Err(crate::feed::peer_full(MAX_STREAMS_PER_PEER, "log"));
    };
    let permit = crate::feed::stream_slot(&s.log_streams, "log")?;
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let state = s.clone();
    tokio::spawn(async move {
        let _held = (permit, mine);
        if let Err(e) = run(&state, start, &tx).await {
            // The cause is the server's own (reading the log): logged, not sent.
            tracing::warn!(error = ?e, "log stream ended");
            let body = json!({ "error": ReasonCode::LogUnavailable, "message": "the log is unavailable" });
            let _ = tx.send(Bytes::from(format!("event: error\ndata: {body}\n\n"))).await;
        }
    });
    Ok(crate::feed::event_stream(rx))
}

/// One `entry` event per entry of `[start, end)`, in one chunk.
fn page(s: &AppState, start: u64, end: u64) -> Result<Bytes, ApiError> {
    let list = s.engine.log().entries(start, end)?;
    let mut out = String::new();
    for (bytes, index) in list.iter().zip(start..) {
        let entry = serde_json::from_slice::<Value>(bytes)
            .unwrap_or_else(|_| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)));
        let data = json!({ "index": index, "leaf_hash": Hash::leaf(bytes).to_base64(), "entry": entry });
        out.push_str(&format!("event: entry\nid: {index}\ndata: {data}\n\n"));
    }
    Ok(Bytes::from(out))
}

async fn run(s: &AppState, mut next: u64, tx: &mpsc::Sender<Bytes>) -> Result<(), ApiError> {
    let mut closing = s.closing.subscribe();
    let until = tokio::time::Instant::now() + MAX_AGE;
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Tells the client how far the log goes before the first entry arrives.
    let hello = format!("retry: 1000\nevent: size\ndata: {{\"size\": {}}}\n\n", s.engine.log().size());
    if tx.send(Bytes::from(hello)).await.is_err() {
        return Ok(());
    }
    loop {
        let size = s.engine.log().size();
        while next < size {
            let end = size.min(next + PAGE);
            let chunk = page(s, next, end)?;
            // Waits while the client is behind: at most the channel's pages are held.
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
            next = end;
        }
        let sent = tokio::select! {
            _ = poll.tick() => Ok(()),
            _ = beat.tick() => {
                tx.send(Bytes::from(format!("event: size\ndata: {{\"size\": {}}}\n\n", s.engine.log().size()))).await
            }
            _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => return Ok(()),
            () = tokio::time::sleep_until(until) => return Ok(()),
        };
        if sent.is_err() {
            return Ok(());
        }
    }
}
