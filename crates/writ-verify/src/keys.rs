//! Key sets: the Ed25519 public keys of a JWKS document (RFC 7517 §5) in the OKP form of
//! RFC 8037 §2, each under its `kid` (writ's `kid`s are RFC 7638 thumbprints; the key set
//! does not require it, a `kid` is only a name to look a key up by).
//!
//! Parsing is strict and happens once: a member that is not OKP/Ed25519, carries a private
//! part (`d`), names another algorithm or use, repeats a `kid`, or does not decode to a
//! valid point refuses the whole document (a key set is trusted whole or not at all). The
//! parsed `VerifyingKey`s are what verification uses; nothing is decoded per writ.

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use crate::Error;
use crate::jws::{MAX_KID, decode_exact};

/// The largest JWKS document accepted, in bytes.
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// The most keys a set may hold.
pub const MAX_KEYS: usize = 256;

/// What a key set's keys sign; a member's `use`, when present, must say the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    /// Writ signing keys (`/.well-known/jwks.json`, `use` `sig`).
    Writ,
    /// Feed signing keys (`/.well-known/writ-feed-keys.json`, `use` `writ-feed`).
    Feed,
}

impl KeyUse {
    fn name(self) -> &'static str {
        match self {
            KeyUse::Writ => "sig",
            KeyUse::Feed => "writ-feed",
        }
    }
}

/// Trusted Ed25519 keys by `kid`, parsed once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet {
    // INVARIANT: kids are distinct (checked on construction).
    keys: Vec<(String, VerifyingKey)>,
}

impl KeySet {
    /// The keys of a JWKS document's text (strict JSON: repeated member names refused).
    pub fn from_jwks(text: &[u8], usage: KeyUse) -> Result<KeySet, Error> {
        if text.len() > MAX_JWKS_LEN {
            return Err(Error::jwks(format!("{} bytes, more than the {MAX_JWKS_LEN} accepted", text.len())));
        }
        let value = writ_core::json::parse_value(text).map_err(Error::jwks)?;
        KeySet::from_value(&value, usage)
    }

    /// The keys of a parsed JWKS document.
    pub fn from_value(jwks: &Value, usage: KeyUse) -> Result<KeySet, Error> {
        let obj = jwks.as_object().ok_or_else(|| Error::jwks("not a JSON object"))?;
        let members = obj.get("keys").and_then(Value::as_array).ok_or_else(|| Error::jwks("no \"keys\" array"))?;
        if members.len() > MAX_KEYS {
            return Err(Error::jwks(format!("{} keys, more than the {MAX_KEYS} accepted", members.len())));
        }
        let mut set = KeySet::default();
        for (i, k) in members.iter().enumerate() {
            let (kid, key) = member(k, usage).map_err(|why| Error::jwks(format!("key {i}: {why}")))?;
            set.insert(kid, key)?;
        }
        Ok(set)
    }

    /// A set of one key, for tests and pinned deployments.
    pub fn single(kid: &str, public: &[u8; 32]) -> Result<KeySet, Error> {
        let key = VerifyingKey::from_bytes(public).map_err(|_| Error::jwks("not an Ed25519 point"))?;
        let mut set = KeySet::default();
        set.insert(kid.to_owned(), key)?;
        Ok(set)
    }

    fn insert(&mut self, kid: String, key: VerifyingKey) -> Result<(), Error> {
        if self.get(&kid).is_some() {
            return Err(Error::jwks(format!("kid {kid:?} appears twice")));
        }
        self.keys.push((kid, key));
        Ok(())
    }

    /// The key under `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// True if a key is under `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.get(kid).is_some()
    }

    /// The `kid`s, in document order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if the set holds no key (nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn member(k: &Value, usage: KeyUse) -> Result<(String, VerifyingKey), String> {
    let obj = k.as_object().ok_or("not an object")?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name:?} is not a string")),
        }
    };
    if text("kty")? != Some("OKP") || text("crv")? != Some("Ed25519") {
        return Err("only OKP keys on Ed25519 are trusted (RFC 8037)".into());
    }
    if obj.contains_key("d") {
        return Err("a private key in a public key set".into());
    }
    if let Some(alg) = text("alg")?
        && alg != "EdDSA"
    {
        return Err(format!("alg {alg:?}, not EdDSA"));
    }
    if let Some(u) = text("use")?
        && u != usage.name()
    {
        return Err(format!("use {u:?}, not {:?}", usage.name()));
    }
    let kid = text("kid")?.ok_or("no kid")?;
    if kid.is_empty() || kid.len() > MAX_KID {
        return Err("an empty or overlong kid".into());
    }
    let x = text("x")?.ok_or("no x")?;
    let public: [u8; 32] = decode_exact(x).ok_or("x is not 32 bytes of base64url")?;
    let key = VerifyingKey::from_bytes(&public).map_err(|_| "x is not an Ed25519 point")?;
    Ok((kid.to_owned(), key))
}
