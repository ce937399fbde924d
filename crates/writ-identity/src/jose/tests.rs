use serde_json::json;

use super::*;
use crate::json::b64url_encode;

fn header(value: Value) -> Result<Header, IdentityError> {
    parse_header(&b64url_encode(value.to_string().as_bytes()))
}

#[test]
fn accepted_headers() {
    let expected = Header { alg: Algorithm::EdDsa, kid: "k1".into() };
    assert_eq!(header(json!({"alg": "EdDSA", "kid": "k1"})).unwrap(), expected);
    assert_eq!(header(json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"})).unwrap(), expected);
    assert_eq!(header(json!({"alg": "EdDSA", "kid": "k1", "typ": "JOSE", "x5t": "abc"})).unwrap(), expected);
    assert_eq!(header(json!({"alg": "ES256", "kid": "k2"})).unwrap().alg, Algorithm::Es256);
}

#[test]
fn only_eddsa_and_es256_are_accepted_exactly() {
    for alg in [
        "none", "None", "HS256", "HS384", "HS512", "RS256", "PS256", "ES384", "ES512", "ES256K", "eddsa", "Ed25519",
        "EdDSA ", "",
    ] {
        let err = header(json!({"alg": alg, "kid": "k1"})).unwrap_err();
        assert_eq!(err.reason(), writ_core::ReasonCode::IdentityBadSignature, "{alg:?}: {err}");
    }
}

#[test]
fn key_carrying_and_critical_parameters_are_refused() {
    for (param, value) in [
        ("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["b64"])),
    ] {
        let err = header(json!({"alg": "EdDSA", "kid": "k1", param: value})).unwrap_err();
        assert_eq!(err.reason(), writ_core::ReasonCode::IdentityBadSignature, "{param}: {err}");
    }
}

#[test]
fn malformed_headers() {
    for bad in [
        json!({"kid": "k1"}),
        json!({"alg": 1, "kid": "k1"}),
        json!({"alg": "EdDSA"}),
        json!({"alg": "EdDSA", "kid": ""}),
        json!({"alg": "EdDSA", "kid": 7}),
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
        json!({"alg": "EdDSA", "kid": "k1", "typ": 1}),
        json!({"alg": "EdDSA", "kid": "k1", "cty": "JWT"}),
        json!({"alg": "EdDSA", "kid": "k1", "zip": "DEF"}),
        json!(["alg", "EdDSA"]),
    ] {
        let err = header(bad.clone()).unwrap_err();
        assert_eq!(err.reason(), writ_core::ReasonCode::IdentityMalformed, "{bad}: {err}");
    }
    let duplicate = b64url_encode(br#"{"alg":"EdDSA","kid":"k1","kid":"k2"}"#);
    assert!(matches!(parse_header(&duplicate), Err(IdentityError::Malformed(_))));
    assert!(matches!(parse_header("eyJhbGciOiJFZERTQSJ9="), Err(IdentityError::Malformed(_))), "padding");
    assert!(matches!(parse_header("!!!"), Err(IdentityError::Malformed(_))));
}

#[test]
fn compact_form_has_three_segments() {
    assert_eq!(header_segment("ab.AQ.AQ").unwrap(), "ab");
    assert_eq!(header_segment("ab.AQ.").unwrap(), "ab", "an empty signature is left to the alg check");
    for bad in ["", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.c.d.e", "ab.!!.AQ", "ab.AQ.AQ=", "ab.AQ.A", "ab.cd.AQ"]
    {
        assert!(matches!(header_segment(bad), Err(IdentityError::Malformed(_))), "{bad:?}");
    }
    let long = format!("{}.AQ.AQ", "a".repeat(MAX_TOKEN_BYTES));
    assert!(matches!(header_segment(&long), Err(IdentityError::Malformed(_))));
}
