//! Fuzzing hooks, not part of the API: the crate-private parsers of untrusted input, for the
//! targets in `fuzz/` (as rustls exposes its own in `internal`). Hidden from the
//! documentation and free to change with the parsers they wrap; nothing here builds a
//! verified type.

use serde_json::{Map, Value};

use crate::jwk::{Algorithm, TrustedKey};
use crate::{IdentityError, jose};

/// The JWS compact structure check (`jose::header_segment`): the still-encoded header.
pub fn header_segment(token: &str) -> Result<&str, IdentityError> {
    jose::header_segment(token)
}

/// The protected header parser (`jose::parse_header`): the algorithm and the `kid`.
pub fn parse_header(segment: &str) -> Result<(Algorithm, String), IdentityError> {
    jose::parse_header(segment).map(|h| (h.alg, h.kid))
}

/// One JWK of a trust bundle (`TrustedKey::from_jwk`): its algorithm and its public
/// members as loaded.
pub fn parse_jwk(jwk: Map<String, Value>) -> Result<(Algorithm, Value), IdentityError> {
    TrustedKey::from_jwk(jwk).map(|k| (k.alg(), k.to_json()))
}
