//! Proof verification over untrusted sizes, indices and hashes never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_log::{Hash, verify_consistency, verify_inclusion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 + 64 {
        return;
    }
    let (head, rest) = data.split_at(16);
    let a = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
    let b = u64::from_le_bytes(head[8..].try_into().unwrap_or_default());
    let hashes: Vec<Hash> = rest.chunks_exact(32).filter_map(Hash::from_slice).collect();
    if let [x, y, proof @ ..] = hashes.as_slice() {
        let _ = verify_inclusion(a, b, x, proof, y);
        let _ = verify_consistency(a, b, proof, x, y);
    }
});
