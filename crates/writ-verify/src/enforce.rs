//! An enforcement point's whole check in one call: a [`WritVerifier`] whose keys come from
//! a [`KeyCache`] (refreshed on an unknown `kid`, within its bound) and whose standing
//! check is a [`SharedFeed`] (revocation, quarantine, staleness).

use std::sync::Arc;

use writ_core::{ReasonCode, RequestDigest};

use crate::{KeyCache, SharedFeed, VerifiedWrit, WritRejection, WritVerifier};

/// Verifies writs with refreshed keys and the revocation feed.
#[derive(Debug)]
pub struct EnforcementPoint {
    writs: WritVerifier,
    keys: Option<Arc<KeyCache>>,
    feed: SharedFeed,
}

impl EnforcementPoint {
    /// An enforcement point verifying with `writs` (its keys fixed) and `feed`.
    pub fn new(writs: WritVerifier, feed: SharedFeed) -> Self {
        EnforcementPoint { writs, keys: None, feed }
    }

    /// Takes the writ keys from `keys` from now on.
    pub fn with_key_cache(mut self, keys: Arc<KeyCache>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The writ verifier (single use, its keys).
    pub fn writs(&self) -> &WritVerifier {
        &self.writs
    }

    /// The feed view it consults.
    pub fn feed(&self) -> &SharedFeed {
        &self.feed
    }

    /// Verifies `token` for the call `digest` about to run, at `now`: keys (refreshed if
    /// stale, or once for an unknown `kid`), signature, time, audience, binding, the feed
    /// (stale → `writ.revoked`; revoked → `writ.revoked`; isolated → `quarantined`), single
    /// use.
    pub async fn verify(&self, token: &str, digest: &RequestDigest, now: u64) -> Result<VerifiedWrit, WritRejection> {
        if let Some(cache) = &self.keys {
            let mut set = cache.refresh_if_stale(now).await;
            if let Some(kid) = self.writs.unknown_kid(token) {
                // A refused or failed refresh leaves the kid unknown: writ.bad_signature below.
                if let Ok(fresh) = cache.refresh_unless(now, |k| k.contains(&kid)).await {
                    set = fresh;
                }
            }
            if !Arc::ptr_eq(&set, &self.writs.keys()) {
                self.writs.set_key_set(set).map_err(|e| WritRejection::new(ReasonCode::Internal, e.to_string()))?;
            }
        }
        self.verify_now(token, digest, now)
    }

    /// Verifies with the keys as they are (no fetch; for synchronous callers).
    pub fn verify_now(&self, token: &str, digest: &RequestDigest, now: u64) -> Result<VerifiedWrit, WritRejection> {
        self.writs.verify_with(token, digest, now, &|c| self.feed.check(c, now))
    }
}
