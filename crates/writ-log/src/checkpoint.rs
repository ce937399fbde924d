//! Checkpoints in the C2SP `tlog-checkpoint` format, carried in a C2SP `signed-note`.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal, no leading zeros>\n
//! <root hash, standard base64>\n
//! [<extension line>\n ...]
//! ```
//!
//! The log signs with a key whose name is the origin; [`SignedCheckpoint::open`] requires
//! a valid signature by that key, checks the signatures of any witness keys it is given and
//! ignores the rest.

use crate::Error;
use crate::hash::Hash;
use crate::note::{Note, NoteSigner, NoteVerifier};

fn malformed(why: impl Into<String>) -> Error {
    Error::CheckpointMalformed(why.into())
}

/// The body of a checkpoint: which log, how big, and its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique identity, e.g. `writ.example.com/log`.
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// RFC 9162 root hash of the tree of `size` entries.
    pub root: Hash,
    /// Optional extension lines, in order, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint body, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, self.root.to_base64());
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (the signed text of the note).
    pub fn parse(text: &str) -> Result<Checkpoint, Error> {
        let body = text.strip_suffix('\n').ok_or_else(|| malformed("checkpoint does not end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|l| !l.is_empty()).ok_or_else(|| malformed("missing origin line"))?;
        let size_line = lines.next().ok_or_else(|| malformed("missing tree size line"))?;
        let root_line = lines.next().ok_or_else(|| malformed("missing root hash line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(malformed(format!("tree size {size_line:?} is not a canonical decimal")));
        }
        let size = size_line.parse::<u64>().map_err(|_| malformed("tree size does not fit in 64 bits"))?;
        let root = Hash::from_base64(root_line).ok_or_else(|| malformed("root hash is not base64 of 32 bytes"))?;
        let mut extensions = Vec::new();
        for ext in lines {
            if ext.is_empty() {
                return Err(malformed("empty extension line"));
            }
            extensions.push(ext.to_owned());
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root, extensions })
    }
}

/// A checkpoint together with the signed note that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the log's key, whose name must be the origin.
    pub fn sign(checkpoint: Checkpoint, signer: &NoteSigner) -> Result<Self, Error> {
        if signer.name() != checkpoint.origin {
            return Err(malformed("the log key's name must be the checkpoint origin"));
        }
        let note = signer.sign(&checkpoint.to_text())?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// Parses and verifies a signed checkpoint: the note must carry a valid signature by
    /// `log_key` (whose name must equal the origin); signatures by `witnesses` are checked
    /// too, and other signatures are ignored. Returns the checkpoint and the names of the
    /// witnesses that cosigned it.
    pub fn open(note: &[u8], log_key: &NoteVerifier, witnesses: &[NoteVerifier]) -> Result<(Self, Vec<String>), Error> {
        let parsed = Note::parse(note)?;
        let checkpoint = Checkpoint::parse(parsed.text())?;
        if checkpoint.origin != log_key.name() {
            return Err(Error::NoteSignature(format!(
                "checkpoint origin {:?} is not the log key's name {:?}",
                checkpoint.origin,
                log_key.name()
            )));
        }
        let mut keys = Vec::with_capacity(1 + witnesses.len());
        keys.push(log_key.clone());
        keys.extend(witnesses.iter().filter(|w| *w != log_key).cloned());
        let verified = parsed.verify(&keys)?;
        if !verified.contains(&log_key) {
            return Err(Error::NoteSignature("checkpoint is not signed by the log key".into()));
        }
        let cosigners = verified.iter().filter(|k| **k != log_key).map(|k| k.name().to_owned()).collect();
        let note = String::from_utf8_lossy(note).into_owned();
        Ok((SignedCheckpoint { checkpoint, note }, cosigners))
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed note, as served at `/v1/log/checkpoint`.
    pub fn note(&self) -> &str {
        &self.note
    }
}

#[cfg(test)]
mod tests;
