//! Hashing of the log's Merkle tree, exactly as RFC 6962 §2.1 and RFC 9162 §2.1.1 define it.
//!
//! - the hash of the empty tree is SHA-256 of the empty string;
//! - a leaf hash is `SHA-256(0x00 ‖ entry)`;
//! - an interior node hash is `SHA-256(0x01 ‖ left ‖ right)`.
//!
//! The distinct prefixes keep a leaf from ever being mistaken for an interior node
//! (second-preimage resistance of the tree, RFC 9162 §2.1.1).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};

/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash of a tree node, leaf or root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The root hash of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
    pub fn empty() -> Self {
        Hash(Sha256::digest([]).into())
    }

    /// The leaf hash of an entry: `SHA-256(0x00 ‖ entry)`.
    pub fn leaf(entry: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(entry);
        Hash(h.finalize().into())
    }

    /// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
    pub fn node(left: &Hash, right: &Hash) -> Self {
        let mut buf = [0u8; 1 + 2 * HASH_LEN];
        buf[0] = 0x01;
        buf[1..=HASH_LEN].copy_from_slice(&left.0);
        buf[1 + HASH_LEN..].copy_from_slice(&right.0);
        Hash(Sha256::digest(buf).into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Builds a hash from a slice that must be exactly [`HASH_LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; HASH_LEN]>::try_from(bytes).ok().map(Hash)
    }

    /// Standard base64 (with padding), as the C2SP formats write hashes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses standard base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Option<Self> {
        B64.decode(s).ok().and_then(|v| Hash::from_slice(&v))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(s, &mut out).ok().map(|()| Hash(out))
    }

    /// The `sha256:<64 lowercase hex>` form used in writ's JSON (SPEC.md §4).
    pub fn to_prefixed(&self) -> String {
        format!("sha256:{}", self.to_hex())
    }

    /// Parses the `sha256:<64 lowercase hex>` form; uppercase hex is rejected.
    pub fn from_prefixed(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        Hash::from_hex(hex)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Computes the root of a list of leaf hashes in memory (RFC 9162 §2.1.1 `MTH`).
///
/// Iterative, O(n) hashes and O(log n) memory. Used by verification and tests; the store
/// never needs it for a live log.
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    let mut range = CompactRange::default();
    for leaf in leaves {
        range.push(*leaf);
    }
    range.root()
}

/// The right frontier of a tree being built left to right: the roots of the perfect
/// subtrees that the leaves seen so far decompose into, largest first.
///
/// INVARIANT: `peaks[i]` is the root of a perfect subtree whose height is the position of
/// the i-th set bit of `size`, counted from the most significant set bit down; so
/// `peaks.len() == size.count_ones()`.
#[derive(Clone, Debug, Default)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// Appends one leaf hash, merging completed subtrees.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Each trailing one of `size` is a perfect subtree that the new leaf completes.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            match self.peaks.pop() {
                Some(left) => h = Hash::node(&left, &h),
                None => break,
            }
            merges -= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of all leaves pushed (RFC 9162 `MTH`): the peaks folded from
    /// the right.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        match iter.next() {
            None => Hash::empty(),
            Some(last) => iter.fold(*last, |acc, left| Hash::node(left, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Leaf inputs and roots published with the transparency-dev Merkle test data
    // (testdata/rfc6962-proofs/README.md).
    const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn published_roots_for_every_size() {
        let leaves: Vec<Hash> = LEAVES.iter().map(|l| Hash::leaf(&hex::decode(l).unwrap())).collect();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(root_from_leaves(&leaves[..n]).to_hex(), *want, "size {n}");
        }
    }

    #[test]
    fn prefixed_form_round_trips_and_is_strict() {
        let h = Hash::leaf(b"x");
        assert_eq!(Hash::from_prefixed(&h.to_prefixed()), Some(h));
        assert_eq!(Hash::from_prefixed(&h.to_prefixed().to_uppercase()), None);
        assert_eq!(Hash::from_prefixed(&h.to_hex()), None);
        assert_eq!(Hash::from_base64(&h.to_base64()), Some(h));
        assert_eq!(Hash::from_base64("AAAA"), None);
    }
}
