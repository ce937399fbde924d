//! Deterministic keys for unit tests: Ed25519 and P-256 public keys as JWKs, and JWS
//! signing of arbitrary headers and claims (RFC 7515 §5.1), so tests can forge any token.

use ed25519_dalek::Signer as _;
use serde_json::{Value, json};

use crate::json::b64url_encode;

/// An Ed25519 key from a fixed seed.
pub(crate) fn ed25519(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// A P-256 key from a fixed scalar.
pub(crate) fn p256(scalar: u8) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[scalar; 32]).unwrap()
}

/// The public JWK of an Ed25519 key.
pub(crate) fn ed25519_jwk(key: &ed25519_dalek::SigningKey, kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url_encode(key.verifying_key().as_bytes())})
}

/// The public JWK of a P-256 key.
pub(crate) fn p256_jwk(key: &p256::ecdsa::SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": b64url_encode(point.x().unwrap()), "y": b64url_encode(point.y().unwrap())})
}

/// `BASE64URL(header) . BASE64URL(claims)`.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64url_encode(header.to_string().as_bytes()), b64url_encode(claims.to_string().as_bytes()))
}

/// A compact JWS signed with Ed25519, whatever the header says.
pub(crate) fn sign_ed25519(key: &ed25519_dalek::SigningKey, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature.to_bytes()))
}

/// A compact JWS signed with ES256 (`r || s`, RFC 7518 §3.4), whatever the header says.
pub(crate) fn sign_p256(key: &p256::ecdsa::SigningKey, header: &Value, claims: &Value) -> String {
    use p256::ecdsa::signature::Signer as _;
    let input = signing_input(header, claims);
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature.to_bytes()))
}

/// A compact JWS over raw header and payload text (for JSON no `Value` can hold, such as
/// repeated members), signed with Ed25519.
pub(crate) fn sign_ed25519_raw(key: &ed25519_dalek::SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64url_encode(header.as_bytes()), b64url_encode(payload.as_bytes()));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature.to_bytes()))
}
