//! Receipts: a C2SP `tlog-proof` (<https://c2sp.org/tlog-proof>), what
//! `GET /v1/log/receipt/{index}` serves, checked against a pinned log key (a C2SP
//! signed-note `vkey`, <https://c2sp.org/signed-note>): the checkpoint is signed by that key
//! (C2SP tlog-checkpoint) and the RFC 9162 §2.1.3 inclusion proof places the entry's leaf
//! under its root. The parsing and the proof are `writ-log`'s ([`writ_log::Receipt`]);
//! this module pins the key and ties a receipt to a writ's `log` claim.

use writ_log::{Hash, NoteVerifier, Receipt};

use crate::{Error, WritClaims};

/// The largest receipt accepted, in bytes.
pub const MAX_RECEIPT_LEN: usize = 64 * 1024;

/// What a receipt proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The entry's index.
    pub index: u64,
    /// The entry's RFC 6962 leaf hash.
    pub leaf: Hash,
    /// The log's origin line.
    pub origin: String,
    /// The size of the signed checkpoint.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// Verifies receipts against one pinned log key.
#[derive(Clone, Debug)]
pub struct ReceiptVerifier {
    key: NoteVerifier,
}

impl ReceiptVerifier {
    /// Pins the log key given as a `vkey` (`GET /v1/log/key`, `log/log.vkey`).
    pub fn from_vkey(vkey: &str) -> Result<Self, Error> {
        Ok(ReceiptVerifier { key: NoteVerifier::from_vkey(vkey.trim()).map_err(Error::LogKey)? })
    }

    /// Verifies that `entry` (its bytes as the log holds them) is in the log.
    pub fn verify_entry(&self, receipt: &str, entry: &[u8]) -> Result<VerifiedReceipt, Error> {
        let r = parse(receipt)?;
        self.verify_leaf(&r, r.index, Hash::leaf(entry))
    }

    /// Verifies that the decision a writ names (its `log` claim: index and leaf hash) is in
    /// the log: the receipt must be for that index, and prove that leaf hash.
    pub fn verify_writ(&self, receipt: &str, claims: &WritClaims) -> Result<VerifiedReceipt, Error> {
        let r = parse(receipt)?;
        if r.index != claims.log.index {
            return Err(Error::ReceiptMismatch {
                why: format!("the receipt is for entry {}, the writ names entry {}", r.index, claims.log.index),
            });
        }
        let leaf = Hash::from_prefixed(&claims.log.leaf)
            .ok_or_else(|| Error::ReceiptMismatch { why: "the writ's leaf hash is not sha256:<hex>".into() })?;
        self.verify_leaf(&r, claims.log.index, leaf)
    }

    fn verify_leaf(&self, r: &Receipt, index: u64, leaf: Hash) -> Result<VerifiedReceipt, Error> {
        let (cp, _) =
            writ_log::SignedCheckpoint::open(r.checkpoint.as_bytes(), &self.key, &[]).map_err(Error::Receipt)?;
        let c = cp.checkpoint();
        writ_log::verify_inclusion(index, c.size, &leaf, &r.proof, &c.root).map_err(Error::Receipt)?;
        Ok(VerifiedReceipt { index, leaf, origin: c.origin.clone(), size: c.size, root: c.root })
    }
}

fn parse(receipt: &str) -> Result<Receipt, Error> {
    if receipt.len() > MAX_RECEIPT_LEN {
        return Err(Error::Receipt(writ_log::Error::CheckpointMalformed(format!(
            "tlog-proof: {} bytes, more than the {MAX_RECEIPT_LEN} accepted",
            receipt.len()
        ))));
    }
    Receipt::parse(receipt).map_err(Error::Receipt)
}
