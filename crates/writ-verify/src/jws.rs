//! The JWS compact serialization (RFC 7515 §7.1) of an EdDSA/Ed25519 signature (RFC 8037
//! §3.1), parsed strictly: three base64url parts without padding (RFC 7515 §2, canonical:
//! no trailing bits), a protected header naming `alg` `EdDSA`, a `kid` and optionally a
//! `typ`, and nothing else.
//!
//! Header members that would let the token choose its own key or change how it is
//! processed (`jwk`, `jku`, `x5u`, `x5c`, `crit`, `b64`) are refused by name; any other
//! unknown member is refused too. The key is always the one the verifier trusts under the
//! `kid`; the signature is checked with `ed25519-dalek`'s `verify_strict` (RFC 8032 §5.1.7
//! with canonical `S` and no small-order points).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{SIGNATURE_LENGTH, Signature, VerifyingKey};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// A JWS compact token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    /// The header's `kid`.
    pub kid: String,
    /// The header's `typ`, if any.
    pub typ: Option<String>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: what the signature covers.
    pub signing_input: &'a str,
    /// The payload part, still base64url (decoded only once the signature holds).
    payload: &'a str,
    signature: Signature,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    // Named so that the refusal names them; never used.
    jwk: Option<IgnoredAny>,
    jku: Option<IgnoredAny>,
    x5u: Option<IgnoredAny>,
    x5c: Option<IgnoredAny>,
    crit: Option<IgnoredAny>,
    b64: Option<IgnoredAny>,
}

/// The longest header accepted, in base64url characters.
const MAX_HEADER: usize = 1024;
/// The longest `kid` accepted.
pub(crate) const MAX_KID: usize = 256;

/// Splits and decodes `token` (at most `max_len` bytes).
pub(crate) fn parse(token: &str, max_len: usize) -> Result<Jws<'_>, String> {
    if token.len() > max_len {
        return Err(format!("{} bytes, more than the {max_len} accepted", token.len()));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWS compact serialization (three parts separated by dots)".into());
    };
    if header.is_empty() || payload.is_empty() {
        return Err("an empty header or payload".into());
    }
    if header.len() > MAX_HEADER {
        return Err("the header is too long".into());
    }
    let header_bytes = B64URL.decode(header).map_err(|_| "the header is not base64url without padding")?;
    let h: Header = serde_json::from_slice(&header_bytes).map_err(|e| format!("header: {e}"))?;
    for (name, present) in [
        ("jwk", h.jwk.is_some()),
        ("jku", h.jku.is_some()),
        ("x5u", h.x5u.is_some()),
        ("x5c", h.x5c.is_some()),
        ("crit", h.crit.is_some()),
        ("b64", h.b64.is_some()),
    ] {
        if present {
            return Err(format!("header member {name:?} refused: keys come only from the trusted key set"));
        }
    }
    if h.alg != "EdDSA" {
        return Err(format!("alg {:?}: only EdDSA (Ed25519) is accepted", h.alg));
    }
    let kid = h.kid.ok_or("no kid in the header")?;
    if kid.is_empty() || kid.len() > MAX_KID {
        return Err("an empty or overlong kid".into());
    }
    let sig: [u8; SIGNATURE_LENGTH] = decode_exact(signature).ok_or("the signature is not 64 bytes of base64url")?;
    // The part before the last dot; `header` and `payload` are non-empty, so it exists.
    let signing_input = token.get(..header.len() + 1 + payload.len()).ok_or("no signing input")?;
    Ok(Jws { kid, typ: h.typ, signing_input, payload, signature: Signature::from_bytes(&sig) })
}

/// Decodes base64url without padding into exactly `N` bytes (`N` ≤ 64).
pub(crate) fn decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    // The base64 crate wants room for its estimate (three bytes per four characters).
    let mut buf = [0u8; 66];
    if text.len() > 88 {
        return None;
    }
    let n = B64URL.decode_slice(text, &mut buf).ok()?;
    if n != N {
        return None;
    }
    buf.get(..N)?.try_into().ok()
}

impl Jws<'_> {
    /// Checks the signature with `key`, then decodes the payload.
    pub(crate) fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>, String> {
        key.verify_strict(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| "the signature does not verify".to_owned())?;
        B64URL.decode(self.payload).map_err(|_| "the payload is not base64url without padding".to_owned())
    }
}
