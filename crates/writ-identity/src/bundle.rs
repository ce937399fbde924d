//! The trust bundle: per SPIFFE trust domain, the issuers trusted to vouch for identities in
//! that domain, the roles each may vouch for, and each issuer's signing keys as a JWK Set
//! (RFC 7517 §5). Parsing is strict (unknown members, duplicate members, duplicate `kid`s
//! across the whole bundle and unsupported keys are refused), so a key id names exactly one
//! key, one issuer and one trust domain.
//!
//! The JSON form:
//!
//! ```json
//! {"trust_domains": {"example.org": {"issuers": [
//!   {"issuer": "https://idp.example.org", "roles": ["workload", "attestor"],
//!    "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "…"}]}}
//! ]}}}
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value};
use writ_core::SpiffeId;

use crate::json::UniqueMap;
use crate::jwk::TrustedKey;
use crate::{IdentityError, Role};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleDoc {
    trust_domains: UniqueMap<DomainDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainDoc {
    issuers: Vec<IssuerDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerDoc {
    issuer: String,
    roles: Vec<Role>,
    jwks: JwksDoc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwksDoc {
    keys: Vec<UniqueMap<Value>>,
}

/// One issuer to add to a [`TrustBundle`]: what [`DevIssuer::bundle_entry`] returns, and
/// what one element of a trust domain's `issuers` array holds.
///
/// [`DevIssuer::bundle_entry`]: crate::DevIssuer::bundle_entry
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    /// The SPIFFE trust domain the issuer vouches for, e.g. `example.org`.
    pub trust_domain: String,
    /// The issuer, exactly as its tokens carry it in `iss`.
    pub issuer: String,
    /// The roles its credentials may be presented as.
    pub roles: Vec<Role>,
    /// Its public keys, as a JWK Set: `{"keys": [ … ]}`.
    pub jwks: Value,
}

/// A trusted issuer: its trust domain, `iss`, roles and keys.
#[derive(Clone, Debug)]
pub(crate) struct Issuer {
    pub(crate) trust_domain: String,
    pub(crate) issuer: String,
    pub(crate) roles: Vec<Role>,
    keys: Vec<TrustedKey>,
}

/// What a `kid` resolves to: the key and the issuer that owns it.
pub(crate) struct KeyOwner<'a> {
    pub(crate) issuer: &'a Issuer,
    pub(crate) key: &'a TrustedKey,
}

/// The issuers and keys writ trusts, per SPIFFE trust domain. Built by
/// [`TrustBundle::from_json`] or [`TrustBundle::add`]; immutable once handed to a verifier.
#[derive(Clone, Debug, Default)]
pub struct TrustBundle {
    issuers: Vec<Issuer>,
    // INVARIANT: every kid of every issuer appears here exactly once, mapped to the indices of
    // its issuer in `issuers` and of the key in that issuer's `keys`.
    by_kid: HashMap<String, (usize, usize)>,
}

impl TrustBundle {
    /// An empty bundle, which trusts nothing.
    pub fn new() -> TrustBundle {
        TrustBundle::default()
    }

    /// Parses and validates a bundle from its JSON form (see the module documentation).
    pub fn from_json(bytes: &[u8]) -> Result<TrustBundle, IdentityError> {
        // Repeated member names are refused at every depth (writ_core::json).
        let doc: BundleDoc = writ_core::json::from_slice(bytes).map_err(IdentityError::Bundle)?;
        let mut bundle = TrustBundle::new();
        for (trust_domain, domain) in doc.trust_domains.0 {
            if domain.issuers.is_empty() {
                return Err(IdentityError::Bundle(format!("trust domain {trust_domain:?} lists no issuers")));
            }
            for issuer in domain.issuers {
                let keys = issuer.jwks.keys.into_iter().map(|UniqueMap(k)| k.into_iter().collect()).collect();
                bundle.add_issuer(&trust_domain, issuer.issuer, issuer.roles, keys)?;
            }
        }
        Ok(bundle)
    }

    /// Adds one issuer, validated exactly as [`TrustBundle::from_json`] validates a bundle's
    /// entries (its `kid`s must be new to the bundle, and the issuer new to its trust domain).
    pub fn add(&mut self, entry: BundleEntry) -> Result<(), IdentityError> {
        let jwks: JwksDoc = serde_json::from_value(entry.jwks)
            .map_err(|e| IdentityError::Bundle(format!("issuer {:?}: jwks: {e}", entry.issuer)))?;
        let keys = jwks.keys.into_iter().map(|UniqueMap(k)| k.into_iter().collect()).collect();
        self.add_issuer(&entry.trust_domain, entry.issuer, entry.roles, keys)
    }

    fn add_issuer(
        &mut self,
        trust_domain: &str,
        issuer: String,
        roles: Vec<Role>,
        keys: Vec<Map<String, Value>>,
    ) -> Result<(), IdentityError> {
        validate_trust_domain(trust_domain).map_err(IdentityError::Bundle)?;
        let bad =
            |why: String| IdentityError::Bundle(format!("trust domain {trust_domain:?}, issuer {issuer:?}: {why}"));
        if issuer.is_empty() {
            return Err(bad("the issuer is empty".into()));
        }
        if self.issuers.iter().any(|i| i.trust_domain == trust_domain && i.issuer == issuer) {
            return Err(bad("listed twice in the trust domain".into()));
        }
        if roles.is_empty() {
            return Err(bad("no roles".into()));
        }
        for (n, role) in roles.iter().enumerate() {
            if roles.iter().skip(n + 1).any(|r| r == role) {
                return Err(bad(format!("role {role} listed twice")));
            }
        }
        if keys.is_empty() {
            return Err(bad("no keys".into()));
        }
        let keys = keys
            .into_iter()
            .map(TrustedKey::from_jwk)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let issuer_index = self.issuers.len();
        let mut new_kids = HashMap::new();
        for (key_index, key) in keys.iter().enumerate() {
            let kid = key.kid().to_owned();
            if self.by_kid.contains_key(&kid) || new_kids.contains_key(&kid) {
                return Err(bad(format!("duplicate kid {kid:?}: a key id must be unique across the bundle")));
            }
            new_kids.insert(kid, (issuer_index, key_index));
        }
        self.by_kid.extend(new_kids);
        self.issuers.push(Issuer { trust_domain: trust_domain.to_owned(), issuer, roles, keys });
        Ok(())
    }

    /// Resolves a `kid` to its key and owning issuer.
    pub(crate) fn lookup(&self, kid: &str) -> Option<KeyOwner<'_>> {
        let &(issuer_index, key_index) = self.by_kid.get(kid)?;
        let issuer = self.issuers.get(issuer_index)?;
        let key = issuer.keys.get(key_index)?;
        Some(KeyOwner { issuer, key })
    }

    /// Whether the bundle holds a key with this id.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The trust domains the bundle names, sorted.
    pub fn trust_domains(&self) -> Vec<&str> {
        let mut domains: Vec<&str> = self.issuers.iter().map(|i| i.trust_domain.as_str()).collect();
        domains.sort_unstable();
        domains.dedup();
        domains
    }

    /// The bundle in its JSON form, as a value.
    pub fn to_value(&self) -> Value {
        let mut domains: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for issuer in &self.issuers {
            let roles = issuer.roles.iter().map(|r| Value::String(r.as_str().to_owned())).collect();
            let keys = issuer.keys.iter().map(TrustedKey::to_json).collect();
            let mut jwks = Map::new();
            jwks.insert("keys".into(), Value::Array(keys));
            let mut entry = Map::new();
            entry.insert("issuer".into(), Value::String(issuer.issuer.clone()));
            entry.insert("roles".into(), Value::Array(roles));
            entry.insert("jwks".into(), Value::Object(jwks));
            domains.entry(issuer.trust_domain.as_str()).or_default().push(Value::Object(entry));
        }
        let mut trust_domains = Map::new();
        for (name, issuers) in domains {
            let mut domain = Map::new();
            domain.insert("issuers".into(), Value::Array(issuers));
            trust_domains.insert(name.to_owned(), Value::Object(domain));
        }
        let mut root = Map::new();
        root.insert("trust_domains".into(), Value::Object(trust_domains));
        Value::Object(root)
    }

    /// The bundle in its JSON form (pretty-printed), which [`TrustBundle::from_json`] reads back.
    pub fn to_json(&self) -> String {
        // Serialising a `Value` cannot fail: its map keys are strings.
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }
}

/// Checks a trust domain name as the SPIFFE-ID specification defines it (§2.1), in
/// canonical (lowercase) form.
pub(crate) fn validate_trust_domain(name: &str) -> Result<(), String> {
    let probe = SpiffeId::parse(&format!("spiffe://{name}/probe"))
        .map_err(|e| format!("trust domain {name:?} is not valid: {e}"))?;
    if probe.trust_domain() != name {
        return Err(format!("trust domain {name:?} is not valid"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
