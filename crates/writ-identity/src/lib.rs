//! writ's identity stage (SPEC.md §1, stages 1 and 2): who is asking, and on what runtime.
//! A pure library: it parses the bytes it is given and takes the clock as an argument.
//!
//! - [`TrustBundle`]: per SPIFFE trust domain, the trusted issuers, their roles and their keys
//!   as JWK Sets (RFC 7517; EdDSA/Ed25519 per RFC 8037 and ES256/P-256 only).
//! - [`IdentityVerifier`]: verifies credentials — JWTs (RFC 7519) in JWS compact form
//!   (RFC 7515) with SPIFFE IDs as subjects (SPIFFE JWT-SVID) — for a [`Role`], and runtime
//!   attestations bound to a workload, into [`VerifiedCredential`] and
//!   [`VerifiedAttestation`], which nothing else can build. Verified tokens are cached; the
//!   clock checks are redone on every call.
//! - [`DevIssuer`]: a development issuer that mints both and plugs into a bundle.
//! - [`IdentityError`]: every failure, with its [`ReasonCode`](writ_core::ReasonCode).

mod attestation;
mod bundle;
mod cache;
mod dev;
mod error;
mod jose;
mod json;
mod jwk;
mod role;
mod verify;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod testkit;

// The public interface.
pub use attestation::{VerifiedAttestation, is_sha256_digest};
pub use bundle::{BundleEntry, TrustBundle};
pub use dev::{AttestationRequest, DevIssuer, IssueRequest};
pub use error::IdentityError;
pub use jose::MAX_TOKEN_BYTES;
pub use jwk::Algorithm;
pub use role::Role;
pub use verify::{IdentityVerifier, MAY_ACT, VerifiedCredential, VerifierConfig};
