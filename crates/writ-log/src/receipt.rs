//! Receipts: the C2SP `tlog-proof` format (<https://c2sp.org/tlog-proof>), a self-contained
//! proof that an entry is in the log, verifiable offline with the log's public key alone.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64>]
//! index <decimal, no leading zeroes>
//! <base64 hash>            (zero or more: the RFC 6962 inclusion proof, leaf's sibling first)
//!
//! <the signed checkpoint, verbatim>
//! ```
//!
//! [`Receipt::verify`] checks the checkpoint's signature by the log key, then the inclusion
//! of the entry's leaf hash under the checkpoint's root. The `extra` line is carried, never
//! trusted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::{Error, Hash, NoteVerifier, SignedCheckpoint, verify_inclusion};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed `tlog-proof`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Opaque, unauthenticated extra data.
    pub extra: Option<Vec<u8>>,
    /// Index of the entry.
    pub index: u64,
    /// Inclusion proof of the entry in the checkpoint's tree.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

fn malformed(why: impl Into<String>) -> Error {
    Error::CheckpointMalformed(format!("tlog-proof: {}", why.into()))
}

impl Receipt {
    /// The text form.
    pub fn to_text(&self) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&B64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses the text form (strictly: no leading zeroes, canonical base64, at most 64 proof
    /// hashes).
    pub fn parse(text: &str) -> Result<Receipt, Error> {
        let (head, checkpoint) =
            text.split_once("\n\n").ok_or_else(|| malformed("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(malformed(format!("the first line must be {HEADER}")));
        }
        let mut line = lines.next().ok_or_else(|| malformed("no index line"))?;
        let mut extra = None;
        if let Some(b) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(b).map_err(|e| malformed(format!("extra: {e}")))?);
            line = lines.next().ok_or_else(|| malformed("no index line"))?;
        }
        let digits = line.strip_prefix("index ").ok_or_else(|| malformed("expected an index line"))?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return Err(malformed("the index must be a decimal without leading zeroes"));
        }
        let index: u64 = digits.parse().map_err(|_| malformed("the index does not fit 64 bits"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == 64 {
                return Err(malformed("more than 64 proof hashes"));
            }
            let h = Hash::from_base64(l).ok_or_else(|| malformed("a proof line is not a base64 SHA-256 hash"))?;
            if h.to_base64() != l {
                return Err(malformed("proof hash is not canonical base64"));
            }
            proof.push(h);
        }
        Ok(Receipt { extra, index, proof, checkpoint: checkpoint.to_owned() })
    }

    /// Verifies that `entry` is in the log whose key is `log_key`: the checkpoint is signed
    /// by that key and the proof places the entry's leaf under its root. Returns the
    /// checkpoint.
    pub fn verify(&self, entry: &[u8], log_key: &NoteVerifier) -> Result<SignedCheckpoint, Error> {
        let (cp, _) = SignedCheckpoint::open(self.checkpoint.as_bytes(), log_key, &[])?;
        let c = cp.checkpoint();
        verify_inclusion(self.index, c.size, &Hash::leaf(entry), &self.proof, &c.root)?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checkpoint, MemoryTree, NoteSigner, inclusion_proof};

    fn fixture() -> (Vec<Vec<u8>>, Receipt, NoteVerifier) {
        let entries: Vec<Vec<u8>> = (0..13u8).map(|i| vec![i; 5]).collect();
        let mut tree = MemoryTree::new(entries.iter().map(|e| Hash::leaf(e)).collect());
        let root = tree.root_at(13).unwrap();
        let proof = inclusion_proof(&mut tree, 6, 13).unwrap();
        let signer = NoteSigner::generate("example.com/receipts").unwrap();
        let cp = SignedCheckpoint::sign(
            Checkpoint { origin: "example.com/receipts".into(), size: 13, root, extensions: vec![] },
            &signer,
        )
        .unwrap();
        let receipt = Receipt { extra: Some(b"hi".to_vec()), index: 6, proof, checkpoint: cp.note().to_owned() };
        (entries, receipt, signer.verifier())
    }

    #[test]
    fn round_trips_and_verifies() {
        let (entries, receipt, key) = fixture();
        let text = receipt.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra aGk=\nindex 6\n"));
        let parsed = Receipt::parse(&text).unwrap();
        assert_eq!(parsed, receipt);
        assert_eq!(parsed.verify(&entries[6], &key).unwrap().checkpoint().size, 13);
        let without = Receipt { extra: None, ..receipt };
        assert_eq!(Receipt::parse(&without.to_text()).unwrap(), without);
    }

    #[test]
    fn refuses_another_entry_a_moved_index_and_a_foreign_key() {
        let (entries, receipt, _key) = fixture();
        let (_, _, key) = fixture();
        assert!(receipt.verify(&entries[6], &key).is_err(), "another log's key");
        let (entries, receipt, key) = fixture();
        assert!(receipt.verify(&entries[5], &key).is_err());
        let moved = Receipt { index: 7, ..receipt.clone() };
        assert!(moved.verify(&entries[6], &key).is_err());
        let mut short = receipt.clone();
        short.proof.pop();
        assert!(short.verify(&entries[6], &key).is_err());
        let forged = receipt.checkpoint.replace("\n13\n", "\n14\n");
        assert!(Receipt { checkpoint: forged, ..receipt }.verify(&entries[6], &key).is_err());
    }

    #[test]
    fn refuses_malformed_text() {
        let (_, receipt, _) = fixture();
        let good = receipt.to_text();
        for bad in [
            good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            good.replacen("index 6", "index 06", 1),
            good.replacen("index 6", "index -6", 1),
            good.replacen("index 6", "index", 1),
            good.replacen("index 6\n", "", 1),
            good.replacen("extra aGk=", "extra !!", 1),
            good.replacen("\n\n", "\n", 1),
            good.replacen("index 6\n", "index 6\nnot-base64\n", 1),
            good.replacen("index 6\n", "index 6\nAAAA\n", 1),
        ] {
            assert!(Receipt::parse(&bad).is_err(), "accepted:\n{bad}");
        }
    }
}
