//! Integration tests of writ-identity through its public API: the hostile-credential matrix
//! (one test per forged or invalid token), runtime attestations, trust bundle parsing, and
//! the development issuer end to end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod attestation;
mod bundle;
mod dev;
mod hostile;
mod kit;
mod props;
