//! `writ policy eval` (one decision, written nowhere) and `writ policy test`'s summary.

use std::path::Path;

use serde_json::json;

use crate::support::{json_out, writ};

const BILLING: &str = "spiffe://demo.example/agent/billing-1";

/// `writ policy eval --starter` of `request` (on standard input) as billing-1.
fn eval(dir: &Path, request: &serde_json::Value, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["policy", "eval", "--starter", "--request", "-", "--principal", BILLING, "--claim", "zone=billing"];
    args.extend_from_slice(extra);
    writ(dir, &args, Some(&request.to_string()))
}

fn pay(amount: u64) -> serde_json::Value {
    json!({"action": "payment", "resource": "payments:stripe", "arguments": {"amount": amount, "currency": "EUR"}})
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn policy_eval_decides_without_writing_and_at_the_time_given() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Allow, exit 0.
    let o = eval(dir, &pay(250), &["--at", "2026-12-03T10:30:00Z"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("decision: allow") && out.contains("decided by: payment-business-hours"), "{out}");
    assert!(
        out.contains("evaluated at 2026-12-03T10:30:00Z against writ-starter 1.5.0") && out.contains("not recorded")
    );
    // The same request at 03:00: the business-hours rule denies, exit 1, the explanation
    // names the closest permits and what they require.
    let o = eval(dir, &pay(250), &["--at", "2026-12-03T03:00:00Z"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("decision: deny (policy.denied)"), "{out}");
    assert!(
        out.contains(
            "closest permit payment-business-hours requires: a payment of 1 to 999, between 09:00 and 17:00 UTC"
        ),
        "{out}"
    );
    assert!(out.contains("closest permit payment-needs-approval requires:"), "{out}");
    // JSON: the answer's fields.
    let o = eval(dir, &pay(250), &["--at", "2026-12-03T03:00:00Z", "--json"]);
    let v = json_out(&o);
    assert_eq!((v["outcome"].clone(), v["reasons"].clone()), (json!("deny"), json!(["policy.denied"])));
    assert_eq!(v["explanation"]["closest_permits"][0]["policy"], "payment-business-hours");
    assert_eq!(v["recorded"], false);
    // Pending an approval at any hour, exit 3.
    let o = eval(dir, &pay(2500), &["--at", "2026-12-03T03:00:00Z"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("decision: pending-approval"));
    // Usage counters reach the rate rule: a forbid, with its reason.
    let o = eval(dir, &pay(250), &["--at", "2026-12-03T10:30:00Z", "--last-minute", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("forbidden by payment-rate: at most 5 payments a minute"), "{}", text(&o));
    // The claims are the principal's: another zone's agent may not write into billing.
    let write = json!({"action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a"}});
    assert_eq!(eval(dir, &write, &[]).status.code(), Some(0));
    let other = writ(
        dir,
        &[
            "policy",
            "eval",
            "--starter",
            "-r",
            "-",
            "--principal",
            "spiffe://demo.example/agent/s",
            "--claim",
            "zone=support",
        ],
        Some(&write.to_string()),
    );
    assert_eq!(other.status.code(), Some(1), "{}", text(&other));
    // A deploy needs an attestation (the bundle's requirement), and is decided with one.
    let deploy = json!({"action": "deploy", "resource": "deploy:billing-api", "arguments": {"service": "billing-api", "version": "1"}});
    let o = eval(dir, &deploy, &["--at", "2026-12-03T10:30:00Z"]);
    assert!(text(&o).contains("attestation.missing"), "{}", text(&o));
    let o = eval(
        dir,
        &deploy,
        &["--at", "2026-12-03T10:30:00Z", "--runtime", "environment=production", "--runtime", "region=eu"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Nothing was written: no log, no keys.
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "policy eval wrote into the data directory");
}

#[test]
fn policy_eval_refuses_malformed_input_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (body, needle) in [
        ("{\"action\": \"payment\"", "the request is malformed"),
        ("{\"action\": \"payment\", \"resource\": \"r\", \"action\": \"read\"}", "the request is malformed"),
        ("{\"action\": \"read\", \"resource\": \"r\", \"credentials\": {\"workload\": \"x\"}}", "does not read"),
    ] {
        let o = writ(dir, &["policy", "eval", "--starter", "-r", "-", "--principal", BILLING], Some(body));
        assert_eq!(o.status.code(), Some(2), "{body}: {}", text(&o));
        assert!(text(&o).contains(needle), "{body}: {}", text(&o));
    }
    for flags in [["--at", "yesterday"], ["--claim", "zone"], ["--principal", "not-a-spiffe-id"]] {
        let mut args = vec!["policy", "eval", "--starter", "-r", "-", "--principal", BILLING];
        args.extend_from_slice(&flags);
        let o = writ(dir, &args, Some(&pay(1).to_string()));
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
    }
    let help = writ(dir, &["policy", "eval", "--help"], None);
    assert!(text(&help).contains("Exit status: 0 allow, 1 deny"), "{}", text(&help));
}

#[test]
fn policy_test_prints_a_line_per_case_and_fails_on_a_failing_case() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bundle = dir.join("bundle");
    let b = bundle.to_str().unwrap();
    assert!(writ(dir, &["policy", "init", b], None).status.success());
    let o = writ(dir, &["policy", "test", b], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.lines().any(|l| l == "PASS an agent reads another zone"), "{out}");
    assert!(out.lines().last().unwrap().contains(" passed, 0 failed, "), "{out}");
    // A case expecting the wrong outcome fails: readable, with the explanation; exit 1.
    let tests = bundle.join("tests.json");
    let mut cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    let case =
        cases.as_array().unwrap().iter().find(|c| c["name"] == "a payment outside the time window").unwrap().clone();
    let mut wrong = case.clone();
    wrong["name"] = json!("a night payment, wrongly expected to pass");
    wrong["expect"] = json!("allow");
    wrong.as_object_mut().unwrap().remove("reason");
    cases.as_array_mut().unwrap().push(wrong);
    std::fs::write(&tests, cases.to_string()).unwrap();
    let o = writ(dir, &["policy", "test", b], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("FAIL a night payment, wrongly expected to pass"), "{out}");
    assert!(out.contains("expected allow, got deny (policy.denied)"), "{out}");
    assert!(out.contains("closest permit payment-business-hours requires:"), "{out}");
    assert!(out.contains(" passed, 1 failed, "), "{out}");
    let o = writ(dir, &["policy", "test", "--json", b], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_out(&o)["failed"], 1);
    // `policy check` warns about a policy without @reason, and still passes.
    let policies = bundle.join("policies.cedar");
    let src = std::fs::read_to_string(&policies).unwrap();
    std::fs::write(
        &policies,
        format!("{src}\n@id(\"bare\") permit (principal, action == Writ::Action::\"read\", resource);\n"),
    )
    .unwrap();
    let o = writ(dir, &["policy", "check", b], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_out(&o);
    assert!(v["warnings"][0].as_str().unwrap().contains("\"bare\" has no @reason"), "{v}");
}
