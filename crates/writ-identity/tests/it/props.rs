//! Property tests: the parsers of untrusted input never panic and always deny with an
//! identity code; minted credentials verify for any valid clock and lifetime.

use proptest::prelude::*;
use serde_json::Map;
use writ_core::{ReasonCode, SpiffeId};
use writ_identity::{DevIssuer, IdentityVerifier, IssueRequest, Role, TrustBundle, VerifierConfig};

use crate::kit::*;

const IDENTITY_CODES: [ReasonCode; 6] = [
    ReasonCode::IdentityMalformed,
    ReasonCode::IdentityBadSignature,
    ReasonCode::IdentityUntrustedIssuer,
    ReasonCode::IdentityExpired,
    ReasonCode::IdentityNotYetValid,
    ReasonCode::IdentityAudience,
];

proptest! {
    #[test]
    fn arbitrary_text_is_denied_without_panic(token in ".{0,300}") {
        let world = World::new();
        let err = world.verifier.verify(Role::Workload, &token, NOW).unwrap_err();
        prop_assert!(IDENTITY_CODES.contains(&err.reason()));
        let workload = SpiffeId::parse(WORKLOAD).unwrap();
        let err = world.verifier.verify_attestation(&token, &workload, NOW).unwrap_err();
        prop_assert_eq!(err.reason(), ReasonCode::AttestationInvalid);
    }

    #[test]
    fn arbitrary_segments_are_denied_without_panic(
        header in "[A-Za-z0-9_-]{0,80}",
        payload in "[A-Za-z0-9_-]{0,120}",
        signature in "[A-Za-z0-9_-]{0,90}",
    ) {
        let world = World::new();
        let token = format!("{header}.{payload}.{signature}");
        let err = world.verifier.verify(Role::Workload, &token, NOW).unwrap_err();
        prop_assert!(IDENTITY_CODES.contains(&err.reason()));
    }

    #[test]
    fn arbitrary_headers_over_real_claims_never_panic(header in "\\{.{0,120}\\}") {
        let world = World::new();
        let token = format!("{}.{}.{}", b64(header.as_bytes()), b64(claims(IDP, WORKLOAD).to_string().as_bytes()), b64(&[0; 64]));
        let err = world.verifier.verify(Role::Workload, &token, NOW).unwrap_err();
        prop_assert!(IDENTITY_CODES.contains(&err.reason()));
    }

    #[test]
    fn arbitrary_bundles_are_refused_without_panic(text in ".{0,400}") {
        if let Err(err) = TrustBundle::from_json(text.as_bytes()) {
            prop_assert_eq!(err.reason(), ReasonCode::Internal);
        }
    }

    #[test]
    fn minted_credentials_verify_within_their_window(now in 0u64..4_000_000_000, ttl in 1u64..=86_400, at in 0u64..=86_400) {
        let issuer = DevIssuer::generate("example.org", "https://dev.example.org").unwrap();
        let mut bundle = TrustBundle::new();
        bundle.add(issuer.bundle_entry(&[Role::Workload])).unwrap();
        let verifier = IdentityVerifier::new(bundle, VerifierConfig::new(vec![AUD.into()]));
        let subject = SpiffeId::parse(WORKLOAD).unwrap();
        let token = issuer
            .issue(IssueRequest { subject: &subject, audience: vec![AUD.into()], ttl_secs: ttl, extra_claims: Map::new(), now })
            .unwrap();
        let result = verifier.verify(Role::Workload, &token, now + at);
        if at <= ttl + 60 {
            prop_assert_eq!(result.unwrap().subject().clone(), subject);
        } else {
            prop_assert_eq!(result.unwrap_err().reason(), ReasonCode::IdentityExpired);
        }
    }
}
