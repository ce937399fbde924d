use serde_json::json;
use writ_core::ReasonCode;

use super::*;
use crate::json::parse_object;
use crate::{IdentityVerifier, TrustBundle, VerifierConfig};

const NOW: u64 = 1_700_000_000;

fn dev() -> DevIssuer {
    DevIssuer::generate("example.org", "https://dev.example.org").unwrap()
}

fn subject(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn request(subject: &SpiffeId) -> IssueRequest<'_> {
    IssueRequest { subject, audience: vec!["writ".into()], ttl_secs: 300, extra_claims: Map::new(), now: NOW }
}

fn decode_segment(token: &str, index: usize) -> Map<String, Value> {
    let segment = token.split('.').nth(index).unwrap();
    parse_object(&b64url_decode(segment).unwrap()).unwrap()
}

/// RFC 8037 Appendix A.1–A.3: the Ed25519 key, its public key and its RFC 7638 thumbprint.
#[test]
fn kid_is_the_rfc7638_thumbprint_of_rfc8037_vectors() {
    let d = b64url_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
    let seed: [u8; 32] = d.try_into().unwrap();
    let issuer = DevIssuer::from_seed("example.org", "i", &seed, None).unwrap();
    assert_eq!(issuer.public_jwk()["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(issuer.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn issued_tokens_have_the_documented_header_and_claims() {
    let issuer = dev();
    let sub = subject("spiffe://example.org/agent/a");
    let mut extra = Map::new();
    extra.insert("zone".into(), json!("eu"));
    let token = issuer.issue(IssueRequest { extra_claims: extra, ..request(&sub) }).unwrap();
    assert_eq!(Value::Object(decode_segment(&token, 0)), json!({"alg": "EdDSA", "typ": "JWT", "kid": issuer.kid()}));
    let claims = decode_segment(&token, 1);
    assert_eq!(claims["iss"], "https://dev.example.org");
    assert_eq!(claims["sub"], "spiffe://example.org/agent/a");
    assert_eq!(claims["aud"], json!(["writ"]));
    assert_eq!(
        (claims["iat"].as_u64(), claims["nbf"].as_u64(), claims["exp"].as_u64()),
        (Some(NOW), Some(NOW), Some(NOW + 300))
    );
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()), "{jti}");
    assert_eq!(claims["zone"], "eu");
    let again = decode_segment(&issuer.issue(request(&sub)).unwrap(), 1);
    assert_ne!(again["jti"], claims["jti"], "jti is random");
}

#[test]
fn a_bundle_with_the_entry_verifies_its_tokens() {
    let issuer = dev();
    let mut bundle = TrustBundle::new();
    bundle.add(issuer.bundle_entry(&[Role::Workload, Role::Attestor])).unwrap();
    let verifier = IdentityVerifier::new(bundle, VerifierConfig::new(vec!["writ".into()]));
    let sub = subject("spiffe://example.org/agent/a");
    let credential = verifier.verify(Role::Workload, &issuer.issue(request(&sub)).unwrap(), NOW).unwrap();
    assert_eq!(credential.subject(), &sub);
    let measurement = format!("sha256:{}", "ab".repeat(32));
    let attestation = issuer
        .issue_attestation(AttestationRequest {
            subject: &sub,
            audience: vec!["writ".into()],
            measurement: &measurement,
            environment: "prod",
            region: "eu-west-1",
            ttl_secs: 60,
            now: NOW,
        })
        .unwrap();
    let verified = verifier.verify_attestation(&attestation, &sub, NOW).unwrap();
    assert_eq!(
        (verified.measurement(), verified.environment(), verified.region()),
        (measurement.as_str(), "prod", "eu-west-1")
    );
}

#[test]
fn the_secret_form_round_trips() {
    let issuer = dev();
    let secret = issuer.to_secret_json();
    let loaded = DevIssuer::from_secret_json(&secret).unwrap();
    assert_eq!(
        (loaded.kid(), loaded.issuer(), loaded.trust_domain()),
        (issuer.kid(), issuer.issuer(), issuer.trust_domain())
    );
    assert_eq!(loaded.public_jwk(), issuer.public_jwk());
    assert_eq!(loaded.to_secret_json(), secret);
    let header = json!({"alg": "EdDSA", "kid": issuer.kid()});
    assert_eq!(loaded.sign(&header, &json!({"a": 1})), issuer.sign(&header, &json!({"a": 1})), "same key");
}

#[test]
fn a_tampered_secret_form_is_refused() {
    let issuer = dev();
    let good: Value = serde_json::from_str(&issuer.to_secret_json()).unwrap();
    let other: Value = serde_json::from_str(&dev().to_secret_json()).unwrap();
    let mut cases = Vec::new();
    let mut mismatched = good.clone();
    mismatched["key"]["x"] = other["key"]["x"].clone();
    cases.push((mismatched, "\"x\" is not the public key"));
    let mut format = good.clone();
    format["format"] = json!("v0");
    cases.push((format, "format \"v0\""));
    let mut short = good.clone();
    short["key"]["d"] = json!(b64url_encode(&[1; 16]));
    cases.push((short, "16 bytes, not 32"));
    let mut unknown = good.clone();
    unknown["key"]["use"] = json!("sig");
    cases.push((unknown, "unknown field `use`"));
    let mut curve = good.clone();
    curve["key"]["crv"] = json!("X25519");
    cases.push((curve, "not an OKP/Ed25519 key"));
    let mut domain = good.clone();
    domain["trust_domain"] = json!("bad domain");
    cases.push((domain, "not valid"));
    for (doc, expected) in cases {
        let err = DevIssuer::from_secret_json(&doc.to_string()).unwrap_err();
        assert!(err.to_string().contains(expected), "{err} (expected {expected:?})");
        assert_eq!(err.reason(), ReasonCode::Internal);
    }
    assert!(DevIssuer::from_secret_json("not json").is_err());
}

#[test]
fn debug_does_not_show_the_private_key() {
    let issuer = dev();
    let secret: Value = serde_json::from_str(&issuer.to_secret_json()).unwrap();
    let d = secret["key"]["d"].as_str().unwrap();
    let debug = format!("{issuer:?}");
    assert!(!debug.contains(d) && debug.contains(issuer.kid()), "{debug}");
}

#[test]
fn bad_requests_are_refused() {
    let issuer = dev();
    let sub = subject("spiffe://example.org/agent/a");
    let foreign = subject("spiffe://other.org/agent/a");
    assert!(issuer.issue(request(&foreign)).unwrap_err().to_string().contains("outside the issuer's trust domain"));
    assert!(issuer.issue(IssueRequest { audience: vec![], ..request(&sub) }).is_err());
    assert!(issuer.issue(IssueRequest { audience: vec![String::new()], ..request(&sub) }).is_err());
    assert!(issuer.issue(IssueRequest { ttl_secs: 0, ..request(&sub) }).is_err());
    assert!(issuer.issue(IssueRequest { now: u64::MAX, ..request(&sub) }).is_err());
    for registered in REGISTERED_CLAIMS {
        let mut extra = Map::new();
        extra.insert(registered.into(), json!("x"));
        let err = issuer.issue(IssueRequest { extra_claims: extra, ..request(&sub) }).unwrap_err();
        assert!(err.to_string().contains("registered claim"), "{err}");
    }
    let attestation = |measurement: &str, environment: &str| {
        issuer.issue_attestation(AttestationRequest {
            subject: &sub,
            audience: vec!["writ".into()],
            measurement,
            environment,
            region: "r",
            ttl_secs: 60,
            now: NOW,
        })
    };
    assert!(attestation("sha256:abc", "prod").is_err());
    assert!(attestation(&format!("sha256:{}", "AB".repeat(32)), "prod").is_err());
    assert!(attestation(&format!("sha256:{}", "ab".repeat(32)), "").is_err());
    assert!(attestation(&format!("sha256:{}", "ab".repeat(32)), "prod").is_ok());
    assert!(DevIssuer::generate("Example.org", "i").is_err());
    assert!(DevIssuer::generate("example.org", "").is_err());
}
