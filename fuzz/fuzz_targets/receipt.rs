//! C2SP `tlog-proof` receipts from untrusted bytes (`writ_log::Receipt`, what
//! `GET /v1/log/receipt/{index}` serves and an auditor reads back): parsing never panics, a
//! receipt that parses re-serializes to exactly its text (the format is strict: one
//! spelling per receipt), and verification against a fixed log key never panics and
//! answers the same for the re-parsed receipt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_log::{NoteSigner, Receipt};

fuzz_target!(|data: &[u8]| {
    // After a NUL (which no receipt holds): the entry to check it against.
    let (text, entry) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"entry"[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(receipt) = Receipt::parse(text) else {
        return;
    };
    assert_eq!(receipt.to_text(), text, "a parsed receipt re-serializes to its text");
    let again = Receipt::parse(&receipt.to_text()).expect("its own text parses");
    assert_eq!(again, receipt);
    let key = NoteSigner::from_seed("fuzz.test/log", [3; 32]).expect("key").verifier();
    let first = receipt.verify(entry, &key).map(|cp| cp.note().to_owned());
    let second = again.verify(entry, &key).map(|cp| cp.note().to_owned());
    assert_eq!(first.is_ok(), second.is_ok());
    if let Ok(note) = first {
        assert_eq!(note, receipt.checkpoint, "a verified receipt's checkpoint is its own");
    }
});
