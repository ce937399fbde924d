//! Public signing keys as JSON Web Keys: RFC 7517 (JWK), with the key types of RFC 8037
//! (`OKP`/`Ed25519` for EdDSA) and RFC 7518 §6.2 (`EC`/`P-256` for ES256). Only those two
//! are accepted; RSA, symmetric (`oct`) keys, other curves and any private key material are
//! refused when the key is loaded, so an algorithm a key cannot be used with never reaches
//! signature verification.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::IdentityError;
use crate::json::b64url_decode;

/// The two JWS algorithms writ accepts (RFC 7518 §3.4 ES256, RFC 8037 §3.1 EdDSA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// EdDSA over Ed25519 (RFC 8037), key type `OKP`, curve `Ed25519`.
    EdDsa,
    /// ECDSA over P-256 with SHA-256 (RFC 7518 §3.4), key type `EC`, curve `P-256`.
    Es256,
}

impl Algorithm {
    /// The JWS `alg` value (`"EdDSA"` or `"ES256"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
        }
    }

    /// The algorithm named by a JWS `alg` value, exactly (case-sensitive, RFC 7515 §4.1.1).
    pub fn from_jws(alg: &str) -> Option<Algorithm> {
        match alg {
            "EdDSA" => Some(Algorithm::EdDsa),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    pub(crate) const fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The members a public EdDSA or ES256 JWK may carry; anything else is refused.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwkMembers {
    kty: String,
    kid: String,
    crv: String,
    x: String,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
}

/// A validated public key from a trust bundle, ready for signature verification.
// INVARIANT: `members` describe a valid Ed25519 or P-256 public point of type `alg`, and
// `decoding` was built from exactly those components.
#[derive(Clone)]
pub(crate) struct TrustedKey {
    members: JwkMembers,
    alg: Algorithm,
    decoding: jsonwebtoken::DecodingKey,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey").field("kid", &self.members.kid).field("alg", &self.alg).finish()
    }
}

/// Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "r"];

impl TrustedKey {
    /// Validates one JWK of a bundle (RFC 7517 §4, RFC 8037 §2, RFC 7518 §6.2.1).
    pub(crate) fn from_jwk(jwk: Map<String, Value>) -> Result<TrustedKey, IdentityError> {
        let label = match jwk.get("kid") {
            Some(Value::String(kid)) => format!("key {kid:?}"),
            _ => "key without a kid".to_owned(),
        };
        let bad = |why: String| IdentityError::Bundle(format!("{label}: {why}"));
        let kty = match jwk.get("kty") {
            Some(Value::String(kty)) => kty.clone(),
            Some(_) => return Err(bad("\"kty\" is not a string".into())),
            None => return Err(bad("\"kty\" is missing".into())),
        };
        match kty.as_str() {
            "OKP" | "EC" => {}
            "RSA" => return Err(bad("RSA keys are not accepted (only OKP/Ed25519 and EC/P-256)".into())),
            "oct" => return Err(bad("symmetric (oct) keys are not accepted (only OKP/Ed25519 and EC/P-256)".into())),
            other => return Err(bad(format!("key type {other:?} is not accepted (only OKP/Ed25519 and EC/P-256)"))),
        }
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(bad(format!("carries private key material ({member:?}); a trust bundle holds public keys")));
        }
        let members: JwkMembers = serde_json::from_value(Value::Object(jwk)).map_err(|e| bad(e.to_string()))?;
        if members.kid.is_empty() {
            return Err(bad("\"kid\" is empty".into()));
        }
        let alg = match (members.kty.as_str(), members.crv.as_str()) {
            ("OKP", "Ed25519") => Algorithm::EdDsa,
            ("EC", "P-256") => Algorithm::Es256,
            (kty, crv) => return Err(bad(format!("curve {crv:?} is not accepted for {kty} (only Ed25519 and P-256)"))),
        };
        if let Some(declared) = &members.alg
            && declared != alg.as_str()
        {
            return Err(bad(format!("\"alg\" {declared:?} does not match a {} key", alg.as_str())));
        }
        if let Some(use_) = &members.use_
            && use_ != "sig"
        {
            return Err(bad(format!("\"use\" is {use_:?}, not \"sig\"")));
        }
        if let Some(ops) = &members.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err(bad("\"key_ops\" does not include \"verify\"".into()));
        }
        let decoding = match alg {
            Algorithm::EdDsa => {
                if members.y.is_some() {
                    return Err(bad("an OKP key has no \"y\"".into()));
                }
                let x = decode_coordinate(&members.x, "x").map_err(bad)?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| bad("\"x\" is not an Ed25519 public key".into()))?;
                if key.is_weak() {
                    return Err(bad("\"x\" is a small-order Ed25519 point".into()));
                }
                jsonwebtoken::DecodingKey::from_ed_components(&members.x).map_err(|e| bad(e.to_string()))?
            }
            Algorithm::Es256 => {
                let y_text = members.y.as_deref().ok_or_else(|| bad("an EC key needs \"y\"".into()))?;
                let x = decode_coordinate(&members.x, "x").map_err(bad)?;
                let y = decode_coordinate(y_text, "y").map_err(bad)?;
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(0x04);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map_err(|_| bad("(x, y) is not a point on P-256".into()))?;
                jsonwebtoken::DecodingKey::from_ec_components(&members.x, y_text).map_err(|e| bad(e.to_string()))?
            }
        };
        Ok(TrustedKey { members, alg, decoding })
    }

    /// The key id.
    pub(crate) fn kid(&self) -> &str {
        &self.members.kid
    }

    /// The one algorithm this key verifies.
    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key for `jsonwebtoken::decode`.
    pub(crate) fn decoding(&self) -> &jsonwebtoken::DecodingKey {
        &self.decoding
    }

    /// The JWK as loaded (public members only).
    pub(crate) fn to_json(&self) -> Value {
        let m = &self.members;
        let mut out = Map::new();
        out.insert("kty".into(), Value::String(m.kty.clone()));
        out.insert("crv".into(), Value::String(m.crv.clone()));
        out.insert("kid".into(), Value::String(m.kid.clone()));
        out.insert("x".into(), Value::String(m.x.clone()));
        if let Some(y) = &m.y {
            out.insert("y".into(), Value::String(y.clone()));
        }
        if let Some(alg) = &m.alg {
            out.insert("alg".into(), Value::String(alg.clone()));
        }
        if let Some(use_) = &m.use_ {
            out.insert("use".into(), Value::String(use_.clone()));
        }
        if let Some(ops) = &m.key_ops {
            out.insert("key_ops".into(), Value::Array(ops.iter().cloned().map(Value::String).collect()));
        }
        Value::Object(out)
    }
}

/// A 32-byte curve coordinate or Ed25519 public key (RFC 8037 §2, RFC 7518 §6.2.1.2).
fn decode_coordinate(text: &str, name: &str) -> Result<[u8; 32], String> {
    let bytes = b64url_decode(text).map_err(|e| format!("{name:?}: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{name:?} is {} bytes, not 32", bytes.len()))
}

#[cfg(test)]
mod tests;
