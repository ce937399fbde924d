//! The crate's one error type, [`IdentityError`], and its mapping onto the stable reason
//! codes of SPEC.md §6. Dependency errors (jsonwebtoken, serde_json, base64, curve crates)
//! are turned into text here and at their call sites; none of their types leaks out.

use writ_core::ReasonCode;

/// Why a trust bundle did not load, a credential or attestation did not verify, or the
/// development issuer could not mint a token. Every variant carries a human-readable cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not a well-formed JWT (segments, base64url, JSON, required claims and their types),
    /// a subject that is not a SPIFFE ID, or a lifetime above the configured maximum
    /// (`identity.malformed`).
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// A refused algorithm or header parameter, a key of the wrong type for the algorithm,
    /// or a signature that does not verify (`identity.bad_signature`).
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A `kid` not in the trust bundle, an `iss` that does not own the key, an issuer
    /// without the requested role, or a subject outside the issuer's trust domain
    /// (`identity.untrusted_issuer`).
    #[error("untrusted issuer: {0}")]
    UntrustedIssuer(String),
    /// Past `exp` plus the allowed clock skew (`identity.expired`).
    #[error("expired: {0}")]
    Expired(String),
    /// Before `nbf`, or issued (`iat`) in the future, beyond the allowed clock skew
    /// (`identity.not_yet_valid`).
    #[error("not yet valid: {0}")]
    NotYetValid(String),
    /// No `aud` value is one of the configured audiences (`identity.audience`).
    #[error("wrong audience: {0}")]
    Audience(String),
    /// An attestation whose subject is not the workload it is presented for. Only produced
    /// inside [`IdentityError::Attestation`].
    #[error("subject binding: {0}")]
    SubjectMismatch(String),
    /// A runtime attestation that failed verification; the cause says which check failed.
    /// Always `attestation.invalid`, whatever the cause.
    #[error("invalid runtime attestation: {0}")]
    Attestation(Box<IdentityError>),
    /// A trust bundle that is not acceptable (syntax, unsupported key, duplicate `kid`).
    /// A configuration error, not a verdict on a credential (`internal`).
    #[error("invalid trust bundle: {0}")]
    Bundle(String),
    /// The development issuer could not mint or load (bad input, no randomness) (`internal`).
    #[error("development issuer: {0}")]
    Issuer(String),
}

impl IdentityError {
    /// The reason code a deny carries for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            IdentityError::Malformed(_) => ReasonCode::IdentityMalformed,
            IdentityError::BadSignature(_) => ReasonCode::IdentityBadSignature,
            IdentityError::UntrustedIssuer(_) => ReasonCode::IdentityUntrustedIssuer,
            IdentityError::Expired(_) => ReasonCode::IdentityExpired,
            IdentityError::NotYetValid(_) => ReasonCode::IdentityNotYetValid,
            IdentityError::Audience(_) => ReasonCode::IdentityAudience,
            IdentityError::SubjectMismatch(_) | IdentityError::Attestation(_) => ReasonCode::AttestationInvalid,
            IdentityError::Bundle(_) | IdentityError::Issuer(_) => ReasonCode::Internal,
        }
    }

    /// For an attestation failure, the check that failed (its own [`reason`](Self::reason)
    /// is the identity code that check would carry for a credential); otherwise `None`.
    pub fn attestation_cause(&self) -> Option<&IdentityError> {
        match self {
            IdentityError::Attestation(cause) => Some(cause),
            _ => None,
        }
    }

    /// Wraps any error as an attestation failure (idempotent).
    pub(crate) fn into_attestation(self) -> IdentityError {
        match self {
            IdentityError::Attestation(_) => self,
            other => IdentityError::Attestation(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attestation_failure_is_attestation_invalid() {
        for cause in [
            IdentityError::Malformed("x".into()),
            IdentityError::BadSignature("x".into()),
            IdentityError::UntrustedIssuer("x".into()),
            IdentityError::Expired("x".into()),
            IdentityError::NotYetValid("x".into()),
            IdentityError::Audience("x".into()),
            IdentityError::SubjectMismatch("x".into()),
        ] {
            let cause_reason = cause.reason();
            let wrapped = cause.into_attestation();
            assert_eq!(wrapped.reason(), ReasonCode::AttestationInvalid);
            assert_eq!(wrapped.attestation_cause().map(IdentityError::reason), Some(cause_reason));
            assert_eq!(wrapped.clone().into_attestation(), wrapped, "wrapping twice nests");
        }
    }

    #[test]
    fn identity_codes_are_the_specs() {
        assert_eq!(IdentityError::Malformed(String::new()).reason().as_str(), "identity.malformed");
        assert_eq!(IdentityError::BadSignature(String::new()).reason().as_str(), "identity.bad_signature");
        assert_eq!(IdentityError::UntrustedIssuer(String::new()).reason().as_str(), "identity.untrusted_issuer");
        assert_eq!(IdentityError::Expired(String::new()).reason().as_str(), "identity.expired");
        assert_eq!(IdentityError::NotYetValid(String::new()).reason().as_str(), "identity.not_yet_valid");
        assert_eq!(IdentityError::Audience(String::new()).reason().as_str(), "identity.audience");
        assert_eq!(IdentityError::Bundle(String::new()).reason().as_str(), "internal");
    }
}
