use serde_json::json;

use super::*;
use crate::json::b64url_encode;
use crate::testkit;

fn load(jwk: Value) -> Result<TrustedKey, IdentityError> {
    match jwk {
        Value::Object(map) => TrustedKey::from_jwk(map),
        _ => panic!("not an object"),
    }
}

fn rejected(jwk: Value, expected: &str) {
    let err = load(jwk.clone()).unwrap_err();
    assert!(matches!(err, IdentityError::Bundle(_)), "{err:?}");
    assert!(err.to_string().contains(expected), "{jwk}: {err} (expected {expected:?})");
}

fn ed() -> Value {
    testkit::ed25519_jwk(&testkit::ed25519(1), "ed")
}

fn ec() -> Value {
    testkit::p256_jwk(&testkit::p256(1), "ec")
}

fn with(mut jwk: Value, member: &str, value: Value) -> Value {
    jwk.as_object_mut().unwrap().insert(member.into(), value);
    jwk
}

fn without(mut jwk: Value, member: &str) -> Value {
    jwk.as_object_mut().unwrap().remove(member);
    jwk
}

#[test]
fn ed25519_and_p256_keys_load_with_their_algorithm() {
    let key = load(ed()).unwrap();
    assert_eq!((key.kid(), key.alg()), ("ed", Algorithm::EdDsa));
    let key = load(ec()).unwrap();
    assert_eq!((key.kid(), key.alg()), ("ec", Algorithm::Es256));
    let full = with(with(with(ed(), "alg", json!("EdDSA")), "use", json!("sig")), "key_ops", json!(["verify"]));
    assert_eq!(load(full.clone()).unwrap().to_json(), full, "written back as loaded");
    assert_eq!(load(ec()).unwrap().to_json(), ec());
}

#[test]
fn other_key_types_are_refused_by_name() {
    rejected(json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}), "RSA keys are not accepted");
    rejected(json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}), "symmetric (oct) keys are not accepted");
    rejected(json!({"kty": "XYZ", "kid": "x"}), "key type \"XYZ\" is not accepted");
    rejected(without(ed(), "kty"), "\"kty\" is missing");
    rejected(with(ed(), "kty", json!(1)), "not a string");
}

#[test]
fn other_curves_are_refused() {
    rejected(with(ed(), "crv", json!("Ed448")), "curve \"Ed448\" is not accepted for OKP");
    rejected(with(ed(), "crv", json!("X25519")), "curve \"X25519\"");
    rejected(with(ec(), "crv", json!("P-384")), "curve \"P-384\" is not accepted for EC");
    rejected(with(ec(), "crv", json!("secp256k1")), "curve \"secp256k1\"");
    rejected(with(ed(), "kty", json!("EC")), "curve \"Ed25519\" is not accepted for EC");
}

#[test]
fn private_key_material_is_refused() {
    rejected(with(ed(), "d", json!("AAAA")), "private key material (\"d\")");
    rejected(with(ec(), "d", json!("AAAA")), "private key material");
}

#[test]
fn bad_key_material_is_refused() {
    rejected(with(ed(), "x", json!("not base64!")), "invalid base64url");
    rejected(with(ed(), "x", json!(b64url_encode(&[1; 31]))), "\"x\" is 31 bytes, not 32");
    rejected(with(ed(), "x", json!(format!("{}=", b64url_encode(&[1; 32])))), "invalid base64url");
    // The identity point has small order: any signature would verify with the right tricks.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    rejected(with(ed(), "x", json!(b64url_encode(&identity))), "small-order");
    rejected(with(ec(), "y", json!(b64url_encode(&[1; 32]))), "not a point on P-256");
    rejected(with(ec(), "x", json!(b64url_encode(&[1; 33]))), "33 bytes");
    rejected(without(ec(), "y"), "needs \"y\"");
    rejected(with(ed(), "y", json!(b64url_encode(&[1; 32]))), "has no \"y\"");
}

#[test]
fn declared_use_alg_and_ops_must_fit() {
    rejected(with(ed(), "alg", json!("ES256")), "does not match a EdDSA key");
    rejected(with(ec(), "alg", json!("HS256")), "does not match a ES256 key");
    rejected(with(ed(), "use", json!("enc")), "\"use\" is \"enc\"");
    rejected(with(ed(), "key_ops", json!(["sign"])), "does not include \"verify\"");
}

#[test]
fn unknown_members_and_empty_kid_are_refused() {
    rejected(with(ed(), "x5c", json!(["MII"])), "unknown field `x5c`");
    rejected(with(ed(), "ext", json!(true)), "unknown field `ext`");
    rejected(with(ed(), "kid", json!("")), "\"kid\" is empty");
    rejected(without(ed(), "kid"), "missing field `kid`");
}
