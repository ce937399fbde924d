//! The shadow bundle's routes (`/v1/policy/shadow`): refused to anyone but an operator;
//! set, watched (status and metrics), refused for the active bundle, an unknown digest or a
//! malformed body, promoted (an activation with its re-evaluation) and cleared.

use axum::http::StatusCode;
use serde_json::{Value, json};
use writ_policy::{Bundle, sign_bundle, starter_bundle};

use crate::{Fixture, fixture};

/// Every shadow route, with a body that would be valid.
fn shadow_routes(digest: &str) -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/v1/policy/shadow", None),
        ("PUT", "/v1/policy/shadow", Some(json!({"digest": digest, "reason": "r"}))),
        ("DELETE", "/v1/policy/shadow", Some(json!({"reason": "r"}))),
        ("POST", "/v1/policy/shadow/promote", Some(json!({"reason": "r"}))),
    ]
}

/// The starter bundle with writes forbidden everywhere, uploaded (not activated); its digest.
fn upload_frozen(f: &Fixture, op: &str) -> String {
    let (manifest, policies, schema, entities, _) = starter_bundle().unwrap().parts();
    let manifest = manifest.replace("\"version\": \"", "\"version\": \"frozen-");
    let policies =
        format!("{policies}\n@id(\"freeze\")\nforbid (principal, action == Writ::Action::\"write\", resource);\n");
    let b = Bundle::from_parts(&manifest, &policies, &schema, entities.as_deref(), None).unwrap();
    let sig = sign_bundle(&b, &f.policy_key).unwrap();
    let (manifest, policies, schema, entities, tests) = b.parts();
    let body = json!({"bundle": {"manifest": manifest, "policies": policies, "schema": schema, "entities": entities, "tests": tests}, "signature": sig, "activate": false});
    let (s, up) = f.json_as("POST", "/v1/bundles", Some(body), Some(op));
    assert_eq!(s, StatusCode::OK, "{up}");
    up["digest"].as_str().unwrap().to_owned()
}

#[test]
fn the_shadow_routes_refuse_anyone_but_an_operator() {
    let f = fixture(true);
    let digest = upload_frozen(&f, &f.operator());
    let workload = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let size = f.engine.log().size();
    for (method, uri, body) in shadow_routes(&digest) {
        for (auth, status, code) in [
            (None, StatusCode::UNAUTHORIZED, "identity.missing"),
            (Some("Bearer not.a.jwt".to_owned()), StatusCode::UNAUTHORIZED, "identity.malformed"),
            (Some(format!("Bearer {workload}")), StatusCode::FORBIDDEN, "identity.untrusted_issuer"),
        ] {
            let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
            let (s, b, _) = f.call_as(method, uri, bytes, auth.as_deref());
            let e: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!((s, e["error"].as_str().unwrap()), (status, code), "{method} {uri} with {auth:?}: {e}");
        }
    }
    assert_eq!(f.engine.log().size(), size, "a refused caller changed nothing");
    assert_eq!(f.engine.shadow().bundle, None);
    // Every route is documented, behind the bearer scheme.
    let (_, doc) = f.json("GET", "/v1/openapi.json", None);
    for (method, uri, _) in shadow_routes(&digest) {
        assert_eq!(doc["paths"][uri][method.to_lowercase()]["security"], json!([{"bearer": []}]), "{method} {uri}");
    }
}

#[test]
fn an_operator_sets_watches_refuses_promotes_and_clears_the_shadow() {
    let f = fixture(true);
    let op = f.operator();
    let digest = upload_frozen(&f, &op);
    let (_, status) = f.json_as("GET", "/v1/policy/shadow", None, Some(&op));
    assert_eq!(status, json!({"bundle": null, "evaluated": 0, "disagreements": 0}));

    // Refusals, none recorded.
    let size = f.engine.log().size();
    let (_, list) = f.json_as("GET", "/v1/bundles", None, Some(&op));
    let starter = list["bundles"].as_array().unwrap().iter().find(|b| b["active"] == true).unwrap()["digest"].clone();
    for (body, status, code) in [
        (json!({"digest": starter, "reason": "r"}), StatusCode::CONFLICT, "request.malformed"),
        (json!({"digest": format!("sha256:{}", "0".repeat(64)), "reason": "r"}), StatusCode::NOT_FOUND, "not_found"),
        (json!({"digest": digest, "reason": "r", "enforce": true}), StatusCode::BAD_REQUEST, "request.malformed"),
        (json!({"reason": "r"}), StatusCode::BAD_REQUEST, "request.malformed"),
        // Not digests at all (found in review: answered 404, as if merely absent).
        (json!({"digest": "sha256:ABC", "reason": "r"}), StatusCode::BAD_REQUEST, "request.malformed"),
        (json!({"digest": "../../etc/passwd", "reason": "r"}), StatusCode::BAD_REQUEST, "request.malformed"),
        (json!({"digest": digest.to_uppercase(), "reason": "r"}), StatusCode::BAD_REQUEST, "request.malformed"),
    ] {
        let (s, e) = f.json_as("PUT", "/v1/policy/shadow", Some(body.clone()), Some(&op));
        assert_eq!((s, e["error"].as_str()), (status, Some(code)), "{body}: {e}");
    }
    // The same on the bundle routes that take a digest in the path; an overlong path
    // parameter is refused before it is read, and never echoed back whole.
    let long = "a".repeat(10_000);
    for (method, uri) in [
        ("GET", "/v1/policy/bundles/sha256:ABC".to_owned()),
        ("POST", "/v1/bundles/..%2F..%2Fetc%2Fpasswd/activate".to_owned()),
        ("POST", "/v1/bundles/sha256:zz/activate".to_owned()),
        ("GET", format!("/v1/lineage/{long}")),
        ("GET", format!("/v1/approvals/{long}")),
    ] {
        let (s, e) = f.json_as(method, &uri, None, Some(&op));
        assert_eq!(
            (s, e["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("request.malformed")),
            "{method} {uri}: {e}"
        );
        assert!(e["message"].as_str().unwrap().len() < 300, "{e}");
    }
    for (method, uri) in [("DELETE", "/v1/policy/shadow"), ("POST", "/v1/policy/shadow/promote")] {
        let (s, e) = f.json_as(method, uri, Some(json!({"reason": "r"})), Some(&op));
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {uri} with no shadow: {e}");
    }
    assert_eq!(f.engine.log().size(), size);

    // Set: recorded with the operator; the answer is the status.
    let (s, set) =
        f.json_as("PUT", "/v1/policy/shadow", Some(json!({"digest": digest, "reason": "try it"})), Some(&op));
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(set["bundle"]["digest"], json!(digest));
    assert_eq!(set["bundle"]["set_by"], "spiffe://demo.example/operator/alice");
    assert_eq!(set["bundle"]["log_index"], json!(size));
    assert_eq!(set["bundle"]["name"], "writ-starter", "{set}");

    // A write the shadow would deny is allowed, with its writ; the disagreement is counted.
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "allow", "{d}");
    assert!(d["writ"].is_string());
    let (_, d) = f.json(
        "POST",
        "/v1/authorize",
        Some(json!({"credentials": {}, "action": "write", "resource": "r", "arguments": {}})),
    );
    assert_eq!(d["outcome"], "deny");
    let (_, status) = f.json_as("GET", "/v1/policy/shadow", None, Some(&op));
    assert_eq!((&status["evaluated"], &status["disagreements"]), (&json!(2), &json!(1)), "{status}");
    let (_, body, _) = f.call("GET", "/metrics", None);
    let text = String::from_utf8(body).unwrap();
    for needle in [
        "writ_shadow_evaluations_total 2",
        "writ_shadow_disagreements_total{active=\"allow\",shadow=\"deny\"} 1",
        "writ_shadow_disagreements_total{active=\"deny\",shadow=\"allow\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    // Promote: an activation (re-evaluating the allowed write), then no shadow.
    let (s, p) =
        f.json_as("POST", "/v1/policy/shadow/promote", Some(json!({"reason": "a week of agreement"})), Some(&op));
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!((&p["digest"], &p["active"]), (&json!(digest), &json!(true)));
    assert_eq!(p["reevaluation"]["revoked"], 1, "{p}");
    assert_eq!(p["shadow_cleared"], json!(p["log_index"].as_u64().unwrap() + 1));
    let (_, status) = f.json_as("GET", "/v1/policy/shadow", None, Some(&op));
    assert_eq!(status["bundle"], Value::Null);
    let (_, d) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(d["outcome"], "deny", "the promoted bundle decides now: {d}");

    // The starter as the shadow again, then cleared with an empty body.
    let (s, _) =
        f.json_as("PUT", "/v1/policy/shadow", Some(json!({"digest": starter, "reason": "compare"})), Some(&op));
    assert_eq!(s, StatusCode::OK);
    let (s, c, _) = f.call_as("DELETE", "/v1/policy/shadow", None, Some(&format!("Bearer {op}")));
    let c: Value = serde_json::from_slice(&c).unwrap();
    assert_eq!((s, &c["cleared"]), (StatusCode::OK, &json!(true)), "{c}");
    assert_eq!(f.engine.shadow().bundle, None);
}
