//! writ's domain types, shared by every other crate and free of I/O:
//!
//! - [`ReasonCode`]: the stable reason codes of SPEC.md §6, which are also the API strings;
//! - [`SpiffeId`]: a parsed, valid SPIFFE ID (SPIFFE-ID specification, via the `spiffe` crate);
//! - [`ExecutionRequest`]: the parsed, bounded request of SPEC.md §1 and its canonical
//!   [`RequestDigest`] (SHA-256 of the RFC 8785 canonical JSON of action, resource, arguments);
//! - [`json`]: strict JSON for every input, refusing repeated member names at any depth.

pub mod json;
mod reason;
mod request;
mod spiffe_id;

pub use reason::ReasonCode;
pub use request::{
    Credentials, ExecutionRequest, Limits, Presented, RequestDigest, canonical_json, parse_sha256, request_digest,
};
pub use spiffe_id::SpiffeId;

/// Errors of the domain types; each maps to a reason code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A request that is not acceptable input (`request.malformed`).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A SPIFFE ID that does not follow the specification.
    #[error("invalid SPIFFE ID: {0}")]
    SpiffeId(String),
}

impl Error {
    /// The reason code a deny carries for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            Error::Malformed(_) => ReasonCode::RequestMalformed,
            Error::SpiffeId(_) => ReasonCode::IdentityMalformed,
        }
    }
}
