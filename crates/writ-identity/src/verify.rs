//! Verification of identity credentials: JWTs (RFC 7519) in JWS compact form (RFC 7515),
//! signed with EdDSA (RFC 8037) or ES256 (RFC 7518 §3.4) by a key in the trust bundle, whose
//! subject is a SPIFFE ID (SPIFFE JWT-SVID, §3: `sub`, `aud` and `exp` required).
//!
//! The checks, in order, each with the reason code it denies with:
//!
//! 1. the header (see [`jose`](crate::jose)): a refused `alg` or key-carrying parameter is
//!    `identity.bad_signature`, an unknown `kid` is `identity.untrusted_issuer`, a key whose
//!    type does not match `alg` is `identity.bad_signature`;
//! 2. the signature, by `jsonwebtoken` pinned to that one algorithm and key
//!    (`identity.bad_signature`);
//! 3. `iss` is the issuer owning the key, that issuer holds the requested role, and the
//!    `sub`ject's trust domain is the one the issuer is configured under
//!    (`identity.untrusted_issuer`); `sub` is a SPIFFE ID (`identity.malformed`);
//! 4. `aud` names a configured audience (`identity.audience`);
//! 5. `exp` and `iat` are present, and `exp - iat` is within the maximum lifetime
//!    (`identity.malformed`);
//! 6. the clock, with the configured skew: `now > exp + skew` is `identity.expired`;
//!    `now + skew < nbf` or `iat > now + skew` is `identity.not_yet_valid`.
//!
//! Anything that is not a JWT, not base64url, not a JSON object (or one with a repeated
//! member), or lacks or mistypes a claim is `identity.malformed`. NumericDate claims must be
//! non-negative integers.
//!
//! Steps 1–5 depend only on the token, the bundle and the configuration, so their outcome is
//! cached (see [`cache`](crate::cache)); step 6 runs on every call.

use std::sync::Arc;

use serde_json::{Map, Value};
use writ_core::SpiffeId;

use crate::bundle::{KeyOwner, TrustBundle};
use crate::cache::{CacheKey, TokenCache};
use crate::json::UniqueMap;
use crate::jwk::Algorithm;
use crate::{IdentityError, Role, jose};

/// The registered claims of RFC 7519 §4.1, which [`VerifiedCredential::claims`] leaves out.
pub(crate) const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// How a verifier checks the claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The audiences this verifier accepts; a token must name at least one in `aud`. Empty
    /// means no token verifies.
    pub audiences: Vec<String>,
    /// The clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub max_skew_secs: u64,
    /// The longest lifetime (`exp - iat`) accepted, in seconds.
    pub max_lifetime_secs: u64,
    /// How many verified tokens to cache (0 disables the cache).
    pub cache_capacity: usize,
}

impl VerifierConfig {
    /// Default clock skew allowance: one minute.
    pub const DEFAULT_MAX_SKEW_SECS: u64 = 60;
    /// Default maximum credential lifetime: one day.
    pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 86_400;
    /// Default cache size, in tokens.
    pub const DEFAULT_CACHE_CAPACITY: usize = 65_536;

    /// The defaults, accepting the given audiences.
    pub fn new(audiences: Vec<String>) -> VerifierConfig {
        VerifierConfig {
            audiences,
            max_skew_secs: Self::DEFAULT_MAX_SKEW_SECS,
            max_lifetime_secs: Self::DEFAULT_MAX_LIFETIME_SECS,
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
        }
    }
}

impl Default for VerifierConfig {
    /// The defaults with no audience (nothing verifies until one is configured).
    fn default() -> Self {
        VerifierConfig::new(Vec::new())
    }
}

/// A credential that passed every check. Built only by [`IdentityVerifier::verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedCredential {
    subject: SpiffeId,
    issuer: String,
    trust_domain: String,
    role: Role,
    kid: String,
    audience: Vec<String>,
    jti: Option<String>,
    issued_at: u64,
    not_before: Option<u64>,
    expires_at: u64,
    claims: Map<String, Value>,
}

impl VerifiedCredential {
    /// The subject (`sub`), a SPIFFE ID in the issuer's trust domain.
    pub fn subject(&self) -> &SpiffeId {
        &self.subject
    }

    /// The issuer (`iss`), as named in the trust bundle.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The trust domain the issuer is trusted for (and the subject belongs to).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The role the credential was verified as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The id of the key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Every audience the token names (`aud`).
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The token id (`jti`), if any.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// `iat`, Unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// `nbf`, Unix seconds, if any.
    pub fn not_before(&self) -> Option<u64> {
        self.not_before
    }

    /// `exp`, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The claims other than the registered ones (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`,
    /// `jti`), e.g. `zone`, `env`, `roles`.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Step 6 of the module documentation: the checks against the clock.
    fn check_time(&self, now: u64, skew: u64) -> Result<(), IdentityError> {
        if now > self.expires_at.saturating_add(skew) {
            return Err(IdentityError::Expired(format!("exp {} is before now {now} (skew {skew}s)", self.expires_at)));
        }
        if let Some(nbf) = self.not_before
            && now.saturating_add(skew) < nbf
        {
            return Err(IdentityError::NotYetValid(format!("nbf {nbf} is after now {now} (skew {skew}s)")));
        }
        if self.issued_at > now.saturating_add(skew) {
            return Err(IdentityError::NotYetValid(format!(
                "iat {} is after now {now} (skew {skew}s)",
                self.issued_at
            )));
        }
        Ok(())
    }

    /// Splits the claims into the credential and moves the rest out (for attestations).
    pub(crate) fn take_claims(&mut self) -> Map<String, Value> {
        std::mem::take(&mut self.claims)
    }
}

/// Verifies credentials against one trust bundle and configuration. `&self` methods, safe to
/// share between threads (`Arc<IdentityVerifier>`).
pub struct IdentityVerifier {
    bundle: TrustBundle,
    config: VerifierConfig,
    eddsa: jsonwebtoken::Validation,
    es256: jsonwebtoken::Validation,
    cache: TokenCache<VerifiedCredential>,
}

impl std::fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("bundle", &self.bundle)
            .field("config", &self.config)
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// A `jsonwebtoken` validation that checks the signature with exactly one algorithm and
/// nothing else: the claims are checked by this module, against the caller's clock.
fn signature_only(alg: Algorithm) -> jsonwebtoken::Validation {
    let mut validation = jsonwebtoken::Validation::new(alg.to_jsonwebtoken());
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.reject_tokens_expiring_in_less_than = 0;
    validation
}

impl IdentityVerifier {
    /// A verifier over `bundle` with `config`.
    pub fn new(bundle: TrustBundle, config: VerifierConfig) -> IdentityVerifier {
        let cache = TokenCache::new(config.cache_capacity);
        IdentityVerifier {
            bundle,
            config,
            eddsa: signature_only(Algorithm::EdDsa),
            es256: signature_only(Algorithm::Es256),
            cache,
        }
    }

    /// The trust bundle.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Verifies `token` presented as a credential of `role` at time `now` (Unix seconds). A
    /// delegation credential (one carrying `may_act`) is refused here: it lets its holder
    /// name the delegating principal's writ as a parent ([`IdentityVerifier::verify_delegation`]),
    /// never act as that principal.
    pub fn verify(&self, role: Role, token: &str, now: u64) -> Result<VerifiedCredential, IdentityError> {
        let credential = self.verify_any(role, token, now)?;
        if credential.claims.contains_key(MAY_ACT) {
            return Err(IdentityError::Malformed(format!(
                "a delegation credential (claim \"{MAY_ACT}\") cannot be presented as a {role} credential"
            )));
        }
        Ok(credential)
    }

    /// Verifies a delegation credential (RFC 8693 §4.4 `may_act`): a credential of the
    /// delegating principal (`sub`), from an issuer trusted for its workload credentials,
    /// whose `may_act` claim names the one principal allowed to act under its writs
    /// (`{"sub": "<SPIFFE ID>"}`). Returns the credential and the delegate.
    pub fn verify_delegation(&self, token: &str, now: u64) -> Result<(VerifiedCredential, SpiffeId), IdentityError> {
        let credential = self.verify_any(Role::Workload, token, now)?;
        let delegate = match credential.claims.get(MAY_ACT) {
            None => {
                return Err(IdentityError::Malformed(format!(
                    "a delegation credential needs a \"{MAY_ACT}\" claim naming the delegate"
                )));
            }
            Some(may_act) => may_act_subject(may_act)?,
        };
        Ok((credential, delegate))
    }

    fn verify_any(&self, role: Role, token: &str, now: u64) -> Result<VerifiedCredential, IdentityError> {
        if token.len() > jose::MAX_TOKEN_BYTES {
            return Err(IdentityError::Malformed(format!(
                "token is {} bytes, above {}",
                token.len(),
                jose::MAX_TOKEN_BYTES
            )));
        }
        let key = CacheKey::new(role, token);
        if let Some(cached) = self.cache.get(&key) {
            cached.check_time(now, self.config.max_skew_secs)?;
            return Ok(VerifiedCredential::clone(&cached));
        }
        let credential = self.verify_uncached(role, token)?;
        credential.check_time(now, self.config.max_skew_secs)?;
        let credential = Arc::new(credential);
        self.cache.insert(key, Arc::clone(&credential));
        Ok(Arc::unwrap_or_clone(credential))
    }

    /// Steps 1–5 of the module documentation.
    fn verify_uncached(&self, role: Role, token: &str) -> Result<VerifiedCredential, IdentityError> {
        let header = jose::parse_header(jose::header_segment(token)?)?;
        let KeyOwner { issuer, key } = self.bundle.lookup(&header.kid).ok_or_else(|| {
            IdentityError::UntrustedIssuer(format!("kid {:?} is not in the trust bundle", header.kid))
        })?;
        if key.alg() != header.alg {
            return Err(IdentityError::BadSignature(format!(
                "header alg {} but kid {:?} is a {} key",
                header.alg,
                header.kid,
                key.alg()
            )));
        }
        let validation = match header.alg {
            Algorithm::EdDsa => &self.eddsa,
            Algorithm::Es256 => &self.es256,
        };
        let UniqueMap(claims) =
            jsonwebtoken::decode::<UniqueMap<Value>>(token, key.decoding(), validation).map_err(map_jwt_error)?.claims;
        let mut claims: Map<String, Value> = claims.into_iter().collect();

        let iss = take_string(&mut claims, "iss")?
            .ok_or_else(|| IdentityError::Malformed("claim \"iss\" is missing".into()))?;
        if iss != issuer.issuer {
            return Err(IdentityError::UntrustedIssuer(format!(
                "iss {iss:?} does not own kid {:?} (its issuer is {:?})",
                header.kid, issuer.issuer
            )));
        }
        if !issuer.roles.contains(&role) {
            return Err(IdentityError::UntrustedIssuer(format!("issuer {iss:?} is not trusted for role {role}")));
        }
        let sub = take_string(&mut claims, "sub")?
            .ok_or_else(|| IdentityError::Malformed("claim \"sub\" is missing".into()))?;
        let subject = SpiffeId::parse(&sub).map_err(|e| IdentityError::Malformed(format!("sub: {e}")))?;
        if subject.trust_domain() != issuer.trust_domain {
            return Err(IdentityError::UntrustedIssuer(format!(
                "issuer {iss:?} of trust domain {:?} cannot vouch for {subject}",
                issuer.trust_domain
            )));
        }
        let audience = take_audience(&mut claims)?;
        if !audience.iter().any(|a| self.config.audiences.contains(a)) {
            return Err(IdentityError::Audience(format!("aud {audience:?} names none of {:?}", self.config.audiences)));
        }
        let expires_at = take_numeric_date(&mut claims, "exp")?
            .ok_or_else(|| IdentityError::Malformed("claim \"exp\" is missing".into()))?;
        let issued_at = take_numeric_date(&mut claims, "iat")?
            .ok_or_else(|| IdentityError::Malformed("claim \"iat\" is missing".into()))?;
        let not_before = take_numeric_date(&mut claims, "nbf")?;
        let jti = take_string(&mut claims, "jti")?;
        let lifetime = expires_at
            .checked_sub(issued_at)
            .ok_or_else(|| IdentityError::Malformed(format!("exp {expires_at} is before iat {issued_at}")))?;
        if lifetime > self.config.max_lifetime_secs {
            return Err(IdentityError::Malformed(format!(
                "lifetime {lifetime}s is above the maximum {}s",
                self.config.max_lifetime_secs
            )));
        }
        check_read_claims(&claims)?;
        Ok(VerifiedCredential {
            subject,
            issuer: iss,
            trust_domain: issuer.trust_domain.clone(),
            role,
            kid: header.kid,
            audience,
            jti,
            issued_at,
            not_before,
            expires_at,
            claims,
        })
    }
}

/// Maps a `jsonwebtoken` failure onto our codes, keeping only its text.
fn map_jwt_error(e: jsonwebtoken::errors::Error) -> IdentityError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_) => IdentityError::Malformed(e.to_string()),
        _ => IdentityError::BadSignature(e.to_string()),
    }
}

/// The claims writ reads besides the registered ones, with the only type each may have:
/// `zone` (the principal's trust zone) a non-empty string, `scope` (the actions its
/// lineage children may take) an array of non-empty strings, `may_act` (a delegation)
/// `{"sub": <SPIFFE ID>}`. A claim writ reads with
/// another type is `identity.malformed`: read as absent, a mistyped `scope` would mean "no
/// restriction".
fn check_read_claims(claims: &Map<String, Value>) -> Result<(), IdentityError> {
    if let Some(zone) = claims.get("zone") {
        match zone {
            Value::String(z) if !z.is_empty() => {}
            other => {
                return Err(IdentityError::Malformed(format!("claim \"zone\" is not a non-empty string: {other}")));
            }
        }
    }
    if let Some(scope) = claims.get("scope") {
        let ok = scope.as_array().is_some_and(|items| items.iter().all(|i| i.as_str().is_some_and(|s| !s.is_empty())));
        if !ok {
            return Err(IdentityError::Malformed(format!(
                "claim \"scope\" is not an array of non-empty strings: {scope}"
            )));
        }
    }
    if let Some(may_act) = claims.get(MAY_ACT) {
        may_act_subject(may_act)?;
    }
    Ok(())
}

/// The delegation claim (RFC 8693 §4.4, "authorized actor"): `{"sub": "<SPIFFE ID>"}`.
pub const MAY_ACT: &str = "may_act";

/// The delegate a `may_act` claim names: an object with exactly one member, `sub`, a SPIFFE ID.
fn may_act_subject(may_act: &Value) -> Result<SpiffeId, IdentityError> {
    let bad = || IdentityError::Malformed(format!("claim \"{MAY_ACT}\" is not {{\"sub\": <SPIFFE ID>}}: {may_act}"));
    let obj = may_act.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    let sub = obj.get("sub").and_then(Value::as_str).ok_or_else(bad)?;
    SpiffeId::parse(sub).map_err(|e| IdentityError::Malformed(format!("claim \"{MAY_ACT}\".sub: {e}")))
}

/// Removes an optional string claim.
fn take_string(claims: &mut Map<String, Value>, name: &str) -> Result<Option<String>, IdentityError> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(IdentityError::Malformed(format!("claim {name:?} is not a string: {other}"))),
    }
}

/// Removes an optional NumericDate claim (RFC 7519 §2), accepted as a non-negative integer.
fn take_numeric_date(claims: &mut Map<String, Value>, name: &str) -> Result<Option<u64>, IdentityError> {
    match claims.remove(name) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| IdentityError::Malformed(format!("claim {name:?} is not a non-negative integer: {value}"))),
    }
}

/// Removes the required `aud` claim: a string or a non-empty array of strings (RFC 7519 §4.1.3).
fn take_audience(claims: &mut Map<String, Value>) -> Result<Vec<String>, IdentityError> {
    let bad = |why: &str| IdentityError::Malformed(format!("claim \"aud\" {why}"));
    match claims.remove("aud") {
        None => Err(bad("is missing")),
        Some(Value::String(aud)) => Ok(vec![aud]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .into_iter()
            .map(|item| match item {
                Value::String(aud) => Ok(aud),
                _ => Err(bad("holds a value that is not a string")),
            })
            .collect(),
        Some(_) => Err(bad("is neither a string nor a non-empty array of strings")),
    }
}

#[cfg(test)]
mod tests;
