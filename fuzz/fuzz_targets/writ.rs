//! Writs from untrusted bytes, through `writ_engine::WritVerifier::verify` (what
//! `POST /v1/verify` and every enforcement point run), against the JWKS of a fixed writ key
//! (Ed25519 seed `[5; 32]`, issuer `https://writ.fuzz.example`, audience `writ-fuzz`).
//!
//! The first byte picks the mode: `0`, the rest is the writ, verbatim; `1`, the rest is
//! `<header JSON>\n<payload JSON>`, signed here with the writ key so that the claim checks
//! behind the signature are reached. Properties: nothing panics; a writ that verifies names
//! this issuer, this audience and the call's digest, is inside its time window, and is
//! refused as `writ.replayed` the second time.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::Signer as _;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use writ_core::{ReasonCode, RequestDigest, request_digest};
use writ_engine::{WritSigner, WritVerifier};

/// The verification time: 2027-01-15T08:00:00Z.
const NOW: u64 = 1_800_000_000;
const SKEW: u64 = 30;
const ISSUER: &str = "https://writ.fuzz.example";
const AUDIENCE: &str = "writ-fuzz";

struct Fixed {
    key: ed25519_dalek::SigningKey,
    jwks: serde_json::Value,
    digest: RequestDigest,
}

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let signer = WritSigner::from_seeds(ISSUER, &[[5; 32]]).expect("the fixed writ key");
    let digest = request_digest("write", "fs:/zones/billing", &json!({"path": "/zones/billing/out.csv"}))
        .expect("the fixed call's digest");
    Fixed { key: ed25519_dalek::SigningKey::from_bytes(&[5; 32]), jwks: signer.jwks(), digest }
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode {
        0 => match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        },
        1 => {
            let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
            let signature = FIXED.key.sign(input.as_bytes());
            format!("{input}.{}", B64URL.encode(signature.to_bytes()))
        }
        _ => return,
    };
    // A fresh verifier per input: its used-writ set must not carry over between inputs.
    let verifier = WritVerifier::new(ISSUER, &FIXED.jwks, AUDIENCE, SKEW).expect("the fixed JWKS");
    let Ok(writ) = verifier.verify(&token, &FIXED.digest, NOW, &|_| false) else {
        return;
    };
    let c = &writ.claims;
    assert_eq!(c.iss, ISSUER);
    assert_eq!(c.aud, AUDIENCE);
    assert_eq!(c.req, FIXED.digest.to_string());
    assert!(c.nbf <= NOW + SKEW && NOW < c.exp.saturating_add(SKEW));
    let again = verifier.verify(&token, &FIXED.digest, NOW, &|_| false);
    assert_eq!(again.map_err(|r| r.reason), Err(ReasonCode::WritReplayed), "a writ verified twice");
    let revoked = WritVerifier::new(ISSUER, &FIXED.jwks, AUDIENCE, SKEW).expect("the fixed JWKS");
    assert_eq!(
        revoked.verify(&token, &FIXED.digest, NOW, &|_| true).map_err(|r| r.reason),
        Err(ReasonCode::WritRevoked)
    );
});
