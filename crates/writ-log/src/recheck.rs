//! The incremental re-verification of a live log: the log's half of the control plane's
//! verification loop (writ-engine's `watch`). The full audit of a stored log stays
//! [`crate::verify_store`] (`writ log verify`); this is what a serving node can afford
//! every few seconds, at a cost proportional to what was appended since the last run.
//!
//! One run ([`Log::recheck`]), against what the last passing run established
//! ([`Verified`]):
//!
//! - **New entries.** The tree of the entries already verified is restored from the stored
//!   tiles, then every entry appended since is read from the store, its RFC 6962 leaf hash
//!   recomputed from its bytes, and the tree grown from those hashes: every tile this
//!   completes must equal the stored tile, byte for byte, and the root of the whole tree
//!   must equal the root this node serves (computed when each entry was appended, before
//!   any byte reached the disk).
//! - **The newest checkpoint.** The newest checkpoint in the store must verify under the
//!   log key, be stored under its own size, not be older than the one verified last (a
//!   rollback), have the root of the stored tree at its size, and be consistent with the
//!   one verified last: an RFC 9162 §2.1.4 consistency proof is generated from the stored
//!   tree and verified against the two signed roots.
//! - **A sample of older entries.** Entries below the verified size were checked when they
//!   were new, and are not read again: a random sample of them (chosen by the caller) is,
//!   each one's leaf hash recomputed from its stored bytes and its RFC 9162 §2.1.3
//!   inclusion proof in the current tree (generated from the stored tiles) verified, so an
//!   entry altered later is found eventually without reading the whole log each run.
//!
//! A run reads the tree as published after a durable commit (the snapshot), so entries of
//! a batch still being written are never read: appends running beside a run cannot make
//! it fail.

use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::checkpoint::SignedCheckpoint;
use crate::hash::Hash;
use crate::integrity::Problem;
use crate::log::{Log, restore_stack};
use crate::proof::{self, consistency_proof, inclusion_proof, verify_consistency, verify_inclusion};
use crate::store::{Entries, Store};
use crate::tiles::{TileId, TileSource, TreeNodes};

/// What the last passing run established: the input of the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Entries `0..size` were recomputed from their stored bytes and hash to the stored tree.
    pub size: u64,
    /// The newest checkpoint found to verify, to match the stored tree and to be consistent
    /// with the one before it: its tree size and root.
    pub checkpoint: Option<(u64, Hash)>,
}

/// What one run of [`Log::recheck`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recheck {
    /// What this run establishes if it found no problem (the next run's input).
    pub verified: Verified,
    /// Entries recomputed (those appended since the last run).
    pub entries: u64,
    /// Older entries re-verified by inclusion proof.
    pub sampled: u64,
    /// Every discrepancy found (kinds `entry`, `tile`, `tree`, `checkpoint`,
    /// `consistency`); empty when the log is intact.
    pub problems: Vec<Problem>,
}

impl Recheck {
    /// True when nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// At most this many problems are listed per run.
const MAX_PROBLEMS: usize = 16;

/// How long a run waits for the tree of a checkpoint it read from the store to be
/// published (the sequencer stores a batch and its checkpoint, then publishes the tree).
const PUBLISH_WAIT: Duration = Duration::from_secs(2);

/// Full tiles read straight from the store, never from the log's cache: a run checks what
/// is stored.
struct StoreTiles<'a>(&'a dyn Store);

impl TileSource for StoreTiles<'_> {
    fn tile(&self, id: TileId) -> Result<Arc<Vec<u8>>, Error> {
        self.0
            .tile(id)?
            .map(Arc::new)
            .ok_or_else(|| Error::Corrupt(format!("tile {}/{} is missing", id.level, id.index)))
    }
}

struct Found(Vec<Problem>);

impl Found {
    fn add(&mut self, kind: &'static str, index: u64, detail: String) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(Problem { kind, index, level: 0, detail });
        }
    }
}

impl Log {
    /// Re-verifies what was appended since `since`, the newest stored checkpoint, and the
    /// older entries at the indices of `sample` (those not below `since.size` are ignored);
    /// see the module documentation. Returns `Err` only when the store cannot be read;
    /// everything found wrong is in [`Recheck::problems`].
    pub fn recheck(&self, since: Verified, sample: &[u64]) -> Result<Recheck, Error> {
        let store = self.store().as_ref();
        let mut found = Found(Vec::new());
        // The newest stored checkpoint first, then the tree: a tree published after it
        // covers it (the wait bounds a sequencer between storing a batch and publishing it).
        let stored = store.latest_checkpoint()?;
        let started = std::time::Instant::now();
        let (mut size, mut served) = self.published();
        while let Some((cp_size, _)) = &stored
            && *cp_size > size
            && started.elapsed() < PUBLISH_WAIT
        {
            std::thread::sleep(Duration::from_millis(5));
            (size, served) = self.published();
        }
        if since.size > size {
            let detail = format!("the log now holds {size} entries but {} were verified before", since.size);
            found.add("tree", size, detail);
            return Ok(Recheck { verified: since, problems: found.0, ..Recheck::default() });
        }

        // New entries: the verified tree restored from the store, grown from the bytes.
        let from = since.size;
        let mut stack = match restore_stack(store, from) {
            Ok(s) => s,
            Err(e) => {
                found.add("tile", from, format!("the stored tree of the {from} verified entries: {e}"));
                return Ok(Recheck { verified: since, problems: found.0, ..Recheck::default() });
            }
        };
        let mut completed: Vec<(TileId, Vec<u8>)> = Vec::new();
        let mut entries = 0u64;
        for item in Entries::new(store, from, size) {
            let (index, bytes) = item?;
            stack.push(Hash::leaf(&bytes), &mut |id, t| completed.push((id, t)));
            entries += 1;
            for (id, computed) in completed.drain(..) {
                match store.tile(id)? {
                    Some(t) if t == computed => {}
                    Some(_) => found.add(
                        "entry",
                        index,
                        format!(
                            "entries up to {index} do not hash to the stored tile {}/{}: an entry or the tile was altered",
                            id.level, id.index
                        ),
                    ),
                    None => found.add("tile", index, format!("tile {}/{} is missing", id.level, id.index)),
                }
            }
        }
        if stack.root() != served {
            found.add(
                "tree",
                size,
                format!(
                    "the stored entries of the tree of size {size} do not hash to the tree this log served: an entry was altered"
                ),
            );
        }

        // The newest checkpoint: signature, root, no rollback, consistency.
        let tiles = StoreTiles(store);
        let mut nodes = TreeNodes::new(&stack, &tiles);
        let mut newest = since.checkpoint;
        match stored {
            None => {
                if let Some((s, _)) = since.checkpoint {
                    found.add(
                        "checkpoint",
                        s,
                        format!("the store holds no checkpoint, but one of size {s} was verified"),
                    );
                }
            }
            Some((cp_size, note)) => match SignedCheckpoint::open(note.as_bytes(), self.verifier(), &[]) {
                Err(e) => found.add(
                    "checkpoint",
                    cp_size,
                    format!("the newest checkpoint (size {cp_size}) does not verify: {e}"),
                ),
                Ok((cp, _)) => {
                    let (s, root) = (cp.checkpoint().size, cp.checkpoint().root);
                    if s != cp_size {
                        found.add(
                            "checkpoint",
                            cp_size,
                            format!("the checkpoint stored under size {cp_size} is for size {s}"),
                        );
                    } else if s > size {
                        found.add(
                            "checkpoint",
                            s,
                            format!("the newest checkpoint covers {s} entries but the log holds {size}"),
                        );
                    } else if proof::range_root(&mut nodes, 0, s)? != root {
                        found.add(
                            "checkpoint",
                            s,
                            format!("the stored tree of size {s} does not hash to the root its checkpoint signs"),
                        );
                    } else {
                        match since.checkpoint {
                            Some((old, _)) if s < old => found.add(
                                "checkpoint",
                                s,
                                format!("the newest stored checkpoint (size {s}) is older than the one verified before (size {old}): rolled back"),
                            ),
                            Some((old, old_root)) if s == old && root != old_root => {
                                found.add("consistency", s, format!("the checkpoint of size {s} now signs another root"));
                            }
                            Some((old, _)) if s == old => {}
                            Some((old, old_root)) if old > 0 => {
                                let checked = consistency_proof(&mut nodes, old, s)
                                    .and_then(|p| verify_consistency(old, s, &p, &old_root, &root));
                                if let Err(e) = checked {
                                    found.add(
                                        "consistency",
                                        s,
                                        format!("the checkpoint of size {s} is not consistent with the one of size {old} verified before: {e}"),
                                    );
                                }
                            }
                            _ => {}
                        }
                        newest = Some((s, root));
                    }
                }
            },
        }

        // A sample of the older entries, each by inclusion proof in the current tree.
        let root = stack.root();
        let mut sampled = 0u64;
        for &index in sample.iter().filter(|i| **i < from) {
            let bytes = store.entries(index, index + 1)?;
            let Some(bytes) = bytes.first() else { continue };
            let leaf = Hash::leaf(bytes);
            sampled += 1;
            let checked =
                inclusion_proof(&mut nodes, index, size).and_then(|p| verify_inclusion(index, size, &leaf, &p, &root));
            if let Err(e) = checked {
                found.add(
                    "entry",
                    index,
                    format!("entry {index} (re-verified by sample) is not the entry the tree holds: {e}"),
                );
            }
        }
        Ok(Recheck { verified: Verified { size, checkpoint: newest }, entries, sampled, problems: found.0 })
    }
}
