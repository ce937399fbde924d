//! Trust bundle parsing through the public API: a realistic bundle loads and round-trips;
//! duplicate kids, RSA and symmetric keys, unknown fields and bad key material are refused.

use serde_json::{Value, json};
use writ_core::ReasonCode;
use writ_identity::{DevIssuer, IdentityError, Role, TrustBundle};

use crate::kit::*;

fn bundle_with_keys(keys: Value) -> Value {
    json!({"trust_domains": {"example.org": {"issuers": [
        {"issuer": IDP, "roles": ["workload", "operator", "orchestrator", "machine", "runtime", "attestor"],
         "jwks": {"keys": keys}}
    ]}}})
}

fn refused(bundle: &Value, expected: &str) -> IdentityError {
    let err = TrustBundle::from_json(bundle.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains(expected), "{err} (expected {expected:?})");
    assert_eq!(err.reason(), ReasonCode::Internal);
    err
}

#[test]
fn a_realistic_bundle_loads_and_round_trips() {
    let (ed, ec) = (Ed::generate("k1"), Ec::generate("k2"));
    let text = bundle_with_keys(json!([ed.jwk(), ec.jwk()])).to_string();
    let bundle = TrustBundle::from_json(text.as_bytes()).unwrap();
    assert!(bundle.contains_kid("k1") && bundle.contains_kid("k2") && !bundle.contains_kid("k3"));
    assert_eq!(bundle.trust_domains(), ["example.org"]);
    let again = TrustBundle::from_json(bundle.to_json().as_bytes()).unwrap();
    assert_eq!(again.to_value(), bundle.to_value());
    assert_eq!(bundle.to_value(), serde_json::from_str::<Value>(&text).unwrap());
}

#[test]
fn duplicate_kid() {
    let (a, b) = (Ed::generate("k1"), Ec::generate("k1"));
    refused(&bundle_with_keys(json!([a.jwk(), b.jwk()])), "duplicate kid \"k1\"");
    let c = Ed::generate("k1");
    let two_domains = json!({"trust_domains": {
        "example.org": {"issuers": [{"issuer": IDP, "roles": ["workload"], "jwks": {"keys": [a.jwk()]}}]},
        "other.org": {"issuers": [{"issuer": OTHER_IDP, "roles": ["workload"], "jwks": {"keys": [c.jwk()]}}]}
    }});
    refused(&two_domains, "duplicate kid \"k1\"");
}

#[test]
fn rsa_key() {
    let rsa = json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
                     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
                     "e": "AQAB"});
    refused(&bundle_with_keys(json!([rsa])), "RSA keys are not accepted");
}

#[test]
fn oct_key() {
    let oct = json!({"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": b64(b"correct horse battery staple")});
    refused(&bundle_with_keys(json!([oct])), "symmetric (oct) keys are not accepted");
}

#[test]
fn unknown_field() {
    let ed = Ed::generate("k1");
    let mut top = bundle_with_keys(json!([ed.jwk()]));
    top["refresh_hint"] = json!(300);
    refused(&top, "unknown field `refresh_hint`");
    let mut issuer = bundle_with_keys(json!([ed.jwk()]));
    issuer["trust_domains"]["example.org"]["issuers"][0]["audiences"] = json!(["writ"]);
    refused(&issuer, "unknown field `audiences`");
    let mut key = ed.jwk();
    key["x5t"] = json!("dGhpcyBpcyBub3QgYSB0aHVtYnByaW50");
    refused(&bundle_with_keys(json!([key])), "unknown field `x5t`");
}

#[test]
fn bad_base64_key_material() {
    let ed = Ed::generate("k1");
    let ec = Ec::generate("k2");
    let x = ed.x();
    for (bad, expected) in [
        (json!(format!("{x}=")), "invalid base64url"),
        (json!(format!("+{}", &x[1..])), "invalid base64url"),
        (json!(format!("{}$", &x[1..])), "invalid base64url"),
        (json!(&x[..20]), "bytes, not 32"),
        (json!(1), "invalid type"),
    ] {
        let mut key = ed.jwk();
        key["x"] = bad;
        refused(&bundle_with_keys(json!([key])), expected);
    }
    let mut key = ec.jwk();
    key["y"] = json!(b64(&[0xff; 32]));
    refused(&bundle_with_keys(json!([key])), "not a point on P-256");
}

#[test]
fn a_dev_issuer_plugs_into_a_parsed_bundle() {
    let ed = Ed::generate("k1");
    let mut bundle = TrustBundle::from_json(bundle_with_keys(json!([ed.jwk()])).to_string().as_bytes()).unwrap();
    let dev = DevIssuer::generate("example.org", "https://dev.example.org").unwrap();
    bundle.add(dev.bundle_entry(&[Role::Workload])).unwrap();
    assert!(bundle.contains_kid(dev.kid()));
    let reloaded = TrustBundle::from_json(bundle.to_json().as_bytes()).unwrap();
    assert!(reloaded.contains_kid(dev.kid()) && reloaded.contains_kid("k1"));
    let err = bundle.add(dev.bundle_entry(&[Role::Workload])).unwrap_err();
    assert_eq!(err.reason(), ReasonCode::Internal);
}
