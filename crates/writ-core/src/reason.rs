//! The stable reason codes of SPEC.md §6. The string form is part of the API: it is what
//! JSON answers, log entries and metrics carry, and it never changes for a given code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, )*) => {
        /// Why a request was denied or a writ did not verify (SPEC.md §6).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ReasonCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ReasonCode {
            /// Every code, in SPEC order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant,)*];

            /// The stable API string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ReasonCode::$variant => $text, )*
                }
            }
        }

        impl FromStr for ReasonCode {
            type Err = UnknownReasonCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok(ReasonCode::$variant), )*
                    _ => Err(UnknownReasonCode(s.to_owned())),
                }
            }
        }
    };
}

reason_codes! {
    /// No workload credential was presented.
    IdentityMissing => "identity.missing",
    /// A credential that is not a well-formed JWT, or whose subject is not a SPIFFE ID.
    IdentityMalformed => "identity.malformed",
    /// A credential whose signature does not verify (or uses a refused algorithm).
    IdentityBadSignature => "identity.bad_signature",
    /// A credential from an issuer or key not in the trust bundle.
    IdentityUntrustedIssuer => "identity.untrusted_issuer",
    /// A credential past its `exp`.
    IdentityExpired => "identity.expired",
    /// A credential before its `nbf` (or issued in the future).
    IdentityNotYetValid => "identity.not_yet_valid",
    /// A credential for another audience.
    IdentityAudience => "identity.audience",
    /// Policy requires a runtime attestation and none was presented.
    AttestationMissing => "attestation.missing",
    /// A runtime attestation that does not verify or does not bind to the workload.
    AttestationInvalid => "attestation.invalid",
    /// The identity is isolated until an operator releases it.
    Quarantined => "quarantined",
    /// The parent writ is not in the log.
    LineageParentUnknown => "lineage.parent_unknown",
    /// The parent writ was denied.
    LineageParentDenied => "lineage.parent_denied",
    /// The parent writ has expired.
    LineageParentExpired => "lineage.parent_expired",
    /// The parent writ was revoked.
    LineageParentRevoked => "lineage.parent_revoked",
    /// The chain is deeper than allowed.
    LineageDepthExceeded => "lineage.depth_exceeded",
    /// The child asks for more than its parent's scope.
    LineageScopeEscalation => "lineage.scope_escalation",
    /// Policy denied the request.
    PolicyDenied => "policy.denied",
    /// No valid policy bundle is active.
    PolicyNoActiveBundle => "policy.no_active_bundle",
    /// Policy evaluation failed (any Cedar evaluation error denies).
    PolicyEvaluationError => "policy.evaluation_error",
    /// A bundle not signed by a trusted policy key, or not valid against its schema.
    PolicyBundleUntrusted => "policy.bundle_untrusted",
    /// A writ whose signature does not verify.
    WritBadSignature => "writ.bad_signature",
    /// A writ outside its validity window.
    WritExpired => "writ.expired",
    /// A writ for another audience.
    WritAudience => "writ.audience",
    /// A writ for another request than the one about to run.
    WritBindingMismatch => "writ.binding_mismatch",
    /// A writ already used at this enforcement point.
    WritReplayed => "writ.replayed",
    /// A revoked writ.
    WritRevoked => "writ.revoked",
    /// The log could not record the decision.
    LogUnavailable => "log.unavailable",
    /// The request is not acceptable input.
    RequestMalformed => "request.malformed",
    /// Anything else that went wrong inside writ.
    Internal => "internal",
}

/// A string that is not one of the reason codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason code {0:?}")]
pub struct UnknownReasonCode(String);

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list in SPEC.md §6, verbatim: the codes are part of the API.
    const SPEC: &str = "identity.missing, identity.malformed, identity.bad_signature, identity.untrusted_issuer, \
        identity.expired, identity.not_yet_valid, identity.audience, attestation.missing, attestation.invalid, \
        quarantined, lineage.parent_unknown, lineage.parent_denied, lineage.parent_expired, lineage.parent_revoked, \
        lineage.depth_exceeded, lineage.scope_escalation, policy.denied, policy.no_active_bundle, \
        policy.evaluation_error, policy.bundle_untrusted, writ.bad_signature, writ.expired, writ.audience, \
        writ.binding_mismatch, writ.replayed, writ.revoked, log.unavailable, request.malformed, internal";

    #[test]
    fn codes_are_exactly_the_specs() {
        let spec: Vec<&str> = SPEC.split(',').map(str::trim).collect();
        let ours: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(ours, spec);
        for code in ReasonCode::ALL {
            assert_eq!(code.as_str().parse::<ReasonCode>().unwrap(), *code);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(serde_json::from_str::<ReasonCode>(&json).unwrap(), *code);
        }
        assert!("policy.allowed".parse::<ReasonCode>().is_err());
    }
}
