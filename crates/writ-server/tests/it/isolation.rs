//! Automatic isolation through the API (issue 17): an agent presents an altered writ as its
//! parent; the starter bundle's `forged-writ` rule isolates it (not the principal the writ
//! names), the quarantine list names the rule and the decision, its writ is revoked on the
//! feed, the metric counts it, and an operator's release restores new authorizations.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::feed::snapshot;
use crate::fixture;

fn read(token: &str) -> Value {
    json!({"credentials": {"workload": token}, "action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a"}})
}

#[test]
fn an_agent_presenting_an_altered_writ_is_isolated_by_the_starter_rule() {
    let f = fixture(true);
    let rogue = "spiffe://demo.example/agent/rogue";
    let victim = "spiffe://demo.example/agent/billing-1";
    let rogue_token = f.workload(rogue, "billing");
    let victim_token = f.workload(victim, "billing");
    let (_, own) = f.json("POST", "/v1/authorize", Some(read(&rogue_token)));
    assert_eq!(own["outcome"], "allow", "{own}");
    let (_, stolen) = f.json("POST", "/v1/authorize", Some(read(&victim_token)));
    let stolen = stolen["writ"].as_str().unwrap();
    // The victim's writ, one character of its signature changed.
    let mut altered = stolen.as_bytes().to_vec();
    let at = stolen.rfind('.').unwrap() + 7;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    // At /v1/verify nobody proven presents it: nothing recorded, nobody isolated.
    let size = f.engine.log().size();
    let (_, v) = f.json("POST", "/v1/verify", Some(json!({"writ": altered, "request": {"action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a"}}})));
    assert_eq!(v["reason"], "writ.bad_signature");
    assert_eq!(f.engine.log().size(), size);
    // As the rogue's parent: the rogue is isolated.
    let mut req = read(&rogue_token);
    req["parent_writ"] = json!(altered);
    let (_, d) = f.json("POST", "/v1/authorize", Some(req));
    assert_eq!(
        (d["outcome"].clone(), d["reasons"][0].clone()),
        (json!("deny"), json!("lineage.parent_unknown")),
        "{d}"
    );
    let op = f.operator();
    let (status, list) = f.json_as("GET", "/v1/quarantine", None, Some(&op));
    assert_eq!(status, StatusCode::OK);
    let list = list["quarantined"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["subject"], rogue);
    assert_eq!(list[0]["isolated"]["rule"], "forged-writ");
    assert_eq!(list[0]["isolated"]["triggers"], json!([d["log_index"]]));
    assert_eq!(list[0]["isolated"]["operator"], Value::Null);
    // In the log: the quarantine entry with its rule and triggers, then the revocation.
    let q = d["log_index"].as_u64().unwrap() + 1;
    let (_, e) = f.json("GET", &format!("/v1/log/entries?start={q}&end={}", q + 2), None);
    let quarantine = &e["entries"][0]["entry"];
    assert_eq!((quarantine["kind"].clone(), quarantine["rule"].clone()), (json!("quarantine"), json!("forged-writ")));
    let revocation = &e["entries"][1]["entry"];
    assert_eq!((revocation["kind"].clone(), revocation["jti"].clone()), (json!("revocation"), own["id"].clone()));
    assert_eq!(revocation["isolation"], json!(q));
    // The feed: the rogue isolated, its writ revoked.
    let s = snapshot(&f);
    assert_eq!(s["quarantined"], json!([rogue]));
    assert!(s["revoked"].as_array().unwrap().iter().any(|r| r["jti"] == own["id"]), "{s}");
    let metrics = String::from_utf8(f.call("GET", "/metrics", None).1).unwrap();
    assert!(metrics.contains("writ_isolations_total{rule=\"forged-writ\"} 1"), "{metrics}");
    // The victim was not isolated; the rogue is, until an operator releases it.
    assert_eq!(f.json("POST", "/v1/authorize", Some(read(&victim_token))).1["outcome"], "allow");
    assert_eq!(f.json("POST", "/v1/authorize", Some(read(&rogue_token))).1["reasons"][0], "quarantined");
    let (status, _) =
        f.json_as("POST", "/v1/quarantine/release", Some(json!({"subject": rogue, "reason": "reimaged"})), Some(&op));
    assert_eq!(status, StatusCode::OK);
    let (_, again) = f.json("POST", "/v1/authorize", Some(read(&rogue_token)));
    assert_eq!(again["outcome"], "allow", "{again}");
    let (_, v) = f.json("POST", "/v1/verify", Some(json!({"writ": own["writ"], "request": {"action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/a"}}})));
    assert_eq!(v["reason"], "writ.revoked", "a release does not un-revoke");
}
