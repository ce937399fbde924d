//! The storage seam: what the sequencer and the readers need from a durable store.
//!
//! A store holds the entries, the full tiles (see [`crate::tiles`]) and the signed
//! checkpoints. It knows nothing about hashing; the tree code never knows which database
//! is underneath. The embedded default is [`crate::sqlite::SqliteStore`]; a PostgreSQL
//! backend implements the same trait.
//!
//! Contract for implementors:
//! - [`Store::write_batch`] is atomic and durable when it returns `Ok`: after a crash
//!   either the whole batch is there or none of it. It refuses a batch whose first index is
//!   not the current size, so two writers can never interleave.
//! - Entries and tiles, once written, never change.
//! - Every method may be called from several threads at once; only one thread (the
//!   sequencer) calls `write_batch`.

use crate::Error;
use crate::hash::Hash;
use crate::tiles::TileId;

/// One group-commit batch: consecutive entries starting at `first_index`, the tiles they
/// complete, and optionally a checkpoint of the tree that includes them.
#[derive(Debug)]
pub struct Batch<'a> {
    /// Index of the first entry; equal to the store's size before the batch.
    pub first_index: u64,
    /// Entries in order.
    pub entries: &'a [Vec<u8>],
    /// Their leaf hashes, stored beside them so that an audit can name an altered entry.
    pub leaves: &'a [Hash],
    /// Tiles completed by these entries, each [`crate::tiles::TILE_BYTES`] long.
    pub tiles: &'a [(TileId, Vec<u8>)],
    /// A signed checkpoint note of tree size `first_index + entries.len()`.
    pub checkpoint: Option<(u64, &'a str)>,
}

/// What [`Store::scan_entries`] calls with each entry's index, bytes and stored leaf hash.
pub type EntryVisitor<'a> = dyn FnMut(u64, &[u8], &[u8]) -> Result<(), Error> + 'a;

/// A durable store for one log.
pub trait Store: Send + Sync {
    /// Number of entries durably stored.
    fn size(&self) -> Result<u64, Error>;
    /// Writes a batch atomically and durably (see the module contract).
    fn write_batch(&self, batch: &Batch<'_>) -> Result<(), Error>;
    /// The stored bytes of a full tile, if present.
    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, Error>;
    /// Entries `start..end`, in order; fails if any is missing.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error>;
    /// Calls `f` with the index, bytes and stored leaf hash of every entry in index order,
    /// without loading them all.
    fn scan_entries(&self, f: &mut EntryVisitor<'_>) -> Result<(), Error>;
    /// Every stored tile id, in key order.
    fn tile_ids(&self) -> Result<Vec<TileId>, Error>;
    /// Stores a checkpoint note outside a batch (for a tree size already durable).
    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), Error>;
    /// The checkpoint of the largest tree size, if any.
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, Error>;
    /// Every stored checkpoint, by increasing tree size.
    fn checkpoints(&self) -> Result<Vec<(u64, String)>, Error>;
    /// A metadata value (such as the log's origin).
    fn meta(&self, key: &str) -> Result<Option<String>, Error>;
    /// Sets a metadata value, durably.
    fn set_meta(&self, key: &str, value: &str) -> Result<(), Error>;
    /// Whether the store takes durable writes right now, learnt from real writes that leave
    /// the log's content as it is (see [`crate::Log::probe_writes`]).
    fn probe(&self) -> Result<(), Error>;
}
