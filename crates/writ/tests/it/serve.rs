//! `writ serve` as a real process on an ephemeral loopback port: first start creates the
//! data directory and activates the starter bundle; a decision made over HTTP is proven
//! included in the signed checkpoint and its writ verifies once; a restart keeps the log,
//! the keys and, after a clean stop, single use; after a kill, writs from before it are
//! refused as replayed.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use writ_log::{Hash, NoteVerifier, SignedCheckpoint, verify_inclusion};

use crate::support::{server_stderr, start_server, start_server_with};

/// A minimal HTTP/1.1 exchange over loopback (no client library needed).
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    http_as(addr, method, path, body, None)
}

pub(crate) fn http_as(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut payload = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    (status, payload)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// `POST /v1/verify` of `writ` for the call: `Ok(())` or the reason and detail.
fn verify_over_http(addr: &str, writ: &str, call: &Value) -> Result<(), (String, String)> {
    let (status, body) = http(addr, "POST", "/v1/verify", Some(&json!({"writ": writ, "request": call}).to_string()));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{v}");
    match v["ok"].as_bool() {
        Some(true) => Ok(()),
        _ => Err((v["reason"].as_str().unwrap_or_default().to_owned(), v["detail"].to_string())),
    }
}

#[test]
fn serve_decides_proves_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut server = start_server(dir);
    let (status, ready) = http(&server.addr, "GET", "/readyz", None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&ready));

    let token = Command::new(env!("CARGO_BIN_EXE_writ"))
        .arg("--data-dir")
        .arg(dir)
        .args(["identity", "issue", "--spiffe-id", "spiffe://demo.example/agent/billing-1", "--zone", "billing"])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let call = json!({"action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    let mut request = call.clone();
    request["credentials"] = json!({"workload": token.trim()});
    let authorize = |addr: &str| -> Value {
        let (status, body) = http(addr, "POST", "/v1/authorize", Some(&request.to_string()));
        assert_eq!(status, 200);
        let decision: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(decision["outcome"], "allow", "{decision}");
        decision
    };
    let decision = authorize(&server.addr);
    let index = decision["log_index"].as_u64().unwrap();

    // The checkpoint covering it, verified with the key from the API, and the inclusion proof.
    let (_, key) = http(&server.addr, "GET", "/v1/log/key", None);
    let vkey = NoteVerifier::from_vkey(String::from_utf8(key).unwrap().trim()).unwrap();
    let mut cp = None;
    for _ in 0..50 {
        let (_, note) = http(&server.addr, "GET", "/v1/log/checkpoint", None);
        if let Ok((c, _)) = SignedCheckpoint::open(&note, &vkey, &[])
            && c.checkpoint().size > index
        {
            cp = Some(c.checkpoint().clone());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let cp = cp.expect("a checkpoint covering the decision within 5 s");
    let (_, p) = http(&server.addr, "GET", &format!("/v1/log/proof/inclusion?index={index}&size={}", cp.size), None);
    let p: Value = serde_json::from_slice(&p).unwrap();
    let (_, e) = http(&server.addr, "GET", &format!("/v1/log/entries?start={index}&end={}", index + 1), None);
    let e: Value = serde_json::from_slice(&e).unwrap();
    let leaf = Hash::leaf(&B64.decode(e["entries"][0]["entry_base64"].as_str().unwrap()).unwrap());
    let proof: Vec<Hash> =
        p["proof"].as_array().unwrap().iter().map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap()).collect();
    verify_inclusion(index, cp.size, &leaf, &proof, &cp.root).unwrap();

    // The enforcement point's check: once, then a replay. The data directory publishes the
    // keys the API serves from the first start on.
    let used = decision["writ"].as_str().unwrap().to_owned();
    verify_over_http(&server.addr, &used, &call).unwrap();
    assert_eq!(verify_over_http(&server.addr, &used, &call).unwrap_err().0, "writ.replayed");
    let (_, jwks) = http(&server.addr, "GET", "/.well-known/jwks.json", None);
    let jwks: Value = serde_json::from_slice(&jwks).unwrap();
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trust/jwks.json")).unwrap()).unwrap();
    assert_eq!(published, jwks);
    let unused = authorize(&server.addr)["writ"].as_str().unwrap().to_owned();
    let status = server.terminate();
    assert!(status.success(), "SIGTERM: {status}\n{}", server_stderr(dir));
    assert!(server_stderr(dir).contains("writ: stopped; log size"), "{}", server_stderr(dir));

    // Restart: same keys, same log, and single use held across the clean stop.
    let server = start_server(dir);
    let (_, jwks_again) = http(&server.addr, "GET", "/.well-known/jwks.json", None);
    assert_eq!(serde_json::from_slice::<Value>(&jwks_again).unwrap(), jwks);
    let (_, e) = http(&server.addr, "GET", &format!("/v1/log/entries?start={index}&end={}", index + 1), None);
    let e: Value = serde_json::from_slice(&e).unwrap();
    assert_eq!(Hash::leaf(&B64.decode(e["entries"][0]["entry_base64"].as_str().unwrap()).unwrap()), leaf);
    assert_eq!(verify_over_http(&server.addr, &used, &call).unwrap_err().0, "writ.replayed");
    verify_over_http(&server.addr, &unused, &call).unwrap();

    // Killed: the used set is lost, so a writ from before the kill can no longer be shown
    // unused and is refused; writs issued after the restart verify.
    let before_kill = authorize(&server.addr)["writ"].as_str().unwrap().to_owned();
    drop(server);
    let mut server = start_server(dir);
    let (reason, detail) = verify_over_http(&server.addr, &before_kill, &call).unwrap_err();
    assert_eq!(reason, "writ.replayed", "{detail}");
    assert!(detail.contains("restarted"), "{detail}");
    let fresh = authorize(&server.addr)["writ"].as_str().unwrap().to_owned();
    verify_over_http(&server.addr, &fresh, &call).unwrap();

    // Issue 13, item 1: a clean stop after the kill keeps the horizon, so the next start
    // still refuses the writ from before the kill (it verified `ok: true` again before),
    // and every later clean start too.
    for _ in 0..2 {
        let status = server.terminate();
        assert!(status.success(), "SIGTERM: {status}\n{}", server_stderr(dir));
        server = start_server(dir);
        let (reason, detail) = verify_over_http(&server.addr, &before_kill, &call).unwrap_err();
        assert_eq!(reason, "writ.replayed", "{detail}");
        assert_eq!(verify_over_http(&server.addr, &fresh, &call).unwrap_err().0, "writ.replayed");
    }
}

fn writ_cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_writ")).arg("--data-dir").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `POST /v1/keys/rotate` on the real binary: the new key is in the data directory (and
/// its published JWKS file), so after a restart writs of both keys still verify.
#[test]
fn a_key_rotated_over_http_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut server = start_server(dir);
    let agent = writ_cli(
        dir,
        &["identity", "issue", "--spiffe-id", "spiffe://demo.example/agent/billing-1", "--zone", "billing"],
    );
    let operator =
        writ_cli(dir, &["identity", "issue", "--operator", "--spiffe-id", "spiffe://demo.example/operator/alice"]);
    let request =
        json!({"credentials": {"workload": agent}, "action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    let call = json!({"action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    let authorize = |addr: &str| -> String {
        let (status, body) = http(addr, "POST", "/v1/authorize", Some(&request.to_string()));
        assert_eq!(status, 200);
        let d: Value = serde_json::from_slice(&body).unwrap();
        d["writ"].as_str().unwrap_or_else(|| panic!("{d}")).to_owned()
    };
    let old = authorize(&server.addr);

    let (status, body) = http_as(&server.addr, "POST", "/v1/keys/rotate", None, Some(&operator));
    let rotated: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated.get("warning").is_none(), "{rotated}");
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trust/jwks.json")).unwrap()).unwrap();
    assert_eq!(published["keys"].as_array().unwrap().len(), 2);
    let new = authorize(&server.addr);
    assert!(server.terminate().success());

    let server = start_server(dir);
    let (_, jwks) = http(&server.addr, "GET", "/.well-known/jwks.json", None);
    let jwks: Value = serde_json::from_slice(&jwks).unwrap();
    assert_eq!(jwks, published);
    for writ in [&old, &new] {
        verify_over_http(&server.addr, writ, &call).unwrap();
    }
    // Writs after the restart come from the rotated key.
    let after = authorize(&server.addr);
    assert_eq!(after.split('.').next(), new.split('.').next());
}

/// A client that stalls mid-request (half its headers, where no request timeout runs yet)
/// cannot hold the stop: SIGTERM ends the process within the request timeout plus the drain
/// margin (2 s), exit 0, the connection dropped and the log closed as usual.
#[test]
fn a_stalled_client_cannot_hold_a_graceful_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut server = start_server_with(dir, &["--request-timeout-ms", "1000"]);
    // Half a request line and no more; another connection sends nothing.
    let mut stalled = TcpStream::connect(&server.addr).unwrap();
    write!(stalled, "POST /v1/authorize HTTP/1.1\r\nHost: {}\r\nContent-Ty", server.addr).unwrap();
    let _silent = TcpStream::connect(&server.addr).unwrap();
    let (status, _) = http(&server.addr, "GET", "/healthz", None);
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let status = server.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status}\n{}", server_stderr(dir));
    assert!(took < std::time::Duration::from_secs(6), "the stop took {took:?} behind a stalled client");
    let stderr = server_stderr(dir);
    assert!(stderr.contains("connections still open after the drain: dropped"), "{stderr}");
    assert!(stderr.contains("writ: stopped; log size"), "{stderr}");
    drop(stalled);
}

/// Found in review: when the published JWKS could not be read, the verification loop's
/// problem named its absolute path, and `/readyz`, `/v1/health` and every refused
/// decision's detail showed it to anonymous callers. The file is named relative to the
/// data directory.
#[test]
fn a_missing_published_jwks_is_reported_without_the_machines_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server_with(dir, &["--verify-interval-ms", "100"]);
    std::fs::remove_file(dir.join("trust/jwks.json")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let ready = loop {
        let (status, body) = http(&server.addr, "GET", "/readyz", None);
        if status == 503 {
            break String::from_utf8(body).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "the loop never noticed: {status}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (_, health) = http(&server.addr, "GET", "/v1/health", None);
    let health = String::from_utf8(health).unwrap();
    let root = dir.to_str().unwrap();
    for (what, text) in [("/readyz", &ready), ("/v1/health", &health)] {
        assert!(text.contains("trust/jwks.json"), "{what} names the file: {text}");
        assert!(!text.contains(root), "{what} shows the data directory's path: {text}");
    }
}
