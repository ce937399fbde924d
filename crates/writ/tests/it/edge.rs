//! The edge of the real `writ serve` (issue 13): a flood of silent connections under a low
//! file-descriptor limit leaves `/readyz` answering (the connection cap fits the limit, the
//! oldest silent connections make room); the connection limits are `writ serve` flags; an
//! internal error answers a stable message and an error id, and the server's log names the
//! cause under that id.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{server_stderr, start_server, start_server_limited};

/// One request on its own connection (`Connection: close`); the status and the body.
fn http(addr: &str, method: &str, path: &str, body: Option<&str>, bearer: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let body = body.unwrap_or("");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: writ\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{raw:?}"));
    (head.split(' ').nth(1).unwrap().parse().unwrap(), payload.to_owned())
}

fn writ_cli(dir: &Path, args: &[&str]) -> String {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_writ")).arg("--data-dir").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Makes paths immutable (chattr +i binds root too) and mutable again when dropped.
struct Immutable(Vec<String>);

impl Immutable {
    fn set(paths: &[&Path]) -> Option<Immutable> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_str().unwrap().to_owned()).collect();
        let ok = std::process::Command::new("chattr").arg("+i").args(&paths).status().is_ok_and(|s| s.success());
        ok.then_some(Immutable(paths))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

/// With `ulimit -n 128`, 100 clients that connect and say nothing: before issue 13 they took
/// every descriptor (accept failing with EMFILE, `/readyz` never served); now the cap is
/// lowered to fit the limit (said at start), the oldest silent ones are closed to make room
/// for newer connections, the rest at the header timeout, and a `/readyz` behind them
/// answers at once.
#[test]
fn readyz_answers_through_a_flood_of_silent_connections_under_a_low_descriptor_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server_limited(dir, 128, &["--header-timeout-ms", "1500", "--idle-timeout-ms", "1500"]);
    let stderr = server_stderr(dir);
    assert!(stderr.contains("max_connections lowered from 1024 to 64"), "{stderr}");
    let flood: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(&server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    let (status, body) = http(&server.addr, "GET", "/readyz", None, None);
    let waited = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    assert!(waited < Duration::from_millis(1000), "/readyz waited {waited:?} behind the flood");
    // Every flooding connection was closed by the server, none answered.
    for mut s in flood {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        assert!(matches!(s.read(&mut buf), Ok(0)), "a silent connection was kept or answered");
    }
    let count = |metrics: &str, cause: &str| -> u64 {
        let name = format!("writ_http_connections_closed_total{{cause=\"{cause}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(name.as_str())).map_or(0, |v| v.trim().parse().unwrap())
    };
    // Each close is counted just after its socket closes.
    let until = Instant::now() + Duration::from_secs(2);
    let metrics = loop {
        let (_, metrics) = http(&server.addr, "GET", "/metrics", None, None);
        if count(&metrics, "cap") + count(&metrics, "header_timeout") == 100 || Instant::now() > until {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(count(&metrics, "cap") + count(&metrics, "header_timeout"), 100, "{metrics}");
    assert!(count(&metrics, "cap") >= 37, "the oldest made room for the newer ones: {metrics}");
    assert!(metrics.contains("writ_http_connections_max 64"), "{metrics}");
    assert!(metrics.contains("writ_http_accept_errors_total 0"), "the cap kept accept from running out: {metrics}");
}

/// An error whose cause is the server's own (the key store or the log store immutable)
/// answers a stable message and an error id; the server's log holds the cause under that id.
#[test]
fn an_internal_error_answers_an_id_that_the_server_log_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server(dir);
    let operator =
        writ_cli(dir, &["identity", "issue", "--operator", "--spiffe-id", "spiffe://demo.example/operator/alice"]);
    let keys = dir.join("keys");
    let Some(frozen) = Immutable::set(&[&keys, &keys.join("writ.keys")]) else {
        eprintln!("skipped: chattr +i is not available here");
        return;
    };
    let (status, body) = http(&server.addr, "POST", "/v1/keys/rotate", None, Some(&operator));
    drop(frozen);
    let rotated: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{rotated}");
    assert_eq!((rotated["error"].as_str(), rotated["message"].as_str()), (Some("internal"), Some("internal error")));
    let log = dir.join("log");
    let frozen = Immutable::set(&[&log, &log.join("log.db"), &log.join("log.db-wal")]).unwrap();
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/revocations",
        Some(&json!({"jti": "some-writ", "reason": "test"}).to_string()),
        Some(&operator),
    );
    drop(frozen);
    let revoked: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{revoked}");
    assert_eq!(
        (revoked["error"].as_str(), revoked["message"].as_str()),
        (Some("log.unavailable"), Some("the log is unavailable"))
    );

    let root = dir.to_str().unwrap();
    // The server writes its log line just before the answer; it is there by now.
    let stderr = server_stderr(dir);
    for answer in [&rotated, &revoked] {
        let text = answer.to_string();
        assert!(!text.contains(root) && !text.contains("writ.keys") && !text.contains("log.db"), "{text}");
        let id = answer["error_id"].as_str().unwrap();
        assert_eq!(id.len(), 16, "{text}");
        let line = stderr.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("no {id} in:\n{stderr}"));
        assert!(line.contains("cause="), "{line}");
    }
    let key_line = stderr.lines().find(|l| l.contains(rotated["error_id"].as_str().unwrap())).unwrap();
    assert!(key_line.contains(root), "the cause names the file: {key_line}");
}
