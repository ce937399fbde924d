//! Bounded connections over real sockets (`writ_server::serve` on loopback, in process):
//! a client that sends half a header is closed at the header timeout (trickling bytes does
//! not extend it); an idle keep-alive connection is closed at the idle timeout, and one
//! that keeps asking is not; past the connection cap the connection waiting longest with no
//! request in progress is closed to make room (so `/readyz` answers at once), and with
//! every slot in a request a new connection is not served until one is over; a stop closes
//! the connections with no request begun at once. The metrics count each.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use writ_server::{AppState, Limits, Metrics};

use crate::{fixture_with, rt};

/// A server on loopback in its own runtime, stopped when dropped.
pub(crate) struct Live {
    pub(crate) addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
    _rt: tokio::runtime::Runtime,
    pub(crate) fixture: crate::Fixture,
}

fn live(limits: Limits) -> Live {
    live_with(limits, |s| s)
}

/// A live server whose state `adjust` finishes.
pub(crate) fn live_with(limits: Limits, adjust: impl FnOnce(AppState) -> AppState) -> Live {
    let fixture = fixture_with(true, limits);
    let state = adjust(AppState::with_limits(fixture.engine.clone(), limits));
    let metrics = state.metrics().clone();
    let runtime = rt();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (finished, done) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        writ_server::serve(listener, state, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let _ = finished.send(());
    });
    Live { addr, metrics, stop: Some(stop), done, _rt: runtime, fixture }
}

impl Live {
    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics.render().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
            .unwrap_or(0.0)
    }

    /// Waits (at most 2 s) for a metric to reach `want`: a connection's end is counted just
    /// after its socket closes.
    fn wait_metric(&self, name: &str, want: f64) {
        let until = Instant::now() + Duration::from_secs(2);
        while self.metric(name) != want && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(self.metric(name), want, "{name} in:\n{}", self.metrics.render().unwrap());
    }

    pub(crate) fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Stops the server; returns how long `serve` took to return.
    pub(crate) fn stop(&mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        self.done.recv_timeout(Duration::from_secs(20)).unwrap();
        started.elapsed()
    }
}

fn limits(header_ms: u64, idle_ms: u64, max_connections: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
        ..Limits::default()
    }
}

/// Reads until the server closes the connection; returns what came and when it closed.
/// A read that times out (the server kept the socket) fails the test.
fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Instant::now()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, Instant::now()),
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

/// One keep-alive `GET` and its whole answer (the head and `Content-Length` bytes).
fn get(s: &mut TcpStream, path: &str) -> (u16, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: writ\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap();
            if raw.len() >= end + 4 + length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned());
            }
        }
    }
}

#[test]
fn half_a_header_is_cut_off_at_the_header_timeout() {
    let server = live(limits(600, 10_000, 64));
    let mut half = server.connect();
    let opened = Instant::now();
    half.write_all(b"POST /v1/authorize HTTP/1.1\r\nHost: writ\r\nContent-Ty").unwrap();
    // A slowloris: a byte every 100 ms does not extend the deadline.
    let mut trickle = server.connect();
    let trickled = Instant::now();
    let writer = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nHost: writ\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        trickle
    });
    let (got, closed) = until_closed(&mut half);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    let held = closed - opened;
    assert!(held >= Duration::from_millis(550) && held < Duration::from_millis(2500), "held {held:?}");
    let mut trickle = writer.join().unwrap();
    let (_, closed) = until_closed(&mut trickle);
    let held = closed - trickled;
    assert!(held < Duration::from_millis(2500), "a trickling client held its connection {held:?}");
    server.wait_metric("writ_http_connections_closed_total{cause=\"header_timeout\"}", 2.0);
    server.wait_metric("writ_http_connections_open", 0.0);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let server = live(limits(10_000, 700, 64));
    // Asking every 300 ms keeps a connection: the idle timeout counts from the last answer.
    let mut busy = server.connect();
    for _ in 0..5 {
        assert_eq!(get(&mut busy, "/healthz").0, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(get(&mut busy, "/healthz").0, 200, "a connection in use outlived the idle timeout");
    let answered = Instant::now();
    let (got, closed) = until_closed(&mut busy);
    assert!(got.is_empty());
    let idle = closed - answered;
    assert!(idle >= Duration::from_millis(650) && idle < Duration::from_millis(2500), "idle {idle:?}");
    server.wait_metric("writ_http_connections_closed_total{cause=\"idle_timeout\"}", 1.0);
    assert_eq!(server.metric("writ_http_connections_closed_total{cause=\"header_timeout\"}"), 0.0);
}

#[test]
fn past_the_cap_the_connection_waiting_longest_makes_room() {
    let server = live(limits(30_000, 30_000, 4));
    // Four slots: two clients that say nothing (the oldest first), two idle after a request.
    let mut silent: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    server.wait_metric("writ_http_connections_open", 2.0);
    let mut idle: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    for s in &mut idle {
        assert_eq!(get(s, "/healthz").0, 200);
    }
    server.wait_metric("writ_http_connections_open", 4.0);
    // A fifth is served at once: the oldest silent one is closed for it, not a timeout later.
    let asked = Instant::now();
    let mut fifth = server.connect();
    fifth.write_all(b"GET /readyz HTTP/1.1\r\nHost: writ\r\nConnection: close\r\n\r\n").unwrap();
    let (answer, _) = until_closed(&mut fifth);
    let waited = asked.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"ready\":true"), "{answer}");
    assert!(waited < Duration::from_millis(1000), "waited {waited:?}");
    assert!(until_closed(&mut silent[0]).0.is_empty());
    server.wait_metric("writ_http_connections_closed_total{cause=\"cap\"}", 1.0);
    server.wait_metric("writ_http_connections_open", 3.0);
    assert!(server.metric("writ_http_connection_cap_waits_total") >= 1.0);
    assert_eq!(server.metric("writ_http_connections_max"), 4.0);
    // The others are untouched.
    assert_eq!(get(&mut idle[1], "/healthz").0, 200);
    drop(silent);
}

/// With every slot in a request (heads sent, bodies stalled), a new connection is not
/// served until one of them is over: their request timeout answers them `503`, and the
/// one waiting longest then makes room.
#[test]
fn past_the_cap_with_every_connection_in_a_request_a_new_one_waits() {
    let server = live(Limits { request_timeout: Duration::from_millis(1000), ..limits(30_000, 30_000, 2) });
    let mut stalled: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    for s in &mut stalled {
        s.write_all(b"POST /v1/verify HTTP/1.1\r\nHost: writ\r\nContent-Length: 100\r\n\r\n{\"writ\"").unwrap();
    }
    server.wait_metric("writ_http_connections_open", 2.0);
    let asked = Instant::now();
    let mut third = server.connect();
    third.write_all(b"GET /readyz HTTP/1.1\r\nHost: writ\r\nConnection: close\r\n\r\n").unwrap();
    third.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
    let mut first = [0u8; 1];
    let early = third.read(&mut first);
    assert!(early.is_err(), "served past the cap: {early:?}");
    assert_eq!(server.metric("writ_http_connections_open"), 2.0);
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (answer, _) = until_closed(&mut third);
    let waited = asked.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"ready\":true"), "{answer}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(3000), "waited {waited:?}");
    for s in &mut stalled {
        let (got, _) = until_closed(s);
        let got = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 503"), "{got}");
    }
    assert!(server.metric("writ_http_connection_cap_waits_total") >= 1.0);
}

#[test]
fn a_stop_closes_connections_without_a_request_at_once() {
    let mut server = live(limits(30_000, 30_000, 64));
    let mut silent = server.connect();
    let mut idle = server.connect();
    assert_eq!(get(&mut idle, "/healthz").0, 200);
    server.wait_metric("writ_http_connections_open", 2.0);
    let took = server.stop();
    assert!(took < Duration::from_secs(2), "the stop waited {took:?} for connections with no request");
    assert!(until_closed(&mut silent).0.is_empty());
    assert!(until_closed(&mut idle).0.is_empty());
    server.wait_metric("writ_http_connections_closed_total{cause=\"stop\"}", 2.0);
    assert!(TcpStream::connect(server.addr).is_err(), "the listener is closed");
}

/// A client that asks for a large answer and never reads it: the connection is closed at
/// the request timeout plus 2 s, whatever hyper still has to write.
#[test]
fn an_answer_never_read_is_cut_off_at_the_request_timeout_plus_the_margin() {
    let server = live(Limits { request_timeout: Duration::from_millis(500), ..limits(30_000, 30_000, 64) });
    // Forty recorded decisions of about 60 KiB each: the entries answer is megabytes.
    let token = server.fixture.workload("spiffe://demo.example/agent/billing-1", "billing");
    let big: serde_json::Map<String, serde_json::Value> =
        (0..3).map(|i| (format!("blob{i}"), json!("x".repeat(15_000)))).collect();
    for _ in 0..40 {
        let (_, d) = server.fixture.json(
            "POST",
            "/v1/authorize",
            Some(json!({"credentials": {"workload": token}, "action": "read", "resource": "fs:/zones/billing", "arguments": big})),
        );
        assert!(d["log_index"].is_u64(), "{d}");
    }
    let mut reader = server.connect();
    let asked = Instant::now();
    reader.write_all(b"GET /v1/log/entries?start=0&end=41 HTTP/1.1\r\nHost: writ\r\n\r\n").unwrap();
    server.wait_metric("writ_http_connections_open", 1.0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.metric("writ_http_connections_open"), 1.0, "closed before its bound");
    let until = Instant::now() + Duration::from_secs(4);
    while server.metric("writ_http_connections_closed_total{cause=\"response_timeout\"}") < 1.0
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = asked.elapsed();
    assert_eq!(server.metric("writ_http_connections_closed_total{cause=\"response_timeout\"}"), 1.0);
    assert!(took >= Duration::from_millis(2400) && took < Duration::from_millis(4500), "closed after {took:?}");
    server.wait_metric("writ_http_connections_open", 0.0);
    drop(reader);
}
