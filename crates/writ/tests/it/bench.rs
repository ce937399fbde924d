//! `writ bench` end to end: the real server on an ephemeral loopback port, a short mixed run
//! (authorize, then verify the writ just issued), and the JSON summary checked: decisions and
//! verifications were made, every one allowed or accepted, nothing failed.

use std::process::Command;

use serde_json::Value;

use crate::support::start_server;

#[test]
fn bench_mixed_run_allows_and_verifies_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_server(tmp.path());
    let out = Command::new(env!("CARGO_BIN_EXE_writ"))
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["bench", "--url", &format!("http://{}", server.addr)])
        .args(["--connections", "4", "--duration", "2s", "--warmup", "0s", "--mode", "mixed", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}\n{stderr}", out.status);
    // The progress line, once a second.
    assert!(stderr.contains("req/s"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ops = &summary["operations"];
    let authorized = ops["authorize"]["count"].as_u64().unwrap();
    let verified = ops["verify"]["count"].as_u64().unwrap();
    assert!(authorized > 0 && verified > 0, "{summary:#}");
    // Each verification follows its authorization on the same connection.
    assert!(verified <= authorized && authorized - verified <= 4, "{summary:#}");
    assert_eq!(summary["outcomes"]["authorize"], serde_json::json!({ "allow": authorized }), "{summary:#}");
    assert_eq!(summary["outcomes"]["verify"], serde_json::json!({ "ok": verified }), "{summary:#}");
    assert_eq!(summary["status"], serde_json::json!({ "200": authorized + verified }), "{summary:#}");
    assert_eq!(summary["errors"], serde_json::json!({}), "{summary:#}");
    for op in ["authorize", "verify"] {
        let l = &ops[op]["latency_us"];
        let (p50, p99, max) = (l["p50"].as_u64().unwrap(), l["p99"].as_u64().unwrap(), l["max"].as_u64().unwrap());
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{op}: {l}");
    }
    assert_eq!(summary["requests"].as_u64().unwrap(), authorized + verified);
    assert_eq!(summary["mode"], "mixed");
}

#[test]
fn bench_refuses_a_remote_target_and_a_missing_server() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_writ"))
            .arg("--data-dir")
            .arg(tmp.path())
            .arg("bench")
            .args(args)
            .output()
            .unwrap()
    };
    let keys =
        Command::new(env!("CARGO_BIN_EXE_writ")).arg("--data-dir").arg(tmp.path()).args(["keys", "generate"]).output();
    assert!(keys.unwrap().status.success());
    let out = run(&["--url", "http://192.0.2.1:7070", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"), "{}", String::from_utf8_lossy(&out.stderr));
    // A loopback port with nothing listening: a clear error, no load, no summary.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = run(&["--url", &format!("http://127.0.0.1:{port}"), "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
}
