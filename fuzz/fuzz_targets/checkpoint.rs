//! Checkpoints from untrusted bytes: parse and open never panic, and what parses
//! re-encodes to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_log::{Checkpoint, NoteSigner, SignedCheckpoint};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cp) = Checkpoint::parse(text)
    {
        assert_eq!(cp.to_text(), text);
    }
    if let Ok(s) = NoteSigner::from_seed("fuzz.test/log", [3; 32]) {
        let _ = SignedCheckpoint::open(data, &s.verifier(), &[]);
    }
});
