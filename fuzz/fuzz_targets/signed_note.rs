//! Signed notes and verifier keys from untrusted bytes: parse and verify never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_log::{Note, NoteSigner, NoteVerifier};

fuzz_target!(|data: &[u8]| {
    let key = NoteSigner::from_seed("fuzz.test/log", [3; 32]).map(|s| s.verifier());
    if let (Ok(note), Ok(key)) = (Note::parse(data), key) {
        let _ = note.verify(&[key]);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = NoteVerifier::from_vkey(text);
        let _ = NoteSigner::from_private_key(text);
    }
});
