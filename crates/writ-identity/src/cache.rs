//! The bounded, thread-safe cache of verified tokens. A token is keyed by the role it was
//! presented as and the SHA-256 of its exact bytes (a stand-in for the string itself that
//! keeps every key 32 bytes long). What is cached is the outcome of every check that depends
//! only on the token, the bundle and the configuration (signature, issuer, role, subject,
//! audience, lifetime); the checks that depend on the clock are redone on every hit by the
//! caller. Only successes are cached. When full, the oldest entry is evicted (FIFO), which
//! also tends to evict the tokens that expire first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

use crate::Role;

/// What a cached token is found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    role: Role,
    digest: [u8; 32],
}

impl CacheKey {
    /// The key of `token` presented as `role`.
    pub(crate) fn new(role: Role, token: &str) -> CacheKey {
        CacheKey { role, digest: Sha256::digest(token.as_bytes()).into() }
    }
}

struct Inner<V> {
    // INVARIANT: `map` and `order` hold the same keys, each exactly once; `order` is
    // oldest-first; `map.len() <= capacity`.
    map: HashMap<CacheKey, Arc<V>>,
    order: VecDeque<CacheKey>,
}

/// A bounded map from [`CacheKey`] to verified values, shared between threads.
pub(crate) struct TokenCache<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

impl<V> TokenCache<V> {
    /// A cache of at most `capacity` entries (0 disables caching).
    pub(crate) fn new(capacity: usize) -> TokenCache<V> {
        TokenCache { capacity, inner: Mutex::new(Inner { map: HashMap::new(), order: VecDeque::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // No code path panics while holding the lock, and each mutation below keeps the
        // invariant at every step, so a poisoned lock still guards a consistent cache.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached value for `key`, if any.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Arc<V>> {
        self.lock().map.get(key).cloned()
    }

    /// Caches `value` under `key`, evicting the oldest entries to make room. A key already
    /// present (another thread verified the same token concurrently) is left as it is.
    pub(crate) fn insert(&self, key: CacheKey, value: Arc<V>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.map.contains_key(&key) {
            return;
        }
        while inner.map.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => {
                    inner.map.remove(&oldest);
                }
                None => break,
            }
        }
        inner.map.insert(key, value);
        inner.order.push_back(key);
    }

    /// The number of cached entries.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_distinguish_roles_and_tokens() {
        assert_eq!(CacheKey::new(Role::Workload, "a.b.c"), CacheKey::new(Role::Workload, "a.b.c"));
        assert_ne!(CacheKey::new(Role::Workload, "a.b.c"), CacheKey::new(Role::Operator, "a.b.c"));
        assert_ne!(CacheKey::new(Role::Workload, "a.b.c"), CacheKey::new(Role::Workload, "a.b.d"));
    }

    #[test]
    fn full_cache_evicts_oldest_first() {
        let cache = TokenCache::new(2);
        let (a, b, c) = (
            CacheKey::new(Role::Workload, "a"),
            CacheKey::new(Role::Workload, "b"),
            CacheKey::new(Role::Workload, "c"),
        );
        cache.insert(a, Arc::new(1));
        cache.insert(b, Arc::new(2));
        cache.insert(a, Arc::new(10));
        assert_eq!(cache.get(&a).as_deref(), Some(&1), "an existing entry is kept");
        cache.insert(c, Arc::new(3));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a).is_none(), "oldest evicted");
        assert_eq!(cache.get(&b).as_deref(), Some(&2));
        assert_eq!(cache.get(&c).as_deref(), Some(&3));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = TokenCache::new(0);
        let a = CacheKey::new(Role::Workload, "a");
        cache.insert(a, Arc::new(1));
        assert!(cache.get(&a).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn many_threads_stay_within_capacity() {
        let cache = Arc::new(TokenCache::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let key = CacheKey::new(Role::Workload, &format!("{t}-{i}"));
                        cache.insert(key, Arc::new(i));
                        assert!(cache.len() <= 64);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cache.len(), 64);
        let inner = cache.lock();
        assert_eq!(inner.order.len(), inner.map.len());
    }
}
