//! `writ demo` end to end against the real server: every step goes as expected (the demo
//! exits non-zero otherwise), twice in a row on the same data directory, and the log it
//! leaves passes the audit.

use std::process::Command;

use crate::support::start_server;

fn writ(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_writ")).arg("--data-dir").arg(dir).args(args).output().unwrap()
}

#[test]
fn the_demo_goes_as_expected_twice_and_leaves_an_auditable_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server(dir);
    let url = format!("http://{}", server.addr);
    for run in 0..2 {
        let out = writ(dir, &["demo", "--url", &url]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "run {run}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        for needle in [
            "deny  quarantined",
            "isolated by the rule forged-writ, naming that decision",
            "deny  identity.untrusted_issuer",
            "deny  lineage.parent_unknown",
            "deny  lineage.depth_exceeded",
            "outside",
            "(evaluated, not recorded)",
            "pending",
            "closest permit payment-needs-approval requires:",
            "every step went as expected",
        ] {
            assert!(stdout.contains(needle), "run {run}: {needle:?} missing:\n{stdout}");
        }
    }
    let audit = writ(dir, &["log", "verify"]);
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stderr));
    // The automatic isolations it caused are derived again from the log by replay.
    let replay = writ(dir, &["log", "replay"]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stdout));
    let report: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(report["isolations"], 2, "{report}");
    assert_eq!(report["mismatches"], serde_json::json!([]), "{report}");
    // A server that is not there: a clear error, not a hang.
    drop(server);
    let out = writ(dir, &["demo", "--url", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `writ serve` running?"));
}
