//! The gateway's behaviour, one test per promise of issue 15 part 3 (and part 5, lineage).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ControlPlane, Session, claims, received};

fn tool_text(answer: &Value) -> Value {
    serde_json::from_str(answer["result"]["content"][0]["text"].as_str().unwrap()).unwrap()
}

fn calls_of(log: &std::path::Path, tool: &str) -> usize {
    received(log).iter().filter(|m| m["method"] == "tools/call" && m["params"]["name"] == tool).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_call_is_forwarded_with_its_writ_and_its_outcome_recorded() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut s = Session::start(cp.config(&log));
    let init = s.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "fixture");
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true, "{init}");

    let before = cp.entries(0).await.len() as u64;
    let answer = s.call(1, "echo", json!({"message": "hi", "n": 3})).await;
    let echoed = tool_text(&answer);
    assert_eq!(echoed["arguments"], json!({"message": "hi", "n": 3}));
    let writ = echoed["meta"]["dev.writ/writ"].as_str().unwrap();
    let c = claims(writ);
    assert_eq!(c["act"], "mcp:fixture/echo");
    assert_eq!(c["res"], "mcp:fixture");
    assert_eq!(c["aud"], "mcp:fixture");
    assert_eq!(c["sub"], crate::support::AGENT);
    let expected =
        writ_core::request_digest("mcp:fixture/echo", "mcp:fixture", &json!({"message": "hi", "n": 3})).unwrap();
    assert_eq!(c["req"], expected.to_string());
    assert_eq!(echoed["meta"]["dev.writ/decision"]["id"], c["jti"]);
    assert!(echoed["meta"]["dev.writ/decision"]["log_index"].is_u64());

    // A failing tool: its outcome is `failed`. The outcome entries arrive after the answers.
    let failed = s.call(2, "fail", json!({})).await;
    assert_eq!(failed["result"]["isError"], true);
    let jti = c["jti"].as_str().unwrap().to_owned();
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        outcomes = cp.entries(before).await.into_iter().filter(|e| e["kind"] == "outcome").collect();
        if outcomes.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    let first = outcomes.iter().find(|o| o.to_string().contains(&jti)).unwrap();
    assert!(first.to_string().contains("succeeded"), "{first}");
    let result = &answer["result"];
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(writ_core::canonical_json(result).unwrap()))
    };
    assert!(first.to_string().contains(&format!("sha256:{digest}")), "{first}");
    assert!(first.to_string().contains("duration_ms"), "{first}");
    assert!(outcomes.iter().any(|o| o.to_string().contains("failed")), "{outcomes:?}");
    assert_eq!(s.close().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_never_reaches_the_server_and_is_answered_in_the_contract_shape() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let marker = dir.path().join("marker");
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    let answer = s.call(7, "write_marker", json!({"path": marker.display().to_string()})).await;
    assert_eq!(answer["id"], 7);
    let r = &answer["result"];
    assert_eq!(r["isError"], true);
    let w = &r["structuredContent"]["writ"];
    assert_eq!(w["outcome"], "deny");
    assert_eq!(w["reason"], "policy.denied");
    assert_eq!(w["reasons"][0], "policy.denied");
    assert!(w["decision"].is_string() && w["log_index"].is_u64(), "{w}");
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("writ denied this call: policy.denied: "), "{text}");
    assert_eq!(text, format!("writ denied this call: policy.denied: {}", w["detail"].as_str().unwrap()));
    // The server answers a ping (so everything sent before it has been read): no call arrived.
    s.send(json!({"jsonrpc": "2.0", "id": 8, "method": "ping"})).await;
    assert_eq!(s.answer(&json!(8)).await["result"], json!({}));
    assert_eq!(calls_of(&log, "write_marker"), 0);
    assert!(!marker.exists());
    // An undeclared tool is denied too (the bundle does not know it).
    let unknown = s.call(9, "no_such_tool", json!({})).await;
    assert_eq!(unknown["result"]["structuredContent"]["writ"]["outcome"], "deny");
    s.close().await;

    // With --deny-as-error: a JSON-RPC error -32001 carrying the same object.
    let mut config = cp.config(&log);
    config.deny_as_error = true;
    let mut s = Session::start(config);
    let answer = s.call(1, "write_marker", json!({"path": marker.display().to_string()})).await;
    assert_eq!(answer["error"]["code"], -32001);
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("writ denied this call: policy.denied: "));
    assert_eq!(answer["error"]["data"]["outcome"], "deny");
    assert_eq!(answer["error"]["data"]["reason"], "policy.denied");
    assert!(answer.get("result").is_none());
    s.close().await;
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_from_either_side_do_not_desynchronise_the_proxy() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    // From the client: not JSON → parse error, id null; not forwarded.
    s.send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": ").await;
    let e = s.next_not_notification().await;
    assert_eq!(e["error"]["code"], -32700, "{e}");
    assert_eq!(e["id"], Value::Null);
    // A batch: an error per request in it.
    s.send(json!([{"jsonrpc": "2.0", "id": 11, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/x"}]))
        .await;
    let batch = loop {
        let m = s.next().await;
        if m.is_array() {
            break m;
        }
        s.seen.push(m);
    };
    assert_eq!(batch[0]["id"], 11);
    assert_eq!(batch[0]["error"]["code"], -32600);
    // Not an object.
    s.send_raw(b"42").await;
    let e = s.next_not_notification().await;
    assert_eq!(e["error"]["code"], -32600, "{e}");
    // A tools/call without a name.
    s.send(json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": {}})).await;
    assert_eq!(s.answer(&json!(12)).await["error"]["code"], -32602);
    // From the server: a line that is not JSON is dropped, the answer after it relayed.
    let answer = s.call(13, "garbage", json!({})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "after garbage");
    let answer = s.call(14, "echo", json!({"message": "still in step"})).await;
    assert_eq!(tool_text(&answer)["arguments"]["message"], "still in step");
    s.close().await;
    let got = received(&log);
    assert!(!got.iter().any(|m| m["id"] == 5 || m["id"] == 11 || m["id"] == 12), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_down_or_slow_denies() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    // Down: a port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut config = cp.config(&log);
    config.url = format!("http://{closed}");
    let mut s = Session::start(config);
    let answer = s.call(1, "echo", json!({})).await;
    let w = &answer["result"]["structuredContent"]["writ"];
    assert_eq!(w["outcome"], "deny");
    assert_eq!(w["reason"], "log.unavailable", "{answer}");
    assert_eq!(w["decision"], Value::Null);
    s.close().await;

    // Slow: a listener that accepts and never answers; the deadline is 300 ms.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            held.push(c);
        }
    });
    let mut config = cp.config(&log);
    config.url = format!("http://{addr}");
    config.decision_timeout = Duration::from_millis(300);
    let mut s = Session::start(config);
    let started = Instant::now();
    let answer = s.call(2, "echo", json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let w = &answer["result"]["structuredContent"]["writ"];
    assert_eq!(w["reason"], "log.unavailable", "{answer}");
    assert!(w["detail"].as_str().unwrap().contains("did not decide within"), "{w}");
    s.close().await;
    holder.abort();
    assert_eq!(calls_of(&log, "echo"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_and_notifications_pass_through_with_their_ids() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    // The server's notification after `initialized`.
    let note = loop {
        let m = s.next().await;
        if m["method"] == "notifications/message" {
            break m;
        }
        s.seen.push(m);
    };
    assert_eq!(note["params"]["data"], "hello");
    // A call that makes the server ask the client for its roots.
    s.send(json!({"jsonrpc": "2.0", "id": "call-1", "method": "tools/call", "params": {"name": "ask_roots"}})).await;
    let request = loop {
        let m = s.next().await;
        if m["method"] == "roots/list" {
            break m;
        }
        s.seen.push(m);
    };
    assert_eq!(request["id"], "srv-roots-1");
    s.send(
        json!({"jsonrpc": "2.0", "id": "srv-roots-1", "result": {"roots": [{"uri": "file:///work", "name": "work"}]}}),
    )
    .await;
    let answer = s.answer(&json!("call-1")).await;
    assert_eq!(tool_text(&answer)["roots"][0]["uri"], "file:///work");
    // Client notifications (cancellation, progress, anything) reach the server unchanged.
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99,"reason":"x"}}"#;
    s.send_raw(cancel.as_bytes()).await;
    s.send(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})).await;
    s.answer(&json!(3)).await;
    s.close().await;
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(raw.lines().any(|l| l == cancel), "{raw}");
    assert!(raw.contains("notifications/initialized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_decided_and_answered_out_of_order() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    s.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 1500}}}))
        .await;
    let started = Instant::now();
    let fast = s.call(2, "echo", json!({})).await;
    assert!(fast["result"].is_object());
    assert!(started.elapsed() < Duration::from_millis(1400), "{:?}", started.elapsed());
    let slow = s.answer(&json!(1)).await;
    assert_eq!(slow["result"]["content"][0]["text"], "slow done");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_every_tool_when_the_preview_cannot_be_had_and_the_server_exit_status_is_kept() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut config = cp.config(&log);
    // Decisions from the real control plane, the preview from nowhere: fail open for the
    // list only (calls stay governed).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    config.url = format!("http://{closed}");
    let mut s = Session::start(config);
    s.initialize().await;
    s.send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})).await;
    let list = s.answer(&json!(4)).await;
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 8, "{list}");
    // The server exits with status 3: so does the gateway.
    s.send(json!({"jsonrpc": "2.0", "id": 5, "method": "exit_now", "params": {"code": 3}})).await;
    let status = tokio::time::timeout(Duration::from_secs(10), s.gateway).await.unwrap().unwrap().unwrap();
    assert_eq!(status, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_writ_makes_every_call_a_lineage_child() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let token = cp.workload();
    let (status, parent) = cp
        .post(
            "/v1/authorize",
            &json!({"credentials": {"workload": token}, "action": "mcp:fixture/echo", "resource": "mcp:fixture",
                    "arguments": {}}),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(parent["outcome"], "allow", "{parent}");
    let parent_writ = parent["writ"].as_str().unwrap().to_owned();
    let mut config = cp.config(&log);
    config.parent_writ = Some(parent_writ.clone());
    let mut s = Session::start(config);
    let answer = s.call(1, "echo", json!({"message": "child"})).await;
    let c = claims(tool_text(&answer)["meta"]["dev.writ/writ"].as_str().unwrap());
    assert_eq!(c["par"], parent["id"], "{c}");
    assert_eq!(c["root"], claims(&parent_writ)["root"]);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_needs_approval_is_pending_or_waits_for_the_operator() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    // No wait: answered at once as pending, with the decision id.
    let mut s = Session::start(cp.config(&log));
    let answer = s.call(1, "approve_me", json!({})).await;
    let w = &answer["result"]["structuredContent"]["writ"];
    assert_eq!(answer["result"]["isError"], true);
    assert_eq!(w["outcome"], "pending", "{answer}");
    let first = w["decision"].as_str().unwrap().to_owned();
    s.close().await;
    assert_eq!(calls_of(&log, "approve_me"), 0);

    // A wait of 10 s, and an operator who approves after half a second: forwarded with the writ.
    let mut config = cp.config(&log);
    config.approval_wait = Duration::from_secs(10);
    let mut s = Session::start(config);
    s.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "approve_me"}})).await;
    let op = cp.operator();
    let mut pending = None;
    for _ in 0..100 {
        let (_, v) = cp.get("/v1/approvals?status=pending", Some(&op)).await;
        if let Some(a) = v["approvals"].as_array().and_then(|a| a.iter().find(|a| a["id"] != first.as_str())).cloned() {
            pending = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = pending.unwrap()["id"].as_str().unwrap().to_owned();
    let (status, _) = cp.post(&format!("/v1/approvals/{id}/approve"), &json!({"reason": "fine"}), Some(&op)).await;
    assert_eq!(status, 200);
    let answer = s.answer(&json!(2)).await;
    assert_eq!(answer["result"]["content"][0]["text"], "approved", "{answer}");
    s.close().await;
    assert_eq!(calls_of(&log, "approve_me"), 1);
    let forwarded = received(&log).into_iter().find(|m| m["params"]["name"] == "approve_me").unwrap();
    assert_eq!(claims(forwarded["params"]["_meta"]["dev.writ/writ"].as_str().unwrap())["jti"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_hides_tools_every_call_of_which_is_denied_and_a_bundle_change_is_announced() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut config = cp.config(&log);
    config.bundle_poll = Duration::from_millis(100);
    let mut s = Session::start(config);
    s.initialize().await;
    s.send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})).await;
    let list = s.answer(&json!(4)).await;
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    // write_marker has no permit: hidden. approve_me may be allowed (by an operator): shown.
    assert_eq!(names, ["echo", "fail", "rpc_error", "ask_roots", "garbage", "slow", "approve_me"], "{list}");
    // Still governed if called anyway.
    let denied = s.call(5, "write_marker", json!({"path": "/nonexistent/x"})).await;
    assert_eq!(denied["result"]["structuredContent"]["writ"]["outcome"], "deny");

    // A bundle that also permits write_marker: the client is told the list changed.
    cp.activate_with_extra_policy(
        "@id(\"marker\")\npermit (principal, action == Writ::Action::\"mcp:fixture/write_marker\", resource);\n",
    )
    .await;
    let note = loop {
        let m = s.next().await;
        if m["method"] == "notifications/tools/list_changed" {
            break m;
        }
        s.seen.push(m);
    };
    assert!(note.get("id").is_none());
    s.send(json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"})).await;
    let list = s.answer(&json!(6)).await;
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 8, "{list}");
    s.close().await;
}

/// Found in review: a message the gateway relays was sent on as the client's own bytes. A
/// line with raw carriage returns is one notification to serde (JSON whitespace) and three
/// lines to most SDKs' line readers (Python's universal newlines, Java's `readLine`, Node's
/// `readline`): the `tools/call` hidden in its params ran with no decision and no writ. A
/// repeated member is the same trick against first-wins parsers. The server now receives
/// the message the gateway classified, written anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_hidden_in_a_relayed_message_never_reaches_the_server() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let marker = dir.path().join("marker");
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    let hidden = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "write_marker", "arguments": {"path": marker.display().to_string()}}});
    let smuggled = format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":\r{hidden}\r}}");
    s.send_raw(smuggled.as_bytes()).await;
    let repeated = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"method\":\"ping\",\"params\":{}}}",
        hidden["params"]
    );
    s.send_raw(repeated.as_bytes()).await;
    s.send(json!({"jsonrpc": "2.0", "id": 8, "method": "ping"})).await;
    assert_eq!(s.answer(&json!(8)).await["result"], json!({}));
    assert_eq!(calls_of(&log, "write_marker"), 0);
    assert!(!marker.exists(), "a tools/call ran without a decision");
    // What the server received is what the gateway classified: one notification, one ping.
    let received = received(&log);
    assert!(received.iter().any(|m| m["method"] == "notifications/progress" && m["params"]["id"] == 7), "{received:?}");
    assert!(received.iter().all(|m| m["method"] != "tools/call"), "{received:?}");
    s.close().await;
}

/// Found in review: a second request reusing the id of a call still in flight had the
/// call's answer matched to it (its outcome recorded against another call's writ, or a
/// `tools/list` answer taken for the call's and relayed unfiltered), and ids the server
/// cannot echo (objects, 1.0) were tracked for the session's life. Both are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_in_flight_or_unanswerable_are_refused() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    s.send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 800}}}))
        .await;
    s.send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}})).await;
    s.send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m", "n": 0}}}))
        .await;
    for _ in 0..2 {
        let refused = s.answer(&json!(5)).await;
        assert_eq!(refused["error"]["code"], -32600, "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("in flight"), "{refused}");
    }
    let done = s.answer(&json!(5)).await;
    assert_eq!(done["result"]["content"][0]["text"], "slow done", "{done}");
    // Once answered, the id is free again.
    let again = s.call(5, "echo", json!({"message": "again", "n": 1})).await;
    assert_eq!(tool_text(&again)["arguments"], json!({"message": "again", "n": 1}), "{again}");
    for id in [json!(1.5), json!({"k": "v"}), json!([1]), json!(true), json!("x".repeat(257))] {
        s.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}})).await;
        let refused = s.answer(&Value::Null).await;
        assert_eq!(refused["error"]["code"], -32600, "{id}: {refused}");
    }
    assert_eq!(calls_of(&log, "echo"), 1);
    assert_eq!(received(&log).iter().filter(|m| m["method"] == "tools/list").count(), 0);
    s.close().await;
}

/// Found in review: an allow was acted on as the control plane's answer said, its writ
/// never verified. Whatever answers for the control plane on its plain-HTTP address (or a
/// control plane answering with another call's writ) could have any call forwarded. The
/// writ of an allow must verify for exactly the call about to be forwarded, and be the
/// decision's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_whose_writ_does_not_verify_for_the_call_is_not_forwarded() {
    use axum::routing::{get, post};
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    // A genuine writ, for one echo call.
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    let genuine = tool_text(&s.call(1, "echo", json!({"message": "a", "n": 1})).await)["meta"]["dev.writ/writ"]
        .as_str()
        .unwrap()
        .to_owned();
    let genuine_id = claims(&genuine)["jti"].as_str().unwrap().to_owned();
    s.close().await;
    // Something answering for the control plane with allows of its own choosing, and the
    // control plane's real keys.
    let (_, jwks) = cp.get("/.well-known/jwks.json", None).await;
    let answers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::<Value>::new()));
    let queue = answers.clone();
    let app = axum::Router::new()
        .route(
            "/v1/authorize",
            post(move || {
                let next = queue.lock().unwrap().pop_front().unwrap();
                async move { axum::Json(next) }
            }),
        )
        .route("/.well-known/jwks.json", get(move || async move { axum::Json(jwks) }))
        .route("/v1/outcomes", post(|| async { axum::Json(json!({"log_index": 1})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let allow = |id: &str, writ: &str| json!({"outcome": "allow", "id": id, "writ": writ, "log_index": 1});
    let cases = [
        // A writ of its own making.
        (allow("w-forged", "eyJhbGciOiJFZERTQSJ9.e30.AAAA"), json!({"message": "b", "n": 2}), "writ.bad_signature"),
        // A genuine writ, of another call.
        (allow(&genuine_id, &genuine), json!({"message": "b", "n": 2}), "writ.binding_mismatch"),
        // A genuine writ of this very call, answered as another decision's.
        (allow("w-another", &genuine), json!({"message": "a", "n": 1}), "writ.binding_mismatch"),
    ];
    let before = calls_of(&log, "echo");
    let mut config = cp.config(&log);
    config.url = fake;
    let mut s = Session::start(config);
    s.initialize().await;
    for (i, (answer, arguments, reason)) in cases.into_iter().enumerate() {
        answers.lock().unwrap().push_back(answer);
        let got = s.call(10 + i as i64, "echo", arguments).await;
        let w = &got["result"]["structuredContent"]["writ"];
        assert_eq!((&w["outcome"], &w["reason"]), (&json!("deny"), &json!(reason)), "case {i}: {got}");
    }
    s.send(json!({"jsonrpc": "2.0", "id": 99, "method": "ping"})).await;
    s.answer(&json!(99)).await;
    assert_eq!(calls_of(&log, "echo"), before, "a call was forwarded on an allow whose writ did not verify");
    s.close().await;
}

/// Another control plane answering at the gateway's URL (its own keys, its own genuine,
/// well-formed writs for the exact call): the gateway verifies with the keys it was given,
/// never with those the address serves, so no call goes through (found in review: the keys
/// were fetched from the same address, and a stand-in allowed everything).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_with_keys_of_its_own_cannot_allow_a_call() {
    let trusted = ControlPlane::start().await;
    let impostor = ControlPlane::start().await;
    impostor.rotate_to_own_key().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    // The impostor's allows are genuine where it is trusted.
    let mut s = Session::start(impostor.config(&log));
    s.initialize().await;
    let got = s.call(1, "echo", json!({"message": "a", "n": 1})).await;
    assert!(tool_text(&got)["meta"]["dev.writ/writ"].is_string(), "{got}");
    s.close().await;
    let before = calls_of(&log, "echo");
    // Answering for the control plane whose keys this gateway holds.
    let config = writ_enforce::mcp::Config { writ_keys: trusted.keys.clone(), ..impostor.config(&log) };
    let mut s = Session::start(config);
    s.initialize().await;
    let got = s.call(2, "echo", json!({"message": "a", "n": 1})).await;
    let w = &got["result"]["structuredContent"]["writ"];
    assert_eq!((&w["outcome"], &w["reason"]), (&json!("deny"), &json!("writ.bad_signature")), "{got}");
    assert_eq!(calls_of(&log, "echo"), before, "a call was forwarded on the impostor's allow");
    s.close().await;
    // No key file at all: nothing is trusted, nothing goes through.
    let config = writ_enforce::mcp::Config { writ_keys: dir.path().join("absent.json"), ..impostor.config(&log) };
    let mut s = Session::start(config);
    s.initialize().await;
    let got = s.call(3, "echo", json!({"message": "a", "n": 1})).await;
    let w = &got["result"]["structuredContent"]["writ"];
    assert_eq!((&w["outcome"], &w["reason"]), (&json!("deny"), &json!("internal")), "{got}");
    assert_eq!(calls_of(&log, "echo"), before, "a call was forwarded with no trusted keys");
    s.close().await;
}

/// A genuine writ of exactly this call, answered twice by whatever stands in for the control
/// plane: the gateway acts on it once; the second time is `writ.replayed` (each writ is
/// accepted once, across re-reads of the key file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_writ_answered_again_is_a_replay() {
    use axum::routing::post;
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let mut s = Session::start(cp.config(&log));
    s.initialize().await;
    let arguments = json!({"message": "once", "n": 1});
    let first = tool_text(&s.call(1, "echo", arguments.clone()).await);
    let genuine = first["meta"]["dev.writ/writ"].as_str().unwrap().to_owned();
    let id = claims(&genuine)["jti"].as_str().unwrap().to_owned();
    s.close().await;
    let answer = json!({"outcome": "allow", "id": id, "writ": genuine, "log_index": 1});
    let app = axum::Router::new()
        .route("/v1/authorize", post(move || async move { axum::Json(answer) }))
        .route("/v1/outcomes", post(|| async { axum::Json(json!({"log_index": 1})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let before = calls_of(&log, "echo");
    let mut config = cp.config(&log);
    config.url = fake;
    let mut s = Session::start(config);
    s.initialize().await;
    // The first answer carries a writ this gateway has not seen: it is the call's own.
    let got = s.call(2, "echo", arguments.clone()).await;
    assert_eq!(tool_text(&got)["meta"]["dev.writ/decision"]["id"], json!(id), "{got}");
    let got = s.call(3, "echo", arguments).await;
    let w = &got["result"]["structuredContent"]["writ"];
    assert_eq!((&w["outcome"], &w["reason"]), (&json!("deny"), &json!("writ.replayed")), "{got}");
    assert_eq!(calls_of(&log, "echo"), before + 1, "the replayed allow was forwarded");
    s.close().await;
}

/// A credential file that never ends (found in review: it was read whole before its size
/// was checked, so `/dev/zero` read forever): refused at its bound, at once.
#[tokio::test]
async fn an_endless_credential_file_is_refused_at_its_bound() {
    use writ_enforce::control::{Credential, CredentialSource};
    let credential = Credential::new(CredentialSource::File("/dev/zero".into()));
    let started = Instant::now();
    let e = credential.get(false).await.unwrap_err();
    assert!(e.to_string().contains("over 65536 bytes"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
