//! Integration tests of the `writ` binary: the log commands end to end, their hostile
//! inputs, and the kill-and-reopen crash test (short version; the long one is
//! `writ-dev log crashtest --rounds 200`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "../../src/client.rs"]
#[allow(dead_code, reason = "the binary's HTTP client, shared with the tests; not every helper is used here")]
mod client;

mod bench;
mod demo;
mod edge;
mod engine;
mod exec;
mod hook;
mod keys;
mod kill;
mod log;
mod policy;
mod remote;
mod serve;
mod support;
