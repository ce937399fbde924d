//! The sequencer: one thread that owns the right edge of the tree, batches concurrent
//! appends into single durable commits (group commit), and publishes an immutable snapshot
//! of the tree after each commit for readers.
//!
//! An append is acknowledged (its index and leaf hash returned) only after the batch that
//! holds it has been written by [`Store::write_batch`], which is durable when it returns.
//! If a write fails, every append of that batch gets the error, the in-memory tree is left
//! as it was before the batch, and the next batch first reloads the tree from the store
//! (which may by then hold the failed batch: an entry may be present without having been
//! acknowledged, never the other way round).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::hash::Hash;
use crate::note::{NoteSigner, NoteVerifier};
use crate::proof::{self, NodeSource};
use crate::store::{Batch, Entries, Store};
use crate::tiles::{self, TILE_HEIGHT, TileId, TileSource, TileStack, TreeNodes};

/// Tuning of the sequencer.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Most entries in one commit.
    pub max_batch: usize,
    /// Largest entry accepted, in bytes.
    pub max_entry_len: usize,
    /// Appends waiting for the sequencer before senders wait for room.
    pub queue_len: usize,
    /// A new checkpoint is signed with the first commit after this much time has passed
    /// since the last one (zero: with every commit).
    pub checkpoint_interval: Duration,
    /// Full tiles of level ≥ 1 kept in memory for proofs (each 16 KiB).
    pub tile_cache: usize,
    /// How long the sequencer waits for more appends before a commit when the previous
    /// commit carried more than one (group-commit delay; zero disables).
    pub commit_delay: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_batch: 4096,
            max_entry_len: 1 << 20,
            queue_len: 1 << 16,
            checkpoint_interval: Duration::from_secs(1),
            tile_cache: 1024,
            commit_delay: Duration::from_micros(200),
        }
    }
}

/// An entry handed to the sequencer ([`Log::submit`]): a future of its append's outcome.
#[derive(Debug)]
pub struct Submitted(oneshot::Receiver<Result<Appended, Error>>);

impl std::future::Future for Submitted {
    type Output = Result<Appended, Error>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// What an acknowledged append returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Index of the entry in the log.
    pub index: u64,
    /// Its RFC 6962 leaf hash.
    pub leaf_hash: Hash,
}

/// Counters of the sequencer, for metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogStats {
    /// Commits that succeeded.
    pub batches: u64,
    /// Entries in those commits.
    pub entries: u64,
    /// Commits that failed.
    pub failed_batches: u64,
    /// Entries in the largest commit so far.
    pub max_batch: u64,
    /// Commits by size: `(upper bound, commits of at most that many entries)`, cumulative,
    /// bounds 1, 2, 4, … 2048 (a Prometheus histogram's buckets; `batches` is the count and
    /// `entries` the sum).
    pub batch_sizes: Vec<(u64, u64)>,
    /// Whether the most recent commit failed (the store does not take writes right now).
    pub last_commit_failed: bool,
    /// Durations of the successful commits (tree update, store write and fsync, checkpoint
    /// signing when due): `(upper bound in seconds, commits that took at most that long)`,
    /// cumulative; the last bound is infinite.
    pub commit_seconds: Vec<(f64, u64)>,
    /// Total duration of the successful commits, in seconds.
    pub commit_seconds_sum: f64,
}

/// Number of power-of-two batch-size buckets kept (1 … 2048).
const BATCH_BUCKETS: usize = 12;

/// Upper bounds of the commit-duration buckets, in microseconds (the last one catches all).
const COMMIT_BOUNDS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, u64::MAX];

enum Msg {
    /// An entry with its leaf hash, computed by the appender so that the sequencer's serial
    /// path does not hash.
    Append(Vec<u8>, Hash, oneshot::Sender<Result<Appended, Error>>),
    Checkpoint(oneshot::Sender<Result<SignedCheckpoint, Error>>),
    /// Whether the store still takes durable writes (see [`Log::probe_writes`]).
    Probe(oneshot::Sender<Result<(), Error>>),
}

/// An immutable view of the tree as of one commit.
struct Snapshot {
    stack: TileStack,
    root: Hash,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    entries: AtomicU64,
    failed: AtomicU64,
    max_batch: AtomicU64,
    // Commits whose size is in (2^(i-1), 2^i]; the last bucket also counts larger ones.
    by_size: [AtomicU64; BATCH_BUCKETS],
    // Successful commits by duration (`COMMIT_BOUNDS_US`), and their total in microseconds.
    by_duration: [AtomicU64; COMMIT_BOUNDS_US.len()],
    commit_micros: AtomicU64,
    last_failed: std::sync::atomic::AtomicBool,
}

struct Shared {
    store: Arc<dyn Store>,
    verifier: NoteVerifier,
    state: RwLock<Arc<Snapshot>>,
    latest: RwLock<Option<SignedCheckpoint>>,
    cache: Mutex<HashMap<TileId, Arc<Vec<u8>>>>,
    cache_cap: usize,
    counters: Counters,
    // When this log signed its newest checkpoint (Unix seconds; 0: not since it opened).
    signed_at: AtomicU64,
}

/// A log: the sequencer thread plus concurrent readers over one [`Store`].
pub struct Log {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    max_entry_len: usize,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("origin", &self.shared.verifier.name())
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens the log in `store`, signing checkpoints with `signer` (whose name is the
    /// log's origin). A new store is bound to that origin; an existing one must match it.
    /// The latest stored checkpoint is verified against the stored tree before the log
    /// accepts appends: a store that lost or altered entries a checkpoint covered fails
    /// to open.
    pub fn open(store: Arc<dyn Store>, signer: NoteSigner, options: LogOptions) -> Result<Log, Error> {
        match store.meta("origin")? {
            None => store.set_meta("origin", signer.name())?,
            Some(origin) if origin == signer.name() => {}
            Some(origin) => {
                return Err(Error::Key(format!(
                    "the log key is for {:?} but this store is the log {origin:?}",
                    signer.name()
                )));
            }
        }
        let shared = Arc::new(Shared {
            store,
            verifier: signer.verifier(),
            state: RwLock::new(Arc::new(Snapshot { stack: TileStack::default(), root: Hash::empty() })),
            latest: RwLock::new(None),
            cache: Mutex::new(HashMap::new()),
            cache_cap: options.tile_cache,
            counters: Counters::default(),
            signed_at: AtomicU64::new(0),
        });
        shared.reload()?;
        let (tx, rx) = mpsc::channel(options.queue_len.max(1));
        let max_entry_len = options.max_entry_len;
        let seq = Sequencer { shared: shared.clone(), signer, options, healthy: true, last_checkpoint: None };
        let thread = std::thread::Builder::new()
            .name("writ-log-sequencer".into())
            .spawn(move || seq.run(rx))
            .map_err(|e| Error::Storage(format!("cannot start the sequencer thread: {e}")))?;
        Ok(Log { shared, tx: Some(tx), thread: Some(thread), max_entry_len })
    }

    /// Opens a log over an existing store for reading only: proofs, entries and
    /// checkpoints, no appends. The log's key is checked against the store's origin and
    /// its latest checkpoint.
    pub fn open_read_only(store: Arc<dyn Store>, verifier: NoteVerifier) -> Result<Log, Error> {
        if let Some(origin) = store.meta("origin")?
            && origin != verifier.name()
        {
            return Err(Error::Key(format!(
                "the log key is for {:?} but this store is the log {origin:?}",
                verifier.name()
            )));
        }
        let shared = Arc::new(Shared {
            store,
            verifier,
            state: RwLock::new(Arc::new(Snapshot { stack: TileStack::default(), root: Hash::empty() })),
            latest: RwLock::new(None),
            cache: Mutex::new(HashMap::new()),
            cache_cap: 64,
            counters: Counters::default(),
            signed_at: AtomicU64::new(0),
        });
        shared.reload()?;
        Ok(Log { shared, tx: None, thread: None, max_entry_len: 0 })
    }

    fn request(&self, entry: Vec<u8>) -> Result<(Msg, oneshot::Receiver<Result<Appended, Error>>), Error> {
        if entry.len() > self.max_entry_len {
            return Err(Error::EntryTooLarge { len: entry.len(), max: self.max_entry_len });
        }
        let (tx, rx) = oneshot::channel();
        let leaf = Hash::leaf(&entry);
        Ok((Msg::Append(entry, leaf, tx), rx))
    }

    /// Appends an entry and waits until it is durable.
    pub async fn append(&self, entry: Vec<u8>) -> Result<Appended, Error> {
        self.submit(entry).await?.await
    }

    /// Hands an entry to the sequencer and returns what waits for it to be durable. Once this
    /// returns the entry is committed (or its batch fails) whether or not anybody awaits
    /// the [`Submitted`]: a caller that must act on every committed entry keeps it, and
    /// hands it on if it is itself going away.
    pub async fn submit(&self, entry: Vec<u8>) -> Result<Submitted, Error> {
        let (msg, rx) = self.request(entry)?;
        self.tx.as_ref().ok_or(Error::Closed)?.send(msg).await.map_err(|_| Error::Closed)?;
        Ok(Submitted(rx))
    }

    /// Appends an entry and waits until it is durable, blocking the thread. Must not be
    /// called from inside an async runtime (use [`Log::append`] there).
    pub fn append_blocking(&self, entry: Vec<u8>) -> Result<Appended, Error> {
        let (msg, rx) = self.request(entry)?;
        self.tx.as_ref().ok_or(Error::Closed)?.blocking_send(msg).map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Signs and stores a checkpoint of the current tree now, unless the latest one already
    /// covers it; returns the latest checkpoint.
    pub async fn checkpoint_now(&self) -> Result<SignedCheckpoint, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.as_ref().ok_or(Error::Closed)?.send(Msg::Checkpoint(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Whether the store still takes durable writes, asked of the store itself: the
    /// sequencer, between two batches, runs [`Store::probe`], real writes that change
    /// nothing of the log (SQLite: one synced row of `meta`, and a synced block in a file
    /// beside the database). An idle log on a disk that became full or read-only thus
    /// reports it before the next append fails. A failure
    /// also counts as a failed commit in [`LogStats::last_commit_failed`], and a success
    /// after one clears it. Each call is a synced write: callers reachable from outside
    /// should bound how often they ask.
    pub async fn probe_writes(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.as_ref().ok_or(Error::Closed)?.send(Msg::Probe(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Blocking form of [`Log::checkpoint_now`].
    pub fn checkpoint_now_blocking(&self) -> Result<SignedCheckpoint, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.as_ref().ok_or(Error::Closed)?.blocking_send(Msg::Checkpoint(tx)).map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Stops accepting appends, commits what is queued and waits for the sequencer.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            // A panicking sequencer has already failed its waiters; nothing more to do.
            let _ = t.join();
        }
    }

    /// The log's origin (its checkpoint key name).
    pub fn origin(&self) -> &str {
        self.shared.verifier.name()
    }

    /// The verifier of the log's checkpoints.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.shared.verifier
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.shared.snapshot().stack.size()
    }

    /// Root of the tree of all durable entries.
    pub fn root(&self) -> Hash {
        self.shared.snapshot().root
    }

    /// The size and root of the tree as last published (after a durable commit), read
    /// together.
    pub(crate) fn published(&self) -> (u64, Hash) {
        let snap = self.shared.snapshot();
        (snap.stack.size(), snap.root)
    }

    /// The newest signed checkpoint, if one has been made.
    pub fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.shared.latest.read().ok().and_then(|c| c.clone())
    }

    /// When this log signed its newest checkpoint (Unix seconds, system clock); `None` when
    /// it has signed none since it opened (the checkpoint format carries no time).
    pub fn latest_checkpoint_time(&self) -> Option<u64> {
        Some(self.shared.signed_at.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// Sequencer counters.
    pub fn stats(&self) -> LogStats {
        let c = &self.shared.counters;
        LogStats {
            batches: c.batches.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
            failed_batches: c.failed.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            batch_sizes: c
                .by_size
                .iter()
                .enumerate()
                .scan(0u64, |acc, (i, n)| {
                    *acc += n.load(Ordering::Relaxed);
                    Some((1u64 << i, *acc))
                })
                .collect(),
            last_commit_failed: c.last_failed.load(Ordering::Relaxed),
            commit_seconds: COMMIT_BOUNDS_US
                .iter()
                .zip(&c.by_duration)
                .scan(0u64, |acc, (bound, n)| {
                    *acc += n.load(Ordering::Relaxed);
                    let upper = if *bound == u64::MAX { f64::INFINITY } else { *bound as f64 / 1e6 };
                    Some((upper, *acc))
                })
                .collect(),
            commit_seconds_sum: c.commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    /// The root of the tree of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        let snap = self.shared.snapshot();
        check_size(size, &snap)?;
        proof::range_root(&mut self.shared.nodes(&snap), 0, size)
    }

    /// Inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        let snap = self.shared.snapshot();
        check_size(size, &snap)?;
        proof::inclusion_proof(&mut self.shared.nodes(&snap), index, size)
    }

    /// Consistency proof between the trees of `old` and `new` entries.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        let snap = self.shared.snapshot();
        check_size(new, &snap)?;
        proof::consistency_proof(&mut self.shared.nodes(&snap), old, new)
    }

    /// The leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, Error> {
        let snap = self.shared.snapshot();
        self.shared.nodes(&snap).node(0, index)
    }

    /// Entries `start..end` of the durable tree.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error> {
        let size = self.size();
        if start > end || end > size {
            return Err(Error::OutOfRange(format!("entries {start}..{end} are not in a log of {size}")));
        }
        self.shared.store.entries(start, end)
    }

    /// Every entry from `start` to the durable tree's size (as it is now), with its index,
    /// read a page at a time (see [`Entries`]). A `start` past the size yields one
    /// [`Error::OutOfRange`].
    pub fn entries_from(&self, start: u64) -> Entries<'_> {
        let size = self.size();
        if start > size {
            let mut e = Entries::new(self.shared.store.as_ref(), 0, 0);
            e.refuse(Error::OutOfRange(format!("entry {start} is past a log of {size}")));
            return e;
        }
        Entries::new(self.shared.store.as_ref(), start, size)
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn check_size(size: u64, snap: &Snapshot) -> Result<(), Error> {
    if size > snap.stack.size() {
        return Err(Error::OutOfRange(format!("tree size {size} is larger than the log ({})", snap.stack.size())));
    }
    Ok(())
}

impl Shared {
    fn snapshot(&self) -> Arc<Snapshot> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn nodes<'a>(&'a self, snap: &'a Snapshot) -> TreeNodes<'a> {
        TreeNodes::new(&snap.stack, self)
    }
}

impl TileSource for Shared {
    /// A full tile, from the cache or the store.
    fn tile(&self, id: TileId) -> Result<Arc<Vec<u8>>, Error> {
        if id.level > 0
            && let Some(t) = self.cache.lock().ok().and_then(|c| c.get(&id).cloned())
        {
            return Ok(t);
        }
        let bytes = self
            .store
            .tile(id)?
            .ok_or_else(|| Error::Corrupt(format!("tile {}/{} is missing from the store", id.level, id.index)))?;
        let tile = Arc::new(bytes);
        if id.level > 0
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= self.cache_cap {
                cache.clear();
            }
            cache.insert(id, tile.clone());
        }
        Ok(tile)
    }
}

impl Shared {
    /// Rebuilds the in-memory tree from the store and checks it against the latest
    /// stored checkpoint and against the tree this log has already served (a store that
    /// went backwards, lost a tail or was swapped for another is refused, so that the log
    /// can never sign a second root for a size it published), then publishes it.
    fn reload(&self) -> Result<(), Error> {
        let store = &self.store;
        let before = self.snapshot();
        // The checkpoint first: the size read after it can only be larger.
        let stored_checkpoint = store.latest_checkpoint()?;
        let size = store.size()?;
        let stack = restore_stack(store.as_ref(), size)?;
        let snap = Arc::new(Snapshot { root: stack.root(), stack });
        if size < before.stack.size() {
            return Err(Error::Corrupt(format!(
                "the store now holds {size} entries but this log already served {}",
                before.stack.size()
            )));
        }
        if before.stack.size() > 0 && proof::range_root(&mut self.nodes(&snap), 0, before.stack.size())? != before.root
        {
            return Err(Error::Corrupt(format!(
                "the stored tree of size {} is not the one this log served",
                before.stack.size()
            )));
        }
        let latest = match stored_checkpoint {
            None => None,
            Some((cp_size, note)) => {
                let (signed, _) = SignedCheckpoint::open(note.as_bytes(), &self.verifier, &[])
                    .map_err(|e| Error::Corrupt(format!("latest stored checkpoint does not verify: {e}")))?;
                let cp = signed.checkpoint();
                if cp.size != cp_size {
                    return Err(Error::Corrupt(format!(
                        "the latest checkpoint is stored under size {cp_size} but signs size {}",
                        cp.size
                    )));
                }
                if cp.size > size {
                    return Err(Error::Corrupt(format!(
                        "the latest checkpoint covers {} entries but the store holds {size}: acknowledged entries are missing",
                        cp.size
                    )));
                }
                let root = proof::range_root(&mut self.nodes(&snap), 0, cp.size)?;
                if root != cp.root {
                    return Err(Error::Corrupt(format!(
                        "the stored tree of size {} does not match its signed checkpoint",
                        cp.size
                    )));
                }
                Some(signed)
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
        self.publish(snap, latest);
        Ok(())
    }

    fn publish(&self, snap: Arc<Snapshot>, checkpoint: Option<SignedCheckpoint>) {
        match self.state.write() {
            Ok(mut s) => *s = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
        if checkpoint.is_some() {
            match self.latest.write() {
                Ok(mut l) => *l = checkpoint,
                Err(poisoned) => *poisoned.into_inner() = checkpoint,
            }
        }
    }
}

/// The in-memory part of the stored tree of the first `size` entries: the tail's leaf
/// hashes (from the stored entries) and, at every level above, the roots of the full tiles
/// below that are not yet in a full tile of their own (from the stored tiles).
pub(crate) fn restore_stack(store: &dyn Store, size: u64) -> Result<TileStack, Error> {
    let mut rows0 = Vec::new();
    let mut level = 0u32;
    while level < 8 && (size >> (TILE_HEIGHT * level)) > 0 {
        let first_partial = tiles::full_tiles(size, level) << TILE_HEIGHT;
        let row0 = if level == 0 {
            store.entries(first_partial, size)?.iter().map(|e| Hash::leaf(e)).collect()
        } else {
            let below_end = tiles::full_tiles(size, level - 1);
            let mut row = Vec::new();
            for index in first_partial..below_end {
                let tile = store
                    .tile(TileId { level: level - 1, index })?
                    .ok_or_else(|| Error::Corrupt(format!("tile {}/{index} is missing from the store", level - 1)))?;
                row.push(tiles::tile_root(&tile)?);
            }
            row
        };
        rows0.push(row0);
        level += 1;
    }
    TileStack::restore(size, rows0)
}

struct Sequencer {
    shared: Arc<Shared>,
    signer: NoteSigner,
    options: LogOptions,
    healthy: bool,
    last_checkpoint: Option<Instant>,
}

impl Sequencer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        // The sequencer's own single-threaded runtime: it only waits for the next message
        // or for a checkpoint to fall due; commits run synchronously on this thread.
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
            // Without a runtime nothing can be appended: waiters see the queue close.
            return;
        };
        let mut entries = Vec::with_capacity(self.options.max_batch);
        let mut leaves = Vec::with_capacity(self.options.max_batch);
        let mut waiters = Vec::with_capacity(self.options.max_batch);
        let mut cp_waiters = Vec::new();
        let mut probe_waiters = Vec::new();
        let mut last_batch = 0usize;
        loop {
            let first = match self.stale_checkpoint_deadline() {
                Some(deadline) => rt.block_on(async {
                    tokio::select! {
                        msg = rx.recv() => Some(msg),
                        () = tokio::time::sleep_until(deadline.into()) => None,
                    }
                }),
                None => Some(rt.block_on(rx.recv())),
            };
            let first = match first {
                // A checkpoint fell due with no append to carry it: sign one on its own.
                None => {
                    self.commit(&mut entries, &mut leaves, &mut waiters, &mut cp_waiters, true);
                    continue;
                }
                Some(None) => break,
                Some(Some(msg)) => msg,
            };
            // Under load (the last commit carried several appends), wait a moment for the
            // appenders of that commit to come back, so that one fsync covers them all; stop
            // as soon as they have, or after `commit_delay`. An idle log never waits.
            if last_batch > 1 && !self.options.commit_delay.is_zero() {
                let deadline = Instant::now() + self.options.commit_delay;
                while rx.len() + 1 < last_batch && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append(e, leaf, w) => {
                        entries.push(e);
                        leaves.push(leaf);
                        waiters.push(w);
                    }
                    Msg::Checkpoint(w) => cp_waiters.push(w),
                    Msg::Probe(w) => probe_waiters.push(w),
                }
                if entries.len() < self.options.max_batch {
                    next = rx.try_recv().ok();
                }
            }
            let force = !cp_waiters.is_empty();
            last_batch = entries.len();
            self.commit(&mut entries, &mut leaves, &mut waiters, &mut cp_waiters, force);
            if !probe_waiters.is_empty() {
                let probed = self.probe();
                for w in probe_waiters.drain(..) {
                    let _ = w.send(probed.clone());
                }
            }
        }
    }

    /// One durable write beside the log (see [`Log::probe_writes`]).
    fn probe(&mut self) -> Result<(), Error> {
        let result = self.shared.store.probe();
        let counters = &self.shared.counters;
        match &result {
            Ok(()) => counters.last_failed.store(false, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "the log's store refused a write probe");
                counters.last_failed.store(true, Ordering::Relaxed);
                // Re-read the store before the next batch, as after a failed commit.
                self.healthy = false;
            }
        }
        result
    }

    /// When the newest checkpoint does not cover the whole durable tree, the moment a new
    /// one is due; so that a quiet log still publishes a checkpoint of everything it holds
    /// within one interval.
    fn stale_checkpoint_deadline(&self) -> Option<Instant> {
        let size = self.shared.snapshot().stack.size();
        let covered = self.shared.latest.read().ok().and_then(|l| l.as_ref().map(|c| c.checkpoint().size));
        if size == 0 || covered == Some(size) {
            return None;
        }
        match self.last_checkpoint {
            None => Some(Instant::now()),
            // An interval too long to add to a clock reading means: never by timer.
            Some(t) => t.checked_add(self.options.checkpoint_interval),
        }
    }

    fn commit(
        &mut self,
        entries: &mut Vec<Vec<u8>>,
        leaves: &mut Vec<Hash>,
        waiters: &mut Vec<oneshot::Sender<Result<Appended, Error>>>,
        cp_waiters: &mut Vec<oneshot::Sender<Result<SignedCheckpoint, Error>>>,
        force_checkpoint: bool,
    ) {
        let started = Instant::now();
        let result = self.write(entries, leaves, force_checkpoint);
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let counters = &self.shared.counters;
        match result {
            Ok((first, checkpoint)) => {
                let n = entries.len() as u64;
                counters.last_failed.store(false, Ordering::Relaxed);
                if n > 0 {
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    let slot = COMMIT_BOUNDS_US.iter().position(|b| took <= *b).unwrap_or(COMMIT_BOUNDS_US.len() - 1);
                    if let Some(d) = counters.by_duration.get(slot) {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    counters.commit_micros.fetch_add(took, Ordering::Relaxed);
                    let bucket = (u64::BITS - (n - 1).leading_zeros()) as usize;
                    if let Some(b) = counters.by_size.get(bucket.min(BATCH_BUCKETS - 1)) {
                        b.fetch_add(1, Ordering::Relaxed);
                    }
                }
                counters.entries.fetch_add(n, Ordering::Relaxed);
                counters.max_batch.fetch_max(n, Ordering::Relaxed);
                for (i, (w, &leaf_hash)) in waiters.drain(..).zip(leaves.iter()).enumerate() {
                    // A waiter that went away no longer needs its answer.
                    let _ = w.send(Ok(Appended { index: first + i as u64, leaf_hash }));
                }
                for w in cp_waiters.drain(..) {
                    let _ = w.send(checkpoint.clone().ok_or_else(|| Error::Storage("no checkpoint available".into())));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends = waiters.len(), "log commit failed; its appends are refused");
                counters.failed.fetch_add(1, Ordering::Relaxed);
                counters.last_failed.store(true, Ordering::Relaxed);
                self.healthy = false;
                for w in waiters.drain(..) {
                    let _ = w.send(Err(e.clone()));
                }
                for w in cp_waiters.drain(..) {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
        entries.clear();
        leaves.clear();
    }

    /// Writes one batch (`leaves[i]` is the leaf hash of `entries[i]`). Returns the first
    /// index and the latest checkpoint.
    fn write(
        &mut self,
        entries: &[Vec<u8>],
        leaves: &[Hash],
        force_checkpoint: bool,
    ) -> Result<(u64, Option<SignedCheckpoint>), Error> {
        if !self.healthy {
            self.shared.reload()?;
            self.healthy = true;
        }
        let before = self.shared.snapshot();
        let latest = self.shared.latest.read().ok().and_then(|l| l.clone());
        let mut stack = before.stack.clone();
        let first = stack.size();
        let mut tiles = Vec::new();
        for &h in leaves {
            stack.push(h, &mut |id, bytes| tiles.push((id, bytes)));
        }
        let root = stack.root();
        let size = stack.size();
        let due = self.last_checkpoint.is_none_or(|t| t.elapsed() >= self.options.checkpoint_interval);
        let covered = latest.as_ref().is_some_and(|c| c.checkpoint().size == size);
        let checkpoint = if (force_checkpoint || due) && !covered {
            // Counted from the attempt, so that a failing store is retried once per
            // interval rather than in a tight loop.
            self.last_checkpoint = Some(Instant::now());
            let cp = Checkpoint { origin: self.signer.name().to_owned(), size, root, extensions: Vec::new() };
            Some(SignedCheckpoint::sign(cp, &self.signer)?)
        } else {
            None
        };
        if !entries.is_empty() {
            self.shared.store.write_batch(&Batch {
                first_index: first,
                entries,
                leaves,
                tiles: &tiles,
                checkpoint: checkpoint.as_ref().map(|c| (size, c.note())),
            })?;
        } else if let Some(cp) = &checkpoint {
            self.shared.store.put_checkpoint(size, cp.note())?;
        }
        self.shared.publish(Arc::new(Snapshot { stack, root }), checkpoint.clone());
        if checkpoint.is_some() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            self.shared.signed_at.store(now, Ordering::Relaxed);
        }
        Ok((first, checkpoint.or(latest)))
    }
}
