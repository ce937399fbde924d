//! The revocation feed's documents: what enforcement points learn of revocations,
//! quarantine and bundle activations, signed so that they can trust it from any transport.
//!
//! A feed document is a JWS compact serialization (RFC 7515 §7.1) with an EdDSA signature
//! (RFC 8037), header `{"alg":"EdDSA","kid":…,"typ":"writ-feed+jwt"}`, signed by the feed
//! key: an Ed25519 key of its own, published as a JWKS (`use: "writ-feed"`, RFC 7638
//! thumbprint as `kid`) beside the writ keys and never used for writs, so that neither kind
//! of document can pass for the other. Two kinds:
//!
//! - `snapshot`: every writ still inside its window that is revoked or below a revoked
//!   writ, every isolated principal, every writ below an isolated principal, the active
//!   bundle, the index of the newest entry that changed any of them (`changed_at`) and the
//!   log size the snapshot reflects (`size`).
//! - `heartbeat`: the log size, the time and `changed_at`, so that an enforcement point can
//!   tell a quiet feed from a dead one (its view's age is the age of the newest document it
//!   verified) and a heartbeat vouches only for a view that holds every change: a point whose
//!   snapshot is older than `changed_at` (`size <= changed_at`) is missing one, and such a
//!   heartbeat must not refresh its view. Without it, an old snapshot replayed to the point
//!   (or the stream's snapshot events dropped on the way) and the genuine heartbeats passed
//!   through kept a view that predates a revocation fresh for good.
//!
//! The lists come from [`crate::Engine::feed_view`]; the HTTP routes (a snapshot, and a
//! server-sent event stream) are the server's.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};

use crate::state::FeedLists;
use crate::writ::thumbprint;
use crate::{Cause, EngineError, KeyError};

/// The JWS `typ` of a feed document.
pub const FEED_TYP: &str = "writ-feed+jwt";

/// The feed signing key.
pub struct FeedSigner {
    issuer: String,
    kid: String,
    public: [u8; 32],
    key: Ed25519KeyPair,
    header: String,
}

impl std::fmt::Debug for FeedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSigner").field("issuer", &self.issuer).field("kid", &self.kid).finish()
    }
}

impl FeedSigner {
    /// The feed key of an Ed25519 seed, for the control plane named `issuer`.
    pub fn from_seed(issuer: &str, seed: &[u8; 32]) -> Result<Self, EngineError> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| KeyError::NotASeed(Cause::new(e)))?;
        let public: [u8; 32] = key.public_key().as_ref().try_into().map_err(|_| KeyError::PublicKeyLength)?;
        let kid = thumbprint(&public);
        let header = B64URL.encode(json!({"alg": "EdDSA", "kid": kid, "typ": FEED_TYP}).to_string());
        Ok(FeedSigner { issuer: issuer.to_owned(), kid, public, key, header })
    }

    /// A feed key of a fresh random seed (one that lives as long as the process).
    pub fn ephemeral(issuer: &str) -> Result<Self, EngineError> {
        Self::from_seed(issuer, &crate::WritSigner::generate_seed()?)
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS of the feed key (RFC 7517, OKP per RFC 8037, `use: "writ-feed"`).
    pub fn jwks(&self) -> Value {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "writ-feed", "kid": self.kid,
                         "x": B64URL.encode(self.public)}]})
    }

    fn sign(&self, payload: &Value) -> Result<String, EngineError> {
        let payload = serde_json::to_vec(payload).map_err(|e| KeyError::Claims(Cause::new(e)))?;
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.header);
        token.push('.');
        B64URL.encode_string(&payload, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        B64URL.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// The signed snapshot of `view` at `now`.
    pub fn snapshot(&self, view: &FeedView, now: u64) -> Result<String, EngineError> {
        let listed =
            |l: &[(String, u64)]| -> Vec<Value> { l.iter().map(|(j, e)| json!({"jti": j, "exp": e})).collect() };
        self.sign(&json!({
            "iss": self.issuer,
            "kind": "snapshot",
            "size": view.size,
            "iat": now,
            "bundle": view.bundle,
            "changed_at": view.changed_at,
            "revoked": listed(&view.lists.revoked),
            "quarantined": view.lists.quarantined,
            "isolated_lineage": listed(&view.lists.isolated_lineage),
        }))
    }

    /// A signed heartbeat: the feed is alive at `now`, with the log at `size` and the newest
    /// revocation, quarantine change or activation at `changed_at`.
    pub fn heartbeat(&self, size: u64, changed_at: Option<u64>, now: u64) -> Result<String, EngineError> {
        self.sign(&json!({"iss": self.issuer, "kind": "heartbeat", "size": size, "iat": now, "changed_at": changed_at}))
    }
}

/// What the feed publishes, read at one moment ([`crate::Engine::feed_view`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedView {
    /// The log size the view reflects: every revocation, quarantine change and activation
    /// before it is in the lists.
    pub size: u64,
    /// The index of the newest revocation, quarantine change or activation (`None`: none yet).
    pub changed_at: Option<u64>,
    /// The active bundle's digest.
    pub bundle: Option<String>,
    /// The lists.
    pub lists: FeedLists,
}
