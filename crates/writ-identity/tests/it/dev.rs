//! The development issuer end to end: generate, persist, reload, publish in a bundle, mint,
//! and verify with `jsonwebtoken` directly as any other language's JWT library would.

use serde_json::{Map, json};
use writ_core::SpiffeId;
use writ_identity::{DevIssuer, IdentityVerifier, IssueRequest, Role, TrustBundle, VerifierConfig};

use crate::kit::*;

#[test]
fn minted_credentials_verify_here_and_in_a_plain_jwt_library() {
    let issuer = DevIssuer::generate("example.org", "https://dev.example.org").unwrap();
    let reloaded = DevIssuer::from_secret_json(&issuer.to_secret_json()).unwrap();
    let mut bundle = TrustBundle::new();
    bundle.add(issuer.bundle_entry(&[Role::Workload, Role::Operator])).unwrap();
    let bundle = TrustBundle::from_json(bundle.to_json().as_bytes()).unwrap();
    let verifier = IdentityVerifier::new(bundle, VerifierConfig::new(vec![AUD.into()]));

    let subject = SpiffeId::parse(WORKLOAD).unwrap();
    let mut extra = Map::new();
    extra.insert("zone".into(), json!("eu-west"));
    let token = reloaded
        .issue(IssueRequest {
            subject: &subject,
            audience: vec![AUD.into()],
            ttl_secs: 120,
            extra_claims: extra,
            now: NOW,
        })
        .unwrap();
    let credential = verifier.verify(Role::Workload, &token, NOW + 10).unwrap();
    assert_eq!(credential.subject(), &subject);
    assert_eq!(credential.kid(), issuer.kid());
    assert_eq!(credential.claims().get("zone"), Some(&json!("eu-west")));
    assert!(credential.jti().is_some());
    assert!(verifier.verify(Role::Workload, &token, NOW + 120 + 61).is_err());

    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(issuer.public_jwk()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[AUD]);
    validation.validate_exp = false;
    let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
    assert_eq!(decoded.header.kid.as_deref(), Some(issuer.kid()));
    assert_eq!(decoded.claims["sub"], WORKLOAD);
}
