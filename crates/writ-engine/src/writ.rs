//! The writ (SPEC.md §2): a JWT (RFC 7519, JWS compact RFC 7515, EdDSA RFC 8037) signed by
//! the control plane after the decision is durable in the log. Its claims and its
//! verification at an enforcement point are `writ-verify`'s.
//!
//! Signing keys are Ed25519, identified by their RFC 7638 thumbprint as `kid`, published
//! as a JWKS; rotation adds a new current key and keeps the old ones in the JWKS so that
//! outstanding writs keep verifying.
//!
//! Signatures are made with `aws-lc-rs` (AWS-LC's Ed25519, about 1.7x faster here than
//! `ed25519-dalek`'s portable code); Ed25519 is deterministic (RFC 8032 §5.1.6), so the
//! bytes are the same as any other implementation's, which a test checks against
//! `ed25519-dalek`.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use writ_verify::WritClaims;

use crate::{Cause, EngineError, KeyError};

fn random_hex(n: usize) -> Result<String, EngineError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| KeyError::NoRandomness(Cause::text(e.to_string())))?;
    Ok(hex::encode(b))
}

/// A fresh writ id.
pub fn new_writ_id() -> Result<String, EngineError> {
    random_hex(16).map(|h| format!("w-{h}"))
}

pub(crate) fn thumbprint(public: &[u8; 32]) -> String {
    // RFC 7638: SHA-256 over {"crv","kty","x"} in lexicographic order, no whitespace.
    let x = B64URL.encode(public);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

struct Key {
    kid: String,
    public: [u8; 32],
    signing: Ed25519KeyPair,
    /// The base64url JWS protected header for this key, computed once.
    header: String,
}

/// The writ signing keys: the current one signs, all are published.
pub struct WritSigner {
    issuer: String,
    keys: Vec<Key>,
}

impl std::fmt::Debug for WritSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritSigner").field("issuer", &self.issuer).field("kids", &self.kids()).finish()
    }
}

impl WritSigner {
    /// A signer from Ed25519 seeds, oldest first; the last one signs.
    pub fn from_seeds(issuer: &str, seeds: &[[u8; 32]]) -> Result<Self, EngineError> {
        if seeds.is_empty() {
            return Err(KeyError::NoKey.into());
        }
        let mut keys = Vec::new();
        for seed in seeds {
            let signing = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| KeyError::NotASeed(Cause::new(e)))?;
            let public: [u8; 32] = signing.public_key().as_ref().try_into().map_err(|_| KeyError::PublicKeyLength)?;
            let kid = thumbprint(&public);
            let header = B64URL.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string());
            keys.push(Key { kid, public, signing, header });
        }
        Ok(WritSigner { issuer: issuer.to_owned(), keys })
    }

    /// A fresh random seed for a new key.
    pub fn generate_seed() -> Result<[u8; 32], EngineError> {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).map_err(|e| KeyError::NoRandomness(Cause::text(e.to_string())))?;
        Ok(s)
    }

    /// The control plane's name (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Key ids, oldest first.
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// The JWKS document of every key (RFC 7517, OKP per RFC 8037).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid, "x": B64URL.encode(k.public)}))
            .collect();
        json!({ "keys": keys })
    }

    /// Signs claims with the current key: a JWS compact serialization (RFC 7515 §7.1) with
    /// an EdDSA signature (RFC 8037 §3.1) over `header.payload`. The key stays parsed, so a
    /// signature costs one Ed25519 operation; `jsonwebtoken` and PyJWT verify the result in
    /// the tests.
    pub fn sign(&self, claims: &WritClaims) -> Result<String, EngineError> {
        let key = self.keys.last().ok_or(KeyError::NoKey)?;
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Claims(Cause::new(e)))?;
        let mut token = String::with_capacity(key.header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&key.header);
        token.push('.');
        B64URL.encode_string(&payload, &mut token);
        let signature = key.signing.sign(token.as_bytes());
        token.push('.');
        B64URL.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};

    use writ_verify::{LogRef, Scope};

    use super::*;

    /// The writ's signature is the one RFC 8032 defines: byte for byte what an independent
    /// implementation (`ed25519-dalek`) makes from the same seed and signing input, and the
    /// JWKS publishes that implementation's public key.
    #[test]
    fn signatures_match_an_independent_ed25519() {
        let seed = [9u8; 32];
        let signer = WritSigner::from_seeds("writ", &[seed]).unwrap();
        let dalek = SigningKey::from_bytes(&seed);
        let jwks = signer.jwks();
        assert_eq!(jwks["keys"][0]["x"], json!(B64URL.encode(dalek.verifying_key().to_bytes())));
        for n in 0..50u64 {
            let claims = WritClaims {
                iss: "writ".into(),
                sub: format!("spiffe://demo.example/agent/{n}"),
                aud: "writ".into(),
                jti: format!("w-{n:032x}"),
                iat: n,
                nbf: n,
                exp: n + 60,
                act: "read".into(),
                res: "fs:/x".into(),
                req: format!("sha256:{}", "0".repeat(64)),
                pol: format!("sha256:{}", "1".repeat(64)),
                par: None,
                root: format!("w-{n:032x}"),
                dep: 0,
                scp: Scope { zone: "billing".into(), actions: vec!["*".into()] },
                log: LogRef { index: n, leaf: format!("sha256:{}", "2".repeat(64)) },
            };
            let token = signer.sign(&claims).unwrap();
            let (input, signature) = token.rsplit_once('.').unwrap();
            let signature = B64URL.decode(signature).unwrap();
            assert_eq!(signature, dalek.sign(input.as_bytes()).to_bytes().to_vec());
            let parsed = ed25519_dalek::Signature::from_slice(&signature).unwrap();
            dalek.verifying_key().verify(input.as_bytes(), &parsed).unwrap();
        }
    }
}
