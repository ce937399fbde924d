//! The example server as an agent's MCP client meets it behind `writ mcp`: a real control
//! plane (`writ_server::serve` on loopback, a bundle declaring `mcp:notes/write_note` and
//! `mcp:notes/read_note`), writs obtained with `POST /v1/authorize` (audience `mcp:notes`),
//! and `writ-mcp-tool-server` run as a child process, spoken to over stdio in JSON-RPC lines
//! (MCP 2025-06-18, the gateway's revision). What must not happen is checked on disk: a
//! refused call writes no file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use writ_core::SpiffeId;
use writ_engine::SystemClock;
use writ_engine::testkit::TestEngine;
use writ_identity::{DevIssuer, IssueRequest};
use writ_policy::{Bundle, sign_bundle};
use writ_server::AppState;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

const SCHEMA: &str = r#"namespace Writ {
  entity Agent = { "trust_domain": String, "zone": String };
  entity Resource = { "zone"?: String, "kind"?: String };
  type Lineage = { "depth": Long, "root": String, "parent_action"?: String };
  type Usage = { "last_minute": Long, "last_hour": Long };
  type Runtime = { "measurement": String, "environment": String, "region": String };
  action "mcp:notes/write_note" appliesTo {
    principal: [Agent], resource: [Resource],
    context: { "now": datetime, "lineage": Lineage, "usage": Usage, "runtime"?: Runtime,
               "arguments": { "path": String, "content": String } },
  };
  action "mcp:notes/read_note" appliesTo {
    principal: [Agent], resource: [Resource],
    context: { "now": datetime, "lineage": Lineage, "usage": Usage, "runtime"?: Runtime,
               "arguments": { "path": String } },
  };
}
"#;

const POLICIES: &str = r#"
@id("notes") @reason("agents may read and write notes")
permit (principal,
        action in [Writ::Action::"mcp:notes/write_note", Writ::Action::"mcp:notes/read_note"],
        resource == Writ::Resource::"mcp:notes");
"#;

/// A control plane with the notes bundle active, on a loopback port.
struct ControlPlane {
    url: String,
    workloads: DevIssuer,
    operators: DevIssuer,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn control_plane() -> ControlPlane {
    let TestEngine { engine, issuer: workloads, operators, policy_key, dir } = TestEngine::open(Arc::new(SystemClock));
    let manifest = r#"{"name": "notes-example", "version": "1.0.0"}"#;
    let entities =
        r#"[{"uid": {"type": "Writ::Resource", "id": "mcp:notes"}, "attrs": {"kind": "mcp"}, "parents": []}]"#;
    let bundle = Bundle::from_parts(manifest, POLICIES, SCHEMA, Some(entities), None).unwrap();
    engine.activate(&bundle, &sign_bundle(&bundle, &policy_key).unwrap(), None).await.unwrap();
    let state = AppState::new(Arc::new(engine));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(writ_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    ControlPlane { url, workloads, operators, _dir: dir, _stop: stop }
}

impl ControlPlane {
    fn credential(issuer: &DevIssuer, subject: &str, zone: Option<&str>) -> String {
        let subject = SpiffeId::parse(subject).unwrap();
        let mut extra = Map::new();
        if let Some(zone) = zone {
            extra.insert("zone".into(), json!(zone));
        }
        issuer
            .issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 600,
                extra_claims: extra,
                now: now(),
            })
            .unwrap()
    }

    /// `POST path` with a JSON body and a bearer credential; the status and the JSON answer.
    async fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        use http_body_util::{BodyExt as _, Full};
        let addr = self.url.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut request = hyper::Request::post(path).header("host", addr).header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(hyper::body::Bytes::from(serde_json::to_vec(body).unwrap()))).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A writ for calling `tool` with `arguments` on the server named `notes`, as the gateway
    /// obtains it; with its `jti`.
    async fn authorize(&self, tool: &str, arguments: Value) -> (String, String) {
        self.authorize_for(tool, arguments, "mcp:notes").await
    }

    async fn authorize_for(&self, tool: &str, arguments: Value, audience: &str) -> (String, String) {
        let workload = Self::credential(&self.workloads, "spiffe://demo.example/agent/notes-1", Some("notes"));
        let body = json!({"credentials": {"workload": workload}, "action": format!("mcp:notes/{tool}"),
                          "resource": "mcp:notes", "arguments": arguments, "audience": audience});
        let (status, answer) = self.post("/v1/authorize", None, &body).await;
        assert_eq!(status, 200, "{answer}");
        let writ = answer["writ"].as_str().unwrap_or_else(|| panic!("not allowed: {answer}")).to_owned();
        (writ, answer["id"].as_str().unwrap().to_owned())
    }

    async fn revoke(&self, jti: &str) {
        let operator = Self::credential(&self.operators, "spiffe://demo.example/operator/alice", None);
        let (status, answer) =
            self.post("/v1/revocations", Some(&operator), &json!({"jti": jti, "reason": "test"})).await;
        assert_eq!(status, 200, "{answer}");
    }
}

/// The example server as a child process, spoken to in JSON-RPC lines.
struct NotesServer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl NotesServer {
    /// Starts it on `dir` against the control plane at `url`, initializes the session and
    /// waits until its revocation feed is connected.
    async fn start(url: &str, dir: &Path) -> NotesServer {
        Self::start_with(url, dir, &[], true).await
    }

    /// Starts it with more flags; waits for the feed only if `feed` is set.
    async fn start_with(url: &str, dir: &Path, flags: &[&str], feed: bool) -> NotesServer {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_writ-mcp-tool-server"))
            .args(["--name", "notes", "--url", url, "--dir"])
            .arg(dir)
            .args(flags)
            .env("WRIT_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        // Its log, relayed to the test's output; the feed's connection is awaited there.
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let (connected, ready) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut connected = Some(connected);
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("[server] {line}");
                if line.contains("revocation feed connected")
                    && let Some(tx) = connected.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        let mut server = NotesServer { child, stdin, stdout, next_id: 1 };
        let init = server
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "writ-example-test", "version": "0"}}),
            )
            .await;
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
        server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        if feed {
            tokio::time::timeout(LIMIT, ready).await.expect("the feed never connected").unwrap();
        }
        server
    }

    async fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Sends a request; its answer (notifications on the way are skipped).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        tokio::time::timeout(LIMIT, async {
            loop {
                let line = self.stdout.next_line().await.unwrap().expect("the server closed its output");
                let message: Value = serde_json::from_str(&line).unwrap();
                if message["id"] == json!(id) {
                    return message;
                }
            }
        })
        .await
        .expect("no answer in time")
    }

    /// `tools/call`, with the writ in `_meta["dev.writ/writ"]` when given; the result.
    async fn call(&mut self, tool: &str, arguments: Value, writ: Option<&str>) -> Value {
        let mut params = json!({"name": tool, "arguments": arguments});
        if let Some(writ) = writ {
            params["_meta"] = json!({"dev.writ/writ": writ, "dev.writ/decision": {"id": "w-test", "log_index": 0}});
        }
        let answer = self.request("tools/call", params).await;
        answer.get("result").cloned().unwrap_or_else(|| panic!("not a result: {answer}"))
    }
}

impl Drop for NotesServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The reason code of a refused call (and checks the refusal's shape).
fn refused(result: &Value) -> String {
    assert_eq!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    let reason = result["structuredContent"]["writ"]["reason"].as_str().unwrap().to_owned();
    assert!(text.starts_with(&format!("writ refused this call: {reason}: ")), "{text}");
    reason
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A call with its writ runs (the file is written, then read back with a writ of its own);
/// the same writ presented again is refused `writ.replayed` and writes nothing.
#[test]
fn a_call_with_its_writ_runs_once() {
    rt().block_on(async {
        let cp = control_plane().await;
        let dir = tempfile::tempdir().unwrap();
        let mut server = NotesServer::start(&cp.url, dir.path()).await;
        let tools = server.request("tools/list", json!({})).await;
        let names: Vec<&str> =
            tools["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["read_note", "write_note"]);

        let arguments = json!({"path": "todo/today.txt", "content": "buy milk"});
        let (writ, _) = cp.authorize("write_note", arguments.clone()).await;
        let result = server.call("write_note", arguments.clone(), Some(&writ)).await;
        assert_eq!(result["isError"], false, "{result}");
        let file = dir.path().join("todo/today.txt");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "buy milk");

        let read = json!({"path": "todo/today.txt"});
        let (writ_read, _) = cp.authorize("read_note", read.clone()).await;
        let result = server.call("read_note", read, Some(&writ_read)).await;
        assert_eq!(result["content"][0]["text"], "buy milk", "{result}");

        // Replayed: the file, removed, is not written again.
        std::fs::remove_file(&file).unwrap();
        let result = server.call("write_note", arguments, Some(&writ)).await;
        assert_eq!(refused(&result), "writ.replayed");
        assert!(!file.exists(), "a replayed writ ran the tool");
    });
}

/// Without a writ, with a writ for other arguments, for another server, or for another tool,
/// the tool does not run. A path leaving the directory is refused by the tool itself, writ
/// or not.
#[test]
fn calls_without_their_writ_do_not_run() {
    rt().block_on(async {
        let cp = control_plane().await;
        let dir = tempfile::tempdir().unwrap();
        let mut server = NotesServer::start(&cp.url, dir.path()).await;
        let target = dir.path().join("a.txt");

        let arguments = json!({"path": "a.txt", "content": "x"});
        assert_eq!(refused(&server.call("write_note", arguments.clone(), None).await), "writ.bad_signature");
        assert!(!target.exists());

        // A writ for other arguments (another content): the binding is recomputed from the call.
        let (writ, _) = cp.authorize("write_note", json!({"path": "a.txt", "content": "y"})).await;
        assert_eq!(refused(&server.call("write_note", arguments.clone(), Some(&writ)).await), "writ.binding_mismatch");
        assert!(!target.exists());

        // A writ for reading presented for writing the same path.
        let (read_writ, _) = cp.authorize("read_note", json!({"path": "a.txt"})).await;
        let result = server.call("write_note", json!({"path": "a.txt"}), Some(&read_writ)).await;
        assert_eq!(refused(&result), "writ.binding_mismatch");

        // A writ for the same call on another server (audience).
        let (other, _) = cp.authorize_for("write_note", arguments.clone(), "mcp:other").await;
        assert_eq!(refused(&server.call("write_note", arguments, Some(&other)).await), "writ.audience");
        assert!(!target.exists());

        // Not a JWS at all.
        let result = server.call("write_note", json!({"path": "a.txt", "content": "x"}), Some("not-a-writ")).await;
        assert_eq!(refused(&result), "writ.bad_signature");
        assert!(!target.exists());

        // Allowed by policy, verified, and still refused by the tool: no escape from --dir.
        let escape = json!({"path": "../escaped.txt", "content": "x"});
        let (writ, _) = cp.authorize("write_note", escape.clone()).await;
        let result = server.call("write_note", escape, Some(&writ)).await;
        assert_eq!(result["isError"], true, "{result}");
        assert!(result.get("structuredContent").is_none(), "{result}");
        assert!(!dir.path().parent().unwrap().join("escaped.txt").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing at all was written");
    });
}

/// A writ revoked after it was issued (`POST /v1/revocations`) is refused `writ.revoked`
/// through the server's revocation feed, and the file is not written.
#[test]
fn a_revoked_writ_is_refused_through_the_feed() {
    rt().block_on(async {
        let cp = control_plane().await;
        let dir = tempfile::tempdir().unwrap();
        let mut server = NotesServer::start(&cp.url, dir.path()).await;
        let arguments = json!({"path": "revoked.txt", "content": "x"});
        let (writ, jti) = cp.authorize("write_note", arguments.clone()).await;
        cp.revoke(&jti).await;
        // Probes revoked after it: once one of them is refused `writ.revoked`, the server's
        // view holds a snapshot at least as new, so it holds this revocation too. A probe
        // accepted before that is a harmless read.
        std::fs::write(dir.path().join("probe.txt"), "p").unwrap();
        let mut seen = false;
        for _ in 0..20 {
            let (probe, probe_jti) = cp.authorize("read_note", json!({"path": "probe.txt"})).await;
            cp.revoke(&probe_jti).await;
            let result = server.call("read_note", json!({"path": "probe.txt"}), Some(&probe)).await;
            if result["isError"] == true {
                assert_eq!(refused(&result), "writ.revoked");
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "no revocation reached the server through its feed");
        assert_eq!(refused(&server.call("write_note", arguments, Some(&writ)).await), "writ.revoked");
        assert!(!dir.path().join("revoked.txt").exists(), "a revoked writ ran the tool");
    });
}

/// With no control plane to follow (its writ keys pinned from a file, its feed unreachable),
/// the server cannot rule out a revocation: a writ that is otherwise good is refused
/// `writ.revoked` and nothing is written.
#[test]
fn no_feed_means_no_call() {
    rt().block_on(async {
        let cp = control_plane().await;
        let dir = tempfile::tempdir().unwrap();
        let jwks = writ_verify::ControlPlane::new(&cp.url).unwrap().get("/.well-known/jwks.json").await.unwrap();
        let keys = dir.path().join("jwks.json");
        std::fs::write(&keys, &jwks).unwrap();
        let notes = dir.path().join("notes");
        // A port nothing listens on.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let mut server =
            NotesServer::start_with(&dead, &notes, &["--jwks", keys.to_str().unwrap(), "--max-staleness", "2"], false)
                .await;
        let arguments = json!({"path": "a.txt", "content": "x"});
        let (writ, _) = cp.authorize("write_note", arguments.clone()).await;
        let result = server.call("write_note", arguments, Some(&writ)).await;
        assert_eq!(refused(&result), "writ.revoked", "{result}");
        assert!(!notes.join("a.txt").exists());
    });
}
