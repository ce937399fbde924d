//! JWT credentials from untrusted bytes, through `writ-identity`'s JOSE header parser and
//! `IdentityVerifier::verify` over a trust bundle built here with two fixed keys (Ed25519
//! and P-256, kids `fuzz-ed` and `fuzz-ec`, issuer `https://issuer.fuzz.example`, trusted
//! for the workload role in `fuzz.example`).
//!
//! The first byte picks the mode: `0`, the rest is the token, verbatim (forged, truncated,
//! anything); `1` and `2`, the rest is `<header JSON>\n<payload JSON>`, signed here with the
//! Ed25519 (`1`) or P-256 (`2`) key so that the claim checks behind the signature are
//! reached with any header and payload. Properties: nothing panics; a credential that
//! verifies obeys every rule the verifier states (subject in the issuer's trust domain, an
//! accepted audience, `exp >= iat`, lifetime and clock bounds), verifies the same again
//! (from the cache), and is refused for a role its issuer does not hold.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::Signer as _;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use writ_identity::{IdentityVerifier, Role, TrustBundle, VerifierConfig};

/// The verification time: 2027-01-15T08:00:00Z.
const NOW: u64 = 1_800_000_000;
const AUDIENCE: &str = "writ-fuzz";

struct Keys {
    ed: ed25519_dalek::SigningKey,
    ec: p256::ecdsa::SigningKey,
    verifier: IdentityVerifier,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let ec = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).expect("a P-256 scalar");
    let point = ec.verifying_key().to_encoded_point(false);
    let bundle = json!({"trust_domains": {"fuzz.example": {"issuers": [{
        "issuer": "https://issuer.fuzz.example",
        "roles": ["workload"],
        "jwks": {"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "fuzz-ed", "x": B64URL.encode(ed.verifying_key().as_bytes())},
            {"kty": "EC", "crv": "P-256", "kid": "fuzz-ec",
             "x": B64URL.encode(point.x().expect("x")), "y": B64URL.encode(point.y().expect("y"))},
        ]},
    }]}}});
    let bundle = TrustBundle::from_json(bundle.to_string().as_bytes()).expect("the fixed bundle parses");
    let verifier = IdentityVerifier::new(bundle, VerifierConfig::new(vec![AUDIENCE.into()]));
    Keys { ed, ec, verifier }
});

fn signed(header: &[u8], payload: &[u8], ec: bool) -> String {
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let signature = if ec {
        let s: p256::ecdsa::Signature = KEYS.ec.sign(input.as_bytes());
        s.to_bytes().to_vec()
    } else {
        KEYS.ed.sign(input.as_bytes()).to_bytes().to_vec()
    };
    format!("{input}.{}", B64URL.encode(signature))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode {
        0 => match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        },
        1 | 2 => {
            let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            signed(header, payload, mode == 2)
        }
        _ => return,
    };
    // The header parser on its own: what it accepts names an algorithm and a non-empty kid.
    if let Ok(segment) = writ_identity::fuzzing::header_segment(&token)
        && let Ok((_alg, kid)) = writ_identity::fuzzing::parse_header(segment)
    {
        assert!(!kid.is_empty());
    }
    let v = &KEYS.verifier;
    let Ok(credential) = v.verify(Role::Workload, &token, NOW) else {
        return;
    };
    assert_eq!(credential.trust_domain(), "fuzz.example");
    assert_eq!(credential.subject().trust_domain(), "fuzz.example");
    assert_eq!(credential.issuer(), "https://issuer.fuzz.example");
    assert!(credential.audience().iter().any(|a| a == AUDIENCE));
    assert!(["fuzz-ed", "fuzz-ec"].contains(&credential.kid()));
    let (iat, exp) = (credential.issued_at(), credential.expires_at());
    let skew = v.config().max_skew_secs;
    assert!(exp >= iat && exp - iat <= v.config().max_lifetime_secs);
    assert!(NOW <= exp.saturating_add(skew) && iat <= NOW + skew);
    assert!(credential.not_before().is_none_or(|nbf| nbf <= NOW + skew));
    for claim in ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"] {
        assert!(!credential.claims().contains_key(claim), "registered claim {claim} left in claims()");
    }
    assert_eq!(v.verify(Role::Workload, &token, NOW).as_ref(), Ok(&credential), "the cached answer differs");
    assert!(v.verify(Role::Operator, &token, NOW).is_err(), "an issuer for workloads vouched for an operator");
});
