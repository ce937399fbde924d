//! The node's health and its verification loop through the API (issue 17): an entry altered
//! in the database is found by a run asked for with `POST /v1/health/verify`; then
//! `/readyz` is 503 saying why, `GET /v1/health` names the problem, every decision is a
//! deny whose detail names the failed check, approvals are refused, and the metrics say so;
//! once the entry is restored, the next run passes and the node answers again.

use axum::http::StatusCode;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::fixture;

fn db(f: &crate::Fixture) -> Connection {
    let c = Connection::open(f.dir.path().join("log.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn metrics(f: &crate::Fixture) -> String {
    String::from_utf8(f.call("GET", "/metrics", None).1).unwrap()
}

#[test]
fn an_altered_entry_makes_the_node_unready_and_deny_until_it_is_restored() {
    let f = fixture(true);
    let op = f.operator();
    // Before any run: pending, ready, nothing verified yet.
    let (s, h) = f.json("GET", "/v1/health", None);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["verification"]["state"], "pending", "{h}");
    assert_eq!((h["ready"].clone(), h["node"].clone()), (json!(true), json!("local")), "{h}");
    assert_eq!(h["bundle"]["version"], writ_policy::starter_bundle().unwrap().manifest().version.as_str(), "{h}");
    assert!(
        h["log"]["checkpoint_time"].as_u64().is_some() && h["log"]["checkpoint_age_seconds"].as_u64().is_some(),
        "{h}"
    );
    // On demand, and only for an operator.
    let (s, e) = f.json("POST", "/v1/health/verify", None);
    assert_eq!((s, e["error"].clone()), (StatusCode::UNAUTHORIZED, json!("identity.missing")));
    let workload = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let (s, _) = f.json_as("POST", "/v1/health/verify", None, Some(&workload));
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = f.json_as("POST", "/v1/health/verify", None, Some(&op));
    assert_eq!((s, v["state"].clone()), (StatusCode::OK, json!("ok")), "{v}");

    // A decision, then its stored bytes altered directly in the database.
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow", "{d}");
    let index = d["log_index"].as_i64().unwrap();
    let original: Vec<u8> =
        db(&f).query_row("SELECT data FROM entries WHERE idx = ?1", params![index], |r| r.get(0)).unwrap();
    let altered = String::from_utf8(original.clone()).unwrap().replacen("billing-1", "billing-9", 1);
    db(&f).execute("UPDATE entries SET data = ?2 WHERE idx = ?1", params![index, altered.as_bytes()]).unwrap();

    let (s, v) = f.json_as("POST", "/v1/health/verify", None, Some(&op));
    assert_eq!((s, v["state"].clone()), (StatusCode::OK, json!("failed")), "{v}");
    assert_eq!(v["problems"][0]["check"], "log", "{v}");
    let (s, r) = f.json("GET", "/readyz", None);
    assert_eq!((s, r["error"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("log.unavailable")), "{r}");
    assert!(r["message"].as_str().unwrap().contains("log check"), "{r}");
    let (_, h) = f.json("GET", "/v1/health", None);
    assert_eq!((h["ready"].clone(), h["verification"]["state"].clone()), (json!(false), json!("failed")), "{h}");
    assert!(h["verification"]["problems"][0]["detail"].as_str().unwrap().contains("do not hash"), "{h}");
    // Every decision a deny, not recorded, with a detail that names the check.
    let size = f.engine.log().size();
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!((d["outcome"].clone(), d["reasons"].clone()), (json!("deny"), json!(["log.unavailable"])), "{d}");
    assert!(d["detail"].as_str().unwrap().contains("self-verification failed (log check)"), "{d}");
    assert!(d.get("log_index").is_none() && d.get("writ").is_none(), "{d}");
    assert_eq!(f.engine.log().size(), size);
    // No approval either.
    let (s, e) = f.json_as("POST", "/v1/approvals/x/approve", Some(json!({"reason": "r"})), Some(&op));
    assert_eq!((s, e["error"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("log.unavailable")), "{e}");
    let text = metrics(&f);
    assert_eq!(metric(&text, "writ_verification_ok "), 0.0);
    assert_eq!(metric(&text, "writ_verification_runs_total{result=\"failed\"} "), 1.0);
    assert_eq!(metric(&text, "writ_verification_runs_total{result=\"ok\"} "), 1.0);
    assert_eq!(metric(&text, "writ_verification_duration_seconds_count "), 2.0);
    assert!(metric(&text, "writ_verification_last_run_timestamp_seconds ") > 0.0);

    // Restored: the next run passes and the node answers again.
    db(&f).execute("UPDATE entries SET data = ?2 WHERE idx = ?1", params![index, original]).unwrap();
    let (_, v) = f.json_as("POST", "/v1/health/verify", None, Some(&op));
    assert_eq!(v["state"], "ok", "{v}");
    assert_eq!(v["verified_size"], json!(f.engine.log().size()), "{v}");
    assert_eq!(f.json("GET", "/readyz", None).0, StatusCode::OK);
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow", "{d}");
    let text = metrics(&f);
    assert_eq!(metric(&text, "writ_verification_ok "), 1.0);
    assert_eq!(metric(&text, "writ_verification_verified_size "), v["verified_size"].as_f64().unwrap());
    let (_, h) = f.json("GET", "/v1/health", None);
    assert_eq!(h["verification"]["problems"], Value::Array(vec![]), "{h}");
}
