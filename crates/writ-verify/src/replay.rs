//! Single use (SPEC §2, "`jti` not seen before by that enforcement point"): the bounded set
//! of writ ids used here.
//!
//! A `jti` is forgotten only once its writ can no longer verify anyway (its `exp` plus the
//! skew has passed). When the set is full of writs that could still verify, a new writ is
//! refused (`writ.replayed`) instead of evicting one: forgetting a live `jti` would let it
//! be replayed, so the bound fails closed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

/// The default bound of the replay cache: writs still inside their window at one time.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;

/// The writ ids used at this enforcement point.
#[derive(Debug)]
pub(crate) struct Replay {
    // INVARIANT: every key of `used` has an entry `(until, jti)` in `expiry` with the same
    // `until` (restoring a known jti keeps the later one, and pushes it too); `expiry` may
    // also hold stale pairs, skipped when popped.
    used: HashMap<Arc<str>, u64>,
    expiry: BinaryHeap<Reverse<(u64, Arc<str>)>>,
    capacity: usize,
    /// Set by `close`: nothing verifies afterwards.
    pub closed: bool,
}

impl Replay {
    pub fn new(capacity: usize) -> Self {
        Replay { used: HashMap::new(), expiry: BinaryHeap::new(), capacity, closed: false }
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.used.contains_key(jti)
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    /// Drops the ids whose writs cannot verify at `now` any more.
    fn forget_expired(&mut self, now: u64) {
        while let Some(Reverse((until, _))) = self.expiry.peek() {
            if *until > now {
                break;
            }
            if let Some(Reverse((until, jti))) = self.expiry.pop()
                && self.used.get(&jti) == Some(&until)
            {
                self.used.remove(&jti);
            }
        }
    }

    /// Records `jti` as used until `until`, or refuses when the set is full of live ids.
    pub fn insert(&mut self, jti: &str, until: u64, now: u64) -> Result<(), String> {
        self.forget_expired(now);
        if self.used.len() >= self.capacity {
            return Err(format!(
                "the replay cache holds {} writs that could still verify (its capacity): refusing a new one rather \
                 than forgetting one that could be replayed (retry once some expire)",
                self.used.len()
            ));
        }
        self.put(Arc::from(jti), until);
        Ok(())
    }

    fn put(&mut self, jti: Arc<str>, until: u64) {
        let until = match self.used.get(&jti) {
            Some(&known) if known >= until => return,
            _ => until,
        };
        self.used.insert(Arc::clone(&jti), until);
        self.expiry.push(Reverse((until, jti)));
    }

    /// Takes back ids an earlier run kept (beyond the capacity if need be: they must be
    /// refused, so they are never dropped before their time).
    pub fn restore(&mut self, kept: impl IntoIterator<Item = (String, u64)>) {
        for (jti, until) in kept {
            self.put(Arc::from(jti), until);
        }
    }

    /// The ids that could still verify at `now`, with their time.
    pub fn live(&self, now: u64) -> Vec<(String, u64)> {
        self.used.iter().filter(|(_, until)| **until > now).map(|(j, u)| (j.to_string(), *u)).collect()
    }
}
