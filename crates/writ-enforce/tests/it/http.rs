//! The Streamable HTTP gateway (`writ mcp --upstream URL --listen ADDR`, issue 15 part 4)
//! end to end, in process: the control plane of `support.rs`, a small scripted Streamable
//! HTTP upstream (below; it records every request it receives), and the test as the client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use writ_enforce::mcp::{Config, HttpOptions};

use crate::support::{ControlPlane, claims};

/// What the upstream received: method, the headers that matter, the body.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
    marker: Arc<Mutex<Option<PathBuf>>>,
}

impl Upstream {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn calls_of(&self, tool: &str) -> usize {
        self.seen().iter().filter(|s| s.body["method"] == "tools/call" && s.body["params"]["name"] == tool).count()
    }
}

fn sse(events: String) -> Response {
    Response::builder().header("content-type", "text/event-stream").body(Body::from(events)).unwrap()
}

fn json_answer(v: Value) -> Response {
    Response::builder().header("content-type", "application/json").body(Body::from(v.to_string())).unwrap()
}

/// The scripted upstream: initialize (JSON, session `sess-1`), tools/list (JSON), tools/call
/// of echo (an event stream: a progress notification, then the result echoing the call's
/// arguments and `_meta`), ask_roots (an event stream: a roots/list request, then the
/// result), fail (JSON, `isError`), garbage (`application/json` that is not JSON),
/// write_marker (creates the file it is given: must never happen); notifications and
/// responses get 202; GET is a stream with event `g1` (a roots/list request), or `g2` after
/// `Last-Event-ID: g1`, held open; DELETE gets 200.
async fn upstream(State(up): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let headers = ["mcp-session-id", "mcp-protocol-version", "authorization", "last-event-id", "accept"]
        .iter()
        .filter_map(|n| parts.headers.get(*n).map(|v| ((*n).to_owned(), v.to_str().unwrap().to_owned())))
        .collect();
    up.seen.lock().unwrap().push(Seen { method: parts.method.to_string(), headers, body: body.clone() });
    match parts.method.as_str() {
        "GET" => {
            let event = match parts.headers.get("last-event-id").map(|v| v.to_str().unwrap()) {
                None => {
                    "id: g1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"roots/list\"}\n\n"
                }
                Some(_) => {
                    "id: g2\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\r\ndata: \"params\":{\"level\":\"info\",\"data\":\"resumed\"}}\r\n\r\n"
                }
            };
            let stream = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(event))])
                .chain(futures_util::stream::pending());
            Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
        }
        "DELETE" => Response::new(Body::empty()),
        _ => {
            let (Some(method), Some(id)) = (body["method"].as_str(), body.get("id")) else {
                // Empty, yet said to be JSON, as the Python SDK's servers answer.
                return Response::builder()
                    .status(202)
                    .header("content-type", "application/json")
                    .body(Body::empty())
                    .unwrap();
            };
            let id = id.clone();
            match method {
                "initialize" => {
                    let mut r = json_answer(json!({"jsonrpc": "2.0", "id": id, "result": {
                        "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                        "serverInfo": {"name": "upstream", "version": "1"}}}));
                    r.headers_mut().insert("mcp-session-id", "sess-1".parse().unwrap());
                    r
                }
                "tools/list" => {
                    let tools: Vec<Value> = ["echo", "fail", "garbage", "write_marker", "ask_roots"]
                        .iter()
                        .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
                        .collect();
                    json_answer(json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}}))
                }
                "tools/call" => {
                    let p = &body["params"];
                    let text = json!({"arguments": p["arguments"], "meta": p["_meta"]}).to_string();
                    let result =
                        json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}});
                    match p["name"].as_str().unwrap_or_default() {
                        "echo" => {
                            let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                                                  "params": {"progressToken": 1, "progress": 1}});
                            sse(format!(
                                "id: c1\nevent: message\ndata: {progress}\n\nid: c2\nevent: message\ndata: {result}\n\n"
                            ))
                        }
                        "ask_roots" => {
                            let ask = json!({"jsonrpc": "2.0", "id": "srv-2", "method": "roots/list"});
                            sse(format!(": hello\n\nid: r1\ndata: {ask}\n\nid: r2\ndata: {result}\n\n"))
                        }
                        "fail" => {
                            json_answer(json!({"jsonrpc": "2.0", "id": id, "result": {"content": [], "isError": true}}))
                        }
                        "garbage" => Response::builder()
                            .header("content-type", "application/json")
                            .body(Body::from("this is not json"))
                            .unwrap(),
                        "write_marker" => {
                            if let Some(path) = up.marker.lock().unwrap().clone() {
                                std::fs::write(path, "written").unwrap();
                            }
                            json_answer(result)
                        }
                        _ => json_answer(result),
                    }
                }
                _ => json_answer(json!({"jsonrpc": "2.0", "id": id, "result": {}})),
            }
        }
    }
}

async fn start_upstream() -> (String, Upstream) {
    let up = Upstream::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(upstream).with_state(up.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, up)
}

/// A gateway in process in front of `upstream`; its base URL (`http://addr/mcp`).
async fn start_gateway(config: Config, upstream: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let options = HttpOptions { upstream: upstream.to_owned(), allowed_origins: vec!["https://app.example".into()] };
    tokio::spawn(writ_enforce::mcp::serve_http(config, options, listener, std::future::pending()));
    format!("http://{addr}/mcp")
}

fn config(cp: &ControlPlane) -> Config {
    let mut c = cp.config(std::path::Path::new("/nonexistent"));
    c.command = Vec::new();
    c
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Incoming,
}

impl Answer {
    async fn bytes(self) -> Bytes {
        tokio::time::timeout(Duration::from_secs(10), self.body.collect()).await.unwrap().unwrap().to_bytes()
    }
    async fn json(self) -> Value {
        let b = self.bytes().await;
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&b)))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn request(c: &HttpClient, method: &str, url: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let r = tokio::time::timeout(Duration::from_secs(10), c.request(b.body(Full::new(body)).unwrap()))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = r.into_parts();
    Answer { status: parts.status.as_u16(), headers: parts.headers, body }
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

async fn post(c: &HttpClient, url: &str, session: Option<&str>, msg: &Value) -> Answer {
    let mut headers = vec![ACCEPT, ("content-type", "application/json"), ("mcp-protocol-version", "2025-06-18")];
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
    }
    request(c, "POST", url, &headers, Bytes::from(msg.to_string())).await
}

fn call(id: i64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

/// The data of every event of a whole event stream, with its id.
fn events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            let id = e.lines().find_map(|l| l.strip_prefix("id: ")).map(str::to_owned);
            let data: Vec<&str> = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (!data.is_empty()).then(|| (id, serde_json::from_str(&data.join("\n")).unwrap()))
        })
        .collect()
}

/// Reads a held-open event stream until `want` bytes of it satisfy `done`.
async fn read_until(body: &mut Incoming, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame())
            .await
            .unwrap_or_else(|_| panic!("stream: nothing matched; got {:?}", String::from_utf8_lossy(&got)));
        let frame = frame.expect("the stream ended").unwrap();
        if let Ok(d) = frame.into_data() {
            got.extend_from_slice(&d);
        }
    }
    got
}

async fn outcomes_since(cp: &ControlPlane, start: u64, n: usize) -> Vec<Value> {
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        outcomes = cp.entries(start).await.into_iter().filter(|e| e["kind"] == "outcome").collect();
        if outcomes.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    outcomes
}

/// A POST of a body one byte over the bound over a raw connection (so that the test sees
/// the answer whatever happens to the rest of the body): with its length declared and no
/// byte of it sent, or streamed (chunked) until the gateway stops reading. The answer's text.
async fn huge_post(gw: &str, declared: bool) -> String {
    use std::io::{Read as _, Write as _};

    let addr = gw.trim_start_matches("http://").trim_end_matches("/mcp").to_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = writ_enforce::mcp::MAX_LINE + 1;
        if declared {
            write!(s, "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n")
                .unwrap();
        } else {
            write!(s, "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < n {
                let len = chunk.len().min(n - sent);
                let ok = write!(s, "{len:x}\r\n").is_ok() && s.write_all(&chunk[..len]).is_ok() && s.write_all(b"\r\n").is_ok();
                if !ok {
                    break;
                }
                sent += len;
            }
            let _ = s.write_all(b"0\r\n\r\n");
        }
        // The answer (its body is one JSON object), however the connection ends.
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !(answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}")) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => answer.extend_from_slice(&buf[..k]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap()
}

async fn initialize(c: &HttpClient, gw: &str) -> Answer {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    post(c, gw, None, &init).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_an_allowed_call_answered_in_an_event_stream_is_relayed_with_its_session_and_its_outcome_recorded() {
    let cp = ControlPlane::start().await;
    let (url, up) = start_upstream().await;
    let gw = start_gateway(config(&cp), &url).await;
    let c = client();

    let init = initialize(&c, &gw).await;
    assert_eq!(init.status, 200);
    assert_eq!(init.header("mcp-session-id").as_deref(), Some("sess-1"));
    let init = init.json().await;
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true, "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "upstream");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&c, &gw, Some("sess-1"), &note).await.status, 202);

    let before = cp.entries(0).await.len() as u64;
    let mut headers = vec![
        ACCEPT,
        ("mcp-session-id", "sess-1"),
        ("mcp-protocol-version", "2025-06-18"),
        ("authorization", "Bearer up"),
    ];
    headers.push(("content-type", "application/json"));
    let answer =
        request(&c, "POST", &gw, &headers, Bytes::from(call(1, "echo", json!({"message": "hi"})).to_string())).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type").as_deref(), Some("text/event-stream"));
    let raw = answer.bytes().await;
    // Every event as the upstream sent it, ids included.
    let evs = events(&raw);
    assert_eq!(evs.len(), 2, "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(evs[0].0.as_deref(), Some("c1"));
    assert_eq!(evs[0].1["method"], "notifications/progress");
    assert_eq!(evs[1].0.as_deref(), Some("c2"));
    let echoed: Value = serde_json::from_str(evs[1].1["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["arguments"], json!({"message": "hi"}));
    let writ = echoed["meta"]["dev.writ/writ"].as_str().unwrap();
    assert_eq!(claims(writ)["act"], "mcp:fixture/echo");
    let jti = claims(writ)["jti"].as_str().unwrap().to_owned();
    assert!(raw.starts_with(b"id: c1\nevent: message\ndata: {"), "{raw:?}");

    // The headers the protocol needs reached the upstream.
    let forwarded = up.seen().into_iter().find(|s| s.body["method"] == "tools/call").unwrap();
    assert_eq!(forwarded.header("mcp-session-id"), Some("sess-1"));
    assert_eq!(forwarded.header("mcp-protocol-version"), Some("2025-06-18"));
    assert_eq!(forwarded.header("authorization"), Some("Bearer up"));
    assert_eq!(forwarded.header("accept"), Some("application/json, text/event-stream"));

    // A JSON answer with isError: failed. Both outcomes recorded.
    let failed = post(&c, &gw, Some("sess-1"), &call(2, "fail", json!({}))).await.json().await;
    assert_eq!(failed["result"]["isError"], true);
    let outcomes = outcomes_since(&cp, before, 2).await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    let first = outcomes.iter().find(|o| o.to_string().contains(&jti)).unwrap();
    assert!(first.to_string().contains("succeeded"), "{first}");
    assert!(outcomes.iter().any(|o| o.to_string().contains("failed")), "{outcomes:?}");

    // A server-to-client request inside a call's stream passes through; the client's answer to
    // it (a POSTed response) gets 202 from the upstream.
    let raw = post(&c, &gw, Some("sess-1"), &call(3, "ask_roots", json!({}))).await.bytes().await;
    assert!(raw.starts_with(b": hello\n\nid: r1\ndata: {"), "{raw:?}");
    let evs = events(&raw);
    assert_eq!(evs[0].1["method"], "roots/list");
    assert_eq!(evs[1].1["id"], 3);
    let reply = json!({"jsonrpc": "2.0", "id": "srv-2", "result": {"roots": []}});
    assert_eq!(post(&c, &gw, Some("sess-1"), &reply).await.status, 202);
    assert!(up.seen().iter().any(|s| s.body["id"] == "srv-2" && s.body["result"]["roots"] == json!([])));

    // tools/list: write_marker (no permit) hidden.
    let list = post(&c, &gw, Some("sess-1"), &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})).await;
    let list = list.json().await;
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "fail", "garbage", "ask_roots"], "{list}");

    // DELETE reaches the upstream with the session.
    let deleted = request(&c, "DELETE", &gw, &[("mcp-session-id", "sess-1")], Bytes::new()).await;
    assert_eq!(deleted.status, 200);
    assert!(up.seen().iter().any(|s| s.method == "DELETE" && s.header("mcp-session-id") == Some("sess-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_a_denied_call_never_reaches_the_upstream() {
    let cp = ControlPlane::start().await;
    let (url, up) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    *up.marker.lock().unwrap() = Some(marker.clone());
    let gw = start_gateway(config(&cp), &url).await;
    let c = client();
    let answer = post(&c, &gw, Some("sess-1"), &call(7, "write_marker", json!({"path": "x"}))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type").as_deref(), Some("application/json"));
    let answer = answer.json().await;
    assert_eq!(answer["id"], 7);
    let w = &answer["result"]["structuredContent"]["writ"];
    assert_eq!(answer["result"]["isError"], true);
    assert_eq!(w["outcome"], "deny");
    assert_eq!(w["reason"], "policy.denied");
    assert!(w["decision"].is_string() && w["log_index"].is_u64(), "{w}");
    // A client that accepts only an event stream gets the same answer as one event.
    let body = Bytes::from(call(8, "write_marker", json!({"path": "x"})).to_string());
    let answer =
        request(&c, "POST", &gw, &[("accept", "text/event-stream"), ("content-type", "application/json")], body).await;
    assert_eq!(answer.header("content-type").as_deref(), Some("text/event-stream"));
    let evs = events(&answer.bytes().await);
    assert_eq!(evs[0].1["id"], 8);
    assert_eq!(evs[0].1["result"]["structuredContent"]["writ"]["outcome"], "deny");
    // A tools/call notification (no id) is refused, never forwarded.
    let note = json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "write_marker", "arguments": {}}});
    assert_eq!(post(&c, &gw, None, &note).await.status, 400);
    assert_eq!(up.calls_of("write_marker"), 0);
    assert!(!marker.exists());
    assert!(up.seen().iter().all(|s| s.body["method"] != "tools/call"), "{:?}", up.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_malformed_huge_and_foreign_requests_and_a_bad_upstream_get_clear_errors() {
    let cp = ControlPlane::start().await;
    let (url, up) = start_upstream().await;
    let gw = start_gateway(config(&cp), &url).await;
    let c = client();
    let json_headers = [ACCEPT, ("content-type", "application/json")];
    // Not JSON: 400, parse error, id null; not forwarded.
    let r = request(&c, "POST", &gw, &json_headers, Bytes::from_static(b"{\"jsonrpc\": \"2.0\", \"id\": 5, ")).await;
    assert_eq!(r.status, 400);
    let e = r.json().await;
    assert_eq!(e["error"]["code"], -32700, "{e}");
    assert_eq!(e["id"], Value::Null);
    // A batch: 400, an error per request.
    let batch = json!([{"jsonrpc": "2.0", "id": 11, "method": "ping"}]);
    let r = post(&c, &gw, None, &batch).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json().await[0]["error"]["code"], -32600);
    // Over the bound: 413, whether declared (answered before any of it is read) or streamed.
    assert!(huge_post(&gw, true).await.starts_with("HTTP/1.1 413"));
    let streamed = huge_post(&gw, false).await;
    assert!(streamed.starts_with("HTTP/1.1 413"), "{streamed}");
    assert!(streamed.contains("-32600"), "{streamed}");
    // A foreign origin: 403; loopback and allowed ones pass.
    let ping = Bytes::from(json!({"jsonrpc": "2.0", "id": 12, "method": "ping"}).to_string());
    let r = request(&c, "POST", &gw, &[ACCEPT, ("origin", "https://evil.example")], ping.clone()).await;
    assert_eq!(r.status, 403);
    for origin in ["http://localhost:6274", "http://127.0.0.1", "http://[::1]:8080", "https://app.example"] {
        let r = request(&c, "POST", &gw, &[ACCEPT, ("origin", origin)], ping.clone()).await;
        assert_eq!(r.status, 200, "{origin}");
        assert_eq!(r.json().await["id"], 12);
    }
    // Another path: 404; another method: 405.
    let other = gw.replace("/mcp", "/other");
    assert_eq!(request(&c, "POST", &other, &json_headers, ping.clone()).await.status, 404);
    assert_eq!(request(&c, "PUT", &gw, &json_headers, ping.clone()).await.status, 405);
    assert!(up.seen().iter().all(|s| s.body["id"] != 5 && s.body["id"] != 11), "{:?}", up.seen());

    // The upstream answers a call with JSON that is not: 502, a JSON-RPC error with the
    // call's id; the outcome is recorded as failed.
    let before = cp.entries(0).await.len() as u64;
    let r = post(&c, &gw, None, &call(13, "garbage", json!({}))).await;
    assert_eq!(r.status, 502);
    let e = r.json().await;
    assert_eq!(e["id"], 13);
    assert_eq!(e["error"]["code"], -32603);
    assert!(e["error"]["message"].as_str().unwrap().contains("not JSON"), "{e}");
    let outcomes = outcomes_since(&cp, before, 1).await;
    assert!(outcomes.iter().any(|o| o.to_string().contains("failed")), "{outcomes:?}");

    // The upstream down: 502 and a clear error with the request's id.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw2 = start_gateway(config(&cp), &format!("http://{closed}/mcp")).await;
    let r = post(&c, &gw2, None, &call(14, "echo", json!({}))).await;
    assert_eq!(r.status, 502);
    let e = r.json().await;
    assert_eq!(e["id"], 14);
    assert!(e["error"]["message"].as_str().unwrap().contains("cannot be reached"), "{e}");
    // And the gateway still serves.
    let r = post(&c, &gw, None, &json!({"jsonrpc": "2.0", "id": 15, "method": "ping"})).await;
    assert_eq!(r.json().await["id"], 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_a_control_plane_down_or_slow_denies() {
    let cp = ControlPlane::start().await;
    let (url, up) = start_upstream().await;
    let c = client();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut down = config(&cp);
    down.url = format!("http://{closed}");
    let gw = start_gateway(down, &url).await;
    let answer = post(&c, &gw, None, &call(1, "echo", json!({}))).await.json().await;
    let w = &answer["result"]["structuredContent"]["writ"];
    assert_eq!(w["reason"], "log.unavailable", "{answer}");

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            held.push(c);
        }
    });
    let mut slow = config(&cp);
    slow.url = format!("http://{addr}");
    slow.decision_timeout = Duration::from_millis(300);
    let gw = start_gateway(slow, &url).await;
    let started = Instant::now();
    let answer = post(&c, &gw, None, &call(2, "echo", json!({}))).await.json().await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let w = &answer["result"]["structuredContent"]["writ"];
    assert_eq!(w["reason"], "log.unavailable", "{answer}");
    assert!(w["detail"].as_str().unwrap().contains("did not decide within"), "{w}");
    holder.abort();
    assert_eq!(up.calls_of("echo"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_the_get_stream_keeps_its_event_ids_resumes_and_carries_list_changed() {
    let cp = ControlPlane::start().await;
    let (url, up) = start_upstream().await;
    let mut cfg = config(&cp);
    cfg.bundle_poll = Duration::from_millis(100);
    let gw = start_gateway(cfg, &url).await;
    let c = client();
    assert_eq!(initialize(&c, &gw).await.status, 200);
    let list = post(&c, &gw, Some("sess-1"), &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    assert_eq!(list.json().await["result"]["tools"].as_array().unwrap().len(), 4);

    let get = [("accept", "text/event-stream"), ("mcp-session-id", "sess-1")];
    let mut stream = request(&c, "GET", &gw, &get, Bytes::new()).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type").as_deref(), Some("text/event-stream"));
    let got = read_until(&mut stream.body, |b| b.ends_with(b"\n\n")).await;
    assert_eq!(
        got,
        b"id: g1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"roots/list\"}\n\n"
    );

    // Resumption: Last-Event-ID reaches the upstream, and its replay comes back as it was.
    let resume = [("accept", "text/event-stream"), ("mcp-session-id", "sess-1"), ("last-event-id", "g1")];
    let mut resumed = request(&c, "GET", &gw, &resume, Bytes::new()).await;
    let got = read_until(&mut resumed.body, |b| b.ends_with(b"\r\n\r\n")).await;
    assert!(got.starts_with(b"id: g2\r\ndata: {"), "{:?}", String::from_utf8_lossy(&got));
    assert!(up.seen().iter().any(|s| s.method == "GET" && s.header("last-event-id") == Some("g1")));
    drop(resumed);

    // A bundle that permits write_marker: list_changed on the session's GET stream.
    cp.activate_with_extra_policy(
        "@id(\"marker\")\npermit (principal, action == Writ::Action::\"mcp:fixture/write_marker\", resource);\n",
    )
    .await;
    let got = read_until(&mut stream.body, |b| b.ends_with(b"\n\n")).await;
    let evs = events(&got);
    assert_eq!(evs.len(), 1, "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(evs[0].0, None, "the gateway's own event has no id");
    assert_eq!(evs[0].1, json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    let list = post(&c, &gw, Some("sess-1"), &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    assert_eq!(list.json().await["result"]["tools"].as_array().unwrap().len(), 5);

    // A change while no GET stream is open: the notice waits for the next one.
    drop(stream);
    cp.activate_with_extra_policy(
        "@id(\"no-echo\")\nforbid (principal, action == Writ::Action::\"mcp:fixture/echo\", resource);\n",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut stream = request(&c, "GET", &gw, &get, Bytes::new()).await;
    let got = read_until(&mut stream.body, |b| b.windows(12).any(|w| w == b"list_changed")).await;
    assert!(String::from_utf8_lossy(&got).contains("notifications/tools/list_changed"), "{got:?}");
    let list = post(&c, &gw, Some("sess-1"), &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})).await;
    let list = list.json().await;
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fail", "garbage", "ask_roots"], "{list}");
}
