//! Runtime attestations: bound to the workload, from an attestor, with a well-formed
//! measurement; every failure, whatever its cause, is `attestation.invalid`.

use serde_json::{Value, json};
use writ_core::{ReasonCode, SpiffeId};
use writ_identity::{
    AttestationRequest, DevIssuer, IdentityError, IdentityVerifier, Role, TrustBundle, VerifierConfig,
};

use crate::kit::*;

fn measurement() -> String {
    format!("sha256:{}", "3f".repeat(32))
}

fn attestation_claims(sub: &str) -> Value {
    let mut c = claims(ATTESTOR, sub);
    c["measurement"] = json!(measurement());
    c["environment"] = json!("production");
    c["region"] = json!("eu-west-1");
    c
}

fn workload() -> SpiffeId {
    SpiffeId::parse(WORKLOAD).unwrap()
}

fn invalid(verifier: &IdentityVerifier, token: &str) -> IdentityError {
    let err = verifier.verify_attestation(token, &workload(), NOW).unwrap_err();
    assert_eq!(err.reason(), ReasonCode::AttestationInvalid, "{err}");
    assert!(err.attestation_cause().is_some(), "{err:?}");
    err
}

#[test]
fn happy_path() {
    let world = World::new();
    let token = world.attestor.token(&attestation_claims(WORKLOAD));
    let verified = world.verifier.verify_attestation(&token, &workload(), NOW).unwrap();
    assert_eq!(verified.subject(), &workload());
    assert_eq!((verified.issuer(), verified.trust_domain()), (ATTESTOR, "example.org"));
    assert_eq!(verified.measurement(), measurement());
    assert_eq!((verified.environment(), verified.region()), ("production", "eu-west-1"));
    assert_eq!((verified.issued_at(), verified.expires_at(), verified.jti()), (NOW, NOW + 300, Some("0f8e2c7a")));
    assert_eq!(Value::Object(verified.claims().clone()), json!({"zone": "eu-west", "env": "prod"}));
}

#[test]
fn wrong_subject_binding() {
    let world = World::new();
    let token = world.attestor.token(&attestation_claims("spiffe://example.org/ns/billing/agent/other"));
    let err = invalid(&world.verifier, &token);
    assert!(matches!(err.attestation_cause(), Some(IdentityError::SubjectMismatch(_))), "{err:?}");
}

#[test]
fn missing_measurement() {
    let world = World::new();
    let mut c = attestation_claims(WORKLOAD);
    c.as_object_mut().unwrap().remove("measurement");
    let err = invalid(&world.verifier, &world.attestor.token(&c));
    assert_eq!(err.attestation_cause().unwrap().reason(), ReasonCode::IdentityMalformed);
    for claim in ["environment", "region"] {
        let mut c = attestation_claims(WORKLOAD);
        c.as_object_mut().unwrap().remove(claim);
        invalid(&world.verifier, &world.attestor.token(&c));
        c[claim] = json!(42);
        invalid(&world.verifier, &world.attestor.token(&c));
    }
}

#[test]
fn measurement_not_in_sha256_form() {
    let world = World::new();
    for bad in [
        json!("3f".repeat(32)),
        json!(format!("sha256:{}", "3F".repeat(32))),
        json!(format!("sha256:{}", "3f".repeat(31))),
        json!(format!("sha384:{}", "3f".repeat(48))),
        json!(format!("sha256:{}zz", "3f".repeat(31))),
        json!(""),
        json!(["sha256:..."]),
    ] {
        let mut c = attestation_claims(WORKLOAD);
        c["measurement"] = bad.clone();
        let err = invalid(&world.verifier, &world.attestor.token(&c));
        assert_eq!(err.attestation_cause().unwrap().reason(), ReasonCode::IdentityMalformed, "{bad}");
    }
}

#[test]
fn signed_by_a_workload_only_issuer() {
    // The main IdP holds every role but attestor; a dev issuer trusted only for workloads.
    let world = World::new();
    let mut c = attestation_claims(WORKLOAD);
    c["iss"] = json!(IDP);
    let err = invalid(&world.verifier, &world.idp_ed.token(&c));
    assert_eq!(err.attestation_cause().unwrap().reason(), ReasonCode::IdentityUntrustedIssuer);

    let dev = DevIssuer::generate("example.org", "https://dev.example.org").unwrap();
    let mut bundle = TrustBundle::new();
    bundle.add(dev.bundle_entry(&[Role::Workload])).unwrap();
    let verifier = IdentityVerifier::new(bundle, VerifierConfig::new(vec![AUD.into()]));
    let measurement = measurement();
    let token = dev
        .issue_attestation(AttestationRequest {
            subject: &workload(),
            audience: vec![AUD.into()],
            measurement: &measurement,
            environment: "production",
            region: "eu-west-1",
            ttl_secs: 300,
            now: NOW,
        })
        .unwrap();
    let err = invalid(&verifier, &token);
    assert_eq!(err.attestation_cause().unwrap().reason(), ReasonCode::IdentityUntrustedIssuer);
}

#[test]
fn every_credential_failure_becomes_attestation_invalid() {
    let world = World::new();
    let good = world.attestor.token(&attestation_claims(WORKLOAD));
    // Expired, even from the cache.
    world.verifier.verify_attestation(&good, &workload(), NOW).unwrap();
    let err = world.verifier.verify_attestation(&good, &workload(), NOW + 1000).unwrap_err();
    assert_eq!(err.reason(), ReasonCode::AttestationInvalid);
    assert_eq!(err.attestation_cause().unwrap().reason(), ReasonCode::IdentityExpired);
    // Forged signature.
    let (input, signature) = good.rsplit_once('.').unwrap();
    let mut signature = unb64(signature);
    signature[0] ^= 0x80;
    let err = invalid(&world.verifier, &format!("{input}.{}", b64(&signature)));
    assert_eq!(err.attestation_cause().unwrap().reason(), ReasonCode::IdentityBadSignature);
    // Wrong audience, garbage, alg none.
    let mut c = attestation_claims(WORKLOAD);
    c["aud"] = json!("elsewhere");
    invalid(&world.verifier, &world.attestor.token(&c));
    invalid(&world.verifier, "not.a.jwt");
    let header = json!({"alg": "none", "kid": world.attestor.kid});
    invalid(&world.verifier, &format!("{}.{}.", b64(header.to_string().as_bytes()), b64(c.to_string().as_bytes())));
}
