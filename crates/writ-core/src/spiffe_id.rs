//! SPIFFE IDs (`spiffe://<trust-domain>/<path>`), validated by the `spiffe` crate, which
//! implements the SPIFFE-ID specification's rules (lowercase trust domain of
//! `[a-z0-9.-_]`, path segments of `[A-Za-z0-9.-_]`, no empty, `.` or `..` segments, no
//! query, fragment, port or user info).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A valid SPIFFE ID of a workload (a non-empty path is required: a bare trust domain
/// names no workload).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    trust_domain_len: usize,
}

impl SpiffeId {
    /// Parses and validates.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let parsed = spiffe::SpiffeId::new(s).map_err(|e| Error::SpiffeId(format!("{s:?}: {e}")))?;
        // go-spiffe rejects uppercase trust domains; the Rust crate normalises them. Accept
        // only the canonical spelling, so that one workload has exactly one ID string.
        if parsed.to_string() != s {
            return Err(Error::SpiffeId(format!("{s:?}: not in canonical form")));
        }
        if parsed.path().is_empty() {
            return Err(Error::SpiffeId(format!("{s:?}: names a trust domain, not a workload")));
        }
        let trust_domain_len = parsed.trust_domain().to_string().len();
        Ok(SpiffeId { id: parsed.to_string(), trust_domain_len })
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        self.id.get("spiffe://".len().."spiffe://".len() + self.trust_domain_len).unwrap_or_default()
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        self.id.get("spiffe://".len() + self.trust_domain_len..).unwrap_or_default()
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SpiffeId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_parse_into_parts() {
        let id = SpiffeId::parse("spiffe://example.org/agent/billing-1").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/agent/billing-1");
        assert_eq!(id.as_str(), "spiffe://example.org/agent/billing-1");
    }

    #[test]
    fn invalid_ids_are_rejected() {
        for bad in [
            "",
            "spiffe://",
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe://Example.org/a",
            "http://example.org/a",
            "spiffe://example.org/a//b",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a/./b",
            "spiffe://example.org/a?x=1",
            "spiffe://example.org/a#f",
            "spiffe://user@example.org/a",
            "spiffe://example.org:8080/a",
            "spiffe://exa mple.org/a",
            "spiffe://example.org/a b",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
