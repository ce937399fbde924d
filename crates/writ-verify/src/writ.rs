//! The writ (SPEC.md §2): a JWT (RFC 7519) in JWS compact form (RFC 7515) signed with
//! EdDSA/Ed25519 (RFC 8037) by the control plane once its decision is durable in the log,
//! and its verification at an enforcement point.
//!
//! [`WritVerifier::verify_with`] checks, in this order: the signature by a trusted `kid`
//! and the issuer (`writ.bad_signature`), the time window with bounded skew
//! (`writ.expired`), the audience (`writ.audience`), the binding of `req` to the call about
//! to run (`writ.binding_mismatch`), the writ's standing as the caller's callback judges it
//! (revocation, quarantine: the control plane's state, or the [`crate::FeedView`]), and
//! single use (`writ.replayed`, [`crate::replay`]'s bounded set).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use writ_core::{ReasonCode, RequestDigest};

use crate::replay::{DEFAULT_REPLAY_CAPACITY, Replay};
use crate::{Error, KeySet, KeyUse, jws};

/// The longest writ accepted, in bytes.
pub const MAX_WRIT_LEN: usize = 16 * 1024;

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

/// A writ that verified, with its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedWrit {
    /// Its claims.
    pub claims: WritClaims,
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

impl std::fmt::Display for WritRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

fn reject(reason: ReasonCode, detail: impl Into<String>) -> WritRejection {
    WritRejection::new(reason, detail)
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

/// Verifies writs at an enforcement point: signature by a key in the trusted set, time
/// window, audience, binding to the call about to run, standing, single use.
pub struct WritVerifier {
    issuer: String,
    // Replaced whole when keys rotate (a superset: old writs keep verifying).
    keys: RwLock<Arc<KeySet>>,
    audience: String,
    skew: u64,
    // Writ ids used here, each until its writ can no longer verify (expiry plus skew).
    pub(crate) seen: Mutex<Replay>,
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

impl WritVerifier {
    /// A verifier for writs of `issuer` addressed to `audience`, trusting the keys of a
    /// JWKS document, with time checked to within `skew` seconds.
    pub fn new(issuer: &str, jwks: &Value, audience: &str, skew: u64) -> Result<Self, Error> {
        Ok(WritVerifier::with_keys(issuer, KeySet::from_value(jwks, KeyUse::Writ)?, audience, skew))
    }

    /// A verifier trusting `keys`.
    pub fn with_keys(issuer: &str, keys: KeySet, audience: &str, skew: u64) -> Self {
        WritVerifier {
            issuer: issuer.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            audience: audience.to_owned(),
            skew,
            seen: Mutex::new(Replay::new(DEFAULT_REPLAY_CAPACITY)),
            horizon: AtomicU64::new(0),
        }
    }

    /// Bounds the replay cache at `capacity` writs still inside their window (default
    /// [`crate::DEFAULT_REPLAY_CAPACITY`]); beyond it new writs are refused, never a live
    /// one forgotten.
    pub fn with_replay_capacity(self, capacity: usize) -> Self {
        if let Ok(mut seen) = self.seen.lock() {
            let mut fresh = Replay::new(capacity);
            fresh.restore(seen.live(0));
            fresh.closed = seen.closed;
            *seen = fresh;
        }
        self
    }

    /// Trusts the keys of `jwks` from now on, in place of the present ones; the used-writ
    /// set is kept. A rotation passes the old keys and the new one.
    pub fn trust(&self, jwks: &Value) -> Result<(), Error> {
        self.set_keys(KeySet::from_value(jwks, KeyUse::Writ)?)
    }

    /// Trusts `keys` from now on, in place of the present ones.
    pub fn set_keys(&self, keys: KeySet) -> Result<(), Error> {
        self.set_key_set(Arc::new(keys))
    }

    /// Trusts `keys` (shared, say with a [`crate::KeyCache`]) from now on.
    pub fn set_key_set(&self, keys: Arc<KeySet>) -> Result<(), Error> {
        *self.keys.write().map_err(|_| Error::Poisoned("writ key"))? = keys;
        Ok(())
    }

    /// The keys trusted now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().map(|k| Arc::clone(&k)).unwrap_or_default()
    }

    /// The audience this verifier accepts.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The `kid` a token names, if it is a well-formed writ JWS whose `kid` this verifier
    /// does not trust (what a key refresh is for); `None` otherwise.
    pub fn unknown_kid(&self, token: &str) -> Option<String> {
        let parsed = jws::parse(token, MAX_WRIT_LEN).ok()?;
        let known = self.keys.read().map(|k| k.contains(&parsed.kid)).unwrap_or(true);
        (!known).then_some(parsed.kid)
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
        if now.saturating_add(self.skew) < c.nbf || now >= c.exp.saturating_add(self.skew) {
            return Err(reject(ReasonCode::WritExpired, format!("valid from {} to {}, now {now}", c.nbf, c.exp)));
        }
        if c.aud != self.audience {
            return Err(reject(ReasonCode::WritAudience, format!("writ is for {:?}", c.aud)));
        }
        if writ_core::parse_sha256(&c.req).as_ref() != Some(digest.as_bytes()) {
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
        let parsed = jws::parse(token, MAX_WRIT_LEN).map_err(|e| reject(ReasonCode::WritBadSignature, e))?;
        if parsed.typ.as_deref().is_some_and(|t| t != "JWT") {
            return Err(reject(ReasonCode::WritBadSignature, "typ is not JWT"));
        }
        // The key is copied out (a parsed point, no allocation) so that no lock is held
        // across the signature check.
        let key = *self
            .keys
            .read()
            .map_err(|_| reject(ReasonCode::Internal, "writ key lock poisoned"))?
            .get(&parsed.kid)
            .ok_or_else(|| reject(ReasonCode::WritBadSignature, "kid is not a trusted writ key"))?;
        let payload = parsed.verify(&key).map_err(|e| reject(ReasonCode::WritBadSignature, e))?;
        let c: WritClaims = serde_json::from_slice(&payload)
            .map_err(|e| reject(ReasonCode::WritBadSignature, format!("claims: {e}")))?;
        if c.iss != self.issuer {
            return Err(reject(ReasonCode::WritBadSignature, "writ from another control plane"));
        }
        Ok(c)
    }

    /// Single use: marks the writ used here, or refuses it as replayed.
    fn mark_used(&self, c: WritClaims, now: u64) -> Result<VerifiedWrit, WritRejection> {
        let mut seen = self.seen.lock().map_err(|_| reject(ReasonCode::Internal, "replay set poisoned"))?;
        if seen.contains(&c.jti) {
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
        seen.insert(&c.jti, c.exp.saturating_add(self.skew), now).map_err(|e| reject(ReasonCode::WritReplayed, e))?;
        Ok(VerifiedWrit { claims: c })
    }

    /// Whether this verifier accepted the writ `jti` before (it is in the used set): what
    /// tells a true replay from a refusal by the restart horizon or a stopping verifier,
    /// which are `writ.replayed` too.
    pub fn was_used(&self, jti: &str) -> bool {
        self.seen.lock().is_ok_and(|s| s.contains(jti))
    }

    /// How many writ ids the replay cache holds.
    pub fn used_len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
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
            seen.restore(kept.used);
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
        UsedWrits { used: seen.live(now), refuse_issued_before }
    }
}
