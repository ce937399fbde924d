//! writ's verification library for enforcement points (SPEC.md §2, §3): everything a
//! program needs to check, before it runs a call, that a writ authorizes exactly that call,
//! without linking the control plane. No Cedar, no SQLite, no server code, no C crypto:
//! Ed25519 is `ed25519-dalek`, so the crate builds for any target Rust has (the transport
//! sits behind the default `http` feature; without it the crate is pure and takes the
//! clock as an argument everywhere).
//!
//! # What it checks
//!
//! A writ is a JWT (RFC 7519) in JWS compact form (RFC 7515), EdDSA/Ed25519 (RFC 8037),
//! `kid` an RFC 7638 thumbprint. [`WritVerifier::verify_with`] answers a [`VerifiedWrit`]
//! or a [`WritRejection`] with a SPEC §6 reason code, in this order:
//!
//! | check | refusal |
//! |---|---|
//! | strict JWS parse, `alg` EdDSA, no `jwk`/`jku`/`x5u`/`x5c`/`crit`, trusted `kid`, signature, claims, issuer | `writ.bad_signature` |
//! | `nbf` ≤ now < `exp`, with the skew | `writ.expired` |
//! | `aud` is this enforcement point | `writ.audience` |
//! | `req` is the digest of the call about to run ([`writ_core::request_digest`]) | `writ.binding_mismatch` |
//! | the feed view is fresh and the writ (or its parent or root) is not revoked | `writ.revoked` |
//! | its principal is not isolated, nor one above it | `quarantined` |
//! | its `jti` was not used here, the replay cache has room | `writ.replayed` |
//! | a poisoned lock | `internal` |
//!
//! # Using it
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use writ_verify::*;
//!
//! let cp = ControlPlane::new("http://127.0.0.1:8080")?;
//! // Writ keys: fetched, refreshed on an unknown kid at most once per 10 s.
//! let keys = Arc::new(KeyCache::new(cp.jwks(), KeyUse::Writ));
//! let now = 1_700_000_000;
//! let writs = WritVerifier::with_keys("writ", (*keys.load(now).await?).clone(), "mcp:files", 30);
//! // The revocation feed, kept fresh by a task; stale for 30 s means refuse.
//! let feed = SharedFeed::new(DEFAULT_MAX_STALENESS);
//! let _subscriber = FeedSubscriber::spawn(cp, FeedConfig::new("writ"), feed.clone());
//! let point = EnforcementPoint::new(writs, feed).with_key_cache(keys);
//!
//! let digest = writ_core::request_digest("mcp:files/read", "mcp:files", &serde_json::json!({"path": "/a"}))?;
//! match point.verify("<the writ>", &digest, now).await {
//!     Ok(v) => println!("run it: writ {}", v.claims.jti),
//!     Err(r) => println!("refused: {} ({})", r.reason, r.detail),
//! }
//! # Ok(()) }
//! ```
//!
//! A tool author who only has a JWKS file and no feed uses [`KeySet::from_jwks`] and
//! [`WritVerifier::verify_with`] with a standing check of their own. Receipts (C2SP
//! `tlog-proof`, <https://c2sp.org/tlog-proof>) that a writ's decision is in the log are
//! checked by [`ReceiptVerifier`] against the pinned log key (C2SP signed-note `vkey`).
//!
//! # Modules
//!
//! - `jws`: the strict JWS compact parse and the signature check;
//! - `keys`: [`KeySet`], a parsed JWKS; `refresh`: [`KeyCache`], its bounded refresh;
//! - `writ`: the claims and [`WritVerifier`]; `replay`: the bounded single-use set;
//! - `feed`: feed documents, [`FeedView`], [`SharedFeed`]; `receipt`: [`ReceiptVerifier`];
//! - `enforce`: [`EnforcementPoint`], all of it in one call;
//! - `client`, `subscriber` (feature `http`): [`ControlPlane`], [`FeedSubscriber`].

mod enforce;
mod error;
mod feed;
mod jws;
mod keys;
mod receipt;
mod refresh;
mod replay;
mod writ;

#[cfg(feature = "http")]
mod client;
#[cfg(feature = "http")]
mod subscriber;

#[cfg(test)]
mod tests;

// The public interface.
pub use enforce::EnforcementPoint;
pub use error::Error;
pub use feed::{
    Applied, DEFAULT_MAX_STALENESS, Expiring, FEED_TYP, FeedDocument, FeedVerifier, FeedView, MAX_FEED_DOCUMENT_LEN,
    SharedFeed, Snapshot,
};
pub use keys::{KeySet, KeyUse, MAX_JWKS_LEN, MAX_KEYS};
pub use receipt::{MAX_RECEIPT_LEN, ReceiptVerifier, VerifiedReceipt};
pub use refresh::{
    DEFAULT_KEY_MAX_AGE, DEFAULT_MIN_REFRESH_INTERVAL, Fetching, FileSource, KeyCache, KeySource, StaticSource,
};
pub use replay::DEFAULT_REPLAY_CAPACITY;
pub use writ::{LogRef, MAX_WRIT_LEN, Scope, UsedWrits, VerifiedWrit, WritClaims, WritRejection, WritVerifier};

#[cfg(feature = "http")]
pub use client::{ControlPlane, DEFAULT_HTTP_TIMEOUT, HttpSource};
#[cfg(feature = "http")]
pub use subscriber::{FeedConfig, FeedStatus, FeedSubscriber, SseEvent, SseParser};
