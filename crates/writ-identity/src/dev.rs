//! The development issuer (`writ identity issue`): an Ed25519 key that mints JWT-SVID-shaped
//! credentials (RFC 7519 JWTs, JWS compact per RFC 7515, EdDSA per RFC 8037) and runtime
//! attestations, and the trust bundle entry that makes a verifier trust it. Meant for the
//! embedded default and for tests, not for production identities.
//!
//! The key id is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key.
//!
//! The secret form ([`DevIssuer::to_secret_json`]) is a JSON object holding the trust domain,
//! the issuer and the private key as an RFC 8037 §2 OKP JWK (`d` is the 32-byte Ed25519 seed):
//!
//! ```json
//! {"format": "writ-dev-issuer-v1", "trust_domain": "example.org",
//!  "issuer": "https://dev.example.org",
//!  "key": {"kty": "OKP", "crv": "Ed25519", "kid": "…", "x": "…", "d": "…"}}
//! ```
//!
//! Whoever holds it can mint credentials for the whole trust domain: store it like any
//! private key (file mode 0600).

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use writ_core::SpiffeId;

use crate::attestation::{ATTESTATION_CLAIMS, is_sha256_digest};
use crate::bundle::{BundleEntry, validate_trust_domain};
use crate::json::{b64url_decode, b64url_encode};
use crate::verify::REGISTERED_CLAIMS;
use crate::{IdentityError, Role};

/// The `format` member of the secret form.
const SECRET_FORMAT: &str = "writ-dev-issuer-v1";

/// What to put in a credential minted by [`DevIssuer::issue`].
#[derive(Clone, Debug)]
pub struct IssueRequest<'a> {
    /// The subject (`sub`); must be in the issuer's trust domain.
    pub subject: &'a SpiffeId,
    /// The audiences (`aud`), at least one.
    pub audience: Vec<String>,
    /// The lifetime in seconds (`exp - iat`), at least 1.
    pub ttl_secs: u64,
    /// Further claims (e.g. `zone`, `env`, `roles`); none may be a registered claim.
    pub extra_claims: Map<String, Value>,
    /// The issuance time (`iat` and `nbf`), Unix seconds.
    pub now: u64,
}

/// What to put in a runtime attestation minted by [`DevIssuer::issue_attestation`].
#[derive(Clone, Debug)]
pub struct AttestationRequest<'a> {
    /// The attested workload (`sub`); must be in the issuer's trust domain.
    pub subject: &'a SpiffeId,
    /// The audiences (`aud`), at least one: attestations are checked by the same rules as
    /// credentials, audience included.
    pub audience: Vec<String>,
    /// The measurement, `sha256:<64 lowercase hex>`.
    pub measurement: &'a str,
    /// The runtime environment, non-empty.
    pub environment: &'a str,
    /// The region, non-empty.
    pub region: &'a str,
    /// The lifetime in seconds, at least 1.
    pub ttl_secs: u64,
    /// The issuance time, Unix seconds.
    pub now: u64,
}

/// A development issuer: one Ed25519 signing key, one issuer name, one trust domain.
pub struct DevIssuer {
    trust_domain: String,
    issuer: String,
    kid: String,
    key: SigningKey,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("trust_domain", &self.trust_domain)
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretDoc {
    format: String,
    trust_domain: String,
    issuer: String,
    key: SecretJwk,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretJwk {
    kty: String,
    crv: String,
    kid: String,
    x: String,
    d: String,
}

fn issuer_error(why: impl Into<String>) -> IdentityError {
    IdentityError::Issuer(why.into())
}

/// Fills a buffer from the operating system's randomness.
fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| issuer_error(format!("no randomness available: {e}")))?;
    Ok(bytes)
}

/// The RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the required members in
/// lexicographic order, without whitespace, base64url-encoded.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    b64url_encode(&Sha256::digest(canonical.as_bytes()))
}

impl DevIssuer {
    /// A new issuer for `trust_domain` named `issuer`, with a fresh Ed25519 key drawn from the
    /// operating system's randomness.
    pub fn generate(trust_domain: &str, issuer: &str) -> Result<DevIssuer, IdentityError> {
        let seed = random_bytes::<32>()?;
        DevIssuer::from_seed(trust_domain, issuer, &seed, None)
    }

    pub(crate) fn from_seed(
        trust_domain: &str,
        issuer: &str,
        seed: &[u8; 32],
        kid: Option<String>,
    ) -> Result<DevIssuer, IdentityError> {
        validate_trust_domain(trust_domain).map_err(issuer_error)?;
        if issuer.is_empty() {
            return Err(issuer_error("the issuer name is empty"));
        }
        let key = SigningKey::from_bytes(seed);
        let kid = kid.unwrap_or_else(|| thumbprint(&b64url_encode(key.verifying_key().as_bytes())));
        Ok(DevIssuer { trust_domain: trust_domain.to_owned(), issuer: issuer.to_owned(), kid, key })
    }

    /// The key id (`kid`) its tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The issuer name (`iss`) its tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The trust domain it vouches for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The public key as a JWK (RFC 8037 §2), with `alg` `EdDSA` and `use` `sig`.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "kid": self.kid,
            "x": b64url_encode(self.key.verifying_key().as_bytes()),
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// The trust bundle entry that trusts this issuer for `roles` (see [`TrustBundle::add`]).
    ///
    /// [`TrustBundle::add`]: crate::TrustBundle::add
    pub fn bundle_entry(&self, roles: &[Role]) -> BundleEntry {
        BundleEntry {
            trust_domain: self.trust_domain.clone(),
            issuer: self.issuer.clone(),
            roles: roles.to_vec(),
            jwks: json!({ "keys": [self.public_jwk()] }),
        }
    }

    /// The secret form (see the module documentation), private key included.
    pub fn to_secret_json(&self) -> String {
        let doc = json!({
            "format": SECRET_FORMAT,
            "trust_domain": self.trust_domain,
            "issuer": self.issuer,
            "key": {
                "kty": "OKP",
                "crv": "Ed25519",
                "kid": self.kid,
                "x": b64url_encode(self.key.verifying_key().as_bytes()),
                "d": b64url_encode(self.key.as_bytes()),
            },
        });
        // Serialising a `Value` cannot fail: its map keys are strings.
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// Reads the secret form back, checking that the public key matches the private one.
    pub fn from_secret_json(text: &str) -> Result<DevIssuer, IdentityError> {
        let doc: SecretDoc = serde_json::from_str(text).map_err(|e| issuer_error(format!("secret form: {e}")))?;
        if doc.format != SECRET_FORMAT {
            return Err(issuer_error(format!("secret form: format {:?} is not {SECRET_FORMAT:?}", doc.format)));
        }
        if doc.key.kty != "OKP" || doc.key.crv != "Ed25519" {
            return Err(issuer_error("secret form: the key is not an OKP/Ed25519 key"));
        }
        if doc.key.kid.is_empty() {
            return Err(issuer_error("secret form: the kid is empty"));
        }
        let d = b64url_decode(&doc.key.d).map_err(|e| issuer_error(format!("secret form: \"d\": {e}")))?;
        let seed = <[u8; 32]>::try_from(d.as_slice())
            .map_err(|_| issuer_error(format!("secret form: \"d\" is {} bytes, not 32", d.len())))?;
        let issuer = DevIssuer::from_seed(&doc.trust_domain, &doc.issuer, &seed, Some(doc.key.kid))?;
        if b64url_encode(issuer.key.verifying_key().as_bytes()) != doc.key.x {
            return Err(issuer_error("secret form: \"x\" is not the public key of \"d\""));
        }
        Ok(issuer)
    }

    /// Mints a credential: header `{"alg":"EdDSA","typ":"JWT","kid":…}`, claims `iss`, `sub`,
    /// `aud`, `iat`, `nbf` (both `now`), `exp` (`now + ttl_secs`), a random `jti` (128 bits,
    /// hex) and the extra claims.
    pub fn issue(&self, request: IssueRequest<'_>) -> Result<String, IdentityError> {
        if let Some(name) = request.extra_claims.keys().find(|k| REGISTERED_CLAIMS.contains(&k.as_str())) {
            return Err(issuer_error(format!("extra claim {name:?} is a registered claim")));
        }
        self.mint(request.subject, request.audience, request.ttl_secs, request.now, request.extra_claims)
    }

    /// Mints a runtime attestation for `request.subject`: a credential (as [`issue`](Self::issue))
    /// carrying `measurement`, `environment` and `region`. The bundle must trust this issuer
    /// for [`Role::Attestor`] for it to verify.
    pub fn issue_attestation(&self, request: AttestationRequest<'_>) -> Result<String, IdentityError> {
        if !is_sha256_digest(request.measurement) {
            return Err(issuer_error(format!(
                "measurement {:?} is not sha256:<64 lowercase hex>",
                request.measurement
            )));
        }
        let mut extra = Map::new();
        for (name, value) in
            ATTESTATION_CLAIMS.into_iter().zip([request.measurement, request.environment, request.region])
        {
            if value.is_empty() {
                return Err(issuer_error(format!("{name} is empty")));
            }
            extra.insert(name.to_owned(), Value::String(value.to_owned()));
        }
        self.mint(request.subject, request.audience, request.ttl_secs, request.now, extra)
    }

    fn mint(
        &self,
        subject: &SpiffeId,
        audience: Vec<String>,
        ttl_secs: u64,
        now: u64,
        extra: Map<String, Value>,
    ) -> Result<String, IdentityError> {
        if subject.trust_domain() != self.trust_domain {
            return Err(issuer_error(format!(
                "subject {subject} is outside the issuer's trust domain {:?}",
                self.trust_domain
            )));
        }
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(issuer_error("at least one non-empty audience is required"));
        }
        if ttl_secs == 0 {
            return Err(issuer_error("ttl must be at least one second"));
        }
        let exp = now.checked_add(ttl_secs).ok_or_else(|| issuer_error("now + ttl overflows"))?;
        let jti = hex::encode(random_bytes::<16>()?);
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::String(self.issuer.clone()));
        claims.insert("sub".into(), Value::String(subject.as_str().to_owned()));
        claims.insert("aud".into(), Value::Array(audience.into_iter().map(Value::String).collect()));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("nbf".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(exp));
        claims.insert("jti".into(), Value::String(jti));
        claims.extend(extra);
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid });
        Ok(self.sign(&header, &Value::Object(claims)))
    }

    /// The JWS compact serialization of `claims` under `header` (RFC 7515 §5.1): the
    /// signature is Ed25519 over `BASE64URL(header) || '.' || BASE64URL(claims)`.
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(claims.to_string().as_bytes())
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64url_encode(&signature.to_bytes()))
    }
}

#[cfg(test)]
mod tests;
