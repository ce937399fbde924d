//! The accept loop and the life of one HTTP/1.1 connection: every connection the server
//! holds is bounded in number and in time, so that no client, slow or silent, can hold a
//! socket (a file descriptor, a slot) for longer than the limits say.
//!
//! - **Cap** ([`Limits::max_connections`]): a connection needs a slot before it is accepted.
//!   At the cap, the connection that has waited longest with no request in progress
//!   (`fresh`, `head` or `idle` below, the oldest phase first) is closed to make room
//!   (`cap`), so a flood of silent or idle connections cannot keep a new client out for a
//!   whole timeout; when every connection is in a request, the connection just accepted
//!   waits for a slot and the loop accepts no other: the next ones wait in the kernel's
//!   listen backlog (holding no descriptor of ours) until one request is over.
//! - **Deadlines**: each connection is in one phase, and each phase has a deadline:
//!
//!   | phase | from | until | deadline | closed as |
//!   |---|---|---|---|---|
//!   | `fresh` | accept | the first byte | header timeout after accept | `header_timeout` |
//!   | `head` | first byte of a request | its head parsed | header timeout after the phase's start (accept for the first request) | `header_timeout` |
//!   | `busy` | the head parsed | the answer handed over: its body done and no write blocked | request timeout + 2 s | `response_timeout` |
//!   | `idle` | the answer handed over | the first byte of the next request | idle timeout | `idle_timeout` |
//!
//!   The request timeout already answers a slow handler `503`; `busy`'s bound catches a
//!   client that does not read its answer. Bytes trickling in do not extend `head`: the whole
//!   head must arrive in time (slowloris). hyper's own `header_read_timeout` is off: in
//!   hyper 1.12 it also runs between keep-alive requests (hyper PR #3828), so it could not
//!   tell an idle connection from a stalled one, nor give them different bounds.
//! - **Stop**: the listener closes at once; connections with no request begun (`fresh`,
//!   `idle`) close; those in a request finish it without keep-alive (hyper's graceful
//!   shutdown); [`serve`] drops whatever is left after the request timeout plus 2 s.
//!
//! The phase lives in one atomic word per connection, written where hyper does the work (the
//! socket wrapper sees bytes arrive, the service sees a head parsed, the answer's body sees
//! itself dropped, the socket wrapper sees a write blocked or getting through) and read by
//! the connection's task, whose timer is armed lazily: at the phase's deadline, or sooner,
//! one shortest timeout from now. A phase change counts at least one shortest timeout from
//! the change, so it cannot bring a deadline before the timer; the one exception, an
//! answer found stuck after hyper dropped its body (back to `busy`, from the request's
//! start), is enforced at most one shortest timeout late. So the timer never needs waking
//! early, and a connection under load re-arms it once per shortest timeout, not once per
//! request.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::{AppState, Limits, app};

/// How long past the request timeout a request's connection may last, and a stop waits.
pub(crate) const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// How often the loop, at the cap with every connection in a request, looks again for one
/// that could make room.
const ROOM_RETRY: Duration = Duration::from_millis(50);

/// How long the loop waits after an accept error other than a refused connection (such as
/// `EMFILE`, out of descriptors) before it accepts again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app(state)` on `listener` until `shutdown` resolves; see the module doc.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = state.limits;
    let metrics = state.metrics.clone();
    let closing = state.closing.clone();
    let router = app(state);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // The phases of the open connections, for choosing one to close at the cap.
    let mut held: Vec<Weak<Phase>> = Vec::new();
    let epoch = Instant::now();
    tokio::pin!(shutdown);
    'accept: loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    metrics.accept_error();
                    if !matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) {
                        // Out of descriptors, most likely: the backlog keeps the connection
                        // until some close.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                            () = &mut shutdown => break 'accept,
                        }
                    }
                    continue;
                }
            },
            () = &mut shutdown => break 'accept,
        };
        // A slot for it. At the cap, one connection with no request in progress is asked
        // to make room; while every one is in a request, the loop asks again as they finish
        // theirs, and accepts nothing meanwhile (later connections wait in the backlog).
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.connection_cap_reached();
                loop {
                    make_room(&mut held);
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => break slot,
                            // The semaphore is never closed.
                            Err(_) => break 'accept,
                        },
                        () = tokio::time::sleep(ROOM_RETRY) => {}
                        () = &mut shutdown => break 'accept,
                    }
                }
            }
        };
        let phase = Arc::new(Phase::new(&limits, epoch));
        if held.len() >= limits.max_connections.saturating_mul(2) {
            // The closed ones go, so that the list stays within twice the cap.
            held.retain(|p| p.strong_count() > 0);
        }
        held.push(Arc::downgrade(&phase));
        let service = Service { router: router.clone(), phase: phase.clone(), peer: Peer(peer.ip()) };
        tasks.spawn(connection(stream, phase, service, metrics.clone(), stopped.clone(), slot));
    }
    // Stop: no new connections; those without a request close, the others finish theirs.
    drop(listener);
    let _ = stop.send(true);
    // Long-lived answers (feed streams) end, so that their connections can close.
    closing.send_replace(true);
    let drain = limits.request_timeout + DRAIN_MARGIN;
    let drained = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
            "connections still open after the drain: dropped"
        );
        // Dropping the set aborts its tasks, which closes their sockets.
        drop(tasks);
    }
    Ok(())
}

/// Asks the connection that has waited longest with no request in progress to close (it
/// does unless a request began meanwhile), unless one asked before has not answered yet;
/// forgets the closed ones.
fn make_room(held: &mut Vec<Weak<Phase>>) {
    held.retain(|p| p.strong_count() > 0);
    let live: Vec<Arc<Phase>> = held.iter().filter_map(Weak::upgrade).collect();
    if live.iter().any(|p| p.evicted()) {
        return;
    }
    let oldest = live
        .iter()
        .filter_map(|p| {
            let (phase, since) = p.load();
            (phase != BUSY).then_some((since, p))
        })
        .min_by_key(|(since, _)| *since);
    if let Some((_, p)) = oldest {
        p.evict();
    }
}

/// Why a connection ended (the `cause` label of `writ_http_connections_closed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The client closed it, or asked to (`Connection: close`), or sent what HTTP/1.1 cannot
    /// parse.
    Done,
    /// The head of a request did not arrive within the header timeout.
    HeaderTimeout,
    /// No request began within the idle timeout after the last answer.
    IdleTimeout,
    /// A request and its answer outlived the request timeout plus 2 s.
    ResponseTimeout,
    /// Closed to make room at the cap, with no request in progress.
    Cap,
    /// Closed by a stop, with no request begun.
    Stop,
    /// Still open when a stop's drain ended.
    Dropped,
}

impl Closed {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Closed::Done => "done",
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::ResponseTimeout => "response_timeout",
            Closed::Cap => "cap",
            Closed::Stop => "stop",
            Closed::Dropped => "dropped",
        }
    }
}

/// One open connection in the metrics: counted open while it lives; its cause when it ends,
/// `dropped` if its task is aborted first.
struct Open {
    metrics: Arc<Metrics>,
    closed: Closed,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection_closed(self.closed.as_str());
    }
}

async fn connection(
    stream: TcpStream,
    phase: Arc<Phase>,
    service: Service,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    metrics.connection_opened();
    let mut open = Open { metrics, closed: Closed::Dropped, _slot: slot };
    let io = TokioIo::new(Watched { inner: stream, phase: phase.clone() });
    let conn = hyper::server::conn::http1::Builder::new()
        // The deadlines above replace hyper's (module doc); without a timer it must be off.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stopped.borrow();
    if stopping {
        open.closed = Closed::Stop;
        return;
    }
    open.closed = loop {
        let (timer, _, _) = phase.deadline();
        tokio::select! {
            _ = conn.as_mut() => break Closed::Done,
            () = tokio::time::sleep_until(timer) => {
                // The phase may have moved on since the timer was armed.
                let (_, deadline, cause) = phase.deadline();
                if Instant::now() >= deadline {
                    break cause;
                }
            }
            () = phase.wake.notified() => {
                // Asked to make room: unless a request began meanwhile.
                if phase.evict.swap(false, Ordering::Relaxed) && phase.load().0 != BUSY {
                    break Closed::Cap;
                }
            }
            changed = stopped.changed(), if !stopping => {
                stopping = true;
                if changed.is_err() || phase.waiting() {
                    break Closed::Stop;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    tracing::debug!(cause = open.closed.as_str(), "connection closed");
}

/// A connection's phase (module doc): which one and since when.
struct Phase {
    // INVARIANT: `(phase << 62) | ms`, `ms` counted from `base` (the accept loop's start,
    // shared by every connection so that the loop can compare them); written by the
    // connection's own task only (hyper polls the socket, the service and the body inside
    // it) and read by it and by the accept loop, which only chooses whom to ask to close:
    // `Relaxed` suffices.
    word: AtomicU64,
    // Set by the accept loop to ask the connection to close at the cap; `wake` tells its task.
    evict: AtomicBool,
    // The answer's body is done (hyper dropped it), though its bytes may still be queued.
    answered: AtomicBool,
    // The last write to the socket could not proceed (the client does not read).
    blocked: AtomicBool,
    // The current answer is a long-lived stream (a feed): `busy` counts from its last write
    // that got through, so a stream that a client reads lives on and one it stops reading
    // is closed as any stuck answer is.
    streaming: AtomicBool,
    // When the current (or last) request's head was parsed, in ms from `base`.
    busy_since: AtomicU64,
    wake: Notify,
    base: Instant,
    header_ms: u64,
    idle_ms: u64,
    busy_ms: u64,
    // The shortest of the three: how far ahead the timer is ever armed.
    shortest_ms: u64,
}

const FRESH: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;
const IDLE: u64 = 3;
const MS_MASK: u64 = (1 << 62) - 1;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(MS_MASK).min(MS_MASK)
}

impl Phase {
    fn new(limits: &Limits, base: Instant) -> Self {
        let header_ms = millis(limits.header_timeout);
        let idle_ms = millis(limits.idle_timeout);
        let busy_ms = millis(limits.request_timeout + DRAIN_MARGIN);
        Phase {
            word: AtomicU64::new((FRESH << 62) | (millis(base.elapsed()) & MS_MASK)),
            evict: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            streaming: AtomicBool::new(false),
            busy_since: AtomicU64::new(0),
            wake: Notify::new(),
            base,
            header_ms,
            idle_ms,
            busy_ms,
            shortest_ms: header_ms.min(idle_ms).min(busy_ms).max(1),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.base.elapsed())
    }

    fn load(&self) -> (u64, u64) {
        let w = self.word.load(Ordering::Relaxed);
        (w >> 62, w & MS_MASK)
    }

    fn deadline_ms(&self, phase: u64, since: u64) -> (u64, Closed) {
        match phase {
            FRESH | HEAD => (since.saturating_add(self.header_ms), Closed::HeaderTimeout),
            BUSY => (since.saturating_add(self.busy_ms), Closed::ResponseTimeout),
            _ => (since.saturating_add(self.idle_ms), Closed::IdleTimeout),
        }
    }

    fn set(&self, phase: u64, since: u64) {
        self.word.store((phase << 62) | (since & MS_MASK), Ordering::Relaxed);
    }

    /// When to look again (the deadline, or one shortest timeout from now if sooner), the
    /// current phase's deadline, and what closing there means.
    fn deadline(&self) -> (Instant, Instant, Closed) {
        let (phase, since) = self.load();
        let (ms, cause) = self.deadline_ms(phase, since);
        let look = ms.min(self.now_ms().saturating_add(self.shortest_ms));
        (self.base + Duration::from_millis(look), self.base + Duration::from_millis(ms), cause)
    }

    fn evicted(&self) -> bool {
        self.evict.load(Ordering::Relaxed)
    }

    fn evict(&self) {
        self.evict.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// No request begun: nothing would be lost by closing.
    fn waiting(&self) -> bool {
        matches!(self.load().0, FRESH | IDLE)
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        match self.load() {
            // The first request's head counts from the accept.
            (FRESH, since) => self.set(HEAD, since),
            (IDLE, _) => self.set(HEAD, self.now_ms()),
            _ => {}
        }
    }

    /// A request's head is parsed: its handler runs.
    fn busy(&self) {
        let now = self.now_ms();
        self.answered.store(false, Ordering::Relaxed);
        self.streaming.store(false, Ordering::Relaxed);
        self.busy_since.store(now, Ordering::Relaxed);
        self.set(BUSY, now);
    }

    /// The answer's body is done (hyper dropped it): idle, unless its bytes are still stuck
    /// behind a client that does not read.
    fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
        if !self.blocked.load(Ordering::Relaxed) {
            self.set(IDLE, self.now_ms());
        }
    }

    /// A write to the socket could not proceed (`blocked`) or did.
    fn wrote<T>(&self, polled: &Poll<T>) {
        let blocked = polled.is_pending();
        let was = self.blocked.swap(blocked, Ordering::Relaxed);
        if !blocked && self.streaming.load(Ordering::Relaxed) && !self.answered.load(Ordering::Relaxed) {
            // A stream's bytes got through: its deadline counts from now.
            let now = self.now_ms();
            self.busy_since.store(now, Ordering::Relaxed);
            self.set(BUSY, now);
            return;
        }
        match (was, blocked, self.load().0) {
            // hyper drops a body once it has taken its last bytes, maybe before writing them:
            // an answer stuck behind a client that does not read is still that request's.
            (false, true, IDLE) => self.set(BUSY, self.busy_since.load(Ordering::Relaxed)),
            // The last bytes of an answer got through.
            (true, false, BUSY) if self.answered.load(Ordering::Relaxed) => self.set(IDLE, self.now_ms()),
            _ => {}
        }
    }
}

/// The socket, telling the phase when bytes arrive and whether writes get through.
struct Watched {
    inner: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.phase.wrote(&polled);
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.phase.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router as hyper's service, telling the phase when a request begins and (through the
/// answer's body) when it is over.
#[derive(Clone)]
struct Service {
    router: Router,
    phase: Arc<Phase>,
    peer: Peer,
}

/// The address a request came from, in its extensions (requests served by [`serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Peer(pub(crate) std::net::IpAddr);

/// Long-lived answers (event streams) held by each client address, bounded: one address
/// cannot take every slot of a route (found in review: anyone could hold the log stream's 64
/// and the feed's 256). A request with no known address (served in process) is not counted.
#[derive(Debug)]
pub(crate) struct PeerSlots {
    max: usize,
    held: std::sync::Mutex<std::collections::HashMap<Peer, usize>>,
}

/// One stream's place in its address's count, given back when dropped.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    slots: Arc<PeerSlots>,
    peer: Option<Peer>,
}

impl PeerSlots {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(PeerSlots { max, held: std::sync::Mutex::default() })
    }

    /// A place for one more stream of `peer`, or `None` when it holds `max` already.
    pub(crate) fn take(self: &Arc<Self>, peer: Option<Peer>) -> Option<PeerSlot> {
        if let Some(p) = peer {
            let mut held = self.held.lock().ok()?;
            let n = held.entry(p).or_default();
            if *n >= self.max {
                return None;
            }
            *n += 1;
        }
        Some(PeerSlot { slots: self.clone(), peer })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(p) = self.peer else { return };
        if let Ok(mut held) = self.slots.held.lock()
            && let Some(n) = held.get_mut(&p)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&p);
            }
        }
    }
}

type Answer = hyper::Response<Tracked>;

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.phase.busy();
        let phase = self.phase.clone();
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(self.peer);
        let answer = tower::ServiceExt::oneshot(self.router.clone(), request);
        Box::pin(async move {
            let answer = answer.await?;
            if answer.extensions().get::<crate::feed::Streaming>().is_some() {
                phase.streaming.store(true, Ordering::Relaxed);
            }
            Ok(answer.map(|body| Tracked { body, phase: Some(phase) }))
        })
    }
}

/// An answer's body: once hyper has taken all of it (or given up on it) and drops it, the
/// answer is done; the connection is idle once its bytes are through too.
struct Tracked {
    body: Body,
    phase: Option<Arc<Phase>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(phase) = self.phase.take() {
            phase.answered();
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
