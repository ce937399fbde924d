//! The decision commands end to end through the binary, and the independent verification
//! of issued writs with PyJWT and an independent RFC 8785 implementation.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{json_out, writ};

#[test]
fn keys_policy_authorize_verify_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(writ(dir, &["keys", "generate"], None).status.success());
    for f in ["keys/writ.keys", "keys/policy.key", "keys/dev-issuer.json", "keys/log.key"] {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
    // A bundle authored from the starter, checked, tested, signed, activated.
    let bundle = dir.join("bundle");
    assert!(writ(dir, &["policy", "init", bundle.to_str().unwrap()], None).status.success());
    assert_eq!(json_out(&writ(dir, &["policy", "check", bundle.to_str().unwrap()], None))["ok"], true);
    let tests = json_out(&writ(dir, &["policy", "test", "--json", bundle.to_str().unwrap()], None));
    assert_eq!(tests["failed"], 0, "{tests}");
    // Activation without a signature is refused.
    let unsigned = writ(dir, &["policy", "activate", bundle.to_str().unwrap()], None);
    assert_ne!(unsigned.status.code(), Some(0));
    assert!(writ(dir, &["policy", "sign", bundle.to_str().unwrap()], None).status.success());
    // Tampering after signing is refused with policy.bundle_untrusted.
    let policies = bundle.join("policies.cedar");
    let original = std::fs::read_to_string(&policies).unwrap();
    std::fs::write(&policies, format!("{original}\n@id(\"all\") permit (principal, action, resource);\n")).unwrap();
    let tampered = writ(dir, &["policy", "activate", bundle.to_str().unwrap()], None);
    assert_eq!(tampered.status.code(), Some(1));
    assert_eq!(json_out(&tampered)["reason"], "policy.bundle_untrusted");
    std::fs::write(&policies, original).unwrap();
    let act = writ(dir, &["policy", "activate", bundle.to_str().unwrap()], None);
    assert_eq!(json_out(&act)["activated"], true);

    let token = String::from_utf8(
        writ(
            dir,
            &["identity", "issue", "--spiffe-id", "spiffe://demo.example/agent/billing-1", "--zone", "billing"],
            None,
        )
        .stdout,
    )
    .unwrap();
    let request = json!({
        "credentials": {"workload": token.trim()},
        "action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a.csv"}
    })
    .to_string();
    let d = writ(dir, &["authorize", "--request", "-"], Some(&request));
    assert!(d.status.success());
    let decision = json_out(&d);
    let w = decision["writ"].as_str().unwrap().to_owned();
    let req_file = dir.join("req.json");
    std::fs::write(&req_file, &request).unwrap();
    let v = writ(dir, &["verify", "--writ", &w, "--request", req_file.to_str().unwrap()], None);
    assert_eq!(json_out(&v)["ok"], true);
    let again = writ(dir, &["verify", "--writ", &w, "--request", req_file.to_str().unwrap()], None);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(json_out(&again)["reason"], "writ.replayed");
    // A denied request exits 1 with its reason: a write in another zone's directory.
    let other = request.replace("/zones/billing", "/zones/support");
    let denied = writ(dir, &["authorize", "--request", "-"], Some(&other));
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(json_out(&denied)["reasons"], json!(["policy.denied"]));
    let denied_id = json_out(&denied)["id"].clone();
    // Key rotation keeps old writs verifiable: the JWKS holds both keys.
    assert!(writ(dir, &["keys", "rotate"], None).status.success());
    assert_eq!(json_out(&writ(dir, &["keys", "jwks"], None))["keys"].as_array().unwrap().len(), 2);
    let published: Value = serde_json::from_slice(&std::fs::read(dir.join("trust/jwks.json")).unwrap()).unwrap();
    assert_eq!(published["keys"].as_array().unwrap().len(), 2);
    let replay = json_out(&writ(dir, &["log", "replay"], None));
    assert_eq!(replay["mismatches"], json!([]));
    assert_eq!(replay["decisions"], 2);
    assert_eq!(json_out(&writ(dir, &["log", "verify"], None))["ok"], true);

    // A candidate replayed against that history: the active bundle changes nothing (exit
    // 0); one that lets writes cross zones changes the denied write (exit 1), unsigned.
    let size = json_out(&writ(dir, &["log", "replay"], None))["entries"].clone();
    let same = writ(dir, &["policy", "replay", bundle.to_str().unwrap()], None);
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stderr));
    assert_eq!((json_out(&same)["decisions"].clone(), json_out(&same)["changed"].clone()), (json!(2), json!(0)));
    let wider = dir.join("wider");
    assert!(writ(dir, &["policy", "init", wider.to_str().unwrap()], None).status.success());
    let p = wider.join("policies.cedar");
    let text = std::fs::read_to_string(&p).unwrap();
    let loosened = text.replace("resource.zone == principal.zone", "true");
    assert_ne!(loosened, text);
    std::fs::write(&p, loosened).unwrap();
    let changed = writ(dir, &["policy", "replay", wider.to_str().unwrap()], None);
    assert_eq!(changed.status.code(), Some(1));
    let report = json_out(&changed);
    assert_eq!(report["changed"], 1, "{report}");
    assert_eq!(report["transitions"], json!({"deny -> allow": 1}));
    assert_eq!(report["changes"][0]["id"], denied_id);
    // Nothing was recorded by the replays.
    assert_eq!(json_out(&writ(dir, &["log", "replay"], None))["entries"], size);
    // A candidate that does not validate is refused (exit 2), as is no candidate.
    std::fs::write(&p, "permit (principal, action == Writ::Action::\"fly\", resource);").unwrap();
    assert_eq!(writ(dir, &["policy", "replay", wider.to_str().unwrap()], None).status.code(), Some(2));
    assert_eq!(writ(dir, &["policy", "replay"], None).status.code(), Some(2));
}

/// Writs issued by a real `writ serve` verify with another language's JWT library against
/// the JWKS the server publishes at `/.well-known/jwks.json`, and the `req` digest matches
/// an independent RFC 8785 implementation; the documentation's vectors (`docs/vectors`)
/// and its Python snippets check out with the same libraries. Needs python3 with PyJWT, cryptography and
/// rfc8785 (`.ci/run` installs them).
#[test]
fn writs_verify_with_pyjwt_and_an_independent_rfc8785() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/independent/verify_writs.py");
    let probe = Command::new("python3").args(["-c", "import jwt, rfc8785, cryptography"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("WRIT_SKIP_PYTHON").is_some(),
            "python3 with PyJWT, cryptography and rfc8785 is needed (pip install pyjwt cryptography rfc8785), \
             or set WRIT_SKIP_PYTHON=1 to skip knowingly"
        );
        return;
    }
    let out = Command::new("python3").arg(script).env("WRIT_BIN", env!("CARGO_BIN_EXE_writ")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let passed: usize = stdout
        .rsplit_once(" passed, 0 failed")
        .and_then(|(head, _)| head.rsplit('\n').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no clean summary in:\n{stdout}"));
    // The documentation's vectors and snippets (31 checks), then the writs of three requests
    // at least (the payment is denied outside its window), five checks each, and the JWKS
    // check.
    assert!(stdout.contains("ok   docs writ: verifies at valid_from"), "{stdout}");
    assert!(passed >= 47, "{stdout}");
}

#[test]
fn operator_commands_quarantine_and_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(writ(dir, &["keys", "generate"], None).status.success());
    assert!(writ(dir, &["policy", "activate", "--starter"], None).status.success());
    let agent = "spiffe://demo.example/agent/billing-1";
    let token =
        String::from_utf8(writ(dir, &["identity", "issue", "--spiffe-id", agent, "--zone", "billing"], None).stdout)
            .unwrap();
    let request = json!({"credentials": {"workload": token.trim()}, "action": "read", "resource": "fs:/zones/billing", "arguments": {}}).to_string();
    let allowed = json_out(&writ(dir, &["authorize", "--request", "-"], Some(&request)));
    assert_eq!(allowed["outcome"], "allow");

    assert!(writ(dir, &["quarantine", "isolate", agent], None).status.success());
    assert_eq!(json_out(&writ(dir, &["quarantine", "list"], None))["quarantined"][0]["subject"], json!(agent));
    let denied = json_out(&writ(dir, &["authorize", "--request", "-"], Some(&request)));
    assert_eq!(denied["reasons"], json!(["quarantined"]));
    assert!(writ(dir, &["quarantine", "release", agent], None).status.success());
    assert_eq!(json_out(&writ(dir, &["authorize", "--request", "-"], Some(&request)))["outcome"], "allow");
    assert!(writ(dir, &["quarantine", "isolate", "not-a-spiffe-id"], None).status.code() == Some(2));

    // Revoke the first writ: it no longer verifies.
    assert!(writ(dir, &["revoke", allowed["id"].as_str().unwrap()], None).status.success());
    let req_file = dir.join("req.json");
    std::fs::write(&req_file, &request).unwrap();
    let v = writ(
        dir,
        &["verify", "--writ", allowed["writ"].as_str().unwrap(), "--request", req_file.to_str().unwrap()],
        None,
    );
    assert_eq!(json_out(&v)["reason"], "writ.revoked");
    assert_eq!(json_out(&writ(dir, &["log", "replay"], None))["mismatches"], json!([]));

    // Issue 13, item 2, at the CLI verifier: a writ issued before its principal was
    // isolated is refused with `quarantined`, and verifies once the principal is released.
    let issued = json_out(&writ(dir, &["authorize", "--request", "-"], Some(&request)));
    let issued = issued["writ"].as_str().unwrap().to_owned();
    assert!(writ(dir, &["quarantine", "isolate", agent], None).status.success());
    let v = writ(dir, &["verify", "--writ", &issued, "--request", req_file.to_str().unwrap()], None);
    assert_eq!((v.status.code(), json_out(&v)["reason"].clone()), (Some(1), json!("quarantined")));
    assert!(writ(dir, &["quarantine", "release", agent], None).status.success());
    let v = writ(dir, &["verify", "--writ", &issued, "--request", req_file.to_str().unwrap()], None);
    assert_eq!(json_out(&v)["ok"], true);
}
