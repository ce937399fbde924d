//! Integration tests of writ-log: published proof vectors, the durable store, fail-closed
//! storage errors and the integrity audit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod store;
mod vectors;
