//! The offline audit of a stored log (`writ log verify`).
//!
//! Recomputes the whole tree from the stored entries and compares, streaming and in
//! bounded memory: every entry against its stored leaf hash, every stored tile hash by
//! hash, every stored checkpoint's signature and root, and the consistency of every pair
//! of consecutive checkpoints (and so, transitively, of any two) through a generated and
//! verified RFC 9162 consistency proof. Every discrepancy is reported with the index of
//! the entry, node or checkpoint where it is, rather than stopping at the first.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Error;
use crate::checkpoint::SignedCheckpoint;
use crate::hash::Hash;
use crate::note::NoteVerifier;
use crate::proof::{self, consistency_proof, verify_consistency};
use crate::store::Store;
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH, TileId, TileSource, TileStack, TreeNodes, full_tiles, tile_hash};

/// One discrepancy found by [`verify_store`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Stable kind: `entry`, `node`, `tile`, `checkpoint` or `consistency`.
    pub kind: &'static str,
    /// The entry index, node index (at `level`), or checkpoint tree size concerned.
    pub index: u64,
    /// Tree level of a `node` problem (0 for the others).
    pub level: u32,
    /// What is wrong.
    pub detail: String,
}

/// The result of [`verify_store`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries recomputed.
    pub entries: u64,
    /// Full tiles compared.
    pub tiles: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Consistency proofs generated and verified between consecutive checkpoints.
    pub consistency_proofs: u64,
    /// Root of the recomputed tree.
    pub root: Hash,
    /// Every discrepancy found; empty when the log is intact.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// At most this many problems are listed; a log altered wholesale would otherwise produce
/// one per entry.
const MAX_PROBLEMS: usize = 1000;

struct Audit<'a> {
    store: &'a dyn Store,
    report: Report,
}

impl Audit<'_> {
    fn problem(&mut self, kind: &'static str, level: u32, index: u64, detail: String) {
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(Problem { kind, index, level, detail });
        }
    }

    /// Compares a tile the recomputation completed with the stored one, naming the lowest
    /// differing node.
    fn compare_tile(&mut self, id: TileId, computed: &[u8]) -> Result<(), Error> {
        self.report.tiles += 1;
        let Some(stored) = self.store.tile(id)? else {
            self.problem(
                "tile",
                id.level * TILE_HEIGHT,
                id.index,
                format!("tile {}/{} is missing", id.level, id.index),
            );
            return Ok(());
        };
        let mut offset = 0usize;
        for row in 0..TILE_HEIGHT {
            let width = TILE_WIDTH >> row;
            for pos in 0..width {
                if tile_hash(&stored, offset)? != tile_hash(computed, offset)? {
                    let level = id.level * TILE_HEIGHT + row;
                    let index = id.index * width as u64 + pos as u64;
                    self.problem("node", level, index, format!("stored hash of node {level}/{index} is wrong"));
                    return Ok(());
                }
                offset += 1;
            }
        }
        Ok(())
    }
}

struct StoreTiles<'a>(&'a dyn Store);

impl TileSource for StoreTiles<'_> {
    fn tile(&self, id: TileId) -> Result<Arc<Vec<u8>>, Error> {
        self.0
            .tile(id)?
            .map(Arc::new)
            .ok_or_else(|| Error::Corrupt(format!("tile {}/{} is missing", id.level, id.index)))
    }
}

/// Audits the log in `store` against the log key `verifier`. Returns `Err` only when the
/// store cannot be read at all; everything found wrong is in the report.
pub fn verify_store(store: &dyn Store, verifier: &NoteVerifier) -> Result<Report, Error> {
    let mut audit = Audit { store, report: Report::default() };

    // Checkpoints first, then the size: a writer may be appending beside the audit, and the
    // audit covers the tree as of its start (the size read after the checkpoints covers them).
    let stored_checkpoints = store.checkpoints()?;
    let start_size = store.size()?;
    let mut claimed: BTreeMap<u64, Hash> = BTreeMap::new();
    for (size, note) in stored_checkpoints {
        match SignedCheckpoint::open(note.as_bytes(), verifier, &[]) {
            Ok((cp, _)) if cp.checkpoint().size == size => {
                claimed.insert(size, cp.checkpoint().root);
            }
            Ok((cp, _)) => {
                let detail = format!("checkpoint stored under size {size} is for size {}", cp.checkpoint().size);
                audit.problem("checkpoint", 0, size, detail);
            }
            Err(e) => audit.problem("checkpoint", 0, size, format!("checkpoint of size {size} does not verify: {e}")),
        }
    }

    // Recompute the tree from the entries.
    let mut stack = TileStack::default();
    let mut completed: Vec<(TileId, Vec<u8>)> = Vec::new();
    let mut pending: Vec<(u64, Hash)> = claimed.iter().map(|(s, r)| (*s, *r)).rev().collect();
    store
        .scan_entries(&mut |idx, data, stored_leaf| {
            if idx >= start_size {
                return Ok(());
            }
            if idx != stack.size() {
                let detail = format!("entries {}..{idx} are missing", stack.size());
                audit.problem("entry", 0, stack.size(), detail);
                return Err(Error::Corrupt("gap in entries".into()));
            }
            let leaf = Hash::leaf(data);
            if Hash::from_slice(stored_leaf) != Some(leaf) {
                audit.problem("entry", 0, idx, format!("entry {idx} does not match its stored leaf hash"));
            }
            stack.push(leaf, &mut |id, bytes| completed.push((id, bytes)));
            for (id, bytes) in completed.drain(..) {
                audit.compare_tile(id, &bytes)?;
            }
            audit.report.entries += 1;
            while let Some((size, root)) = pending.last().copied() {
                if size > stack.size() {
                    break;
                }
                pending.pop();
                if size == stack.size() {
                    audit.report.checkpoints += 1;
                    if stack.root() != root {
                        audit.problem(
                            "checkpoint",
                            0,
                            size,
                            format!("the entries do not hash to the root signed for size {size}"),
                        );
                    }
                }
            }
            Ok(())
        })
        .or_else(
            |e| if matches!(e, Error::Corrupt(_)) && !audit.report.problems.is_empty() { Ok(()) } else { Err(e) },
        )?;
    let size = stack.size();
    audit.report.root = stack.root();
    if let Some((s, _)) = claimed.iter().find(|(s, _)| **s > size) {
        audit.problem("checkpoint", 0, *s, format!("checkpoint covers {s} entries but only {size} are stored"));
    }
    if claimed.get(&0).is_some_and(|r| *r != Hash::empty()) {
        audit.problem("checkpoint", 0, 0, "checkpoint of the empty tree has the wrong root".into());
    }
    // Tiles are written with their entries, so one beyond the store's current size is
    // corruption even with a writer running.
    let size_now = store.size()?;
    for id in store.tile_ids()? {
        if id.index >= full_tiles(size_now.max(size), id.level) {
            audit.problem(
                "tile",
                id.level * TILE_HEIGHT,
                id.index,
                format!("tile {}/{} is beyond the tree", id.level, id.index),
            );
        }
    }

    // Consistency between consecutive checkpoints, proven through the stored tree.
    if audit.report.problems.is_empty() {
        let tiles = StoreTiles(store);
        let mut nodes = TreeNodes::new(&stack, &tiles);
        let sizes: Vec<(u64, Hash)> = claimed.into_iter().filter(|(s, _)| *s > 0 && *s <= size).collect();
        for pair in sizes.windows(2) {
            let [(a, ra), (b, rb)] = pair else { continue };
            let checked = consistency_proof(&mut nodes, *a, *b).and_then(|p| verify_consistency(*a, *b, &p, ra, rb));
            audit.report.consistency_proofs += 1;
            if let Err(e) = checked {
                audit.problem("consistency", 0, *b, format!("checkpoints {a} and {b} are not consistent: {e}"));
            }
        }
        if let Some((last, root)) = sizes.last()
            && proof::range_root(&mut nodes, 0, *last)? != *root
        {
            audit.problem("consistency", 0, *last, "stored tree does not match the latest checkpoint".into());
        }
    }
    Ok(audit.report)
}
