//! The Streamable HTTP transport (`writ mcp --upstream URL --listen ADDR`): an HTTP server
//! that MCP clients connect to in place of the upstream server, relaying to it, per MCP
//! 2025-06-18 "Transports > Streamable HTTP"
//! (<https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#streamable-http>).
//!
//! The gateway serves one endpoint, the upstream's path, and relays each HTTP exchange to
//! the upstream as one exchange:
//!
//! - **POST** (one JSON-RPC message, at most [`MAX_LINE`] bytes): a `tools/call` is decided
//!   before anything is sent; a denied or pending call is answered by the gateway itself
//!   (`200`, `application/json`, or one `text/event-stream` event for a client that accepts
//!   only that) and never reaches the upstream. Everything else, and an allowed call with its
//!   writ, is POSTed upstream with the client's headers; the answer comes back as it came:
//!   `202` for notifications and responses, `application/json`, or an event stream relayed
//!   event by event (server-to-client requests and notifications on it included), with only
//!   the `data` of a `tools/list` or `initialize` answer rewritten. A body that is not JSON
//!   gets `400` with a JSON-RPC parse error; a batch `400` with an error per request.
//! - **GET** (the server-to-client stream): relayed event by event with its event ids, and
//!   `Last-Event-ID` passed on, so resumption is the upstream's; the gateway adds
//!   `notifications/tools/list_changed` (an event without an id, so the client's last event
//!   id stays the upstream's) when a bundle activation changes the session's visible tools.
//! - **DELETE**: relayed; a `2xx` ends the gateway's view of the session.
//!
//! Sessions are the upstream's: `Mcp-Session-Id` is relayed both ways and keys the
//! gateway's per-session state (calls in flight, the tools shown), which is bounded
//! ([`MAX_SESSIONS`], least recently used forgotten first) and dropped on `DELETE` or when
//! the upstream answers `404` for the session. A governed call whose answer arrives on
//! another stream (after the client resumed with `Last-Event-ID`) is still matched by its
//! id. Every header passes both ways except the hop-by-hop ones (RFC 9110 §7.6.1) and
//! `Host`; the client's `Authorization` goes to the upstream, whose credential it is (the
//! gateway's own credential for the control plane is the agent's workload credential).
//!
//! Requests whose `Origin` is neither a loopback origin nor one allowed by
//! [`HttpOptions::allowed_origins`] get `403` (the specification's defence against DNS
//! rebinding). The upstream unreachable, or answering something that is not JSON where JSON
//! is due, gives a JSON-RPC error (`-32603`) with the request's id and `502`; a governed
//! call so answered has its outcome recorded as failed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::serve::ListenerExt as _;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use super::govern::{self, Governed, Governor, Inbound, Outbound, Session};
use super::lines::MAX_LINE;
use super::sse::{self, Piece, Splitter};
use super::{Config, OUTCOME_DRAIN, answer, control_plane, valid_server_name};
use crate::Error;

/// Sessions the gateway keeps state for; past this, the least recently used is forgotten
/// (its calls in flight are then not recorded, its tools not refreshed).
const MAX_SESSIONS: usize = 4096;

/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Events queued towards one client stream before the relay waits for it.
const STREAM_QUEUE: usize = 64;

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// The HTTP transport's own options (the governance's are [`Config`]).
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The upstream server's MCP endpoint, `http://host:port/path`. The gateway serves the
    /// same path.
    pub upstream: String,
    /// Origins a browser-based client may call from besides the loopback ones, exactly as
    /// its `Origin` header spells them (`https://app.example.com`).
    pub allowed_origins: Vec<String>,
}

impl HttpOptions {
    /// The path the gateway serves (the upstream's), or why `upstream` is not usable.
    pub fn path(&self) -> Result<String, Error> {
        upstream_uri(&self.upstream).map(|u| u.path().to_owned())
    }
}

/// The gateway's state of one client session.
struct HttpSession {
    core: Session,
    /// A `notifications/tools/list_changed` is due on the session's GET stream.
    notice: AtomicBool,
    wake: Notify,
    last_used: AtomicU64,
}

impl HttpSession {
    fn new(now: u64) -> Arc<Self> {
        Arc::new(HttpSession {
            core: Session::default(),
            notice: AtomicBool::new(false),
            wake: Notify::new(),
            last_used: AtomicU64::new(now),
        })
    }
}

/// The relay's shared state.
struct Proxy {
    gov: Arc<Governor>,
    /// The upstream's endpoint, as given.
    upstream: Uri,
    /// The path served (the upstream's).
    path: String,
    client: HttpClient<HttpConnector, Full<Bytes>>,
    sessions: Mutex<HashMap<String, Arc<HttpSession>>>,
    clock: AtomicU64,
    allowed_origins: Vec<String>,
}

/// Parses the upstream's endpoint: `http://host:port/path`.
fn upstream_uri(url: &str) -> Result<Uri, Error> {
    let bad = |why: &str| Error::Config(format!("--upstream {url:?}: {why}"));
    let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// upstreams are supported (no TLS in the gateway)"));
    }
    if uri.authority().is_none_or(|a| a.as_str().contains('@')) {
        return Err(bad("give the server's endpoint, http://host:port/path"));
    }
    Ok(uri)
}

/// Serves the gateway on `listener` until `shutdown` resolves, then waits (a few seconds
/// at most) for the outcome reports still in flight.
pub async fn serve(
    config: Config,
    options: HttpOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if !valid_server_name(&config.name) {
        return Err(Error::Config(format!("--name {:?}: a server name is [a-z0-9_-]+, at most 64", config.name)));
    }
    let upstream = upstream_uri(&options.upstream)?;
    let gov =
        Arc::new(Governor::new(control_plane(&config)?, &config.name, config.deny_as_error, config.approval_wait));
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    let client = HttpClient::builder(TokioExecutor::new()).build(connector);
    let proxy = Arc::new(Proxy {
        gov: gov.clone(),
        path: upstream.path().to_owned(),
        upstream,
        client,
        sessions: Mutex::new(HashMap::new()),
        clock: AtomicU64::new(0),
        allowed_origins: options.allowed_origins,
    });
    let watched = proxy.clone();
    let watch = tokio::spawn(govern::watch_bundle(gov.clone(), config.bundle_poll, move || {
        let proxy = watched.clone();
        async move { proxy.refresh_sessions().await }
    }));
    let app = axum::Router::new().fallback(handle).with_state(proxy);
    // An answer is written in pieces (headers, then each event): without TCP_NODELAY, Nagle's
    // algorithm and the client's delayed ACK hold the last piece back ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("writ mcp: TCP_NODELAY not set on a client connection: {e}");
        }
    });
    let served = tokio::select! {
        served = axum::serve(listener, app).into_future() => served.map_err(|source| Error::Io { what: "serving HTTP", source }),
        () = shutdown => Ok(()),
    };
    watch.abort();
    if !gov.drain(OUTCOME_DRAIN).await {
        eprintln!("writ mcp: stopped with outcome reports still in flight (see the messages above)");
    }
    served
}

/// Every request.
async fn handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() != proxy.path {
        let message = format!("writ mcp: not found; the MCP endpoint is {}", proxy.path);
        return plain(StatusCode::NOT_FOUND, message);
    }
    if !proxy.origin_allowed(&parts.headers) {
        let message = "forbidden: the request's Origin is not allowed (writ mcp --allow-origin)";
        return json(StatusCode::FORBIDDEN, &answer::error(&Value::Null, answer::INVALID_REQUEST, message));
    }
    match parts.method {
        Method::POST => proxy.post(parts.headers, body).await,
        Method::GET => proxy.stream(parts.headers).await,
        Method::DELETE => proxy.delete(parts.headers).await,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "writ mcp: the MCP endpoint takes POST, GET and DELETE");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    }
}

impl Proxy {
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            // Not a browser: nothing to rebind.
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.allowed_origins.iter().any(|o| o == origin) {
            return true;
        }
        let Ok(uri) = origin.parse::<Uri>() else {
            return false;
        };
        let host = uri.host().unwrap_or_default();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        matches!(uri.scheme_str(), Some("http" | "https"))
            && (host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The state of the session `key` (`""`: requests without a session), created if new.
    fn session(&self, key: &str) -> Arc<HttpSession> {
        let now = self.tick();
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = sessions.get(key) {
            s.last_used.store(now, Ordering::Relaxed);
            return s.clone();
        }
        let s = HttpSession::new(now);
        insert_bounded(&mut sessions, key.to_owned(), s.clone());
        s
    }

    fn register(&self, key: String, session: Arc<HttpSession>) {
        session.last_used.store(self.tick(), Ordering::Relaxed);
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        insert_bounded(&mut sessions, key, session);
    }

    fn forget(&self, key: &str) {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }

    /// After a bundle change: each session's visible tools again, and a notice for those
    /// whose set changed.
    async fn refresh_sessions(&self) {
        let sessions: Vec<Arc<HttpSession>> =
            self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
        for s in sessions {
            if self.gov.refresh_visible(&s.core).await {
                s.notice.store(true, Ordering::SeqCst);
                s.wake.notify_waiters();
            }
        }
    }

    /// The request for the upstream: the client's headers but the hop-by-hop ones, `Host`
    /// and `Content-Length` (both set for the upstream by the client library).
    fn upstream_request(&self, method: Method, headers: &HeaderMap, body: Bytes) -> hyper::Request<Full<Bytes>> {
        let mut request = hyper::Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.upstream.clone();
        let out = request.headers_mut();
        for (name, value) in headers {
            if !hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
                out.append(name.clone(), value.clone());
            }
        }
        request
    }

    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Result<hyper::Response<Incoming>, String> {
        self.client.request(request).await.map_err(|e| {
            format!("writ mcp: the MCP server at {} cannot be reached: {}", self.upstream, error_chain(&e))
        })
    }

    /// One JSON-RPC message from the client.
    async fn post(self: &Arc<Self>, headers: HeaderMap, body: Body) -> Response {
        let bytes = match read_body(body, &headers).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let msg: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return json(StatusCode::BAD_REQUEST, &govern::parse_error(&e)),
        };
        let key = session_key(&headers);
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        // An initialize starts a session, whose id comes with its answer.
        let session = if is_init { HttpSession::new(self.tick()) } else { self.session(key.as_deref().unwrap_or("")) };
        let id = match &msg {
            Value::Object(o) if o.contains_key("method") => o.get("id").filter(|id| !id.is_null()).cloned(),
            _ => None,
        };
        match self.gov.inbound(&session.core, msg).await {
            Inbound::Refuse(answer) => {
                let message = "invalid request: not forwarded";
                let answer = answer.unwrap_or_else(|| answer::error(&Value::Null, answer::INVALID_REQUEST, message));
                json(StatusCode::BAD_REQUEST, &answer)
            }
            Inbound::Call(msg) => match self.gov.govern(&session.core, msg).await {
                Governed::Answer(answer) => answer_for(&headers, &answer),
                Governed::Forward(call) => {
                    let exchange = Exchange { session, id, key, is_init: false };
                    self.forward(&headers, Bytes::from(call), exchange).await
                }
            },
            Inbound::Forward(canonical) => {
                self.forward(&headers, Bytes::from(canonical), Exchange { session, id, key, is_init }).await
            }
        }
    }

    /// POSTs one message upstream and relays the answer.
    async fn forward(self: &Arc<Self>, headers: &HeaderMap, body: Bytes, ex: Exchange) -> Response {
        let request = self.upstream_request(Method::POST, headers, body);
        let response = match self.send(request).await {
            Ok(r) => r,
            Err(message) => return self.settle(&ex, StatusCode::BAD_GATEWAY, &message).await,
        };
        let (mut parts, body) = response.into_parts();
        if ex.is_init && parts.status.is_success() {
            let sid = parts.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
            if let Some(sid) = sid {
                self.register(sid.to_owned(), ex.session.clone());
            }
        }
        if parts.status == StatusCode::NOT_FOUND
            && let Some(key) = &ex.key
        {
            self.forget(key);
        }
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        let kind = content_type(&parts.headers);
        if parts.status.is_success() && kind == Kind::EventStream {
            let rx = self.relay(ex.session, body, ex.id, false);
            return Response::from_parts(parts, stream_body(rx));
        }
        if kind == Kind::Json {
            let bytes = match Limited::new(body, MAX_LINE).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    let message = format!("writ mcp: the MCP server's answer could not be read: {}", error_chain(&*e));
                    return self.settle(&ex, StatusCode::BAD_GATEWAY, &message).await;
                }
            };
            let msg: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                // Not an answer to a request (a 202 to a notification may say JSON and be
                // empty), or no success: relayed as it came.
                Err(_) if ex.id.is_none() || !parts.status.is_success() => {
                    if ex.id.is_some() {
                        self.settle_only(&ex, &format!("the MCP server answered {}", parts.status)).await;
                    }
                    return Response::from_parts(parts, Body::from(bytes));
                }
                Err(e) => {
                    let message = format!(
                        "writ mcp: the MCP server answered {} with a body that is not JSON ({e})",
                        parts.status
                    );
                    return self.settle(&ex, StatusCode::BAD_GATEWAY, &message).await;
                }
            };
            let body = match self.outbound(&ex.session, msg).await {
                Some(rewritten) => match serde_json::to_vec(&rewritten) {
                    Ok(b) => Bytes::from(b),
                    Err(_) => bytes,
                },
                None => bytes,
            };
            return Response::from_parts(parts, Body::from(body));
        }
        if ex.id.is_some() && !parts.status.is_success() {
            // No JSON-RPC answer: a governed call so answered has failed.
            let message = format!("the MCP server answered {}", parts.status);
            self.settle_only(&ex, &message).await;
        }
        Response::from_parts(parts, Body::new(body))
    }

    /// The gateway's error answer for an exchange the upstream did not answer usably; a
    /// governed call's outcome is recorded from it.
    async fn settle(&self, ex: &Exchange, status: StatusCode, message: &str) -> Response {
        eprintln!("{message}");
        let answer = answer::error(ex.id.as_ref().unwrap_or(&Value::Null), answer::INTERNAL_ERROR, message);
        if ex.id.is_some() {
            let _ = self.gov.outbound(&ex.session.core, &answer).await;
        }
        json(status, &answer)
    }

    async fn settle_only(&self, ex: &Exchange, message: &str) {
        if let Some(id) = &ex.id {
            let answer = answer::error(id, answer::INTERNAL_ERROR, message);
            let _ = self.gov.outbound(&ex.session.core, &answer).await;
        }
    }

    /// One message (or batch) from the upstream: `None` to relay it as it came, or what to
    /// relay instead.
    async fn outbound(&self, session: &HttpSession, msg: Value) -> Option<Value> {
        if let Value::Array(items) = msg {
            let mut changed = false;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match self.outbound_one(session, &item).await {
                    Some(v) => {
                        changed = true;
                        out.push(v);
                    }
                    None => out.push(item),
                }
            }
            return changed.then_some(Value::Array(out));
        }
        self.outbound_one(session, &msg).await
    }

    async fn outbound_one(&self, session: &HttpSession, msg: &Value) -> Option<Value> {
        match self.gov.outbound(&session.core, msg).await {
            Outbound::Relay => None,
            Outbound::Rewrite(v) => Some(v),
            Outbound::Filter { msg, first_page } => Some(self.gov.filter_list(&session.core, msg, first_page).await),
        }
    }

    /// Relays an upstream event stream to the client, event by event: the answer to a POST
    /// (`request`: its id, if it was a request) or the session's GET stream (`get_stream`),
    /// into which the gateway's own notices go. The client gone, the upstream's stream is
    /// dropped (closing it tells the upstream).
    fn relay(
        self: &Arc<Self>,
        session: Arc<HttpSession>,
        body: Incoming,
        request: Option<Value>,
        get_stream: bool,
    ) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let proxy = self.clone();
        tokio::spawn(async move { proxy.relay_events(session, body, request, get_stream, tx).await });
        rx
    }

    async fn relay_events(
        &self,
        session: Arc<HttpSession>,
        mut body: Incoming,
        request: Option<Value>,
        get_stream: bool,
        tx: mpsc::Sender<Bytes>,
    ) {
        let mut splitter = Splitter::new(MAX_LINE);
        let (mut answered, mut unreadable) = (false, false);
        loop {
            let notified = session.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if get_stream && session.notice.swap(false, Ordering::SeqCst) {
                let notice = serde_json::to_vec(&answer::list_changed()).unwrap_or_default();
                if tx.send(Bytes::from(sse::encode(&notice))).await.is_err() {
                    session.notice.store(true, Ordering::SeqCst);
                    return;
                }
            }
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = &mut notified, if get_stream => continue,
                () = tx.closed() => return,
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    eprintln!("writ mcp: the MCP server's event stream broke: {}", error_chain(&e));
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            for piece in splitter.push(&data) {
                let event = match piece {
                    Piece::TooLong(n) => {
                        eprintln!(
                            "writ mcp: dropped an event of {n} bytes from the server (over the {MAX_LINE}-byte bound)"
                        );
                        unreadable = true;
                        continue;
                    }
                    Piece::Event(e) => e,
                };
                let out = match event.data().filter(|d| !d.iter().all(u8::is_ascii_whitespace)) {
                    None => event.raw,
                    Some(data) => match serde_json::from_slice::<Value>(&data) {
                        Ok(msg) => {
                            if let Some(id) = &request
                                && msg.get("method").is_none()
                                && msg.get("id") == Some(id)
                            {
                                answered = true;
                            }
                            match self.outbound(&session, msg).await {
                                None => event.raw,
                                Some(v) => event.with_data(&serde_json::to_vec(&v).unwrap_or_default()),
                            }
                        }
                        Err(e) => {
                            eprintln!(
                                "writ mcp: an event from the server whose data is not JSON ({e}), relayed as it is"
                            );
                            unreadable = true;
                            event.raw
                        }
                    },
                };
                if tx.send(Bytes::from(out)).await.is_err() {
                    // The client is gone; dropping the upstream's stream tells the upstream.
                    return;
                }
            }
        }
        let rest = splitter.finish();
        if !rest.is_empty() {
            let _ = tx.send(Bytes::from(rest)).await;
        }
        if let Some(id) = request
            && !answered
            && unreadable
        {
            let m = "writ mcp: the MCP server's event stream ended without a readable answer to this request";
            let error = answer::error(&id, answer::INTERNAL_ERROR, m);
            let _ = self.gov.outbound(&session.core, &error).await;
            let _ = tx.send(Bytes::from(sse::encode(&serde_json::to_vec(&error).unwrap_or_default()))).await;
        }
    }

    /// GET: the session's server-to-client stream.
    async fn stream(self: &Arc<Self>, headers: HeaderMap) -> Response {
        let key = session_key(&headers);
        let session = self.session(key.as_deref().unwrap_or(""));
        let request = self.upstream_request(Method::GET, &headers, Bytes::new());
        let response = match self.send(request).await {
            Ok(r) => r,
            Err(message) => {
                eprintln!("{message}");
                return json(StatusCode::BAD_GATEWAY, &answer::error(&Value::Null, answer::INTERNAL_ERROR, &message));
            }
        };
        let (mut parts, body) = response.into_parts();
        if parts.status == StatusCode::NOT_FOUND
            && let Some(key) = &key
        {
            self.forget(key);
        }
        strip_hop_by_hop(&mut parts.headers);
        if parts.status.is_success() && content_type(&parts.headers) == Kind::EventStream {
            parts.headers.remove(header::CONTENT_LENGTH);
            let rx = self.relay(session, body, None, true);
            return Response::from_parts(parts, stream_body(rx));
        }
        Response::from_parts(parts, Body::new(body))
    }

    /// DELETE: the end of a session.
    async fn delete(self: &Arc<Self>, headers: HeaderMap) -> Response {
        let request = self.upstream_request(Method::DELETE, &headers, Bytes::new());
        let response = match self.send(request).await {
            Ok(r) => r,
            Err(message) => {
                eprintln!("{message}");
                return json(StatusCode::BAD_GATEWAY, &answer::error(&Value::Null, answer::INTERNAL_ERROR, &message));
            }
        };
        let (mut parts, body) = response.into_parts();
        if (parts.status.is_success() || parts.status == StatusCode::NOT_FOUND)
            && let Some(key) = session_key(&headers)
        {
            self.forget(&key);
        }
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, Body::new(body))
    }
}

/// One POST on its way: the session it belongs to, the request's id (`None` for a
/// notification or a response), the client's session id, whether it is `initialize`.
struct Exchange {
    session: Arc<HttpSession>,
    id: Option<Value>,
    key: Option<String>,
    is_init: bool,
}

fn insert_bounded(sessions: &mut HashMap<String, Arc<HttpSession>>, key: String, session: Arc<HttpSession>) {
    if sessions.len() >= MAX_SESSIONS && !sessions.contains_key(&key) {
        let oldest = sessions.iter().min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed)).map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            sessions.remove(&oldest);
        }
    }
    sessions.insert(key, session);
}

fn session_key(headers: &HeaderMap) -> Option<String> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the obsolete ones proxies still drop).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Json,
    EventStream,
    Other,
}

fn content_type(headers: &HeaderMap) -> Kind {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Kind::Json
    } else if essence.eq_ignore_ascii_case("text/event-stream") {
        Kind::EventStream
    } else {
        Kind::Other
    }
}

/// The client's body, at most [`MAX_LINE`] bytes.
async fn read_body(body: Body, headers: &HeaderMap) -> Result<Bytes, Response> {
    let too_large = |n: Option<u64>| {
        let size = n.map(|n| format!("a body of {n} bytes")).unwrap_or_else(|| "the body".to_owned());
        let m = format!("invalid request: {size} is over the gateway's {MAX_LINE}-byte bound; it was not forwarded");
        json(StatusCode::PAYLOAD_TOO_LARGE, &answer::error(&Value::Null, answer::INVALID_REQUEST, &m))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_LINE as u64) {
        return Err(too_large(declared));
    }
    match Limited::new(body, MAX_LINE).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(None)),
        Err(e) => {
            let m = format!("invalid request: the body could not be read: {e}");
            Err(json(StatusCode::BAD_REQUEST, &answer::error(&Value::Null, answer::INVALID_REQUEST, &m)))
        }
    }
}

/// The gateway's own answer to a request: JSON, or one event for a client that accepts only
/// an event stream.
fn answer_for(headers: &HeaderMap, answer: &Value) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*").to_ascii_lowercase();
    let wants_json = accept.contains("application/json") || accept.contains("*/*") || accept.contains("application/*");
    if !wants_json && accept.contains("text/event-stream") {
        let body = sse::encode(&serde_json::to_vec(answer).unwrap_or_default());
        return with_type(StatusCode::OK, "text/event-stream", Body::from(body));
    }
    json(StatusCode::OK, answer)
}

fn json(status: StatusCode, v: &Value) -> Response {
    with_type(status, "application/json", Body::from(serde_json::to_vec(v).unwrap_or_default()))
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    with_type(status, "text/plain; charset=utf-8", Body::from(message.into()))
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A response body fed by a relay task.
fn stream_body(rx: mpsc::Receiver<Bytes>) -> Body {
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    }))
}

/// An error with its sources, for the log and the client.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
