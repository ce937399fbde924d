//! writ's tamper-evident log (SPEC.md §3).
//!
//! An append-only Merkle tree hashed exactly as RFC 6962 / RFC 9162, with inclusion and
//! consistency proofs, checkpoints in the C2SP `tlog-checkpoint` format signed as C2SP
//! `signed-note`s, and (feature `sqlite`, on by default) durable storage with group commit.
//!
//! The public interface:
//!
//! - [`Hash`]: RFC 6962 leaf and node hashing.
//! - [`verify_inclusion`], [`verify_consistency`]: pure proof verification, no I/O and no
//!   allocation, for enforcement points and auditors.
//! - [`Checkpoint`], [`SignedCheckpoint`], [`NoteSigner`], [`NoteVerifier`], [`Note`]:
//!   the checkpoint and signed-note formats.
//! - [`Receipt`]: the C2SP `tlog-proof` receipt of one entry.
//! - [`Log`] (feature `sqlite`): the sequencer that batches appends into durable commits,
//!   and serves entries (a range a page at a time: [`Entries`]), proofs and checkpoints;
//!   [`Store`] is the storage seam and [`SqliteStore`] the embedded default;
//!   [`verify_store`] is the offline integrity check, and [`Log::recheck`] the incremental
//!   one a serving node runs again and again.

mod checkpoint;
mod hash;
#[cfg(feature = "sqlite")]
mod integrity;
#[cfg(feature = "sqlite")]
mod log;
mod note;
mod proof;
mod receipt;
#[cfg(feature = "sqlite")]
mod recheck;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod store;
mod tiles;

pub use checkpoint::{Checkpoint, SignedCheckpoint};
pub use hash::{CompactRange, HASH_LEN, Hash, root_from_leaves};
pub use note::{MAX_NOTE_LEN, MAX_SIGNATURES, Note, NoteSignature, NoteSigner, NoteVerifier};
pub use proof::{
    MemoryNodes, MemoryTree, NodeSource, consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
};
pub use receipt::Receipt;
pub use tiles::{TILE_BYTES, TILE_HEIGHT, TileId, TileStack};

#[cfg(feature = "sqlite")]
pub use integrity::{Problem, Report, verify_store};
#[cfg(feature = "sqlite")]
pub use log::{Appended, Log, LogOptions, LogStats, Submitted};
#[cfg(feature = "sqlite")]
pub use recheck::{Recheck, Verified};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};
#[cfg(feature = "sqlite")]
pub use store::{Batch, ENTRY_PAGE, Entries, EntryVisitor, Store};

/// Everything that can go wrong in the log. Dependency errors are carried as text so that
/// no dependency type leaks through this API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A proof did not verify.
    #[error("invalid proof: {0}")]
    ProofInvalid(&'static str),
    /// An index or tree size outside the tree.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// A signed note that is not syntactically valid.
    #[error("malformed note: {0}")]
    NoteMalformed(String),
    /// A signed note whose signatures do not verify.
    #[error("note signature: {0}")]
    NoteSignature(String),
    /// A checkpoint body that is not valid `tlog-checkpoint` text.
    #[error("malformed checkpoint: {0}")]
    CheckpointMalformed(String),
    /// A malformed or mismatched key.
    #[error("key: {0}")]
    Key(String),
    /// The store failed (I/O error, full disk, read-only file, lock timeout).
    #[error("storage: {0}")]
    Storage(String),
    /// The store holds data that contradicts itself or the log's signed checkpoints.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// An entry larger than the configured maximum.
    #[error("entry of {len} bytes exceeds the maximum of {max}")]
    EntryTooLarge {
        /// Length of the refused entry.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The log has been closed.
    #[error("the log is closed")]
    Closed,
}
