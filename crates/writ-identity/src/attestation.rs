//! Runtime attestation (SPEC.md §1, stage 2): a JWT (RFC 7519, JWS RFC 7515) from an issuer
//! holding the `attestor` role in the trust bundle, checked by every rule of a credential
//! (see [`verify`](crate::verify)), whose `sub` is the SPIFFE ID of the workload it attests
//! (the binding) and which carries the measured runtime: `measurement`
//! (`sha256:<64 lowercase hex>`, an image or binary digest), `environment` and `region`.
//! Every failure is `attestation.invalid`, whatever check failed; the cause is kept inside
//! [`IdentityError::Attestation`].

use serde_json::{Map, Value};
use writ_core::SpiffeId;

use crate::{IdentityError, IdentityVerifier, Role, VerifiedCredential};

/// The attestation claims, removed from [`VerifiedAttestation::claims`].
pub(crate) const ATTESTATION_CLAIMS: [&str; 3] = ["measurement", "environment", "region"];

/// A runtime attestation that verified and binds to the workload. Built only by
/// [`IdentityVerifier::verify_attestation`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedAttestation {
    credential: VerifiedCredential,
    measurement: String,
    environment: String,
    region: String,
    claims: Map<String, Value>,
}

impl VerifiedAttestation {
    /// The attested workload (`sub`), equal to the workload it was verified for.
    pub fn subject(&self) -> &SpiffeId {
        self.credential.subject()
    }

    /// The attestor (`iss`).
    pub fn issuer(&self) -> &str {
        self.credential.issuer()
    }

    /// The attestor's trust domain.
    pub fn trust_domain(&self) -> &str {
        self.credential.trust_domain()
    }

    /// The runtime measurement, `sha256:<64 lowercase hex>`.
    pub fn measurement(&self) -> &str {
        &self.measurement
    }

    /// The runtime environment (e.g. `production`).
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The region the runtime runs in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The attestation's token id (`jti`), if any.
    pub fn jti(&self) -> Option<&str> {
        self.credential.jti()
    }

    /// `iat`, Unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.credential.issued_at()
    }

    /// `exp`, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.credential.expires_at()
    }

    /// The claims other than the registered ones and the three attestation claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// Whether `s` is `sha256:` followed by 64 lowercase hex digits (SPEC.md §4 digest form).
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

impl IdentityVerifier {
    /// Verifies a runtime attestation for `workload` at time `now` (Unix seconds). Every
    /// failure is [`IdentityError::Attestation`] (`attestation.invalid`).
    pub fn verify_attestation(
        &self,
        token: &str,
        workload: &SpiffeId,
        now: u64,
    ) -> Result<VerifiedAttestation, IdentityError> {
        self.attestation_checks(token, workload, now).map_err(IdentityError::into_attestation)
    }

    fn attestation_checks(
        &self,
        token: &str,
        workload: &SpiffeId,
        now: u64,
    ) -> Result<VerifiedAttestation, IdentityError> {
        let mut credential = self.verify(Role::Attestor, token, now)?;
        if credential.subject() != workload {
            return Err(IdentityError::SubjectMismatch(format!(
                "attestation is for {}, not {workload}",
                credential.subject()
            )));
        }
        let mut claims = credential.take_claims();
        let [measurement, environment, region] = ATTESTATION_CLAIMS.map(|name| match claims.remove(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(other) => Err(IdentityError::Malformed(format!("claim {name:?} is not a non-empty string: {other}"))),
            None => Err(IdentityError::Malformed(format!("claim {name:?} is missing"))),
        });
        let (measurement, environment, region) = (measurement?, environment?, region?);
        if !is_sha256_digest(&measurement) {
            return Err(IdentityError::Malformed(format!(
                "measurement {measurement:?} is not sha256:<64 lowercase hex>"
            )));
        }
        Ok(VerifiedAttestation { credential, measurement, environment, region, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_form_is_exact() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_sha256_digest(&format!("sha256:{hex}")));
        assert!(!is_sha256_digest(&format!("sha256:{}", hex.to_uppercase())));
        assert!(!is_sha256_digest(&format!("sha256:{}", &hex[1..])));
        assert!(!is_sha256_digest(&format!("sha256:{hex}0")));
        assert!(!is_sha256_digest(&format!("sha512:{hex}")));
        assert!(!is_sha256_digest(&hex));
        assert!(!is_sha256_digest(&format!("sha256:{}g", &hex[1..])));
    }
}
