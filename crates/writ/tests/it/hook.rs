//! `writ hook claude-code` and `writ hook exec-request` as processes, against a live
//! `writ serve` with the starter bundle: recorded Claude Code events (fixtures/hooks/) for a
//! shell command, a file edit, an MCP tool and a sub-agent launch, each allowed and each
//! denied; the outcome recorded by PostToolUse; a sub-agent's actions as lineage children of
//! its launch; and the hook failing closed (exit status 2) on a malformed event, an
//! unreachable control plane and one that never answers.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::serve::http_as;
use crate::support::{Server, issue, start_server};

const AGENT: &str = "spiffe://demo.example/agent/billing-1";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/hooks").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// One hook run: `writ hook ARGS` with `input` on standard input.
fn hook(keys: &Path, url: &str, credential: &str, state: &Path, args: &[&str], input: &[u8]) -> Output {
    hook_under(None, keys, url, credential, state, args, input)
}

/// [`hook`] with `WRIT_PARENT_WRIT` set to `parent`, if any; `keys` is the writ key file
/// trusted (`WRIT_JWKS`).
fn hook_under(
    parent: Option<&str>,
    keys: &Path,
    url: &str,
    credential: &str,
    state: &Path,
    args: &[&str],
    input: &[u8],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_writ"));
    command.env_remove("WRIT_PARENT_WRIT");
    if let Some(p) = parent {
        command.env("WRIT_PARENT_WRIT", p);
    }
    let mut child = command
        .arg("hook")
        .args(args)
        .env("WRIT_URL", url)
        .env("WRIT_JWKS", keys)
        .env("WRIT_AGENT_CREDENTIAL", credential)
        .env("WRIT_HOOK_STATE_DIR", state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hook that refuses its arguments may exit before it reads its input.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

struct Agent {
    _dir: tempfile::TempDir,
    server: Server,
    url: String,
    credential: String,
    state: tempfile::TempDir,
}

fn agent() -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let url = format!("http://{}", server.addr);
    let credential = issue(dir.path(), AGENT, "billing");
    Agent { _dir: dir, server, url, credential, state: tempfile::tempdir().unwrap() }
}

impl Agent {
    /// The server's writ keys, as the hooks are given them.
    fn keys(&self) -> std::path::PathBuf {
        self._dir.path().join("trust/jwks.json")
    }

    fn claude(&self, event: &Value) -> Output {
        hook(
            &self.keys(),
            &self.url,
            &self.credential,
            self.state.path(),
            &["claude-code"],
            event.to_string().as_bytes(),
        )
    }

    fn exec_request(&self, request: &Value) -> Output {
        hook(
            &self.keys(),
            &self.url,
            &self.credential,
            self.state.path(),
            &["exec-request"],
            request.to_string().as_bytes(),
        )
    }

    /// The decision a PreToolUse answer printed: (permissionDecision, reason).
    fn decide(&self, event: &Value) -> (String, String) {
        let o = self.claude(event);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{event}: {stderr}");
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        let out = &v["hookSpecificOutput"];
        assert_eq!(out["hookEventName"], "PreToolUse");
        (
            out["permissionDecision"].as_str().unwrap().to_owned(),
            out["permissionDecisionReason"].as_str().unwrap().to_owned(),
        )
    }

    /// The log entry at `index`, decoded.
    fn entry(&self, index: u64) -> Option<Value> {
        let (status, body) =
            http_as(&self.server.addr, "GET", &format!("/v1/log/entries?start={index}&end={}", index + 1), None, None);
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_slice(&body).ok()?;
        let b64 = v["entries"].get(0)?["entry_base64"].as_str()?.to_owned();
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
    }

    /// Every log entry, in order.
    fn entries(&self) -> Vec<Value> {
        (0..).map_while(|i| self.entry(i)).collect()
    }
}

/// The decision id and log index in an allow's or deny's reason.
fn decision_of(reason: &str) -> (String, u64) {
    let id = reason.split("decision ").nth(1).unwrap().split([',', ')', ' ']).next().unwrap().to_owned();
    let index =
        reason.split("log index ").nth(1).map(|s| s.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().unwrap());
    (id, index.unwrap_or(u64::MAX))
}

#[test]
fn recorded_events_are_allowed_and_denied_by_the_starter_bundle() {
    let a = agent();
    for name in ["bash-allow.json", "edit-allow.json", "mcp-allow.json", "agent-allow.json"] {
        let (decision, reason) = a.decide(&fixture(name));
        assert_eq!(decision, "allow", "{name}: {reason}");
        assert!(reason.starts_with("writ allowed ") && reason.contains("decision w-"), "{name}: {reason}");
    }
    // The mapping the policy saw, as the log recorded it.
    let (_, reason) = a.decide(&fixture("edit-allow.json"));
    let entry = a.entry(decision_of(&reason).1).unwrap();
    assert_eq!(entry["request"]["action"], "write");
    assert_eq!(entry["request"]["resource"], "fs:/zones/billing");
    assert_eq!(entry["request"]["arguments"]["path"], "/zones/billing/notes/todo.md");
    assert_eq!(entry["request"]["arguments"]["tool"], "Edit");

    for (name, reason_code) in [
        ("bash-deny.json", "policy.denied"),
        ("edit-deny.json", "policy.denied"),
        // An MCP tool the schema does not declare.
        ("mcp-deny.json", "policy.denied"),
    ] {
        let (decision, reason) = a.decide(&fixture(name));
        assert_eq!(decision, "deny", "{name}: {reason}");
        assert!(reason.starts_with(&format!("writ denied this call: {reason_code}: ")), "{name}: {reason}");
        assert!(reason.contains("(decision w-"), "{name}: the decision is in the log: {reason}");
    }
    // The fs server's declared tool, outside what the policy permits.
    let mut outside = fixture("mcp-allow.json");
    outside["tool_input"]["path"] = json!("/etc/shadow");
    assert_eq!(a.decide(&outside).0, "deny");
    // A tool the bundle does not declare at all.
    let mut todo = fixture("edit-allow.json");
    todo["tool_name"] = json!("TodoWrite");
    todo["tool_input"] = json!({"todos": [{"content": "x", "status": "pending"}]});
    let (decision, reason) = a.decide(&todo);
    assert_eq!(decision, "deny");
    assert!(reason.contains("policy.denied"), "{reason}");
}

#[test]
fn a_sub_agents_actions_are_lineage_children_of_its_launch_and_depth_is_bounded() {
    let a = agent();
    // A sub-agent event with no launch this hook authorized: no lineage, no call.
    let orphan = fixture("agent-deny.json");
    let o = a.claude(&orphan);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lineage.parent_unknown"));

    let (decision, reason) = a.decide(&fixture("agent-allow.json"));
    assert_eq!(decision, "allow", "{reason}");
    let (launch, _) = decision_of(&reason);
    // The sub-agent reads: a child of its launch.
    let mut read = fixture("edit-allow.json");
    read["tool_name"] = json!("Read");
    read["tool_input"] = json!({"file_path": "/zones/billing/ledger.csv"});
    read["tool_use_id"] = json!("toolu_sub_read");
    read["agent_id"] = json!("sub-1");
    read["agent_type"] = json!("general-purpose");
    let (decision, reason) = a.decide(&read);
    assert_eq!(decision, "allow", "{reason}");
    let entry = a.entry(decision_of(&reason).1).unwrap();
    assert_eq!(entry["request"]["parent"], json!(launch), "{entry}");
    assert_eq!(entry["writ"]["dep"], 1, "{entry}");

    // Sub-agents launching sub-agents: depths 1 and 2 are allowed, 3 is not (spawn-depth).
    let launch_from = |agent_id: &str, tool_use_id: &str| {
        let mut e = fixture("agent-deny.json");
        e["agent_id"] = json!(agent_id);
        e["tool_use_id"] = json!(tool_use_id);
        a.decide(&e)
    };
    assert_eq!(launch_from("sub-1", "toolu_l1").0, "allow");
    assert_eq!(launch_from("sub-2", "toolu_l2").0, "allow");
    let (decision, reason) = a.decide(&{
        let mut e = fixture("agent-deny.json");
        e["agent_id"] = json!("sub-3");
        e
    });
    assert_eq!(decision, "deny", "{reason}");
    assert!(reason.contains("policy.denied"), "{reason}");
}

#[test]
fn post_tool_use_records_the_outcome_once() {
    let a = agent();
    let (decision, reason) = a.decide(&fixture("bash-allow.json"));
    assert_eq!(decision, "allow", "{reason}");
    let (jti, _) = decision_of(&reason);
    let post = fixture("bash-post.json");
    let o =
        hook(&a.keys(), &a.url, &a.credential, a.state.path(), &["claude-code", "--post"], post.to_string().as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let outcomes: Vec<Value> =
        a.entries().into_iter().filter(|e| e["kind"] == "outcome" && e["jti"] == json!(jti)).collect();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0]["status"], "succeeded");
    let detail: Value = serde_json::from_str(outcomes[0]["detail"].as_str().unwrap()).unwrap();
    assert!(detail["result"].as_str().unwrap().starts_with("sha256:"), "{detail}");
    assert_eq!(detail["tool"], "Bash");
    // The same PostToolUse again: no writ left for it, said on standard error.
    let o = a.claude(&post);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("without a writ"), "{}", String::from_utf8_lossy(&o.stderr));
    // A failed tool (PostToolUseFailure), matched without a tool_use_id.
    let mut pre = fixture("edit-allow.json");
    pre.as_object_mut().unwrap().remove("tool_use_id");
    assert_eq!(a.decide(&pre).0, "allow");
    let mut failure = pre.clone();
    failure["hook_event_name"] = json!("PostToolUseFailure");
    failure["error"] = json!("old_string not found");
    let o = a.claude(&failure);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(a.entries().iter().any(|e| e["kind"] == "outcome" && e["status"] == "failed"));
}

#[test]
fn the_hook_fails_closed_with_exit_status_2() {
    let a = agent();
    let event = fixture("edit-allow.json");
    // A malformed event, and one without a required field.
    for input in [b"{\"session_id\": ".to_vec(), json!({"hook_event_name": "PreToolUse"}).to_string().into_bytes()] {
        let o = hook(&a.keys(), &a.url, &a.credential, a.state.path(), &["claude-code"], &input);
        assert_eq!(o.status.code(), Some(2));
        assert!(o.stdout.is_empty());
        assert!(String::from_utf8_lossy(&o.stderr).contains("request.malformed"));
    }
    // A credential that is not one.
    let o = hook(&a.keys(), &a.url, "not a jwt", a.state.path(), &["claude-code"], event.to_string().as_bytes());
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    // No credential at all.
    let o = Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["hook", "claude-code", "--url", &a.url])
        .env_remove("WRIT_AGENT_CREDENTIAL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("identity.missing"));

    // An unreachable control plane: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = hook(
        &a.keys(),
        &format!("http://127.0.0.1:{port}"),
        &a.credential,
        a.state.path(),
        &["claude-code"],
        event.to_string().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("log.unavailable"));

    // A control plane that accepts and never answers: denied at the deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let started = Instant::now();
    let o = hook(
        &a.keys(),
        &url,
        &a.credential,
        a.state.path(),
        &["claude-code", "--decision-timeout", "700ms"],
        event.to_string().as_bytes(),
    );
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("log.unavailable") && stderr.contains("did not decide within"), "{stderr}");
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(4), "{took:?}");
    // The whole run's deadline bounds it whatever the per-request timeout.
    let started = Instant::now();
    let o = hook(
        &a.keys(),
        &url,
        &a.credential,
        a.state.path(),
        &["claude-code", "--deadline", "400ms"],
        event.to_string().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("within the hook's deadline of 400ms"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // exec-request fails closed the same way.
    let o = hook(
        &a.keys(),
        &url,
        &a.credential,
        a.state.path(),
        &["exec-request", "--decision-timeout", "300ms"],
        json!({"action": "read", "resource": "fs:/a", "arguments": {}}).to_string().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("deny"), Some("log.unavailable")));
    drop(holder);
}

#[test]
fn exec_request_allows_with_the_writ_and_denies_with_the_reason() {
    let a = agent();
    let o = a.exec_request(
        &json!({"action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a.csv"}}),
    );
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let allow: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(allow["decision"], "allow");
    let writ = allow["writ"].as_str().unwrap();
    assert_eq!(writ.split('.').count(), 3);
    assert!(allow["decision_id"].as_str().unwrap().starts_with("w-"));
    assert!(allow["log_index"].is_u64());

    // A child of that execution, by possession of its writ.
    let o = a.exec_request(&json!({"action": "read", "resource": "fs:/zones/billing", "arguments": {},
                                   "parent_writ": writ, "audience": "files"}));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let child: Value = serde_json::from_slice(&o.stdout).unwrap();
    let entry = a.entry(child["log_index"].as_u64().unwrap()).unwrap();
    assert_eq!(entry["request"]["parent"], allow["decision_id"]);
    assert_eq!(entry["request"]["audience"], "files");

    // Claude Code started under that execution (WRIT_PARENT_WRIT, as `writ exec` sets it): the
    // main thread's tool calls are its children.
    let event = fixture("edit-allow.json").to_string();
    let o =
        hook_under(Some(writ), &a.keys(), &a.url, &a.credential, a.state.path(), &["claude-code"], event.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let reason = v["hookSpecificOutput"]["permissionDecisionReason"].as_str().unwrap();
    let entry = a.entry(decision_of(reason).1).unwrap();
    assert_eq!(entry["request"]["parent"], allow["decision_id"], "{entry}");

    let o = a.exec_request(
        &json!({"action": "write", "resource": "fs:/zones/support", "arguments": {"path": "/zones/support/x"}}),
    );
    assert_eq!(o.status.code(), Some(2));
    let deny: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["reason"], "policy.denied");
    assert!(deny["decision_id"].as_str().unwrap().starts_with("w-"));
    assert!(!deny["detail"].as_str().unwrap().is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("policy.denied"));

    // A payment of 1,000 waits for an operator (payment-needs-approval): not an allow.
    let o = a.exec_request(&json!({"action": "payment", "resource": "payments:stripe",
                                   "arguments": {"amount": 1000, "currency": "EUR"}}));
    assert_eq!(o.status.code(), Some(2));
    let pending: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((pending["decision"].as_str(), pending["reason"].as_str()), (Some("deny"), Some("pending")));
    assert!(pending["decision_id"].as_str().unwrap().starts_with("w-"), "{pending}");
}

/// Serves `allow` to every `POST /v1/authorize` and an empty JWKS, over plain HTTP: what
/// anything answering for the control plane's address could say.
fn forging_control_plane(allow: Value) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then as much body as it announces.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&request);
            let body = if text.starts_with("POST /v1/authorize ") {
                allow.to_string()
            } else if text.starts_with("GET /.well-known/jwks.json") {
                json!({"keys": []}).to_string()
            } else {
                json!({"log_index": 1}).to_string()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// Found in review: the hooks acted on an allow as the control plane's answer said, its writ
/// never verified: whatever answered at `WRIT_URL` (plain HTTP) could allow any tool call.
/// An allow counts only with a writ that verifies for exactly that call.
#[test]
fn an_allow_whose_writ_does_not_verify_is_refused_by_the_hooks() {
    let a = agent();
    let forged = json!({"outcome": "allow", "id": "w-forged", "writ": "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "log_index": 1});
    let url = forging_control_plane(forged);
    let o = hook(
        &a.keys(),
        &url,
        &a.credential,
        a.state.path(),
        &["exec-request"],
        json!({"action": "read", "resource": "fs:/a", "arguments": {}}).to_string().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stdout));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("deny"), Some("writ.bad_signature")), "{v}");
    // Claude Code is told deny, with the reason.
    let o = hook(
        &a.keys(),
        &url,
        &a.credential,
        a.state.path(),
        &["claude-code"],
        fixture("edit-allow.json").to_string().as_bytes(),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let out = &v["hookSpecificOutput"];
    assert_eq!(out["permissionDecision"], "deny", "{v}");
    assert!(out["permissionDecisionReason"].as_str().unwrap().contains("writ.bad_signature"), "{v}");
    // A whole other control plane answering, with keys of its own that it serves and genuine
    // writs for the very call (found in review: the keys were taken from the address). Only
    // the keys the hook is given are trusted.
    let other = agent();
    let request =
        json!({"action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a.csv"}});
    let o = hook(
        &other.keys(),
        &other.url,
        &other.credential,
        a.state.path(),
        &["exec-request"],
        request.to_string().as_bytes(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "the call is allowed where it is trusted: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = hook(
        &a.keys(),
        &other.url,
        &other.credential,
        a.state.path(),
        &["exec-request"],
        request.to_string().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stdout));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("deny"), Some("writ.bad_signature")), "{v}");
}
