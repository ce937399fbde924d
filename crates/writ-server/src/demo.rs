//! Runs of the built-in demo scenario from the console (`/v1/demo/runs`): an operator starts
//! one, and the console narrates it step by step as it happens.
//!
//! The scenario is not here: it is `writ demo`'s, which drives this server over its own HTTP
//! API like any agent fleet would. `writ serve` hands its runner to the state
//! ([`AppState::with_demo`]); without one these routes answer `503`. One run at a time
//! (another start while one runs is `409`); the newest [`MAX_RUNS`] runs are kept, each with
//! at most [`MAX_EVENTS`] events, so memory is bounded however often it runs.
//!
//! A run's narration is read whole (`GET /v1/demo/runs/{id}`) or as server-sent events
//! (`GET /v1/demo/runs/{id}/events`, the HTML Living Standard's `text/event-stream`): each
//! event's `event` is its type (`section`, `step`, `note`, `summary`), its `id` its
//! sequence number (resume with `Last-Event-ID`), and an `event: end` closes the stream
//! when the run is over.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use writ_core::ReasonCode;

use crate::AppState;
use crate::admin::OperatorRefusals;
use crate::auth::Operator;
use crate::error::{ApiError, ErrorBody, ServerFailures};
use crate::extract::Path;
use crate::schema::DemoRunDoc;

/// Runs kept.
pub const MAX_RUNS: usize = 8;
/// Events kept per run (the scenario has under a hundred).
pub const MAX_EVENTS: usize = 2000;
/// Longest a run's event stream stays open.
const MAX_AGE: Duration = Duration::from_secs(600);
/// Event streams open at once, over every run (found in review: they were unbounded).
pub const MAX_STREAMS: usize = 16;

/// Where a run's narration goes: called once per event, from the run's own thread.
pub type Narrate = Box<dyn Fn(Value) + Send + Sync>;

/// The built-in demo scenario, run against this server. `run` blocks until the scenario
/// ends (the server calls it on a thread of its own); it reports each event through
/// `narrate` (a JSON object with a `type`), and answers whether every step went as
/// expected, or why the run could not go on.
pub trait DemoRunner: Send + Sync + 'static {
    /// Runs the scenario once.
    fn run(&self, narrate: Narrate) -> Result<bool, String>;
}

/// The runs of one server.
pub(crate) struct Demos {
    runner: Option<Arc<dyn DemoRunner>>,
    runs: Mutex<VecDeque<Arc<Run>>>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl Default for Demos {
    fn default() -> Self {
        Demos { runner: None, runs: Mutex::default(), streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)) }
    }
}

impl Demos {
    pub(crate) fn with_runner(runner: Arc<dyn DemoRunner>) -> Self {
        Demos { runner: Some(runner), ..Demos::default() }
    }
}

struct Run {
    id: String,
    started: u64,
    operator: String,
    inner: Mutex<RunState>,
    // The number of events, sent after each one.
    changed: tokio::sync::watch::Sender<(usize, bool)>,
}

#[derive(Default)]
struct RunState {
    events: Vec<Value>,
    dropped: u64,
    status: &'static str,
    finished: Option<u64>,
}

impl Run {
    fn push(&self, mut event: Value) {
        let (count, done) = {
            let Ok(mut st) = self.inner.lock() else { return };
            if st.events.len() >= MAX_EVENTS {
                st.dropped += 1;
                return;
            }
            if let Some(o) = event.as_object_mut() {
                o.insert("seq".into(), json!(st.events.len()));
            }
            st.events.push(event);
            (st.events.len(), st.finished.is_some())
        };
        self.changed.send_replace((count, done));
    }

    fn finish(&self, status: &'static str, now: u64, last: Option<Value>) {
        if let Some(e) = last {
            self.push(e);
        }
        let count = {
            let Ok(mut st) = self.inner.lock() else { return };
            st.status = status;
            st.finished = Some(now);
            st.events.len()
        };
        self.changed.send_replace((count, true));
    }

    fn doc(&self) -> Value {
        let st = self.inner.lock().map(|s| (s.status, s.finished, s.events.clone(), s.dropped));
        let (status, finished, events, dropped) = st.unwrap_or(("error", None, Vec::new(), 0));
        json!({
            "id": self.id, "status": status, "started": self.started, "finished": finished,
            "operator": self.operator, "events": events, "dropped": dropped,
        })
    }

    fn events_from(&self, from: usize) -> (Vec<Value>, bool) {
        self.inner
            .lock()
            .map(|s| (s.events.get(from..).map(<[Value]>::to_vec).unwrap_or_default(), s.finished.is_some()))
            .unwrap_or_default()
    }
}

fn find(s: &AppState, id: &str) -> Result<Arc<Run>, ApiError> {
    s.demos
        .runs
        .lock()
        .ok()
        .and_then(|runs| runs.iter().find(|r| r.id == id).cloned())
        .ok_or_else(|| ApiError::not_found(format!("no demo run {id} (the newest {MAX_RUNS} are kept)")))
}

/// Start a run of the built-in demo scenario against this server.
///
/// The scenario is `writ demo`'s: a simulated fleet of agents sends its requests to this
/// server's own API (reads, writes, payments that wait for approval, a sub-agent chain,
/// forged credentials, a quarantined agent, a policy change rolled back), with credentials
/// from the data directory's development issuers. Every decision is recorded in the log like
/// any other. One run at a time. Follow it with `GET /v1/demo/runs/{id}/events`.
#[utoipa::path(post, path = "/v1/demo/runs", tag = "admin", security(("bearer" = [])),
    responses(
        ServerFailures,
        (status = 202, description = "Started", body = DemoRunDoc),
        (status = 409, description = "A run is in progress, or the active bundle is not the starter bundle (the demo runs only there)", body = ErrorBody),
        (status = 503, description = "This server runs no demo", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn start(State(s): State<AppState>, Operator(op): Operator) -> Result<Response, ApiError> {
    let Some(runner) = s.demos.runner.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::Internal,
            "this server runs no demo (only `writ serve` does)",
        ));
    };
    // The scenario activates a variant of the starter bundle (then rolls back) and
    // re-evaluates every outstanding writ under it: on a control plane that governs
    // anything else, that would decide real calls under the starter policy and revoke real
    // writs. It runs only where the starter bundle this binary ships is the one in force
    // (the embedded default of `writ serve`).
    let starter = writ_policy::starter_bundle()
        .map_err(|e| ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, e.to_string()))?
        .digest();
    match s.engine.active_bundle() {
        Some((_, _, digest)) if digest == starter => {}
        active => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ReasonCode::RequestMalformed,
                format!(
                    "the demo runs only on a control plane whose active bundle is the starter bundle this binary ships \
                     ({starter}); the active bundle here is {}: the scenario activates a variant of the starter bundle, \
                     which would decide this control plane's real calls and revoke its real writs",
                    active.map_or_else(
                        || "none".to_owned(),
                        |(name, version, digest)| format!("{name} {version} ({digest})")
                    )
                ),
            ));
        }
    }
    let run = {
        let mut runs = s.demos.runs.lock().map_err(|_| {
            ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, "demo runs lock poisoned")
        })?;
        if let Some(busy) = runs.iter().find(|r| r.inner.lock().is_ok_and(|st| st.finished.is_none())) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ReasonCode::RequestMalformed,
                format!(
                    "demo run {} (started by {}) is in progress: follow it, or wait for its end",
                    busy.id, busy.operator
                ),
            ));
        }
        let run = Arc::new(Run {
            id: format!("demo-{:012x}", fastrand::u64(..) >> 16),
            started: s.engine.now(),
            operator: op,
            inner: Mutex::new(RunState { status: "running", ..RunState::default() }),
            changed: tokio::sync::watch::Sender::new((0, false)),
        });
        runs.push_back(run.clone());
        while runs.len() > MAX_RUNS {
            runs.pop_front();
        }
        run
    };
    tracing::info!(run = %run.id, operator = %run.operator, "demo run started");
    let (runner_run, engine) = (run.clone(), s.engine.clone());
    tokio::task::spawn_blocking(move || {
        let sink = runner_run.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner.run(Box::new(move |event| sink.push(event)))
        }));
        let now = engine.now();
        match result {
            Ok(Ok(true)) => runner_run.finish("succeeded", now, None),
            Ok(Ok(false)) => runner_run.finish("failed", now, None),
            Ok(Err(why)) => {
                tracing::warn!(run = %runner_run.id, error = %why, "demo run stopped");
                runner_run.finish("error", now, Some(json!({ "type": "error", "message": why })));
            }
            Err(_) => runner_run.finish(
                "error",
                now,
                Some(json!({ "type": "error", "message": "the demo run failed inside the server" })),
            ),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(run.doc())).into_response())
}

/// A demo run: its status and its narration so far.
#[utoipa::path(get, path = "/v1/demo/runs/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Run id")),
    responses(
        ServerFailures,
        (status = 200, description = "The run", body = DemoRunDoc),
        (status = 400, description = "Not a run id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn get(
    State(s): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(find(&s, &id)?.doc()).into_response())
}

/// A demo run's narration as server-sent events.
///
/// Every event so far, then each as it happens: `event` is its type (`section`, `step`,
/// `note`, `summary`, `error`), `id` its sequence number, `data` the event's JSON; an
/// `event: end` with the run's final state closes the stream. Resume with `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/demo/runs/{id}/events", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Run id")),
    responses(
        ServerFailures,
        (status = 200, description = "The event stream", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A malformed Last-Event-ID", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 503, description = "Too many demo event streams are open", body = ErrorBody),
        OperatorRefusals,
    ))]
pub(crate) async fn events(
    State(s): State<AppState>,
    _op: Operator,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = find(&s, &id)?;
    let from = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event's sequence number"))?,
    };
    let permit = crate::feed::stream_slot(&s.demos.streams, "demo event")?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut closing = s.closing.subscribe();
    tokio::spawn(async move {
        let _slot = permit;
        let mut next = from;
        let mut changed = run.changed.subscribe();
        let until = tokio::time::Instant::now() + MAX_AGE;
        loop {
            changed.borrow_and_update();
            let (events, done) = run.events_from(next);
            for e in events {
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("message").to_owned();
                let frame = format!("event: {kind}\nid: {next}\ndata: {e}\n\n");
                if tx.send(Bytes::from(frame)).await.is_err() {
                    return;
                }
                next += 1;
            }
            if done {
                let (status, finished) = run.inner.lock().map(|st| (st.status, st.finished)).unwrap_or(("error", None));
                let end = json!({ "id": run.id, "status": status, "finished": finished });
                let _ = tx.send(Bytes::from(format!("event: end\ndata: {end}\n\n"))).await;
                return;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                // Keeps the connection's deadline moving while a step takes its time.
                () = tokio::time::sleep(Duration::from_secs(3)) => {
                    if tx.send(Bytes::from_static(b": waiting\n\n")).await.is_err() {
                        return;
                    }
                }
                _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => return,
                () = tokio::time::sleep_until(until) => return,
            }
        }
    });
    Ok(crate::feed::event_stream(rx))
}
