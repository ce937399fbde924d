//! A key set kept from a source (the control plane's JWKS or feed keys), with a maximum age
//! and refreshes that a flood of unknown `kid`s cannot multiply.
//!
//! The bound: at most one fetch in flight (callers wanting a refresh while one runs wait
//! for it and then look again), and at most one per minimum interval (default 10 s): a
//! refresh asked for sooner is refused at once with [`Error::RefreshTooSoon`], and the
//! unknown `kid` stays unknown (`writ.bad_signature`). Rotation needs no downtime: the
//! control plane publishes a new key beside the old ones before it signs with it, and the
//! first writ under the new `kid` triggers the refresh that brings it.
//!
//! A set older than its maximum age is refetched at its next use under the same bound; if
//! the fetch fails, the cached set stays in use (writ keys are only ever added, and it is
//! the feed's staleness rule that makes an unreachable control plane refuse writs).
//!
//! Time is given by the caller (Unix seconds), as everywhere in this crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::{Error, KeySet, KeyUse};

/// The default minimum interval between two fetches, in seconds.
pub const DEFAULT_MIN_REFRESH_INTERVAL: u64 = 10;
/// The default maximum age of a fetched key set, in seconds.
pub const DEFAULT_KEY_MAX_AGE: u64 = 300;

/// A future as a [`KeySource`] returns it.
pub type Fetching<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, Error>> + Send + 'a>>;

/// Where a JWKS document comes from (an HTTP fetch under the `http` feature, a file, a test).
pub trait KeySource: Send + Sync {
    /// Fetches the JWKS document's text.
    fn fetch(&self) -> Fetching<'_>;
}

#[derive(Debug, Default)]
struct Flight {
    last_fetch: Option<u64>,
}

/// A key set fetched from a [`KeySource`], refreshed within bounds.
pub struct KeyCache {
    source: Box<dyn KeySource>,
    usage: KeyUse,
    max_age: u64,
    min_interval: u64,
    current: RwLock<Arc<KeySet>>,
    fetched_at: AtomicU64,
    fetches: AtomicU64,
    // Held for the duration of a fetch: the single flight.
    flight: tokio::sync::Mutex<Flight>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("usage", &self.usage)
            .field("max_age", &self.max_age)
            .field("min_interval", &self.min_interval)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache of keys for `usage` from `source`, empty until the first fetch.
    pub fn new(source: impl KeySource + 'static, usage: KeyUse) -> Self {
        KeyCache {
            source: Box::new(source),
            usage,
            max_age: DEFAULT_KEY_MAX_AGE,
            min_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            current: RwLock::new(Arc::new(KeySet::default())),
            fetched_at: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            flight: tokio::sync::Mutex::new(Flight::default()),
        }
    }

    /// Sets the maximum age of a fetched set (seconds).
    pub fn with_max_age(mut self, seconds: u64) -> Self {
        self.max_age = seconds;
        self
    }

    /// Sets the minimum interval between two fetches (seconds).
    pub fn with_min_interval(mut self, seconds: u64) -> Self {
        self.min_interval = seconds;
        self
    }

    /// The keys as last fetched.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().map(|k| Arc::clone(&k)).unwrap_or_default()
    }

    /// How many fetches were made.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// True if the set is older than its maximum age at `now` (or was never fetched).
    pub fn is_stale(&self, now: u64) -> bool {
        self.fetches() == 0 || now.saturating_sub(self.fetched_at.load(Ordering::Relaxed)) > self.max_age
    }

    /// Fetches the keys now, whatever the interval (the first load).
    pub async fn load(&self, now: u64) -> Result<Arc<KeySet>, Error> {
        let mut flight = self.flight.lock().await;
        self.fetch_locked(&mut flight, now).await
    }

    /// Refreshes the set if `wanted` does not hold of it (say, it lacks a `kid`), within the
    /// bound; returns the set to use.
    pub async fn refresh_unless(&self, now: u64, wanted: impl Fn(&KeySet) -> bool) -> Result<Arc<KeySet>, Error> {
        if wanted(&self.current()) {
            return Ok(self.current());
        }
        let mut flight = self.flight.lock().await;
        // Someone else's fetch, while this one waited, may have brought what is wanted.
        let current = self.current();
        if wanted(&current) {
            return Ok(current);
        }
        if let Some(last) = flight.last_fetch {
            let ago = now.saturating_sub(last);
            if ago < self.min_interval {
                return Err(Error::RefreshTooSoon { ago, min: self.min_interval });
            }
        }
        self.fetch_locked(&mut flight, now).await
    }

    /// Refreshes the set if it is older than its maximum age (within the bound); on a
    /// failure the cached set stays. Returns the set to use. While another refresh is under
    /// way the cached set is returned at once: a slow or silent control plane held every
    /// verification behind the one fetch for up to its timeout (found in review).
    pub async fn refresh_if_stale(&self, now: u64) -> Arc<KeySet> {
        if !self.is_stale(now) {
            return self.current();
        }
        let Ok(mut flight) = self.flight.try_lock() else { return self.current() };
        let due = flight.last_fetch.is_none_or(|last| now.saturating_sub(last) >= self.min_interval);
        if self.is_stale(now) && due {
            let _ = self.fetch_locked(&mut flight, now).await;
        }
        self.current()
    }

    async fn fetch_locked(&self, flight: &mut Flight, now: u64) -> Result<Arc<KeySet>, Error> {
        flight.last_fetch = Some(now);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let text = self.source.fetch().await?;
        let set = Arc::new(KeySet::from_jwks(&text, self.usage)?);
        *self.current.write().map_err(|_| Error::Poisoned("key cache"))? = Arc::clone(&set);
        self.fetched_at.store(now, Ordering::Relaxed);
        Ok(set)
    }
}

/// A [`KeySource`] that always gives the same document (keys pinned in configuration).
#[derive(Clone, Debug)]
pub struct StaticSource(pub Vec<u8>);

impl KeySource for StaticSource {
    fn fetch(&self) -> Fetching<'_> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// A [`KeySource`] that reads a file each time (a JWKS the operator deploys).
#[derive(Clone, Debug)]
pub struct FileSource(pub std::path::PathBuf);

impl KeySource for FileSource {
    fn fetch(&self) -> Fetching<'_> {
        Box::pin(async move {
            std::fs::read(&self.0).map_err(|e| Error::Fetch { what: self.0.display().to_string(), why: e.to_string() })
        })
    }
}
