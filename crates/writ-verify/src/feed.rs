//! The revocation feed, as an enforcement point sees it: signed feed documents (snapshots
//! and heartbeats), their verification with the feed keys, and the view they build.
//!
//! A feed document is a JWS compact (RFC 7515) signed with EdDSA (RFC 8037) by a feed key
//! (`/.well-known/writ-feed-keys.json`, never a writ key), header `typ` `writ-feed+jwt`.
//! Its payload says which log size it reflects and when it was made; a snapshot also lists
//! every unexpired revoked writ (or one with a revoked writ above it), every isolated
//! principal, every unexpired writ with an isolated principal above it, and the active
//! bundle.
//!
//! The view's rules (the issue 15 design contract):
//! - its age is now minus the `iat` of the newest verified document (an `iat` ahead of the
//!   point's clock counts as now); older than the maximum staleness (default 30 s), every
//!   writ is refused `writ.revoked` ("revocation cannot be ruled out"), and so is every writ
//!   before the first snapshot;
//! - a snapshot below the size of the snapshot in force is ignored (no rollback), and a
//!   heartbeat below it does not refresh the view's age;
//! - a heartbeat names the newest change (`changed_at`); one at or above the size of the
//!   snapshot in force says the view is missing a change, and refreshes nothing
//!   ([`Applied::Behind`]): an old snapshot replayed to the point, or snapshot events dropped
//!   on the way while the heartbeats pass, cannot keep a view from before a revocation fresh;
//! - checks: `jti` (or its parent or root) revoked → `writ.revoked`; `sub` isolated or `jti`
//!   in an isolated lineage → `quarantined`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use tokio::sync::watch;
use writ_core::ReasonCode;

use crate::{Error, KeySet, WritClaims, WritRejection, jws};

/// The largest feed document accepted, in bytes.
pub const MAX_FEED_DOCUMENT_LEN: usize = 32 * 1024 * 1024;
/// The default maximum staleness of a view, in seconds.
pub const DEFAULT_MAX_STALENESS: u64 = 30;
/// The `typ` of a feed document's header.
pub const FEED_TYP: &str = "writ-feed+jwt";

/// A writ id with its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expiring {
    /// The writ id.
    pub jti: String,
    /// Its expiry (Unix seconds).
    pub exp: u64,
}

/// What a snapshot lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The active bundle's digest (`sha256:…`), if any.
    pub bundle: Option<String>,
    /// Unexpired writs revoked, or with a revoked writ above them.
    pub revoked: Vec<Expiring>,
    /// Isolated principals (SPIFFE IDs).
    pub quarantined: Vec<String>,
    /// Unexpired writs with an isolated principal above them.
    pub isolated_lineage: Vec<Expiring>,
    /// Log index of the newest feed-relevant entry.
    pub changed_at: Option<u64>,
}

/// A verified feed document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedDocument {
    /// The control plane.
    pub iss: String,
    /// The log size it reflects.
    pub size: u64,
    /// When it was made (Unix seconds).
    pub iat: u64,
    /// Log index of the newest feed-relevant entry (a revocation, quarantine change or
    /// activation) when it was made.
    pub changed_at: Option<u64>,
    /// The snapshot, or `None` for a heartbeat.
    pub snapshot: Option<Snapshot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    iss: String,
    kind: String,
    size: u64,
    iat: u64,
    // Present (possibly null) in a snapshot, absent in a heartbeat: a double Option tells.
    #[serde(default, deserialize_with = "present")]
    bundle: Option<Option<String>>,
    revoked: Option<Vec<Expiring>>,
    quarantined: Option<Vec<String>>,
    isolated_lineage: Option<Vec<Expiring>>,
    #[serde(default, deserialize_with = "present")]
    changed_at: Option<Option<u64>>,
}

fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Verifies feed documents of one control plane with its feed keys.
#[derive(Clone, Debug)]
pub struct FeedVerifier {
    issuer: String,
    keys: KeySet,
}

impl FeedVerifier {
    /// A verifier of `issuer`'s feed documents, trusting `keys` (a [`crate::KeyUse::Feed`]
    /// set).
    pub fn new(issuer: &str, keys: KeySet) -> Self {
        FeedVerifier { issuer: issuer.to_owned(), keys }
    }

    /// The feed keys trusted.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Replaces the feed keys.
    pub fn set_keys(&mut self, keys: KeySet) {
        self.keys = keys;
    }

    /// The `kid` of a well-formed document whose key is not trusted (a refresh may help).
    pub fn unknown_kid(&self, document: &str) -> Option<String> {
        let parsed = jws::parse(document, MAX_FEED_DOCUMENT_LEN).ok()?;
        (!self.keys.contains(&parsed.kid)).then_some(parsed.kid)
    }

    /// Verifies a feed document: a trusted feed key's signature, the `typ`, the issuer and
    /// the shape of its kind.
    pub fn verify(&self, document: &str) -> Result<FeedDocument, Error> {
        let parsed = jws::parse(document, MAX_FEED_DOCUMENT_LEN).map_err(Error::feed)?;
        if parsed.typ.as_deref() != Some(FEED_TYP) {
            return Err(Error::feed(format!("typ must be {FEED_TYP:?}")));
        }
        let key = self.keys.get(&parsed.kid).ok_or_else(|| Error::feed("kid is not a trusted feed key"))?;
        let payload = parsed.verify(key).map_err(Error::feed)?;
        let p: Payload = writ_core::json::from_slice(&payload).map_err(|e| Error::feed(format!("payload: {e}")))?;
        if p.iss != self.issuer {
            return Err(Error::feed("a document of another control plane"));
        }
        let (snapshot, changed_at) =
            match (p.kind.as_str(), p.bundle, p.revoked, p.quarantined, p.isolated_lineage, p.changed_at) {
                ("heartbeat", None, None, None, None, Some(changed_at)) => (None, changed_at),
                (
                    "snapshot",
                    Some(bundle),
                    Some(revoked),
                    Some(quarantined),
                    Some(isolated_lineage),
                    Some(changed_at),
                ) => (Some(Snapshot { bundle, revoked, quarantined, isolated_lineage, changed_at }), changed_at),
                ("heartbeat" | "snapshot", ..) => {
                    return Err(Error::feed(format!("a {} with the wrong members", p.kind)));
                }
                (other, ..) => return Err(Error::feed(format!("unknown kind {other:?}"))),
            };
        Ok(FeedDocument { iss: p.iss, size: p.size, iat: p.iat, changed_at, snapshot })
    }
}

/// What applying a document did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A snapshot replaced the view; `bundle_changed` if it names another bundle.
    Snapshot {
        /// The active bundle changed.
        bundle_changed: bool,
    },
    /// A heartbeat refreshed the view's age.
    Heartbeat,
    /// A heartbeat naming a change the snapshot in force does not hold: nothing refreshed;
    /// a snapshot is due (the subscriber reconnects for one if it does not come).
    Behind,
    /// Older than the view: ignored.
    Ignored,
}

/// An enforcement point's view of the revocation feed.
#[derive(Clone, Debug)]
pub struct FeedView {
    max_staleness: u64,
    // INVARIANT: `snapshot_size` is the size of the snapshot the sets come from; `fresh_at`
    // the newest `iat` of a document at or above it. Both only grow.
    snapshot_size: Option<u64>,
    size: u64,
    fresh_at: u64,
    bundle: Option<String>,
    revoked: HashMap<String, u64>,
    quarantined: HashSet<String>,
    isolated: HashMap<String, u64>,
}

impl Default for FeedView {
    fn default() -> Self {
        FeedView::new(DEFAULT_MAX_STALENESS)
    }
}

impl FeedView {
    /// An empty view (refusing everything until its first snapshot) whose documents count
    /// for `max_staleness` seconds.
    pub fn new(max_staleness: u64) -> Self {
        FeedView {
            max_staleness,
            snapshot_size: None,
            size: 0,
            fresh_at: 0,
            bundle: None,
            revoked: HashMap::new(),
            quarantined: HashSet::new(),
            isolated: HashMap::new(),
        }
    }

    /// Applies a verified document at `now` (the point's clock: a document made later than
    /// that counts as made now, so that a control plane's clock ahead of the point's does not
    /// stretch the view's freshness).
    pub fn apply(&mut self, doc: FeedDocument, now: u64) -> Applied {
        let floor = self.snapshot_size;
        let made = doc.iat.min(now);
        match doc.snapshot {
            Some(s) => {
                if floor.is_some_and(|f| doc.size < f) {
                    return Applied::Ignored;
                }
                let bundle_changed = floor.is_none() || s.bundle != self.bundle;
                self.snapshot_size = Some(doc.size);
                self.size = self.size.max(doc.size);
                self.fresh_at = self.fresh_at.max(made);
                self.bundle = s.bundle;
                self.revoked = s.revoked.into_iter().map(|e| (e.jti, e.exp)).collect();
                self.quarantined = s.quarantined.into_iter().collect();
                self.isolated = s.isolated_lineage.into_iter().map(|e| (e.jti, e.exp)).collect();
                Applied::Snapshot { bundle_changed }
            }
            None => match floor {
                // The snapshot in force holds every change below its size.
                Some(f) if doc.size >= f && doc.changed_at.is_some_and(|c| c >= f) => Applied::Behind,
                Some(f) if doc.size >= f => {
                    self.size = self.size.max(doc.size);
                    self.fresh_at = self.fresh_at.max(made);
                    Applied::Heartbeat
                }
                _ => Applied::Ignored,
            },
        }
    }

    /// The log size the view reflects (the newest document's, heartbeats included).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The size of the snapshot in force (what a resumed stream starts from: the stream's
    /// event ids), `None` before the first.
    pub fn snapshot_size(&self) -> Option<u64> {
        self.snapshot_size
    }

    /// True once a snapshot was applied.
    pub fn has_snapshot(&self) -> bool {
        self.snapshot_size.is_some()
    }

    /// The active bundle per the newest snapshot.
    pub fn bundle(&self) -> Option<&str> {
        self.bundle.as_deref()
    }

    /// The view's age at `now`, or `None` before its first snapshot.
    pub fn age(&self, now: u64) -> Option<u64> {
        self.snapshot_size.map(|_| now.saturating_sub(self.fresh_at))
    }

    /// The writ's standing per this view at `now` (the `standing` argument of
    /// [`crate::WritVerifier::verify_with`]).
    pub fn check(&self, c: &WritClaims, now: u64) -> Result<(), WritRejection> {
        match self.age(now) {
            None => {
                return Err(WritRejection::new(
                    ReasonCode::WritRevoked,
                    "revocation cannot be ruled out: no revocation feed snapshot yet",
                ));
            }
            Some(age) if age > self.max_staleness => {
                return Err(WritRejection::new(
                    ReasonCode::WritRevoked,
                    format!(
                        "revocation cannot be ruled out: the revocation feed view is {age} s old (at most {} s)",
                        self.max_staleness
                    ),
                ));
            }
            Some(_) => {}
        }
        if self.revoked.contains_key(&c.jti) {
            return Err(WritRejection::new(ReasonCode::WritRevoked, "the writ was revoked"));
        }
        for above in c.par.iter().chain(std::iter::once(&c.root)) {
            if self.revoked.contains_key(above) {
                return Err(WritRejection::new(ReasonCode::WritRevoked, format!("writ {above} above it was revoked")));
            }
        }
        if self.quarantined.contains(&c.sub) {
            return Err(WritRejection::new(ReasonCode::Quarantined, format!("{} is quarantined", c.sub)));
        }
        if self.isolated.contains_key(&c.jti) {
            return Err(WritRejection::new(
                ReasonCode::Quarantined,
                "a principal above this writ in its lineage is quarantined",
            ));
        }
        Ok(())
    }
}

/// A feed view shared between the code that feeds it (a [`crate::FeedSubscriber`]) and
/// the verifications that read it, with a watch of the active bundle (for a gateway that
/// must tell its clients when the callable tools change).
#[derive(Clone, Debug)]
pub struct SharedFeed {
    // pub(crate): the tests poison it.
    pub(crate) view: Arc<RwLock<FeedView>>,
    bundle: Arc<watch::Sender<Option<String>>>,
}

impl SharedFeed {
    /// A shared empty view.
    pub fn new(max_staleness: u64) -> Self {
        SharedFeed {
            view: Arc::new(RwLock::new(FeedView::new(max_staleness))),
            bundle: Arc::new(watch::channel(None).0),
        }
    }

    /// Applies a verified document at `now` ([`FeedView::apply`]); a snapshot naming another
    /// bundle notifies the watchers.
    pub fn apply(&self, doc: FeedDocument, now: u64) -> Result<Applied, Error> {
        let (applied, bundle) = {
            let mut view = self.view.write().map_err(|_| Error::Poisoned("feed view"))?;
            let applied = view.apply(doc, now);
            (applied, view.bundle().map(str::to_owned))
        };
        if let Applied::Snapshot { bundle_changed: true } = applied {
            self.bundle.send_replace(bundle);
        }
        Ok(applied)
    }

    /// The writ's standing per the view at `now` (refused `internal` if the lock is
    /// poisoned).
    pub fn check(&self, c: &WritClaims, now: u64) -> Result<(), WritRejection> {
        self.view.read().map_err(|_| WritRejection::new(ReasonCode::Internal, "feed view lock poisoned"))?.check(c, now)
    }

    /// A copy of the view as it is now.
    pub fn view(&self) -> Result<FeedView, Error> {
        self.view.read().map(|v| v.clone()).map_err(|_| Error::Poisoned("feed view"))
    }

    /// The log size the view reflects.
    pub fn size(&self) -> u64 {
        self.view.read().map(|v| v.size()).unwrap_or(0)
    }

    /// The size of the snapshot in force, `None` before the first.
    pub fn snapshot_size(&self) -> Option<u64> {
        self.view.read().ok().and_then(|v| v.snapshot_size())
    }

    /// A receiver told whenever a snapshot names another active bundle (its value is the
    /// bundle digest, `None` before the first snapshot or with no bundle active).
    pub fn bundle_changes(&self) -> watch::Receiver<Option<String>> {
        self.bundle.subscribe()
    }
}
