//! The control plane's HTTP API (SPEC.md §4): the `/v1` routes around one [`Engine`], the
//! health and readiness probes, Prometheus metrics and the OpenAPI document.
//!
//! [`app`] builds the whole router from its state, so every route is tested without a
//! socket. Only this crate knows HTTP; every decision and every state change is the
//! engine's. Answers are JSON; errors are JSON objects with a stable reason code and a human
//! message; a denied request is a `200` whose decision says `deny` (the deny is the answer,
//! not a failure).
//!
//! - Public: authorize and renew (authenticated by the request's own workload credential), verify,
//!   the log (checkpoint, key, entries, proofs, `tlog-proof` receipts), the JWKS, health,
//!   readiness, the node's health (its verification loop), the nodes sharing the log store,
//!   metrics and the OpenAPI document.
//! - Operators only (`Authorization: Bearer <operator credential>`): bundles (list, upload,
//!   activate), the shadow bundle (`/v1/policy/shadow`), revocations, quarantine, lineage
//!   (one writ's, and a search of the roots), a verification run on demand. Outcome reports take the credential of the
//!   workload the writ was issued to, or an operator's.
//! - The web console at `/console/{view}` (`/` redirects there): pages and scripts embedded
//!   in the binary that read only these routes (see the `console` module).
//! - At the edge ([`Limits`]): bodies above the limit are `413`; more requests in flight
//!   than allowed are refused at once with `503` and `Retry-After` (no unbounded queue);
//!   a request that outlives the timeout is answered `503`. [`serve`] bounds connections:
//!   how many are open, how long a request's head and the wait between requests may take.
//!
//! The OpenAPI document is generated from the route definitions (utoipa): each handler's
//! `#[utoipa::path]` is next to it, and [`app`] registers the handler and its path in one
//! call, so a route cannot exist without its documentation.

mod admin;
mod approvals;
mod auth;
mod conn;
pub mod console;
mod demo;
mod error;
mod extract;
mod feed;
mod health;
mod logstream;
mod metrics;
mod nodes;
mod routes;
mod schema;
mod shadow;

#[doc(hidden)]
pub mod fuzzing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use writ_core::ReasonCode;
use writ_engine::Engine;

pub use demo::{DemoRunner, Narrate};
pub use error::{ApiError, ErrorBody};
pub use feed::FeedSettings;
pub use metrics::Metrics;
pub use nodes::{HEARTBEAT, NodeIdentity};
/// The revocation feed's signing key: [`AppState::with_feed_signer`].
pub use writ_engine::FeedSigner;
/// Where the writ signing keys are kept: `POST /v1/keys/rotate` rotates through it with
/// [`Engine::rotate_writ_key_with`], the engine's one rotation path.
pub use writ_engine::WritKeyStore;

/// Largest decision or verification body accepted, in bytes (the engine's request limit).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest bundle upload accepted, in bytes.
pub const MAX_BUNDLE_BODY: usize = 1024 * 1024;
/// Most entries one `/v1/log/entries` call returns.
pub const MAX_ENTRIES: u64 = 1000;

/// Limits at the edge.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests handled at once; more are refused with `503` and `Retry-After`.
    pub max_in_flight: usize,
    /// Longest a request may take before it is answered `503`.
    pub request_timeout: Duration,
    /// Connections open at once. At the cap the connection that has waited longest with no
    /// request in progress is closed to make room; if every one is in a request, new ones
    /// wait in the listen backlog until one is over.
    pub max_connections: usize,
    /// Longest the head of a request may take to arrive (from the accept for a connection's
    /// first request, from its first byte for the next ones); the connection is then closed.
    pub header_timeout: Duration,
    /// Longest a connection may wait for its next request after an answer; it is then closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 4096,
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What the handlers share: one allocation behind an `Arc`, so that the per-request
/// clones axum makes of the state (extractor, middleware) are one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`].
#[doc(hidden)]
#[derive(Clone)]
pub struct Shared {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    limits: Limits,
    openapi: Arc<String>,
    keys: Option<Arc<dyn WritKeyStore>>,
    // The revocation feed's key (`None` only when no randomness made one) and settings,
    // and the streams it may still open.
    feed: Option<Arc<FeedSigner>>,
    feed_settings: FeedSettings,
    feed_streams: Arc<tokio::sync::Semaphore>,
    // The newest signed feed snapshot, shared by the snapshot route and the feed streams.
    snapshots: Arc<tokio::sync::Mutex<Option<feed::SignedSnapshot>>>,
    // Streams held by each client address (feed, log).
    feed_peers: Arc<conn::PeerSlots>,
    log_peers: Arc<conn::PeerSlots>,
    // The log streams still allowed open.
    log_streams: Arc<tokio::sync::Semaphore>,
    // Runs of the built-in demo scenario.
    demos: Arc<demo::Demos>,
    // Set when the server stops: long-lived answers (feed streams) end.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    // The last write probe of `/readyz` and when it ran: at most one synced probe per
    // `PROBE_EVERY`, however often an anonymous caller asks.
    probed: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
    // Who this node is, for its heartbeat and `GET /v1/nodes`.
    node: Arc<NodeIdentity>,
}

/// How long `/readyz` reuses the answer of its last write probe of the log.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State over an open engine, with the default limits.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_limits(engine, Limits::default())
    }

    /// State over an open engine.
    pub fn with_limits(engine: Arc<Engine>, limits: Limits) -> Self {
        let metrics = Arc::new(Metrics::new(engine.clone(), &limits));
        let openapi = Arc::new(openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
        let feed = match FeedSigner::ephemeral(&engine.issuer()) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::error!(error = %e, "no feed key: the revocation feed answers 503");
                None
            }
        };
        let feed_settings = FeedSettings::default();
        AppState(Arc::new(Shared {
            engine,
            metrics,
            limits,
            openapi,
            keys: None,
            feed,
            feed_settings,
            feed_streams: Arc::new(tokio::sync::Semaphore::new(feed_settings.max_streams)),
            snapshots: Arc::default(),
            feed_peers: conn::PeerSlots::new(feed_settings.max_streams_per_peer),
            log_peers: conn::PeerSlots::new(logstream::MAX_STREAMS_PER_PEER),
            log_streams: Arc::new(tokio::sync::Semaphore::new(logstream::MAX_STREAMS)),
            demos: Arc::default(),
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            probed: Arc::default(),
            node: Arc::default(),
        }))
    }

    /// Runs `work` on the engine in a task of its own and waits for its answer.
    ///
    /// Every handler that records something goes through here. A request's future is
    /// dropped when its client disconnects or the request timeout fires, and an operation cut
    /// there can be in the log without being in force: an activation recorded while the old
    /// bundle still decides, a shadow or key change recorded but not made, or a lock released
    /// before its entry is applied, so that the next operation (another operator's approval of
    /// a decision this one rejected) is applied out of log order. Run in a task, the operation
    /// finishes whoever still waits for it: the client that went away loses only the answer.
    pub(crate) async fn to_completion<T, Fut>(&self, work: impl FnOnce(Arc<Engine>) -> Fut) -> Result<T, ApiError>
    where
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(work(self.engine.clone())).await.map_err(|e| {
            ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                ReasonCode::Internal,
                format!("an operation's task failed: {e}"),
            )
        })
    }

    /// This node's id (`GET /v1/health`'s `node`, its heartbeat's; `local` unless
    /// [`AppState::with_node`] set one).
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// The same state with this feed key (a data directory's, which enforcement points can
    /// pin) in place of the key of its own a state is built with.
    #[must_use]
    pub fn with_feed_signer(self, signer: Arc<FeedSigner>) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.feed = Some(signer);
        shared.snapshots = Arc::default();
        AppState(Arc::new(shared))
    }

    /// The same state with these feed stream settings.
    #[must_use]
    pub fn with_feed_settings(self, settings: FeedSettings) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.feed_settings = settings;
        shared.feed_streams = Arc::new(tokio::sync::Semaphore::new(settings.max_streams));
        shared.feed_peers = conn::PeerSlots::new(settings.max_streams_per_peer);
        AppState(Arc::new(shared))
    }

    /// The same state with a writ key store, which makes `POST /v1/keys/rotate` work;
    /// without one that route answers 503.
    #[must_use]
    pub fn with_key_store(self, keys: Arc<dyn WritKeyStore>) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.keys = Some(keys);
        AppState(Arc::new(shared))
    }

    /// The same state with this node identity (the default is `local`, no address): the
    /// id and address its heartbeat records and `GET /v1/nodes` shows.
    #[must_use]
    pub fn with_node(self, node: NodeIdentity) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.node = Arc::new(node);
        AppState(Arc::new(shared))
    }

    /// Records this node's heartbeat in the shared log store now (`serve` does so every
    /// [`HEARTBEAT`]).
    pub async fn heartbeat(&self) -> Result<(), String> {
        nodes::heartbeat(self).await
    }

    /// The same state with the built-in demo scenario's runner, which makes
    /// `POST /v1/demo/runs` work; without one that route answers 503.
    #[must_use]
    pub fn with_demo(self, runner: Arc<dyn DemoRunner>) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.demos = Arc::new(demo::Demos::with_runner(runner));
        AppState(Arc::new(shared))
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "writ control plane",
        description = "Execution trust for autonomous AI systems: decisions, writs, the tamper-evident log, and the operator routes. Reason codes: docs/reason-codes.md in the repository.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    tags(
        (name = "decisions", description = "Authorize and verify"),
        (name = "log", description = "The tamper-evident log: checkpoints, entries, proofs, receipts"),
        (name = "admin", description = "Operator routes (Bearer operator credential)"),
        (name = "service", description = "Health, readiness, metrics, keys")
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::authorize))
        .routes(routes!(routes::renew))
        .routes(routes!(routes::verify))
        .routes(routes!(routes::checkpoint))
        .routes(routes!(routes::log_key))
        .routes(routes!(routes::entries))
        .routes(routes!(logstream::stream))
        .routes(routes!(routes::stats))
        .routes(routes!(routes::inclusion))
        .routes(routes!(routes::consistency))
        .routes(routes!(routes::receipt))
        .routes(routes!(admin::list_bundles, admin::upload_bundle))
        .routes(routes!(admin::activate_bundle))
        .routes(routes!(admin::bundle_detail))
        .routes(routes!(admin::list_revocations, admin::revoke))
        .routes(routes!(admin::list_quarantine))
        .routes(routes!(admin::isolate))
        .routes(routes!(admin::release))
        .routes(routes!(admin::lineage))
        .routes(routes!(admin::lineage_roots))
        .routes(routes!(nodes::nodes))
        .routes(routes!(admin::report_outcome))
        .routes(routes!(admin::rotate_key))
        .routes(routes!(shadow::status, shadow::set, shadow::clear))
        .routes(routes!(shadow::promote))
        .routes(routes!(approvals::list_approvals))
        .routes(routes!(approvals::approval))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::reject))
        .routes(routes!(demo::start))
        .routes(routes!(demo::get))
        .routes(routes!(demo::events))
        .routes(routes!(routes::jwks))
        .routes(routes!(feed::preview))
        .routes(routes!(feed::feed_keys))
        .routes(routes!(feed::snapshot))
        .routes(routes!(feed::stream))
        .routes(routes!(routes::healthz))
        .routes(routes!(health::health))
        .routes(routes!(health::verify_now))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
}

/// The OpenAPI 3 document of every route, generated from the route definitions.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    doc.paths.paths.insert(
        "/v1/openapi.json".into(),
        utoipa::openapi::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .operation_id(Some("openapi"))
                .tag("service")
                .summary(Some("This document"))
                .response("200", utoipa::openapi::Response::new("The OpenAPI 3 document")),
        ),
    );
    doc
}

/// The router: every route of the API, with the edge limits and metrics.
pub fn app(state: AppState) -> Router {
    let (router, _) = api().split_for_parts();
    let limits = state.limits;
    let edge = ServiceBuilder::new()
        .layer(HandleErrorLayer::new({
            let state = state.clone();
            move |e: tower::BoxError| {
                let state = state.clone();
                async move { refuse(&state, &e) }
            }
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
        .timeout(limits.request_timeout);
    router
        .route("/v1/openapi.json", axum::routing::get(openapi_json))
        .merge(console::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ReasonCode::RequestMalformed,
                "method not allowed on this route",
            )
        })
        .layer(edge)
        .layer(middleware::from_fn(end_with_newline))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BUNDLE_BODY))
        .with_state(state)
}

fn refuse(state: &AppState, e: &tower::BoxError) -> Response {
    if e.is::<tower::load_shed::error::Overloaded>() {
        state.metrics.refused("overload");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ReasonCode::Internal, "overloaded: too many requests in flight")
            .into_response()
    } else if e.is::<tower::timeout::error::Elapsed>() {
        state.metrics.refused("timeout");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::Internal,
            format!("the request took longer than {} ms", state.limits.request_timeout.as_millis()),
        )
        .into_response()
    } else {
        ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, e.to_string()).into_response()
    }
}

/// Every JSON answer ends with a newline, so that it prints as a line of its own (`curl` in a
/// shell) and a stream of answers splits on lines. The bodies are built whole in memory, so
/// this appends one byte to a buffer; the length header (if any) is recomputed by the server.
async fn end_with_newline(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            let mut with_newline = Vec::with_capacity(bytes.len() + 1);
            with_newline.extend_from_slice(&bytes);
            if bytes.last() != Some(&b'\n') {
                with_newline.push(b'\n');
            }
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(with_newline))
        }
        Err(e) => {
            ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, format!("answer body: {e}"))
                .into_response()
        }
    }
}

/// Counts every request by route and status, with its latency.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16(), start.elapsed());
    response
}

async fn openapi_json(State(s): State<AppState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], s.openapi.as_str().to_owned()).into_response()
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then stops accepting, lets
/// the requests in flight finish (each connection closes after its current answer; those
/// with no request begun close at once) and returns. Connections still open the request
/// timeout plus 2 s after the signal are dropped: a stalled client cannot hold the stop.
///
/// Every connection is bounded ([`Limits`]): at most `max_connections` at once (the one
/// idle longest makes room for a new one), the head of each request within `header_timeout`, the wait for
/// the next request within `idle_timeout`, a request and its answer within the request
/// timeout plus 2 s. See the `conn` module.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The heartbeat stops with the server.
    let beat = tokio::spawn(nodes::beat(state.clone()));
    let served = conn::serve(listener, state, shutdown).await;
    beat.abort();
    served
}
