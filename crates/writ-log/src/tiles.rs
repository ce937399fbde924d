//! The tree's storage layout: tiles of height 8, as in C2SP `tlog-tiles`, each stored with
//! all of its internal rows so that no proof has to rehash a tile.
//!
//! A tile at tile-level `L` and index `t` covers tree levels `8L .. 8L+8`. Row `r` of the
//! tile holds the `256 >> r` nodes of tree level `8L + r` with indices
//! `t·(256 >> r) ..`. A full tile is stored once, as its 510 hashes row after row
//! ([`TILE_HASHES`]); the root of a level-`L` tile is row 0 of the level-`L+1` tile, so it
//! is never stored twice. The rightmost, incomplete tile of every level lives in memory
//! ([`TileStack`]) and is rebuilt on open from the entries and the full tiles below it.
//!
//! Every node of a tree of size `n` is either in a full tile or in the partial tile of its
//! level, so any perfect subtree costs one tile read; a proof costs O(log n / 8) reads.

#![cfg_attr(
    not(feature = "sqlite"),
    allow(dead_code, reason = "the storage layout is used by the sequencer and the audit (feature sqlite)")
)]

use std::sync::Arc;

use crate::Error;
use crate::hash::Hash;
use crate::proof::NodeSource;

/// Levels of the tree one tile covers.
pub const TILE_HEIGHT: u32 = 8;
/// Leaves (row-0 hashes) of a full tile.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;
/// Hashes stored for a full tile: rows 0 to 7, that is 256 + 128 + … + 2.
pub const TILE_HASHES: usize = 2 * TILE_WIDTH - 2;
/// Bytes of a stored full tile.
pub const TILE_BYTES: usize = TILE_HASHES * 32;

/// Names one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level (tree levels `8·level .. 8·level + 8`).
    pub level: u32,
    /// Index of the tile within its level.
    pub index: u64,
}

impl TileId {
    /// A single integer key for storage: the level in the top 8 bits.
    pub fn key(&self) -> i64 {
        // INVARIANT: levels are < 8 (a tree of 2^64 leaves has 64 levels) and indices
        // < 2^56, so the key is positive and unique.
        ((u64::from(self.level) << 56) | self.index) as i64
    }
}

/// Index of the first hash of row `r` in a stored tile.
fn row_offset(row: u32) -> usize {
    2 * TILE_WIDTH - ((2 * TILE_WIDTH) >> row)
}

/// Number of full tiles at tile-level `level` in a tree of `size` leaves.
pub(crate) fn full_tiles(size: u64, level: u32) -> u64 {
    let shift = TILE_HEIGHT * (level + 1);
    if shift >= 64 { 0 } else { size >> shift }
}

/// Where the perfect subtree `(tree_level, index)` is kept.
pub(crate) enum NodeLocation {
    /// In a stored full tile, at hash position `offset`.
    Full(TileId, usize),
    /// In the in-memory partial tile of tile-level `level`, row `row`, position `pos`.
    Partial { level: u32, row: u32, pos: usize },
}

/// Locates the perfect subtree of height `tree_level` and index `index` in a tree of `size`.
pub(crate) fn locate(size: u64, tree_level: u32, index: u64) -> Result<NodeLocation, Error> {
    let outside = || Error::OutOfRange(format!("node {tree_level}/{index} is not complete in a tree of {size}"));
    if tree_level >= 64
        || index.checked_add(1).and_then(|e| e.checked_mul(1u64 << tree_level)).is_none_or(|end| end > size)
    {
        return Err(outside());
    }
    let level = tree_level / TILE_HEIGHT;
    let row = tree_level % TILE_HEIGHT;
    let per_tile = (TILE_WIDTH >> row) as u64;
    let tile = index / per_tile;
    let pos = (index % per_tile) as usize;
    if tile < full_tiles(size, level) {
        Ok(NodeLocation::Full(TileId { level, index: tile }, row_offset(row) + pos))
    } else {
        Ok(NodeLocation::Partial { level, row, pos })
    }
}

/// Reads hash `offset` of a stored tile.
pub(crate) fn tile_hash(tile: &[u8], offset: usize) -> Result<Hash, Error> {
    tile.get(offset * 32..offset * 32 + 32)
        .and_then(Hash::from_slice)
        .ok_or_else(|| Error::Corrupt(format!("stored tile is {} bytes, expected {TILE_BYTES}", tile.len())))
}

/// The root of a stored full tile: the node above its row 7.
pub(crate) fn tile_root(tile: &[u8]) -> Result<Hash, Error> {
    let top = row_offset(TILE_HEIGHT - 1);
    Ok(Hash::node(&tile_hash(tile, top)?, &tile_hash(tile, top + 1)?))
}

/// The rightmost, incomplete tile of one level: its completed nodes, row by row.
#[derive(Clone, Debug, Default)]
struct PartialTile {
    // INVARIANT: rows[r].len() == rows[0].len() >> r, and rows[0].len() < TILE_WIDTH.
    rows: [Vec<Hash>; TILE_HEIGHT as usize],
}

impl PartialTile {
    /// Appends a row-0 hash; returns the full tile's bytes and root if it completes it.
    fn push(&mut self, h: Hash) -> Option<(Vec<u8>, Hash)> {
        let mut carry = h;
        for r in 0..TILE_HEIGHT as usize {
            let Some(row) = self.rows.get_mut(r) else { break };
            row.push(carry);
            let n = row.len();
            if n % 2 == 1 {
                return None;
            }
            let (Some(l), Some(rt)) = (row.get(n - 2), row.get(n - 1)) else { return None };
            carry = Hash::node(l, rt);
        }
        // Row 7 now holds two nodes: the tile is full and `carry` is its root.
        let mut bytes = Vec::with_capacity(TILE_BYTES);
        for row in &mut self.rows {
            for h in row.drain(..) {
                bytes.extend_from_slice(&h.0);
            }
        }
        Some((bytes, carry))
    }

    /// The roots of the perfect subtrees this partial tile decomposes into, largest first.
    fn peaks(&self, out: &mut Vec<Hash>) {
        let width = self.rows.first().map_or(0, Vec::len);
        for r in (0..TILE_HEIGHT as usize).rev() {
            if width & (1 << r) != 0
                && let Some(h) = self.rows.get(r).and_then(|row| row.get((width >> r) - 1))
            {
                out.push(*h);
            }
        }
    }
}

/// The in-memory part of the tree: the partial tile of every level, enough to compute the
/// root and every node that is not yet in a full tile.
#[derive(Clone, Debug, Default)]
pub struct TileStack {
    size: u64,
    levels: Vec<PartialTile>,
}

impl TileStack {
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Every tile that this completes is handed to `full`, lowest
    /// level first, with its id and stored bytes.
    pub fn push(&mut self, leaf: Hash, full: &mut impl FnMut(TileId, Vec<u8>)) {
        let mut h = leaf;
        let mut level = 0u32;
        loop {
            if self.levels.len() <= level as usize {
                self.levels.push(PartialTile::default());
            }
            let index = full_tiles(self.size, level);
            let Some(tile) = self.levels.get_mut(level as usize) else { break };
            match tile.push(h) {
                Some((bytes, root)) => {
                    full(TileId { level, index }, bytes);
                    h = root;
                    level += 1;
                }
                None => break,
            }
        }
        self.size += 1;
    }

    /// Rebuilds the stack of a tree of `size` leaves from the hashes that its partial tiles
    /// hold at row 0: `rows0[L]` must be the row-0 hashes of the level-`L` partial tile
    /// (the tail's leaf hashes for level 0, the roots of the full tiles below for the
    /// others).
    pub(crate) fn restore(size: u64, rows0: Vec<Vec<Hash>>) -> Result<Self, Error> {
        let mut levels = Vec::with_capacity(rows0.len());
        for (level, row0) in rows0.into_iter().enumerate() {
            let expect = (size >> (TILE_HEIGHT as usize * level)) % TILE_WIDTH as u64;
            if row0.len() as u64 != expect {
                return Err(Error::Corrupt(format!(
                    "partial tile of level {level} has {} hashes, expected {expect}",
                    row0.len()
                )));
            }
            let mut tile = PartialTile::default();
            for h in row0 {
                if tile.push(h).is_some() {
                    return Err(Error::Corrupt("partial tile overflowed while restoring".into()));
                }
            }
            levels.push(tile);
        }
        Ok(TileStack { size, levels })
    }

    /// A node held by a partial tile.
    pub(crate) fn partial_node(&self, level: u32, row: u32, pos: usize) -> Result<Hash, Error> {
        self.levels
            .get(level as usize)
            .and_then(|t| t.rows.get(row as usize))
            .and_then(|r| r.get(pos))
            .copied()
            .ok_or_else(|| {
                Error::OutOfRange(format!("node at tile level {level}, row {row}, position {pos} is not in memory"))
            })
    }

    /// RFC 9162 root hash of the whole tree.
    pub fn root(&self) -> Hash {
        let mut peaks = Vec::with_capacity(64);
        for tile in self.levels.iter().rev() {
            tile.peaks(&mut peaks);
        }
        let mut iter = peaks.iter().rev();
        match iter.next() {
            None => Hash::empty(),
            Some(last) => iter.fold(*last, |acc, left| Hash::node(left, &acc)),
        }
    }
}

/// Where [`TreeNodes`] reads full tiles.
pub(crate) trait TileSource {
    /// The stored bytes of a full tile; a missing tile is an error.
    fn tile(&self, id: TileId) -> Result<Arc<Vec<u8>>, Error>;
}

/// The perfect subtrees of one tree: full tiles from a [`TileSource`] (remembering the last
/// one read, since a proof reads several nodes of one tile), partial ones from the stack.
pub(crate) struct TreeNodes<'a> {
    stack: &'a TileStack,
    source: &'a dyn TileSource,
    last: Option<(TileId, Arc<Vec<u8>>)>,
}

impl<'a> TreeNodes<'a> {
    pub(crate) fn new(stack: &'a TileStack, source: &'a dyn TileSource) -> Self {
        TreeNodes { stack, source, last: None }
    }
}

impl NodeSource for TreeNodes<'_> {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Error> {
        match locate(self.stack.size(), level, index)? {
            NodeLocation::Partial { level, row, pos } => self.stack.partial_node(level, row, pos),
            NodeLocation::Full(id, offset) => {
                let tile = match &self.last {
                    Some((last, t)) if *last == id => t.clone(),
                    _ => {
                        let t = self.source.tile(id)?;
                        self.last = Some((id, t.clone()));
                        t
                    }
                };
                tile_hash(&tile, offset)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::root_from_leaves;
    use crate::proof::{MemoryNodes, NodeSource};

    #[test]
    fn stack_root_matches_reference_and_tiles_hold_the_right_nodes() {
        let leaves: Vec<Hash> = (0u32..70_000).map(|i| Hash::leaf(&i.to_be_bytes())).collect();
        let mut stack = TileStack::default();
        let mut tiles = std::collections::HashMap::new();
        for (i, leaf) in leaves.iter().enumerate() {
            stack.push(*leaf, &mut |id, bytes| {
                tiles.insert(id, bytes);
            });
            let n = i + 1;
            if n < 600 || n % 4099 == 0 || n == leaves.len() {
                assert_eq!(stack.root(), root_from_leaves(&leaves[..n]), "size {n}");
            }
        }
        assert_eq!(tiles.len(), 273 + 1);
        // Every perfect subtree is where `locate` says, with the right hash.
        let size = stack.size();
        let mut mem = MemoryNodes(&leaves);
        for (level, index) in
            [(0, 0), (0, 69_999), (3, 17), (7, 1), (8, 0), (8, 272), (9, 100), (15, 1), (16, 0), (12, 16)]
        {
            let want = mem.node(level, index).unwrap();
            let got = match locate(size, level, index).unwrap() {
                NodeLocation::Full(id, off) => tile_hash(&tiles[&id], off).unwrap(),
                NodeLocation::Partial { level, row, pos } => stack.partial_node(level, row, pos).unwrap(),
            };
            assert_eq!(got, want, "node {level}/{index}");
        }
        assert!(locate(size, 17, 0).is_err());
        assert!(locate(size, 0, 70_000).is_err());
    }
}
