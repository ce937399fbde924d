//! The JWS Compact Serialization (RFC 7515 §7.1) of a JWT (RFC 7519 §7.2) and its protected
//! header, read *before* any key is chosen. Only what SPIFFE JWT-SVIDs need is accepted:
//! `alg` (`EdDSA` or `ES256`, exactly), `kid` (required), `typ` (`JWT` or `JOSE`) and the
//! certificate thumbprints `x5t`/`x5t#S256` (ignored). Header parameters that carry or point
//! to a key (`jwk`, `jku`, `x5u`, `x5c`) or demand extensions (`crit`) are refused: keys come
//! only from the trust bundle.

use serde_json::Value;

use crate::IdentityError;
use crate::json::{b64url_decode, parse_object};
use crate::jwk::Algorithm;

/// The longest token accepted, in bytes. A bound on work and on the verification cache's
/// memory; JWT-SVIDs are well under a kilobyte.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Header parameters refused outright: they bring their own key or extensions.
const REFUSED: [&str; 5] = ["jwk", "jku", "x5u", "x5c", "crit"];

/// Header parameters accepted and not otherwise used (thumbprints identify, they do not key).
const IGNORED: [&str; 2] = ["x5t", "x5t#S256"];

/// The accepted protected header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
}

/// Checks that a token is a compact JWS of three base64url segments (header, payload,
/// signature; RFC 7515 §7.1) and returns the still-encoded header segment.
pub(crate) fn header_segment(token: &str) -> Result<&str, IdentityError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::Malformed(format!("token is {} bytes, above {MAX_TOKEN_BYTES}", token.len())));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) if !header.is_empty() && !payload.is_empty() => {
            // Structure first: every segment must be base64url before any of them is used,
            // so that a token that is not a JWS is `identity.malformed` whatever it claims.
            b64url_decode(payload).map_err(|e| IdentityError::Malformed(format!("payload: {e}")))?;
            b64url_decode(signature).map_err(|e| IdentityError::Malformed(format!("signature: {e}")))?;
            Ok(header)
        }
        _ => Err(IdentityError::Malformed("not a JWS compact serialization (header.payload.signature)".into())),
    }
}

/// Decodes and checks the protected header (RFC 7515 §4.1).
pub(crate) fn parse_header(segment: &str) -> Result<Header, IdentityError> {
    let bytes = b64url_decode(segment).map_err(|e| IdentityError::Malformed(format!("header: {e}")))?;
    let header = parse_object(&bytes).map_err(|e| IdentityError::Malformed(format!("header: {e}")))?;
    if let Some(refused) = REFUSED.iter().find(|p| header.contains_key(**p)) {
        return Err(IdentityError::BadSignature(format!(
            "header parameter {refused:?} is refused: keys come only from the trust bundle"
        )));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => Algorithm::from_jws(alg).ok_or_else(|| {
            IdentityError::BadSignature(format!("algorithm {alg:?} is refused (only EdDSA and ES256)"))
        })?,
        Some(_) => return Err(IdentityError::Malformed("header \"alg\" is not a string".into())),
        None => return Err(IdentityError::Malformed("header has no \"alg\"".into())),
    };
    let kid = match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(_) => return Err(IdentityError::Malformed("header \"kid\" is not a non-empty string".into())),
        None => return Err(IdentityError::Malformed("header has no \"kid\"".into())),
    };
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ == "JWT" || typ == "JOSE" => {}
        Some(other) => return Err(IdentityError::Malformed(format!("header \"typ\" {other} is not JWT or JOSE"))),
    }
    if let Some(unknown) =
        header.keys().find(|k| !matches!(k.as_str(), "alg" | "kid" | "typ") && !IGNORED.contains(&k.as_str()))
    {
        return Err(IdentityError::Malformed(format!("unknown header parameter {unknown:?}")));
    }
    Ok(Header { alg, kid })
}

#[cfg(test)]
mod tests;
