//! What enforcement points need besides decisions: `POST /v1/authorize/preview` (which
//! calls could be allowed; never hides a callable one) and the revocation feed (a signed
//! snapshot, and a server-sent event stream of snapshots and heartbeats that survives the
//! request deadline, resumes from `Last-Event-ID`, and ends when the server stops).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};
use writ_core::SpiffeId;
use writ_server::{FeedSettings, Limits};

use crate::conn::live_with;
use crate::{Fixture, fixture, rt};

fn preview(f: &Fixture, credential: Option<&str>, candidates: &[(&str, &str)]) -> Value {
    let candidates: Vec<Value> = candidates.iter().map(|(a, r)| json!({"action": a, "resource": r})).collect();
    let body = match credential {
        Some(c) => json!({"credentials": {"workload": c}, "candidates": candidates}),
        None => json!({"candidates": candidates}),
    };
    let (status, v) = f.json("POST", "/v1/authorize/preview", Some(body));
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn possible(v: &Value) -> Vec<(bool, Value)> {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["possible"].as_bool().unwrap(), c["reason"].clone()))
        .collect()
}

/// With the starter bundle: a call whose permit depends on the arguments or the time is
/// possible; one no permit can ever apply to (a write outside the agent's zone: the
/// resource's zone is known, and it is not the principal's) is not; an undeclared action is
/// not. Each answer agrees with what `authorize` then decides.
#[test]
fn preview_shows_what_could_be_allowed_and_hides_what_never_is() {
    let f = fixture(true);
    let token = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let v = preview(
        &f,
        Some(&token),
        &[
            ("read", "fs:/anything"),
            ("write", "fs:/zones/billing"),
            ("write", "fs:/zones/support"),
            ("payment", "pay:vendor"),
            ("launch-missiles", "fs:/zones/billing"),
        ],
    );
    assert!(v["bundle"].as_str().unwrap().starts_with("sha256:"), "{v}");
    assert_eq!(
        possible(&v),
        vec![
            (true, Value::Null),
            (true, Value::Null),
            (false, json!("policy.denied")),
            (true, Value::Null),
            (false, json!("policy.denied")),
        ],
        "{v}"
    );
    // Hidden means denied whatever the arguments.
    for arguments in [json!({"path": "/zones/support/x"}), json!({"path": "/zones/billing/x"}), json!({})] {
        let (_, d) = f.json(
            "POST",
            "/v1/authorize",
            Some(json!({"credentials": {"workload": token}, "action": "write", "resource": "fs:/zones/support", "arguments": arguments})),
        );
        assert_eq!(d["outcome"], "deny", "{d}");
    }
    // Nothing is recorded by a preview.
    let size = f.engine.log().size();
    preview(&f, Some(&token), &[("read", "x")]);
    assert_eq!(f.engine.log().size(), size);
}

/// Every candidate is impossible, with the reason code its calls get, when the caller has
/// no credential, a forged one, or is isolated; and when no bundle is active.
#[test]
fn preview_without_standing_hides_everything() {
    let f = fixture(true);
    let c = [("read", "fs:/a"), ("read", "fs:/b")];
    let all = |v: &Value, code: &str| {
        assert_eq!(possible(v), vec![(false, json!(code)); 2], "{v}");
    };
    all(&preview(&f, None, &c), "identity.missing");
    let token = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let (head, rest) = token.split_once('.').unwrap();
    let (payload, _sig) = rest.split_once('.').unwrap();
    let forged = format!("{head}.{payload}.{}", B64URL.encode([7u8; 64]));
    all(&preview(&f, Some(&forged), &c), "identity.bad_signature");
    all(&preview(&f, Some("garbage"), &c), "identity.malformed");
    let subject = SpiffeId::parse("spiffe://demo.example/agent/billing-1").unwrap();
    rt().block_on(f.engine.quarantine(&subject, true, None, "test")).unwrap();
    all(&preview(&f, Some(&token), &c), "quarantined");
    let bare = fixture(false);
    let token = bare.workload("spiffe://demo.example/agent/billing-1", "billing");
    all(&preview(&bare, Some(&token), &c), "policy.no_active_bundle");
}

#[test]
fn preview_refuses_malformed_and_oversized_bodies() {
    let f = fixture(true);
    let many: Vec<Value> = (0..1001).map(|i| json!({"action": "read", "resource": format!("r{i}")})).collect();
    for body in [
        json!({"candidates": many}),
        json!({"candidates": [{"action": "read"}]}),
        json!({"candidates": [{"action": "read", "resource": "r", "extra": 1}]}),
        json!({"candidates": [], "admin": true}),
        json!({"candidates": [{"action": "a".repeat(300), "resource": "r"}]}),
        json!({"credentials": {"workload": "x".repeat(9000)}, "candidates": []}),
        json!([]),
    ] {
        let (status, e) = f.json("POST", "/v1/authorize/preview", Some(body));
        assert_eq!((status, e["error"].clone()), (StatusCode::BAD_REQUEST, json!("request.malformed")), "{e}");
    }
}

/// The payload of a feed document, after checking its signature with the published feed
/// key (and that the writ keys do not verify it).
fn verified(f: &Fixture, jws: &str) -> Value {
    let (_, keys) = f.json("GET", "/.well-known/writ-feed-keys.json", None);
    verified_by(f, &keys, jws)
}

fn verified_by(f: &Fixture, keys: &Value, jws: &str) -> Value {
    let key = &keys["keys"][0];
    assert_eq!(key["use"], "writ-feed");
    let (signing_input, signature) = jws.rsplit_once('.').unwrap();
    let x: [u8; 32] = B64URL.decode(key["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&B64URL.decode(signature).unwrap()).unwrap();
    vk.verify_strict(signing_input.as_bytes(), &sig).unwrap();
    let (_, writ_keys) = f.json("GET", "/.well-known/jwks.json", None);
    assert!(writ_keys["keys"].as_array().unwrap().iter().all(|k| k["kid"] != key["kid"]), "a separate key");
    let (header, payload) = signing_input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&B64URL.decode(header).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "EdDSA", "kid": key["kid"], "typ": "writ-feed+jwt"}));
    serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap()
}

pub(crate) fn snapshot(f: &Fixture) -> Value {
    let (status, v) = f.json("GET", "/v1/feed/snapshot", None);
    assert_eq!(status, StatusCode::OK, "{v}");
    verified(f, v["snapshot"].as_str().unwrap())
}

/// An allowed call's writ id, optionally under a parent writ.
fn allowed(f: &Fixture, subject: &str, zone: &str, parent: Option<&str>) -> (String, String) {
    let token = f.workload(subject, zone);
    let mut req = json!({"credentials": {"workload": token}, "action": "read", "resource": "fs:/x"});
    if let Some(p) = parent {
        req["parent_writ"] = json!(p);
    }
    let (_, d) = f.json("POST", "/v1/authorize", Some(req));
    assert_eq!(d["outcome"], "allow", "{d}");
    (d["id"].as_str().unwrap().to_owned(), d["writ"].as_str().unwrap().to_owned())
}

/// The snapshot lists a revoked writ and the writs below it; an isolated principal, and the
/// writs of others below its writs; the active bundle; and it is signed by the feed key.
#[test]
fn the_snapshot_lists_revocations_and_quarantine_with_their_lineage() {
    let f = fixture(true);
    let s0 = snapshot(&f);
    assert_eq!(s0["kind"], "snapshot");
    assert_eq!(s0["revoked"], json!([]));
    assert_eq!(s0["bundle"], json!(f.engine.active_bundle().unwrap().2.to_string()));
    assert_eq!(s0["changed_at"], json!(0), "the starter bundle's activation");
    let (root, root_writ) = allowed(&f, "spiffe://demo.example/agent/a", "billing", None);
    let (child, child_writ) = allowed(&f, "spiffe://demo.example/agent/a", "billing", Some(&root_writ));
    let (grandchild, _) = allowed(&f, "spiffe://demo.example/agent/a", "billing", Some(&child_writ));
    let (other, _) = allowed(&f, "spiffe://demo.example/agent/b", "billing", None);
    let index = rt().block_on(f.engine.revoke(&child, None, "test")).unwrap();
    let s1 = snapshot(&f);
    let jtis: Vec<&str> = s1["revoked"].as_array().unwrap().iter().map(|r| r["jti"].as_str().unwrap()).collect();
    let mut want = vec![child.as_str(), grandchild.as_str()];
    want.sort();
    assert_eq!(jtis, want, "{s1}");
    assert!(!jtis.contains(&root.as_str()) && !jtis.contains(&other.as_str()));
    assert_eq!(s1["changed_at"], json!(index));
    assert!(s1["size"].as_u64().unwrap() > index);
    let b = SpiffeId::parse("spiffe://demo.example/agent/b").unwrap();
    rt().block_on(f.engine.quarantine(&b, true, None, "test")).unwrap();
    let s2 = snapshot(&f);
    assert_eq!(s2["quarantined"], json!(["spiffe://demo.example/agent/b"]));
    assert_eq!(s2["isolated_lineage"], json!([]), "b's own writ is refused by its subject");
    rt().block_on(f.engine.quarantine(&b, false, None, "test")).unwrap();
    assert_eq!(snapshot(&f)["quarantined"], json!([]));
}

/// One server-sent event: its name, id and data.
/// Found in review: every snapshot request walked the revocations and the quarantine under
/// the operator-action lock and the state's lock, so fifty anonymous clients asking in a loop
/// stalled every decision and queued every revocation until it timed out. Snapshots are
/// now signed once and shared until the feed changes (or a second has passed), and a change
/// is never hidden behind the shared one.
#[test]
fn snapshots_are_shared_until_the_feed_changes() {
    let f = fixture(true);
    let raw = |f: &Fixture| {
        let (status, v) = f.json("GET", "/v1/feed/snapshot", None);
        assert_eq!(status, StatusCode::OK, "{v}");
        v["snapshot"].as_str().unwrap().to_owned()
    };
    let first = raw(&f);
    let (jti, _) = allowed(&f, "spiffe://demo.example/agent/a", "billing", None);
    // Decisions do not change the feed: the same signed snapshot is served again.
    assert_eq!(raw(&f), first, "a snapshot was signed again although the feed did not change");
    let op = f.operator();
    let (status, _) = f.json_as("POST", "/v1/revocations", Some(json!({"jti": jti, "reason": "leaked"})), Some(&op));
    assert_eq!(status, StatusCode::OK);
    let after = raw(&f);
    assert_ne!(after, first, "the revocation is hidden behind the shared snapshot");
    assert_eq!(verified(&f, &after)["revoked"][0]["jti"], json!(jti));
}

fn next_event(s: &mut TcpStream, buffered: &mut String) -> (String, u64, String) {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = buffered.find("\n\n") {
            let block: String = buffered.drain(..end + 2).collect();
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default()
            };
            if block.trim().is_empty() || !block.contains("event:") {
                continue;
            }
            return (field("event:"), field("id:").parse().unwrap(), field("data:"));
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended: {buffered}");
        buffered.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
}

/// Opens the stream; returns the socket and what came after the head (chunked framing is
/// off: HTTP/1.0 asks for a body that ends with the connection).
fn open_stream(addr: std::net::SocketAddr, last_event_id: Option<u64>) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let resume = last_event_id.map(|i| format!("Last-Event-ID: {i}\r\n")).unwrap_or_default();
    write!(s, "GET /v1/feed/stream HTTP/1.0\r\nHost: writ\r\n{resume}\r\n").unwrap();
    let mut raw = String::new();
    let mut buf = [0u8; 4096];
    while !raw.contains("\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        raw.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    (s, rest.to_owned())
}

/// The stream: a snapshot on connect, heartbeats, a new snapshot as soon as a revocation is
/// recorded (the delay is printed), no end at the request deadline while the client reads,
/// resumption without a resend when nothing changed, and its end when the server stops.
#[test]
fn the_stream_delivers_revocations_at_once_and_lives_past_the_request_deadline() {
    let limits = Limits { request_timeout: Duration::from_millis(500), ..Limits::default() };
    let settings = FeedSettings { heartbeat: Duration::from_millis(100), ..FeedSettings::default() };
    let mut server = live_with(limits, |s| s.with_feed_settings(settings));
    let f = &server.fixture;
    // The live server's feed key (the fixture's router has one of its own).
    let keys: Value = {
        let mut s = TcpStream::connect(server.addr).unwrap();
        write!(s, "GET /.well-known/writ-feed-keys.json HTTP/1.0\r\nHost: writ\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap()
    };
    let verified = |f: &Fixture, jws: &str| verified_by(f, &keys, jws);
    let (mut s, mut buffered) = open_stream(server.addr, None);
    let (kind, id, data) = next_event(&mut s, &mut buffered);
    assert_eq!(kind, "snapshot");
    let first = verified(f, &data);
    assert_eq!(first["size"], json!(id));
    let (kind, hb_id, data) = next_event(&mut s, &mut buffered);
    assert_eq!((kind.as_str(), hb_id), ("heartbeat", id));
    assert_eq!(verified(f, &data)["kind"], "heartbeat");
    // Past the request timeout plus its 2 s margin: still streaming.
    let until = Instant::now() + Duration::from_millis(2800);
    while Instant::now() < until {
        next_event(&mut s, &mut buffered);
    }
    let (jti, _) = allowed(f, "spiffe://demo.example/agent/a", "billing", None);
    let revoked_at = Instant::now();
    rt().block_on(f.engine.revoke(&jti, None, "test")).unwrap();
    let (snapshot, size) = loop {
        let (kind, id, data) = next_event(&mut s, &mut buffered);
        if kind == "snapshot" {
            break (verified(f, &data), id);
        }
    };
    let delay = revoked_at.elapsed();
    eprintln!("revocation to snapshot on the stream: {delay:?}");
    assert!(delay < Duration::from_secs(1), "{delay:?}");
    assert_eq!(snapshot["revoked"][0]["jti"], json!(jti));
    // Resuming from what the client holds: no snapshot is resent, heartbeats carry its id.
    let (mut again, mut rest) = open_stream(server.addr, Some(size));
    let (kind, id, _) = next_event(&mut again, &mut rest);
    assert_eq!((kind.as_str(), id), ("heartbeat", size));
    // Resuming from an older view: the current snapshot comes first.
    let (mut old, mut rest) = open_stream(server.addr, Some(first["size"].as_u64().unwrap()));
    let (kind, id, _) = next_event(&mut old, &mut rest);
    assert_eq!((kind.as_str(), id), ("snapshot", size));
    // A stop ends every stream at once.
    let took = server.stop();
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_malformed_resumption_point_is_refused() {
    let f = fixture(true);
    let (status, body, _) = f.call_as("GET", "/v1/feed/stream?from=abc", None, None);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
    let req = axum::http::Request::builder()
        .uri("/v1/feed/stream")
        .header("last-event-id", "-1")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = rt().block_on(tower::ServiceExt::oneshot(f.router.clone(), req)).unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// The head of the answer to `GET path` over a fresh connection, and the connection.
fn stream_head(addr: std::net::SocketAddr, path: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: writ\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&buf[..n]);
    }
    (String::from_utf8_lossy(&raw).into_owned(), s)
}

/// Found in review: the event streams' slots were the server's, first come first served, so
/// one client could hold all 256 feed streams and all 64 log streams (the console's live
/// table then answered 503 for everyone). One client address holds at most its share; the
/// others still get theirs.
#[test]
fn one_client_address_cannot_take_every_stream() {
    let settings = FeedSettings { max_streams_per_peer: 2, ..FeedSettings::default() };
    let server = live_with(Limits::default(), |s| s.with_feed_settings(settings));
    let addr = server.addr;
    let first = open_stream(addr, None);
    let _second = open_stream(addr, None);
    let (head, _) = stream_head(addr, "/v1/feed/stream");
    assert!(head.starts_with("HTTP/1.0 503") || head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("this client address holds 2 feed streams"), "{head}");
    // A stream closed gives its place back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (head, _s) = stream_head(addr, "/v1/feed/stream");
        if head.contains(" 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the closed stream's place never came back: {head}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The log stream: at most 8 per address.
    let held: Vec<_> = (0..8)
        .map(|_| {
            let (head, s) = stream_head(addr, "/v1/log/stream");
            assert!(head.contains(" 200 "), "{head}");
            s
        })
        .collect();
    let (head, _) = stream_head(addr, "/v1/log/stream");
    assert!(head.contains(" 503 ") && head.contains("this client address holds 8 log streams"), "{head}");
    drop(held);
}
