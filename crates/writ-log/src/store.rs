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
//!
//! [`Entries`] is the one way to walk a range of stored entries: a page of
//! [`ENTRY_PAGE`] entries per store call, never the whole range in memory.

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
    /// Every metadata entry whose key starts with `prefix`, by key (the nodes' heartbeats).
    /// A store that cannot list its metadata says so.
    fn meta_prefixed(&self, prefix: &str) -> Result<Vec<(String, String)>, Error> {
        Err(Error::Storage(format!("this store cannot list the metadata under {prefix:?}")))
    }
    /// Whether the store takes durable writes right now, learnt from real writes that leave
    /// the log's content as it is (see [`crate::Log::probe_writes`]).
    fn probe(&self) -> Result<(), Error>;
}

/// Entries read per store call by [`Entries`].
pub const ENTRY_PAGE: u64 = 1024;

/// The entries `start..end` of a store with their indices, in index order, read
/// [`ENTRY_PAGE`] at a time (see [`crate::Log::entries_from`]). A failed read is yielded
/// once, and the iteration ends there.
pub struct Entries<'a> {
    store: &'a dyn Store,
    // Index of the next entry yielded.
    next: u64,
    // First index not yet read from the store.
    read: u64,
    end: u64,
    page: std::vec::IntoIter<Vec<u8>>,
    // An error to yield before anything else (a range refused before reading).
    refused: Option<Error>,
    done: bool,
}

impl std::fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").field("next", &self.next).field("end", &self.end).finish_non_exhaustive()
    }
}

impl<'a> Entries<'a> {
    /// The entries `start..end` of `store` (empty if `end <= start`).
    pub fn new(store: &'a dyn Store, start: u64, end: u64) -> Self {
        Entries { store, next: start, read: start, end, page: Vec::new().into_iter(), refused: None, done: false }
    }

    /// Makes the walk yield `e` and nothing else.
    pub(crate) fn refuse(&mut self, e: Error) {
        self.refused = Some(e);
    }

    fn fail(&mut self, e: Error) -> Option<Result<(u64, Vec<u8>), Error>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(u64, Vec<u8>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.refused.take() {
            return self.fail(e);
        }
        if let Some(bytes) = self.page.next() {
            let index = self.next;
            self.next += 1;
            return Some(Ok((index, bytes)));
        }
        if self.read >= self.end {
            self.done = true;
            return None;
        }
        let (start, end) = (self.read, self.read.saturating_add(ENTRY_PAGE).min(self.end));
        let page = match self.store.entries(start, end) {
            Ok(page) => page,
            Err(e) => return self.fail(e),
        };
        // The store's contract is the whole range or an error; a short page is not skipped.
        if u64::try_from(page.len()).ok() != Some(end - start) {
            let got = page.len();
            return self.fail(Error::Corrupt(format!("the store returned {got} entries for {start}..{end}")));
        }
        self.read = end;
        self.page = page.into_iter();
        self.next()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store of `size` one-byte entries (`i % 256`) that counts its `entries` calls and
    /// can be told to fail or to return short pages.
    struct Counted {
        size: u64,
        calls: Mutex<Vec<(u64, u64)>>,
        fail_from: Option<u64>,
        short: bool,
    }

    impl Counted {
        fn new(size: u64) -> Self {
            Counted { size, calls: Mutex::new(Vec::new()), fail_from: None, short: false }
        }
    }

    impl Store for Counted {
        fn size(&self) -> Result<u64, Error> {
            Ok(self.size)
        }
        fn write_batch(&self, _: &Batch<'_>) -> Result<(), Error> {
            Err(Error::Storage("read only".into()))
        }
        fn tile(&self, _: TileId) -> Result<Option<Vec<u8>>, Error> {
            Ok(None)
        }
        fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error> {
            self.calls.lock().unwrap().push((start, end));
            if self.fail_from.is_some_and(|f| end > f) || end > self.size {
                return Err(Error::Storage(format!("cannot read {start}..{end}")));
            }
            let page: Vec<Vec<u8>> = (start..end).map(|i| vec![(i % 256) as u8]).collect();
            Ok(if self.short { page[1..].to_vec() } else { page })
        }
        fn scan_entries(&self, _: &mut EntryVisitor<'_>) -> Result<(), Error> {
            Ok(())
        }
        fn tile_ids(&self) -> Result<Vec<TileId>, Error> {
            Ok(Vec::new())
        }
        fn put_checkpoint(&self, _: u64, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
            Ok(None)
        }
        fn checkpoints(&self) -> Result<Vec<(u64, String)>, Error> {
            Ok(Vec::new())
        }
        fn meta(&self, _: &str) -> Result<Option<String>, Error> {
            Ok(None)
        }
        fn set_meta(&self, _: &str, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn probe(&self) -> Result<(), Error> {
            Ok(())
        }
    }

    /// Every entry of `start..end` once, in order, with its index, and the store calls made.
    fn walk(store: &Counted, start: u64, end: u64) -> Vec<(u64, u64)> {
        let got: Vec<(u64, Vec<u8>)> = Entries::new(store, start, end).collect::<Result<_, _>>().unwrap();
        let want: Vec<(u64, Vec<u8>)> = (start..end.max(start)).map(|i| (i, vec![(i % 256) as u8])).collect();
        assert_eq!(got, want, "{start}..{end}");
        store.calls.lock().unwrap().clone()
    }

    #[test]
    fn an_empty_range_reads_nothing() {
        assert_eq!(walk(&Counted::new(0), 0, 0), vec![]);
        assert_eq!(walk(&Counted::new(10), 10, 10), vec![]);
        assert_eq!(walk(&Counted::new(10), 7, 3), vec![]);
    }

    #[test]
    fn an_exact_page_is_one_read() {
        assert_eq!(walk(&Counted::new(ENTRY_PAGE), 0, ENTRY_PAGE), vec![(0, ENTRY_PAGE)]);
        assert_eq!(
            walk(&Counted::new(2 * ENTRY_PAGE), 0, 2 * ENTRY_PAGE),
            vec![(0, ENTRY_PAGE), (ENTRY_PAGE, 2 * ENTRY_PAGE)]
        );
    }

    #[test]
    fn a_page_and_one_is_two_reads() {
        let n = ENTRY_PAGE + 1;
        assert_eq!(walk(&Counted::new(n), 0, n), vec![(0, ENTRY_PAGE), (ENTRY_PAGE, n)]);
        // A range that starts inside the log pages from its start.
        assert_eq!(
            walk(&Counted::new(3 * ENTRY_PAGE), 5, ENTRY_PAGE + 6),
            vec![(5, ENTRY_PAGE + 5), (ENTRY_PAGE + 5, ENTRY_PAGE + 6)]
        );
    }

    #[test]
    fn a_failed_read_is_yielded_once_and_ends_the_walk() {
        let store = Counted { fail_from: Some(ENTRY_PAGE + 1), ..Counted::new(3 * ENTRY_PAGE) };
        let items: Vec<_> = Entries::new(&store, 0, 3 * ENTRY_PAGE).collect();
        assert_eq!(items.len(), 1025);
        assert!(items[..1024].iter().all(Result::is_ok));
        assert!(matches!(items[1024], Err(Error::Storage(_))), "{:?}", items[1024]);
    }

    #[test]
    fn a_short_page_is_an_error_not_a_skip() {
        let store = Counted { short: true, ..Counted::new(10) };
        let items: Vec<_> = Entries::new(&store, 0, 10).collect();
        assert!(matches!(items.as_slice(), [Err(Error::Corrupt(_))]), "{items:?}");
    }
}
