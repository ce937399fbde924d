use serde_json::json;
use writ_core::ReasonCode;

use super::*;
use crate::BundleEntry;
use crate::testkit;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.example.org";
const SUB: &str = "spiffe://example.org/agent/billing";

fn verifier(config: VerifierConfig) -> IdentityVerifier {
    let mut bundle = TrustBundle::new();
    bundle
        .add(BundleEntry {
            trust_domain: "example.org".into(),
            issuer: ISS.into(),
            roles: vec![Role::Workload],
            jwks: json!({"keys": [testkit::ed25519_jwk(&testkit::ed25519(1), "k1")]}),
        })
        .unwrap();
    IdentityVerifier::new(bundle, config)
}

fn default_verifier() -> IdentityVerifier {
    verifier(VerifierConfig::new(vec!["writ".into()]))
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": SUB, "aud": "writ", "iat": NOW, "exp": NOW + 300})
}

fn token(claims: &Value) -> String {
    testkit::sign_ed25519(&testkit::ed25519(1), &json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}), claims)
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn reason(verifier: &IdentityVerifier, claims: &Value, now: u64) -> Option<ReasonCode> {
    verifier.verify(Role::Workload, &token(claims), now).err().map(|e| e.reason())
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = VerifierConfig::new(vec!["a".into()]);
    assert_eq!((config.max_skew_secs, config.max_lifetime_secs, config.cache_capacity), (60, 86_400, 65_536));
    assert!(VerifierConfig::default().audiences.is_empty());
}

#[test]
fn a_valid_credential_exposes_its_claims() {
    let claims = json!({"iss": ISS, "sub": SUB, "aud": ["other", "writ"], "iat": NOW, "nbf": NOW, "exp": NOW + 300,
                        "jti": "j-1", "zone": "eu", "roles": ["billing"]});
    let credential = default_verifier().verify(Role::Workload, &token(&claims), NOW).unwrap();
    assert_eq!(credential.subject().as_str(), SUB);
    assert_eq!((credential.issuer(), credential.trust_domain(), credential.kid()), (ISS, "example.org", "k1"));
    assert_eq!(credential.role(), Role::Workload);
    assert_eq!(credential.audience(), ["other", "writ"]);
    assert_eq!(credential.jti(), Some("j-1"));
    assert_eq!((credential.issued_at(), credential.not_before(), credential.expires_at()), (NOW, Some(NOW), NOW + 300));
    assert_eq!(Value::Object(credential.claims().clone()), json!({"zone": "eu", "roles": ["billing"]}));
}

#[test]
fn the_clock_checks_allow_exactly_the_skew() {
    let v = default_verifier();
    let c = claims();
    assert_eq!(reason(&v, &c, NOW + 300 + 60), None);
    assert_eq!(reason(&v, &c, NOW + 300 + 61), Some(ReasonCode::IdentityExpired));
    let nbf = with(claims(), "nbf", json!(NOW + 100));
    assert_eq!(reason(&v, &nbf, NOW + 40), None);
    assert_eq!(reason(&v, &nbf, NOW + 39), Some(ReasonCode::IdentityNotYetValid));
    let iat = json!({"iss": ISS, "sub": SUB, "aud": "writ", "iat": NOW + 100, "exp": NOW + 300});
    assert_eq!(reason(&v, &iat, NOW + 40), None);
    assert_eq!(reason(&v, &iat, NOW + 39), Some(ReasonCode::IdentityNotYetValid));
    let no_skew = verifier(VerifierConfig { max_skew_secs: 0, ..VerifierConfig::new(vec!["writ".into()]) });
    assert_eq!(reason(&no_skew, &c, NOW + 301), Some(ReasonCode::IdentityExpired));
    assert_eq!(reason(&no_skew, &c, NOW - 1), Some(ReasonCode::IdentityNotYetValid));
    assert_eq!(reason(&v, &with(claims(), "exp", json!(u64::MAX)), u64::MAX), Some(ReasonCode::IdentityMalformed));
}

#[test]
fn the_lifetime_is_bounded() {
    let v = verifier(VerifierConfig { max_lifetime_secs: 300, ..VerifierConfig::new(vec!["writ".into()]) });
    assert_eq!(reason(&v, &claims(), NOW), None);
    assert_eq!(reason(&v, &with(claims(), "exp", json!(NOW + 301)), NOW), Some(ReasonCode::IdentityMalformed));
    assert_eq!(reason(&v, &with(claims(), "exp", json!(NOW - 1)), NOW), Some(ReasonCode::IdentityMalformed));
}

#[test]
fn registered_claims_must_be_present_and_well_typed() {
    let v = default_verifier();
    for bad in [
        without(claims(), "iss"),
        without(claims(), "sub"),
        without(claims(), "aud"),
        without(claims(), "exp"),
        without(claims(), "iat"),
        with(claims(), "iss", json!(["x"])),
        with(claims(), "sub", json!(42)),
        with(claims(), "sub", json!("spiffe://example.org")),
        with(claims(), "sub", json!("https://example.org/agent")),
        with(claims(), "aud", json!([])),
        with(claims(), "aud", json!(["writ", 1])),
        with(claims(), "aud", json!({"writ": true})),
        with(claims(), "exp", json!((NOW + 300) as f64 + 0.5)),
        with(claims(), "exp", json!(-1)),
        with(claims(), "exp", json!((NOW + 300).to_string())),
        with(claims(), "iat", json!(null)),
        with(claims(), "nbf", json!("now")),
        with(claims(), "jti", json!(7)),
        json!([claims()]),
        json!("claims"),
    ] {
        assert_eq!(reason(&v, &bad, NOW), Some(ReasonCode::IdentityMalformed), "{bad}");
    }
}

#[test]
fn a_repeated_claim_is_malformed_even_when_signed() {
    let key = testkit::ed25519(1);
    let payload = format!(
        r#"{{"iss":"{ISS}","sub":"{SUB}","sub":"spiffe://example.org/admin","aud":"writ","iat":{NOW},"exp":{}}}"#,
        NOW + 300
    );
    let token = testkit::sign_ed25519_raw(&key, r#"{"alg":"EdDSA","kid":"k1"}"#, &payload);
    let err = default_verifier().verify(Role::Workload, &token, NOW).unwrap_err();
    assert_eq!(err.reason(), ReasonCode::IdentityMalformed, "{err}");
    assert!(err.to_string().contains("duplicate member"), "{err}");
}

#[test]
fn audiences_must_intersect() {
    let v = default_verifier();
    assert_eq!(reason(&v, &with(claims(), "aud", json!("other")), NOW), Some(ReasonCode::IdentityAudience));
    assert_eq!(reason(&v, &with(claims(), "aud", json!(["a", "b"])), NOW), Some(ReasonCode::IdentityAudience));
    assert_eq!(reason(&v, &with(claims(), "aud", json!(["a", "writ"])), NOW), None);
    let nobody = verifier(VerifierConfig::default());
    assert_eq!(reason(&nobody, &claims(), NOW), Some(ReasonCode::IdentityAudience));
}

#[test]
fn issuer_role_and_domain_are_enforced() {
    let v = default_verifier();
    let other_iss = with(claims(), "iss", json!("https://evil.example.org"));
    assert_eq!(reason(&v, &other_iss, NOW), Some(ReasonCode::IdentityUntrustedIssuer));
    let other_domain = with(claims(), "sub", json!("spiffe://other.org/agent"));
    assert_eq!(reason(&v, &other_domain, NOW), Some(ReasonCode::IdentityUntrustedIssuer));
    let err = v.verify(Role::Operator, &token(&claims()), NOW).unwrap_err();
    assert_eq!(err.reason(), ReasonCode::IdentityUntrustedIssuer);
}

#[test]
fn the_cache_is_per_token_and_role_and_rechecks_the_clock() {
    let v = default_verifier();
    let t = token(&claims());
    let first = v.verify(Role::Workload, &t, NOW).unwrap();
    assert_eq!(v.cached_tokens(), 1);
    assert_eq!(v.verify(Role::Workload, &t, NOW + 1).unwrap(), first);
    assert_eq!(v.cached_tokens(), 1);
    assert_eq!(v.verify(Role::Operator, &t, NOW).unwrap_err().reason(), ReasonCode::IdentityUntrustedIssuer);
    assert_eq!(v.verify(Role::Workload, &t, NOW + 361).unwrap_err().reason(), ReasonCode::IdentityExpired);
    assert_eq!(v.verify(Role::Workload, &t, NOW - 61).unwrap_err().reason(), ReasonCode::IdentityNotYetValid);
    assert_eq!(v.cached_tokens(), 1, "failures are not cached");

    let expired = token(&with(claims(), "exp", json!(NOW + 10)));
    assert!(v.verify(Role::Workload, &expired, NOW + 100).is_err());
    assert_eq!(v.cached_tokens(), 1, "a token that failed its clock check is not cached");

    let uncached = verifier(VerifierConfig { cache_capacity: 0, ..VerifierConfig::new(vec!["writ".into()]) });
    uncached.verify(Role::Workload, &t, NOW).unwrap();
    assert_eq!(uncached.cached_tokens(), 0);
}

#[test]
fn the_cache_is_bounded() {
    let v = verifier(VerifierConfig { cache_capacity: 3, ..VerifierConfig::new(vec!["writ".into()]) });
    for i in 0..10 {
        v.verify(Role::Workload, &token(&with(claims(), "jti", json!(format!("j{i}")))), NOW).unwrap();
        assert!(v.cached_tokens() <= 3);
    }
    assert_eq!(v.cached_tokens(), 3);
}

#[test]
fn verifier_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<IdentityVerifier>();
    assert_send_sync::<VerifiedCredential>();
}

#[test]
fn oversized_tokens_are_malformed_before_any_work() {
    let huge = format!("{}.{}.x", "a".repeat(10), "b".repeat(jose::MAX_TOKEN_BYTES));
    assert_eq!(
        default_verifier().verify(Role::Workload, &huge, NOW).unwrap_err().reason(),
        ReasonCode::IdentityMalformed
    );
}

#[test]
fn es256_keys_verify_only_es256_signatures() {
    let mut bundle = TrustBundle::new();
    bundle
        .add(BundleEntry {
            trust_domain: "example.org".into(),
            issuer: ISS.into(),
            roles: vec![Role::Workload],
            jwks: json!({"keys": [testkit::p256_jwk(&testkit::p256(2), "ec"),
                                  testkit::ed25519_jwk(&testkit::ed25519(1), "ed")]}),
        })
        .unwrap();
    let v = IdentityVerifier::new(bundle, VerifierConfig::new(vec!["writ".into()]));
    let es256 = testkit::sign_p256(&testkit::p256(2), &json!({"alg": "ES256", "kid": "ec"}), &claims());
    assert_eq!(v.verify(Role::Workload, &es256, NOW).unwrap().kid(), "ec");
    let crossed = testkit::sign_p256(&testkit::p256(2), &json!({"alg": "ES256", "kid": "ed"}), &claims());
    assert_eq!(v.verify(Role::Workload, &crossed, NOW).unwrap_err().reason(), ReasonCode::IdentityBadSignature);
    let crossed = testkit::sign_ed25519(&testkit::ed25519(1), &json!({"alg": "EdDSA", "kid": "ec"}), &claims());
    assert_eq!(v.verify(Role::Workload, &crossed, NOW).unwrap_err().reason(), ReasonCode::IdentityBadSignature);
    let wrong_key = testkit::sign_p256(&testkit::p256(3), &json!({"alg": "ES256", "kid": "ec"}), &claims());
    assert_eq!(v.verify(Role::Workload, &wrong_key, NOW).unwrap_err().reason(), ReasonCode::IdentityBadSignature);
}
