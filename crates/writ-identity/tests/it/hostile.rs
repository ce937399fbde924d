//! The hostile-credential matrix: one test per attack or invalid credential, each a token
//! built by hand the way an attacker would, and the reason code it must be denied with.

use std::sync::Arc;

use ed25519_dalek::Signer as _;
use serde_json::{Value, json};
use writ_core::ReasonCode;
use writ_identity::{IdentityVerifier, Role, TrustBundle, VerifierConfig};

use crate::kit::*;

fn denied(world: &World, role: Role, token: &str, now: u64) -> ReasonCode {
    match world.verifier.verify(role, token, now) {
        Ok(credential) => panic!("accepted a hostile token: {credential:?}"),
        Err(err) => {
            assert!(!err.to_string().is_empty());
            err.reason()
        }
    }
}

fn workload_claims() -> Value {
    claims(IDP, WORKLOAD)
}

/// Replaces the payload of a signed token, keeping its header and signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2])
}

#[test]
fn eddsa_happy_path() {
    let world = World::new();
    let credential = world.verifier.verify(Role::Workload, &world.idp_ed.token(&workload_claims()), NOW).unwrap();
    assert_eq!(credential.subject().as_str(), WORKLOAD);
    assert_eq!(
        (credential.issuer(), credential.trust_domain(), credential.role()),
        (IDP, "example.org", Role::Workload)
    );
    assert_eq!(credential.jti(), Some("0f8e2c7a"));
    assert_eq!((credential.issued_at(), credential.expires_at()), (NOW, NOW + 300));
    assert_eq!(Value::Object(credential.claims().clone()), json!({"zone": "eu-west", "env": "prod"}));
}

#[test]
fn es256_happy_path() {
    let world = World::new();
    let token = world.idp_ec.token(&workload_claims());
    let credential = world.verifier.verify(Role::Workload, &token, NOW).unwrap();
    assert_eq!(credential.kid(), "idp-ec-2025");
    assert_eq!(credential.subject().as_str(), WORKLOAD);
    let operator = claims(IDP, "spiffe://example.org/human/alice");
    assert_eq!(
        world.verifier.verify(Role::Operator, &world.idp_ec.token(&operator), NOW).unwrap().role(),
        Role::Operator
    );
}

#[test]
fn forged_signature_last_byte_flipped() {
    let world = World::new();
    for token in [world.idp_ed.token(&workload_claims()), world.idp_ec.token(&workload_claims())] {
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut signature = unb64(signature);
        *signature.last_mut().unwrap() ^= 0x01;
        let forged = format!("{input}.{}", b64(&signature));
        assert_eq!(denied(&world, Role::Workload, &forged, NOW), ReasonCode::IdentityBadSignature);
    }
}

#[test]
fn payload_swapped_under_a_valid_signature() {
    let world = World::new();
    let token = world.idp_ed.token(&workload_claims());
    let escalated = with_payload(&token, &claims(IDP, "spiffe://example.org/ns/admin/agent/root"));
    assert_eq!(denied(&world, Role::Workload, &escalated, NOW), ReasonCode::IdentityBadSignature);
}

#[test]
fn signature_by_a_key_not_in_the_bundle_under_a_trusted_kid() {
    let world = World::new();
    let attacker = Ed { kid: world.idp_ed.kid.clone(), ..Ed::generate("unused") };
    assert_eq!(
        denied(&world, Role::Workload, &attacker.token(&workload_claims()), NOW),
        ReasonCode::IdentityBadSignature
    );
    let attacker = Ec { kid: world.idp_ec.kid.clone(), ..Ec::generate("unused") };
    assert_eq!(
        denied(&world, Role::Workload, &attacker.token(&workload_claims()), NOW),
        ReasonCode::IdentityBadSignature
    );
}

#[test]
fn expired() {
    let world = World::new();
    let token = world.idp_ed.token(&workload_claims());
    assert_eq!(denied(&world, Role::Workload, &token, NOW + 300 + 61), ReasonCode::IdentityExpired);
    let mut old = workload_claims();
    old["iat"] = json!(NOW - 3600);
    old["nbf"] = json!(NOW - 3600);
    old["exp"] = json!(NOW - 3000);
    assert_eq!(denied(&world, Role::Workload, &world.idp_ed.token(&old), NOW), ReasonCode::IdentityExpired);
}

#[test]
fn not_yet_valid() {
    let world = World::new();
    let mut early = workload_claims();
    early["nbf"] = json!(NOW + 120);
    assert_eq!(denied(&world, Role::Workload, &world.idp_ed.token(&early), NOW), ReasonCode::IdentityNotYetValid);
}

#[test]
fn iat_in_the_future() {
    let world = World::new();
    let mut future = workload_claims();
    future.as_object_mut().unwrap().remove("nbf");
    future["iat"] = json!(NOW + 120);
    future["exp"] = json!(NOW + 420);
    assert_eq!(denied(&world, Role::Workload, &world.idp_ed.token(&future), NOW), ReasonCode::IdentityNotYetValid);
}

#[test]
fn lifetime_too_long() {
    let world = World::new();
    let mut long = workload_claims();
    long["exp"] = json!(NOW + 86_400 + 1);
    assert_eq!(denied(&world, Role::Workload, &world.idp_ed.token(&long), NOW), ReasonCode::IdentityMalformed);
    long["exp"] = json!(NOW + 86_400);
    world.verifier.verify(Role::Workload, &world.idp_ed.token(&long), NOW).unwrap();
}

#[test]
fn untrusted_issuer_unknown_kid() {
    let world = World::new();
    let stranger = Ed::generate("stranger-1");
    assert_eq!(
        denied(&world, Role::Workload, &stranger.token(&claims("https://idp.evil.example", WORKLOAD)), NOW),
        ReasonCode::IdentityUntrustedIssuer
    );
    // Even naming a trusted issuer does not help a key the bundle does not list.
    assert_eq!(
        denied(&world, Role::Workload, &stranger.token(&workload_claims()), NOW),
        ReasonCode::IdentityUntrustedIssuer
    );
}

#[test]
fn iss_that_does_not_own_the_kid() {
    let world = World::new();
    // The operator-only issuer's key cannot speak for the main IdP.
    assert_eq!(
        denied(&world, Role::Workload, &world.ops.token(&workload_claims()), NOW),
        ReasonCode::IdentityUntrustedIssuer
    );
}

#[test]
fn issuer_of_one_domain_vouching_for_another() {
    let world = World::new();
    let cross = claims(OTHER_IDP, WORKLOAD);
    assert_eq!(denied(&world, Role::Workload, &world.other.token(&cross), NOW), ReasonCode::IdentityUntrustedIssuer);
    let cross = claims(IDP, "spiffe://other.org/agent/x");
    assert_eq!(denied(&world, Role::Workload, &world.idp_ed.token(&cross), NOW), ReasonCode::IdentityUntrustedIssuer);
    let own = claims(OTHER_IDP, "spiffe://other.org/agent/x");
    world.verifier.verify(Role::Workload, &world.other.token(&own), NOW).unwrap();
}

#[test]
fn issuer_lacking_the_role() {
    let world = World::new();
    let ops_token = world.ops.token(&claims(OPS, "spiffe://example.org/human/alice"));
    world.verifier.verify(Role::Operator, &ops_token, NOW).unwrap();
    for role in [Role::Workload, Role::Orchestrator, Role::Machine, Role::Runtime, Role::Attestor] {
        assert_eq!(denied(&world, role, &ops_token, NOW), ReasonCode::IdentityUntrustedIssuer, "{role}");
    }
    let workload_token = world.idp_ed.token(&workload_claims());
    assert_eq!(denied(&world, Role::Attestor, &workload_token, NOW), ReasonCode::IdentityUntrustedIssuer);
}

#[test]
fn alg_none_unsigned_token() {
    let world = World::new();
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": world.idp_ed.kid});
        let unsigned =
            format!("{}.{}.", b64(header.to_string().as_bytes()), b64(workload_claims().to_string().as_bytes()));
        assert_eq!(denied(&world, Role::Workload, &unsigned, NOW), ReasonCode::IdentityBadSignature, "{alg}");
    }
}

#[test]
fn hs256_keyed_with_the_trusted_public_key() {
    // Algorithm confusion: an HMAC whose secret is the published Ed25519 public key, in raw
    // bytes or as its base64url text, signed by jsonwebtoken itself.
    let world = World::new();
    let public = world.idp_ed.key.verifying_key().to_bytes();
    let x = world.idp_ed.x();
    for secret in [public.as_slice(), x.as_bytes()] {
        for alg in [jsonwebtoken::Algorithm::HS256, jsonwebtoken::Algorithm::HS384, jsonwebtoken::Algorithm::HS512] {
            let mut header = jsonwebtoken::Header::new(alg);
            header.kid = Some(world.idp_ed.kid.clone());
            let token =
                jsonwebtoken::encode(&header, &workload_claims(), &jsonwebtoken::EncodingKey::from_secret(secret))
                    .unwrap();
            assert_eq!(denied(&world, Role::Workload, &token, NOW), ReasonCode::IdentityBadSignature, "{alg:?}");
        }
    }
}

#[test]
fn embedded_jwk_header_with_the_attackers_key() {
    let world = World::new();
    let attacker = Ed::generate("attacker");
    for kid in [world.idp_ed.kid.as_str(), "attacker"] {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid, "jwk": attacker.jwk()});
        let token = attacker.sign(&header, &workload_claims());
        assert_eq!(denied(&world, Role::Workload, &token, NOW), ReasonCode::IdentityBadSignature);
    }
}

#[test]
fn key_url_and_certificate_headers() {
    let world = World::new();
    let attacker = Ed::generate("attacker");
    for (param, value) in [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/chain.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
        ("crit", json!(["exp"])),
    ] {
        let header = json!({"alg": "EdDSA", "kid": world.idp_ed.kid, param: value});
        let token = attacker.sign(&header, &workload_claims());
        assert_eq!(denied(&world, Role::Workload, &token, NOW), ReasonCode::IdentityBadSignature, "{param}");
    }
}

#[test]
fn wrong_audience() {
    let world = World::new();
    let mut other = workload_claims();
    other["aud"] = json!(["https://payments.example.org", "spiffe://example.org/other"]);
    assert_eq!(denied(&world, Role::Workload, &world.idp_ed.token(&other), NOW), ReasonCode::IdentityAudience);
    other["aud"] = json!("writ-control-plane-staging");
    assert_eq!(denied(&world, Role::Workload, &world.idp_ed.token(&other), NOW), ReasonCode::IdentityAudience);
}

#[test]
fn sub_not_a_spiffe_id() {
    let world = World::new();
    for sub in [
        "invoicer",
        "https://example.org/agent",
        "spiffe://example.org",
        "spiffe://example.org/a/../admin",
        "spiffe://EXAMPLE.org/agent",
        "spiffe://example.org/agent?x=1",
    ] {
        let token = world.idp_ed.token(&claims(IDP, sub));
        assert_eq!(denied(&world, Role::Workload, &token, NOW), ReasonCode::IdentityMalformed, "{sub}");
    }
}

#[test]
fn garbage_and_truncated_tokens() {
    let world = World::new();
    let token = world.idp_ed.token(&workload_claims());
    let dots: Vec<usize> = token.match_indices('.').map(|(i, _)| i).collect();
    for garbage in [
        String::new(),
        "garbage".into(),
        "a.b.c".into(),
        "...".into(),
        "eyJ.eyJ.sig".into(),
        format!("{token}.extra"),
        token[..dots[1]].to_string(),
        token[..dots[0] + 10].to_string(),
        token[..dots[0] / 2].to_string(),
        format!("{}.{}", &token[..dots[0]], "!!!!.sig"),
        format!(" {token}"),
        "\u{0}\u{1}".into(),
    ] {
        assert_eq!(denied(&world, Role::Workload, &garbage, NOW), ReasonCode::IdentityMalformed, "{garbage:?}");
    }
    // A payload that is not JSON, correctly signed by a trusted key.
    let signed_garbage = sign_with(&json!({"alg": "EdDSA", "kid": world.idp_ed.kid}), &json!(null), |_| Vec::new());
    let (header, _) = signed_garbage.split_once('.').unwrap();
    let input = format!("{header}.{}", b64(b"{not json"));
    let signed_garbage = format!("{input}.{}", b64(&world.idp_ed.key.sign(input.as_bytes()).to_bytes()));
    assert_eq!(denied(&world, Role::Workload, &signed_garbage, NOW), ReasonCode::IdentityMalformed);
}

#[test]
fn es256_header_with_an_ed25519_kid() {
    let world = World::new();
    let attacker = Ec { kid: world.idp_ed.kid.clone(), ..Ec::generate("unused") };
    assert_eq!(
        denied(&world, Role::Workload, &attacker.token(&workload_claims()), NOW),
        ReasonCode::IdentityBadSignature
    );
    // And the reverse: an EdDSA header naming the P-256 key.
    let attacker = Ed { kid: world.idp_ec.kid.clone(), ..Ed::generate("unused") };
    assert_eq!(
        denied(&world, Role::Workload, &attacker.token(&workload_claims()), NOW),
        ReasonCode::IdentityBadSignature
    );
}

#[test]
fn cache_hit_still_expires() {
    let world = World::new();
    let token = world.idp_ed.token(&workload_claims());
    world.verifier.verify(Role::Workload, &token, NOW).unwrap();
    assert_eq!(world.verifier.cached_tokens(), 1);
    world.verifier.verify(Role::Workload, &token, NOW + 360).unwrap();
    assert_eq!(world.verifier.cached_tokens(), 1, "served from the cache");
    assert_eq!(denied(&world, Role::Workload, &token, NOW + 361), ReasonCode::IdentityExpired);
    assert_eq!(denied(&world, Role::Workload, &token, NOW - 61), ReasonCode::IdentityNotYetValid);
}

#[test]
fn a_token_accepted_for_one_role_is_not_cached_for_another() {
    let world = World::new();
    let token = world.ops.token(&claims(OPS, "spiffe://example.org/human/alice"));
    world.verifier.verify(Role::Operator, &token, NOW).unwrap();
    assert_eq!(denied(&world, Role::Workload, &token, NOW), ReasonCode::IdentityUntrustedIssuer);
}

#[test]
fn verification_is_shared_across_threads() {
    let world = World::new();
    let tokens: Vec<String> = (0..8)
        .map(|i| {
            let mut c = workload_claims();
            c["jti"] = json!(format!("jti-{i}"));
            if i % 2 == 0 { world.idp_ed.token(&c) } else { world.idp_ec.token(&c) }
        })
        .collect();
    let verifier = Arc::new(world.verifier);
    let tokens = Arc::new(tokens);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (verifier, tokens) = (Arc::clone(&verifier), Arc::clone(&tokens));
            std::thread::spawn(move || {
                for round in 0..50 {
                    for token in tokens.iter() {
                        verifier.verify(Role::Workload, token, NOW + round).unwrap();
                        assert!(verifier.verify(Role::Workload, token, NOW + 1000).is_err());
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(verifier.cached_tokens(), 8);
}

#[test]
fn an_empty_bundle_trusts_nothing() {
    let world = World::new();
    let verifier = IdentityVerifier::new(TrustBundle::new(), VerifierConfig::new(vec![AUD.into()]));
    let err = verifier.verify(Role::Workload, &world.idp_ed.token(&workload_claims()), NOW).unwrap_err();
    assert_eq!(err.reason(), ReasonCode::IdentityUntrustedIssuer);
}
