//! Inclusion and consistency proofs, RFC 9162 §2.1.3 and §2.1.4 (hashing of RFC 6962).
//!
//! Verification ([`verify_inclusion`], [`verify_consistency`]) is pure: no I/O and no
//! allocation, so an enforcement point can check a proof with nothing but the checkpoint
//! it trusts. Generation ([`inclusion_proof`], [`consistency_proof`]) reads perfect
//! subtree hashes from a [`NodeSource`] and costs O(log n) reads: at most one of the
//! subtrees it needs is not perfect (the one on the right edge of the tree), and that one
//! is folded from at most log₂ n perfect subtrees.

use crate::Error;
use crate::hash::Hash;

/// Where proof generation reads the hashes of perfect subtrees.
pub trait NodeSource {
    /// The root of the perfect subtree of height `level` whose leaves are
    /// `[index << level, (index + 1) << level)`. Only called for subtrees that lie
    /// entirely inside the tree the proof is for.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Error>;
}

/// Largest power of two strictly smaller than `n` (n ≥ 2), RFC 9162's `k`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[lo:hi])` for a range whose start is aligned to a power of two at least as large
/// as its length, as every range in the RFC's recursion is. Folds the range's perfect
/// subtrees from the right without allocating.
pub(crate) fn range_root<S: NodeSource + ?Sized>(src: &mut S, lo: u64, hi: u64) -> Result<Hash, Error> {
    let mut remaining = hi - lo;
    let mut end = hi;
    let mut acc: Option<Hash> = None;
    while remaining > 0 {
        let level = remaining.trailing_zeros();
        let start = end - (1u64 << level);
        let h = src.node(level, start >> level)?;
        acc = Some(match acc {
            None => h,
            Some(right) => Hash::node(&h, &right),
        });
        remaining &= remaining - 1;
        end = start;
    }
    Ok(acc.unwrap_or_else(Hash::empty))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1),
/// ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof<S: NodeSource + ?Sized>(src: &mut S, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::OutOfRange(format!("index {index} is not below tree size {size}")));
    }
    // Walk from the root down, collecting siblings; the proof lists them bottom-up.
    let mut path = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            path.push(range_root(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            let level = k.trailing_zeros();
            path.push(src.node(level, lo >> level)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of `old` and `new` leaves
/// (RFC 9162 §2.1.4.1), for `0 < old < new`.
pub fn consistency_proof<S: NodeSource + ?Sized>(src: &mut S, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
    if old == 0 || old >= new {
        return Err(Error::OutOfRange(format!("a consistency proof needs 0 < from < to, got from {old}, to {new}")));
    }
    let mut path = Vec::with_capacity(64);
    let (mut m, mut lo, mut hi, mut complete) = (old, 0u64, new, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !complete {
                path.push(range_root(src, lo, hi)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            path.push(range_root(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            let level = k.trailing_zeros();
            path.push(src.node(level, lo >> level)?);
            m -= k;
            lo += k;
            complete = false;
        }
    }
    path.reverse();
    Ok(path)
}

fn invalid(why: &'static str) -> Error {
    Error::ProofInvalid(why)
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root`, with the algorithm of RFC 9162 §2.1.3.2.
pub fn verify_inclusion(index: u64, size: u64, leaf_hash: &Hash, proof: &[Hash], root: &Hash) -> Result<(), Error> {
    if index >= size {
        return Err(invalid("leaf index is not below the tree size"));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(invalid("inclusion proof is too long"));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = Hash::node(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = Hash::node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(invalid("inclusion proof is too short"));
    }
    if r != *root {
        return Err(invalid("inclusion proof does not lead to the root"));
    }
    Ok(())
}

/// Verifies that the tree of `new` leaves with root `new_root` extends the tree of `old`
/// leaves with root `old_root`, with the algorithm of RFC 9162 §2.1.4.2.
///
/// Equal sizes need an empty proof and equal roots. A proof from the empty tree proves
/// nothing and is rejected, as the published vectors expect.
pub fn verify_consistency(old: u64, new: u64, proof: &[Hash], old_root: &Hash, new_root: &Hash) -> Result<(), Error> {
    if old > new {
        return Err(invalid("old tree size is larger than the new one"));
    }
    if old == 0 {
        return Err(invalid("a consistency proof from the empty tree proves nothing"));
    }
    if old == new {
        if !proof.is_empty() {
            return Err(invalid("equal tree sizes need an empty consistency proof"));
        }
        if old_root != new_root {
            return Err(invalid("equal tree sizes with different roots"));
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(invalid("empty consistency proof"));
    };
    // RFC 9162 step 2: when `old` is a power of two, the old root is the proof's implicit
    // first element.
    let (seed, tail): (&Hash, &[Hash]) = if old.is_power_of_two() { (old_root, proof) } else { (first, rest) };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in tail {
        if snode == 0 {
            return Err(invalid("consistency proof is too long"));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = Hash::node(c, &fr);
            sr = Hash::node(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = Hash::node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(invalid("consistency proof is too short"));
    }
    if fr != *old_root {
        return Err(invalid("consistency proof does not lead to the old root"));
    }
    if sr != *new_root {
        return Err(invalid("consistency proof does not lead to the new root"));
    }
    Ok(())
}

/// A [`NodeSource`] over leaf hashes held in memory; for tests, tools and small trees.
/// Each node is computed from its leaves, so it is O(2^level) per call.
pub struct MemoryNodes<'a>(pub &'a [Hash]);

impl NodeSource for MemoryNodes<'_> {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Error> {
        let width = 1u64 << level;
        let start = index * width;
        let leaves = usize::try_from(start)
            .ok()
            .zip(usize::try_from(start + width).ok())
            .and_then(|(a, b)| self.0.get(a..b))
            .ok_or_else(|| Error::OutOfRange(format!("node {level}/{index} is outside the tree")))?;
        Ok(crate::hash::root_from_leaves(leaves))
    }
}

/// A whole tree in memory with every perfect subtree precomputed: O(1) per node, 2n
/// hashes of memory. For tools, tests and benchmarks over trees that fit in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    // INVARIANT: levels[l][i] is the root of the perfect subtree (l, i); levels[0] are
    // the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Builds the tree of these leaf hashes.
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let next: Vec<Hash> = below.as_chunks::<2>().0.iter().map(|[l, r]| Hash::node(l, r)).collect();
            levels.push(next);
        }
        MemoryTree { levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// RFC 9162 root of the first `size` leaves.
    pub fn root_at(&mut self, size: u64) -> Result<Hash, Error> {
        if size > self.size() {
            return Err(Error::OutOfRange(format!("tree size {size} is larger than the tree ({})", self.size())));
        }
        range_root(self, 0, size)
    }
}

impl NodeSource for MemoryTree {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Error> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or_else(|| Error::OutOfRange(format!("node {level}/{index} is outside the tree")))
    }
}

#[cfg(test)]
mod tests;
