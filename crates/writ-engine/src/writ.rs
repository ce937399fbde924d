//! The writ (SPEC.md §2): a JWT (RFC 7519, JWS compact RFC 7515, EdDSA RFC 8037) signed by
//! the control plane after the decision is durable in the log, and its verification at an
//! enforcement point.
//!
//! Signing keys are Ed25519, identified by their RFC 7638 thumbprint as `kid`, published
//! as a JWKS; rotation adds a new current key and keeps the old ones in the JWKS so that
//! outstanding writs keep verifying.
//!
//! Signatures are made with `aws-lc-rs` (AWS-LC's Ed25519, about 1.7x faster here than
//! `ed25519-dalek`'s portable code); Ed25519 is deterministic (RFC 8032 §5.1.6), so the
//! bytes are the same as any other implementation's, which a test checks against
//! `ed25519-dalek`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use writ_core::{ReasonCode, RequestDigest};

use crate::{Cause, EngineError, KeyError};

/// Where a writ's decision is in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRef {
    /// Index of the decision entry.
    pub index: u64,
    /// Its RFC 6962 leaf hash, `sha256:<hex>`.
    pub leaf: String,
}

/// What a writ lets its children do (lineage scope): the trust zone they must stay in
/// and the actions they may take (`*`: any).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Actions descendants may take, sorted; `["*"]` for any.
    pub actions: Vec<String>,
    /// Trust zone of the principal.
    pub zone: String,
}

impl Scope {
    /// True if this scope lets a descendant take `action`.
    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == "*" || a == action)
    }

    /// The intersection with a narrower request (`None`: no narrowing).
    pub fn narrow(&self, zone: &str, requested: Option<&[String]>) -> Scope {
        let mut actions: Vec<String> = match requested {
            None => self.actions.clone(),
            Some(req) if self.actions.iter().any(|a| a == "*") => req.to_vec(),
            Some(req) => req.iter().filter(|a| self.allows(a)).cloned().collect(),
        };
        actions.sort();
        actions.dedup();
        Scope { zone: zone.to_owned(), actions }
    }
}

/// The claims of a writ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritClaims {
    /// The control plane.
    pub iss: String,
    /// The principal's SPIFFE ID.
    pub sub: String,
    /// The enforcement point or resource audience.
    pub aud: String,
    /// Writ id.
    pub jti: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Action.
    pub act: String,
    /// Resource.
    pub res: String,
    /// Request digest, `sha256:<hex>` of the RFC 8785 form of {action, resource, arguments}.
    pub req: String,
    /// Policy bundle digest.
    pub pol: String,
    /// Parent writ id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub par: Option<String>,
    /// Root of the lineage (the root writ's id; its own id for a root).
    pub root: String,
    /// Depth in the lineage (0 for a root).
    pub dep: u32,
    /// Scope handed to children.
    pub scp: Scope,
    /// The decision's place in the log.
    pub log: LogRef,
}

fn random_hex(n: usize) -> Result<String, EngineError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| KeyError::NoRandomness(Cause::text(e.to_string())))?;
    Ok(hex::encode(b))
}

/// A fresh writ id.
pub fn new_writ_id() -> Result<String, EngineError> {
    random_hex(16).map(|h| format!("w-{h}"))
}

pub(crate) fn thumbprint(public: &[u8; 32]) -> String {
    // RFC 7638: SHA-256 over {"crv","kty","x"} in lexicographic order, no whitespace.
    let x = B64URL.encode(public);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

struct Key {
    kid: String,
    public: [u8; 32],
    signing: Ed25519KeyPair,
    /// The base64url JWS protected header for this key, computed once.
    header: String,
}

/// The writ signing keys: the current one signs, all are published.
pub struct WritSigner {
    issuer: String,
    keys: Vec<Key>,
}

impl std::fmt::Debug for WritSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritSigner").field("issuer", &self.issuer).field("kids", &self.kids()).finish()
    }
}

impl WritSigner {
    /// A signer from Ed25519 seeds, oldest first; the last one signs.
    pub fn from_seeds(issuer: &str, seeds: &[[u8; 32]]) -> Result<Self, EngineError> {
        if seeds.is_empty() {
            return Err(KeyError::NoKey.into());
        }
        let mut keys = Vec::new();
        for seed in seeds {
            let signing = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| KeyError::NotASeed(Cause::new(e)))?;
            let public: [u8; 32] = signing.public_key().as_ref().try_into().map_err(|_| KeyError::PublicKeyLength)?;
            let kid = thumbprint(&public);
            let header = B64URL.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string());
            keys.push(Key { kid, public, signing, header });
        }
        Ok(WritSigner { issuer: issuer.to_owned(), keys })
    }

    /// A fresh random seed for a new key.
    pub fn generate_seed() -> Result<[u8; 32], EngineError> {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).map_err(|e| KeyError::NoRandomness(Cause::text(e.to_string())))?;
        Ok(s)
    }

    /// The control plane's name (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Key ids, oldest first.
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// The JWKS document of every key (RFC 7517, OKP per RFC 8037).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid, "x": B64URL.encode(k.public)}))
            .collect();
        json!({ "keys": keys })
    }

    /// Signs claims with the current key: a JWS compact serialization (RFC 7515 §7.1) with
    /// an EdDSA signature (RFC 8037 §3.1) over `header.payload`. The key stays parsed, so a
    /// signature costs one Ed25519 operation; `jsonwebtoken` and PyJWT verify the result in
    /// the tests.
    pub fn sign(&self, claims: &WritClaims) -> Result<String, EngineError> {
        let key = self.keys.last().ok_or(KeyError::NoKey)?;
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Claims(Cause::new(e)))?;
        let mut token = String::with_capacity(key.header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&key.header);
        token.push('.');
        B64URL.encode_string(&payload, &mut token);
        let signature = key.signing.sign(token.as_bytes());
        token.push('.');
        B64URL.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }
}

/// The Ed25519 keys of a JWKS document, by `kid`.
fn decoding_keys(jwks: &Value) -> Result<Vec<(String, DecodingKey)>, EngineError> {
    let mut keys = Vec::new();
    for k in jwks.get("keys").and_then(Value::as_array).ok_or(KeyError::JwksWithoutKeys)? {
        let (Some("OKP"), Some("Ed25519"), Some(kid), Some(x)) = (
            k.get("kty").and_then(Value::as_str),
            k.get("crv").and_then(Value::as_str),
            k.get("kid").and_then(Value::as_str),
            k.get("x").and_then(Value::as_str),
        ) else {
            return Err(KeyError::JwksKeyShape.into());
        };
        let decoding = DecodingKey::from_ed_components(x).map_err(|e| KeyError::JwksKey(Cause::new(e)))?;
        keys.push((kid.to_owned(), decoding));
    }
    Ok(keys)
}

/// A writ that verified, with its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedWrit {
    /// Its claims.
    pub claims: WritClaims,
}

/// The writ ids used at this enforcement point.
struct Seen {
    used: HashMap<String, u64>,
    prune_at: usize,
    // Set by [`WritVerifier::close`]: nothing verifies afterwards.
    closed: bool,
}

/// What an enforcement point keeps across a restart so that single use holds: the writs it
/// verified that could still verify, and the horizon before which it refuses every writ
/// (set when an earlier run lost its record). Both are carried by every later clean stop,
/// so that a kill followed by clean restarts never forgets the horizon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedWrits {
    /// Writ ids used, each with the time after which it cannot verify anyway.
    pub used: Vec<(String, u64)>,
    /// Writs issued before this time (Unix seconds) are refused as `writ.replayed`; 0 for
    /// none.
    #[serde(default)]
    pub refuse_issued_before: u64,
}

/// Size of the used-writ set at which expired entries are first dropped.
const SEEN_PRUNE_AT: usize = 65_536;

/// Verifies writs at an enforcement point: signature by a key in the JWKS, time window,
/// audience, binding to the call about to run, revocation, single use.
pub struct WritVerifier {
    issuer: String,
    // Replaced whole when keys rotate (a superset: old writs keep verifying).
    keys: RwLock<Vec<(String, DecodingKey)>>,
    audience: String,
    skew: u64,
    // Writ ids used here, with the time after which the writ can no longer verify anyway
    // (its expiry plus the skew): those are dropped once the set grows, so the set holds
    // only writs still inside their window.
    seen: Mutex<Seen>,
    // Writs issued before this time are refused as replayed: the set that would say whether
    // they were used here was lost (see [`WritVerifier::refuse_issued_before`]).
    horizon: AtomicU64,
}

impl std::fmt::Debug for WritVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Why a writ did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritRejection {
    /// The reason code.
    pub reason: ReasonCode,
    /// Detail.
    pub detail: String,
}

impl WritRejection {
    /// A refusal with this reason code and detail.
    pub fn new(reason: ReasonCode, detail: impl Into<String>) -> Self {
        WritRejection { reason, detail: detail.into() }
    }
}

fn reject(reason: ReasonCode, detail: impl Into<String>) -> WritRejection {
    WritRejection::new(reason, detail)
}

impl WritVerifier {
    /// A verifier for writs of `issuer` addressed to `audience`, trusting the keys of a
    /// JWKS document.
    pub fn new(issuer: &str, jwks: &Value, audience: &str, skew: u64) -> Result<Self, EngineError> {
        Ok(WritVerifier {
            issuer: issuer.to_owned(),
            keys: RwLock::new(decoding_keys(jwks)?),
            audience: audience.to_owned(),
            skew,
            seen: Mutex::new(Seen { used: HashMap::new(), prune_at: SEEN_PRUNE_AT, closed: false }),
            horizon: AtomicU64::new(0),
        })
    }

    /// Trusts the keys of `jwks` from now on, in place of the present ones; the used-writ
    /// set is kept. A rotation passes the old keys and the new one.
    pub fn trust(&self, jwks: &Value) -> Result<(), EngineError> {
        let keys = decoding_keys(jwks)?;
        *self.keys.write().map_err(|_| EngineError::Poisoned("writ key"))? = keys;
        Ok(())
    }

    /// Verifies `token` for the call `(digest)` about to run, at `now`. `revoked` says
    /// whether a writ id has been revoked. A writ that verifies is marked used: a second
    /// verification of the same `jti` is `writ.replayed`.
    pub fn verify(
        &self,
        token: &str,
        digest: &RequestDigest,
        now: u64,
        revoked: &dyn Fn(&str) -> bool,
    ) -> Result<VerifiedWrit, WritRejection> {
        self.verify_with(token, digest, now, &|c: &WritClaims| {
            if revoked(&c.jti) { Err(reject(ReasonCode::WritRevoked, "the writ was revoked")) } else { Ok(()) }
        })
    }

    /// Verifies as [`WritVerifier::verify`] does, with `standing` deciding, once the
    /// signature, time, audience and binding hold and before the writ is marked used,
    /// whether it may still be used (revocation, quarantine, its lineage).
    pub fn verify_with(
        &self,
        token: &str,
        digest: &RequestDigest,
        now: u64,
        standing: &dyn Fn(&WritClaims) -> Result<(), WritRejection>,
    ) -> Result<VerifiedWrit, WritRejection> {
        let c = self.signed_claims(token)?;
        if now + self.skew < c.nbf || now >= c.exp.saturating_add(self.skew) {
            return Err(reject(ReasonCode::WritExpired, format!("valid from {} to {}, now {now}", c.nbf, c.exp)));
        }
        if c.aud != self.audience {
            return Err(reject(ReasonCode::WritAudience, format!("writ is for {:?}", c.aud)));
        }
        if c.req != digest.to_string() {
            return Err(reject(ReasonCode::WritBindingMismatch, "the writ authorizes another call"));
        }
        standing(&c)?;
        self.mark_used(c, now)
    }

    /// A parent writ presented as proof of possession (lineage): its signature by a trusted
    /// key and its issuer only. Its time, audience and binding belong to the parent's own
    /// call, and it is not consumed; the lineage stage judges its standing from the log.
    pub fn verify_possession(&self, token: &str) -> Result<WritClaims, WritRejection> {
        self.signed_claims(token)
    }

    /// The claims of a writ whose signature verifies with a trusted `kid` and whose issuer
    /// is this control plane.
    fn signed_claims(&self, token: &str) -> Result<WritClaims, WritRejection> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| reject(ReasonCode::WritBadSignature, format!("header: {e}")))?;
        if header.alg != Algorithm::EdDSA || header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() {
            return Err(reject(ReasonCode::WritBadSignature, "writs are EdDSA with a kid, nothing else"));
        }
        let kid = header.kid.ok_or_else(|| reject(ReasonCode::WritBadSignature, "no kid"))?;
        let key = self
            .keys
            .read()
            .map_err(|_| reject(ReasonCode::Internal, "writ key lock poisoned"))?
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| reject(ReasonCode::WritBadSignature, "kid is not a trusted writ key"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time and audience are checked below against the injected clock, with our codes.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        let data = jsonwebtoken::decode::<WritClaims>(token, &key, &validation).map_err(|e| {
            let reason = match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => ReasonCode::WritBadSignature,
                _ => ReasonCode::WritBadSignature,
            };
            reject(reason, format!("{e}"))
        })?;
        let c = data.claims;
        if c.iss != self.issuer {
            return Err(reject(ReasonCode::WritBadSignature, "writ from another control plane"));
        }
        Ok(c)
    }

    /// Single use: marks the writ used here, or refuses it as replayed.
    fn mark_used(&self, c: WritClaims, now: u64) -> Result<VerifiedWrit, WritRejection> {
        let mut seen = self.seen.lock().map_err(|_| reject(ReasonCode::Internal, "replay set poisoned"))?;
        if seen.used.contains_key(&c.jti) {
            return Err(reject(ReasonCode::WritReplayed, "this writ was already used here"));
        }
        if seen.closed {
            return Err(reject(
                ReasonCode::WritReplayed,
                "this enforcement point is stopping: verify after its restart",
            ));
        }
        let horizon = self.horizon.load(Ordering::Relaxed);
        if c.iat < horizon {
            return Err(reject(
                ReasonCode::WritReplayed,
                format!(
                    "issued at {} before this enforcement point restarted at {horizon} without its record of used \
                     writs: a use before the restart cannot be ruled out (ask for a new writ)",
                    c.iat
                ),
            ));
        }
        if seen.used.len() >= seen.prune_at {
            seen.used.retain(|_, until| *until > now);
            // Amortised: the next pass waits until the set has doubled from what is left.
            seen.prune_at = (seen.used.len() * 2).max(SEEN_PRUNE_AT);
        }
        seen.used.insert(c.jti.clone(), c.exp.saturating_add(self.skew));
        Ok(VerifiedWrit { claims: c })
    }

    /// Marks writ ids as already used (from a persisted replay set).
    pub fn remember_used(&self, jtis: impl IntoIterator<Item = String>) {
        self.restore(UsedWrits { used: jtis.into_iter().map(|j| (j, u64::MAX)).collect(), refuse_issued_before: 0 });
    }

    /// Takes back what an earlier run kept ([`WritVerifier::close`]): its used writs and
    /// its horizon.
    pub fn restore(&self, kept: UsedWrits) {
        self.refuse_issued_before(kept.refuse_issued_before);
        if let Ok(mut seen) = self.seen.lock() {
            seen.used.extend(kept.used);
        }
    }

    /// Refuses, as `writ.replayed`, every writ issued before `time` that is not already
    /// known as used: for an enforcement point that lost its used set (a crash), a writ
    /// from before the restart may have been used already, and single use cannot be
    /// established for it. Writs live minutes, so the cost is that their holders ask again.
    pub fn refuse_issued_before(&self, time: u64) {
        self.horizon.fetch_max(time, Ordering::Relaxed);
    }

    /// Verifies nothing from now on, and returns what a stopping enforcement point keeps:
    /// the writ ids used here that could still verify at `now`, and the horizon. No
    /// verification can succeed after the snapshot and be missing from it.
    pub fn close(&self, now: u64) -> UsedWrits {
        let refuse_issued_before = self.horizon.load(Ordering::Relaxed);
        let Ok(mut seen) = self.seen.lock() else {
            // A poisoned set is lost: keep a horizon that refuses every writ issued so far.
            return UsedWrits { used: Vec::new(), refuse_issued_before: now.saturating_add(1) };
        };
        // Set under the lock every verification takes, so one that passed the check has
        // inserted its writ before this snapshot.
        seen.closed = true;
        let used = seen.used.iter().filter(|(_, until)| **until > now).map(|(j, u)| (j.clone(), *u)).collect();
        UsedWrits { used, refuse_issued_before }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};

    use super::*;

    /// The writ's signature is the one RFC 8032 defines: byte for byte what an independent
    /// implementation (`ed25519-dalek`) makes from the same seed and signing input, and the
    /// JWKS publishes that implementation's public key.
    #[test]
    fn signatures_match_an_independent_ed25519() {
        let seed = [9u8; 32];
        let signer = WritSigner::from_seeds("writ", &[seed]).unwrap();
        let dalek = SigningKey::from_bytes(&seed);
        let jwks = signer.jwks();
        assert_eq!(jwks["keys"][0]["x"], json!(B64URL.encode(dalek.verifying_key().to_bytes())));
        for n in 0..50u64 {
            let claims = WritClaims {
                iss: "writ".into(),
                sub: format!("spiffe://demo.example/agent/{n}"),
                aud: "writ".into(),
                jti: format!("w-{n:032x}"),
                iat: n,
                nbf: n,
                exp: n + 60,
                act: "read".into(),
                res: "fs:/x".into(),
                req: format!("sha256:{}", "0".repeat(64)),
                pol: format!("sha256:{}", "1".repeat(64)),
                par: None,
                root: format!("w-{n:032x}"),
                dep: 0,
                scp: Scope { zone: "billing".into(), actions: vec!["*".into()] },
                log: LogRef { index: n, leaf: format!("sha256:{}", "2".repeat(64)) },
            };
            let token = signer.sign(&claims).unwrap();
            let (input, signature) = token.rsplit_once('.').unwrap();
            let signature = B64URL.decode(signature).unwrap();
            assert_eq!(signature, dalek.sign(input.as_bytes()).to_bytes().to_vec());
            let parsed = ed25519_dalek::Signature::from_slice(&signature).unwrap();
            dalek.verifying_key().verify(input.as_bytes(), &parsed).unwrap();
        }
    }
}
