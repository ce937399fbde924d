//! Integration tests of the `writ` binary: the log commands end to end, their hostile
//! inputs, and the kill-and-reopen crash test (short version; the long one is
//! `writ log crashtest --rounds 200`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod engine;
mod log;
mod serve;
