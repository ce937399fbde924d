//! C2SP `signed-note`: a UTF-8 text followed by a blank line and signature lines, with
//! Ed25519 signatures (signature type `0x01`), verifier keys (`vkey`) and key IDs computed
//! as the specification says:
//!
//! ```text
//! key ID    = SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ Ed25519 public key)[:4]
//! vkey      = <name>+<hex key ID>+<base64(0x01 ‖ public key)>
//! signature = "— " <name> " " base64(key ID ‖ Ed25519 signature) "\n"
//! ```
//!
//! The signature covers the text including its final newline. Parsing is strict and never
//! panics: a note larger than [`MAX_NOTE_LEN`], with more than [`MAX_SIGNATURES`]
//! signature lines, with control characters in its text, with a malformed or duplicated
//! signature line, or without a final newline is rejected. Verification ignores signatures
//! from unknown keys and fails on a bad signature from a known key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Largest note accepted, in bytes. Checkpoints with a few dozen cosignatures are a few
/// kilobytes; anything near this bound is hostile.
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// Most signature lines accepted on one note (the bound Go's `note` package uses).
pub const MAX_SIGNATURES: usize = 100;
/// Signature type byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

fn malformed(why: impl Into<String>) -> Error {
    Error::NoteMalformed(why.into())
}

/// A key name is non-empty and contains neither Unicode whitespace nor `+`.
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
        return Err(malformed(format!("invalid key name {name:?}")));
    }
    Ok(())
}

/// The text of a note: non-empty, ends with a newline, and holds no control character
/// other than the newline.
fn check_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(malformed("note text does not end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed("note text contains a control character"));
    }
    Ok(())
}

fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, ..] = d;
    u32::from_be_bytes([a, b, c, e])
}

/// Fresh 32 bytes from the operating system's generator.
#[cfg(feature = "keygen")]
pub(crate) fn random_seed() -> Result<[u8; 32], Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Key(format!("no randomness available: {e}")))?;
    Ok(seed)
}

/// An Ed25519 note signer: a key name and a private key.
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Generates a new key for `name` from the operating system's randomness (feature
    /// `keygen`, on with `sqlite`).
    #[cfg(feature = "keygen")]
    pub fn generate(name: &str) -> Result<Self, Error> {
        Self::from_seed(name, random_seed()?)
    }

    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, Error> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(NoteSigner { name: name.to_owned(), id: key_id(name, &key.verifying_key()), key })
    }

    /// Parses the private key encoding of Go's `note` package:
    /// `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ‖ seed)>`.
    pub fn from_private_key(s: &str) -> Result<Self, Error> {
        let bad = || Error::Key("malformed signed-note private key".into());
        let rest = s.trim_end_matches('\n').strip_prefix("PRIVATE+KEY+").ok_or_else(bad)?;
        // Names cannot contain '+', key IDs are hex, and the base64 key may hold '+'.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let raw = B64.decode(key).map_err(|_| bad())?;
        let (Some(&ALG_ED25519), Some(seed)) = (raw.first(), raw.get(1..).and_then(|s| <[u8; 32]>::try_from(s).ok()))
        else {
            return Err(bad());
        };
        let signer = Self::from_seed(name, seed)?;
        if format!("{:08x}", signer.id) != id {
            return Err(Error::Key("private key ID does not match its key".into()));
        }
        Ok(signer)
    }

    /// The private key encoding; a secret, to be written to a file readable by its owner only.
    pub fn to_private_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier for this signer's signatures.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Signs `text` (which must be valid note text) and returns the whole note.
    pub fn sign(&self, text: &str) -> Result<String, Error> {
        let line = self.signature_line(text)?;
        Ok(format!("{text}\n{line}"))
    }

    /// The signature line of this key over `text`, ending in a newline; what a witness adds
    /// to a note it cosigns.
    pub fn signature_line(&self, text: &str) -> Result<String, Error> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(4 + 64);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw)))
    }
}

/// An Ed25519 note verifier: a key name, a key ID and a public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a verifier key: `<name>+<hex key ID>+<base64(0x01 ‖ public key)>`. The key
    /// ID must be the one the key and name give.
    pub fn from_vkey(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Key(format!("malformed verifier key: {why}"));
        let s = s.trim_end_matches('\n');
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<id>+<key>"));
        };
        check_name(name)?;
        let raw = B64.decode(key).map_err(|_| bad("key is not base64"))?;
        let (Some(&ALG_ED25519), Some(public)) = (raw.first(), raw.get(1..).and_then(|s| <[u8; 32]>::try_from(s).ok()))
        else {
            return Err(bad("not an Ed25519 key"));
        };
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid Ed25519 point"))?;
        let computed = key_id(name, &key);
        if id.len() != 8 || format!("{computed:08x}") != id {
            return Err(bad("key ID does not match the key"));
        }
        Ok(NoteVerifier { name: name.to_owned(), id: computed, key })
    }

    /// The verifier key encoding.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

/// One signature line of a parsed note, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub id: u32,
    /// Signature bytes (without the key ID).
    pub signature: Vec<u8>,
}

/// A syntactically valid note whose signatures have not been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a note. Checks syntax only; see [`Note::verify`].
    pub fn parse(input: &[u8]) -> Result<Note, Error> {
        if input.len() > MAX_NOTE_LEN {
            return Err(malformed(format!("note is longer than {MAX_NOTE_LEN} bytes")));
        }
        let s = std::str::from_utf8(input).map_err(|_| malformed("note is not valid UTF-8"))?;
        let split = s.rfind("\n\n").ok_or_else(|| malformed("note has no signature block"))?;
        let (text, sigs) = (&s[..=split], &s[split + 2..]);
        check_text(text)?;
        if sigs.is_empty() {
            return Err(malformed("note has no signatures"));
        }
        if !sigs.ends_with('\n') {
            return Err(malformed("signature block does not end with a newline"));
        }
        let mut signatures: Vec<NoteSignature> = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(malformed(format!("note has more than {MAX_SIGNATURES} signatures")));
            }
            let sig = parse_signature_line(line)?;
            if signatures.iter().any(|s| s.name == sig.name && s.id == sig.id) {
                return Err(malformed(format!("duplicated signature from key {} {:08x}", sig.name, sig.id)));
            }
            signatures.push(sig);
        }
        Ok(Note { text: text.to_owned(), signatures })
    }

    /// The signed text, ending in a newline. Not to be trusted before [`Note::verify`].
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Checks every signature made by one of `known`, ignoring the others. Fails if any
    /// known key's signature is invalid or if no known key signed. Returns the verifiers
    /// whose signatures verified, in the order of `known`.
    pub fn verify<'k>(&self, known: &'k [NoteVerifier]) -> Result<Vec<&'k NoteVerifier>, Error> {
        let mut verified = Vec::new();
        for key in known {
            let Some(sig) = self.signatures.iter().find(|s| s.name == key.name && s.id == key.id) else {
                continue;
            };
            let sig = Signature::from_slice(&sig.signature)
                .map_err(|_| Error::NoteSignature(format!("signature from {} has the wrong length", key.name)))?;
            key.key
                .verify_strict(self.text.as_bytes(), &sig)
                .map_err(|_| Error::NoteSignature(format!("invalid signature from {}", key.name)))?;
            verified.push(key);
        }
        if verified.is_empty() {
            return Err(Error::NoteSignature("no signature from a known key".into()));
        }
        Ok(verified)
    }
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, Error> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or_else(|| malformed("signature line does not start with an em dash and a space"))?;
    let (name, b64) = rest.split_once(' ').ok_or_else(|| malformed("signature line has no signature"))?;
    check_name(name)?;
    let raw = B64.decode(b64).map_err(|_| malformed("signature is not base64"))?;
    let (Some(id), Some(signature)) = (raw.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()), raw.get(4..)) else {
        return Err(malformed("signature is too short"));
    };
    if signature.is_empty() {
        return Err(malformed("signature is too short"));
    }
    let id = u32::from_be_bytes(id);
    Ok(NoteSignature { name: name.to_owned(), id, signature: signature.to_vec() })
}

#[cfg(test)]
mod tests;
