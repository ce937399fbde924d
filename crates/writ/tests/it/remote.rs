//! Operator commands against a running `writ serve` (`--url` and an operator credential),
//! their refusals, and `writ serve` refusing a taken port before it writes anything.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{Server, issue, json_out, start_server, writ};

const AGENT: &str = "spiffe://demo.example/agent/billing-1";

/// `writ --data-dir DIR ARGS` with extra environment variables.
fn writ_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_writ"));
    c.arg("--data-dir").arg(dir).args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn url(server: &Server) -> String {
    format!("http://{}", server.addr)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn operator_commands_act_through_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server(dir);
    let url = url(&server);

    // The offline path cannot act beside the server, and says what to do instead.
    let o = writ(dir, &["quarantine", "isolate", AGENT], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--url"), "{}", stderr(&o));

    // No credential given: one is minted from the data directory's operator issuer. The
    // flags may come before or after the subcommand.
    let o = writ(dir, &["quarantine", "--url", &url, "isolate", AGENT, "--reason", "remote test"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("minted"), "{}", stderr(&o));
    let v = json_out(&o);
    assert_eq!(v["isolated"], AGENT);
    let isolated_at = v["log_index"].as_u64().unwrap();

    // The isolation is in the server's state and log, recorded under the operator.
    let o = writ(dir, &["quarantine", "list", "--url", &url], None);
    let list = json_out(&o);
    assert_eq!(list["quarantined"][0]["subject"], AGENT, "{list}");
    let token = issue(dir, AGENT, "billing");
    let request = serde_json::json!({
        "credentials": {"workload": token},
        "action": "read", "resource": "fs:/zones/billing", "arguments": {}
    })
    .to_string();
    let o = writ(dir, &["authorize", "--request", "-", "--url", &url], Some(&request));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json_out(&o)["reasons"][0], "quarantined");

    // An explicit operator credential, from a flag, the environment and a file.
    let op = String::from_utf8(
        writ(dir, &["identity", "issue", "--operator", "--spiffe-id", "spiffe://demo.example/operator/ana"], None)
            .stdout,
    )
    .unwrap();
    let o = writ(dir, &["quarantine", "release", AGENT, "--url", &url, "--credential", op.trim()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("minted"));
    assert!(json_out(&o)["log_index"].as_u64().unwrap() > isolated_at);
    let o = writ(dir, &["authorize", "--request", "-", "--url", &url], Some(&request));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let decision = json_out(&o);
    assert_eq!(decision["outcome"], "allow");
    let jti = decision["id"].as_str().unwrap().to_owned();

    let o = writ_env(
        dir,
        &["revoke", &jti, "--reason", "remote test"],
        &[("WRIT_URL", &url), ("WRIT_CREDENTIAL", op.trim())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_out(&o)["revoked"], jti.as_str());

    let file = dir.join("op.jwt");
    std::fs::write(&file, &op).unwrap();
    let o = writ(dir, &["keys", "rotate", "--url", &url, "--credential-file", file.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let rotated = json_out(&o);
    let kid = rotated["kid"].as_str().unwrap();
    assert_eq!(rotated["kids"].as_array().unwrap().last().unwrap(), kid);

    let o = writ(dir, &["quarantine", "list", "--url", &url, "--credential", op.trim()], None);
    assert!(json_out(&o)["quarantined"].as_array().unwrap().is_empty());
}

#[test]
fn policy_activate_uploads_and_activates_in_one_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server(dir);
    let url = url(&server);
    let bundle = dir.join("bundle");
    assert!(writ(dir, &["policy", "init", bundle.to_str().unwrap()], None).status.success());
    let manifest_path = bundle.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["version"] = Value::from("9.9.9");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();

    // Unsigned: refused before anything is sent.
    let o = writ(dir, &["policy", "activate", bundle.to_str().unwrap(), "--url", &url], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not signed"), "{}", stderr(&o));

    // Signed by a policy key the server does not trust: the server refuses it (exit 1).
    let other = tmp.path().join("other");
    assert!(writ(&other, &["keys", "generate"], None).status.success());
    assert!(writ(&other, &["policy", "sign", bundle.to_str().unwrap()], None).status.success());
    let o = writ(dir, &["policy", "activate", bundle.to_str().unwrap(), "--url", &url], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_out(&o);
    assert_eq!(v["activated"], false);
    assert_eq!(v["reason"], "policy.bundle_untrusted", "{v}");

    // Signed with the trusted key: uploaded and active.
    assert!(writ(dir, &["policy", "sign", bundle.to_str().unwrap()], None).status.success());
    let o = writ(dir, &["policy", "activate", bundle.to_str().unwrap(), "--url", &url], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_out(&o);
    assert_eq!(v["activated"], true);
    let active = serde_json::from_slice::<Value>(
        &crate::serve::http_as(&server.addr, "GET", "/v1/bundles", None, Some(&operator(dir))).1,
    )
    .unwrap();
    let is_active = active["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["digest"] == v["digest"] && b["active"] == true && b["version"] == "9.9.9");
    assert!(is_active, "{active}");
}

fn operator(dir: &Path) -> String {
    let o = writ(dir, &["identity", "issue", "--operator", "--spiffe-id", "spiffe://demo.example/operator/t"], None);
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn bad_credentials_and_targets_are_refused_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server(dir);
    let url = url(&server);

    // A workload credential is not an operator's: 403 from the server, exit 2.
    let workload = issue(dir, AGENT, "billing");
    let o = writ(dir, &["quarantine", "list", "--url", &url, "--credential", &workload], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("identity.untrusted_issuer"), "{}", stderr(&o));

    // A forged one: 401.
    let o = writ(dir, &["revoke", "x", "--url", &url, "--credential", "eyJhbGciOiJub25lIn0.e30."], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));

    // Not one token, an empty file, a credential without --url, a server that is not there,
    // a URL that is not plain http.
    let o = writ(dir, &["quarantine", "list", "--url", &url, "--credential", "a b"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not one token"), "{}", stderr(&o));
    let empty = dir.join("empty.jwt");
    std::fs::write(&empty, "\n").unwrap();
    let o = writ(dir, &["quarantine", "list", "--url", &url, "--credential-file", empty.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    let o = writ(dir, &["quarantine", "list", "--credential", &workload], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--url"), "{}", stderr(&o));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let o = writ(dir, &["quarantine", "list", "--url", &format!("http://{closed}")], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is `writ serve` running?"), "{}", stderr(&o));
    let o = writ(dir, &["quarantine", "list", "--url", "https://example.com"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("http://"), "{}", stderr(&o));

    // Without an operator issuer in the data directory and no credential: nothing to mint.
    let bare = tmp.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let o = writ(&bare, &["quarantine", "list", "--url", &url], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no operator credential"), "{}", stderr(&o));
}

#[test]
fn serve_refuses_a_taken_port_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let fresh = tmp.path().join("fresh");
    let o = Command::new(env!("CARGO_BIN_EXE_writ"))
        .arg("--data-dir")
        .arg(&fresh)
        .args(["serve", "--listen", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    assert!(!fresh.exists(), "a start that cannot listen created {}", fresh.display());
}
