//! writ-engine: the fail-closed matrix (one test per reason code the engine produces,
//! each from a realistic hostile request), temporal and rate rules at fixed clock values,
//! determinism, and replay.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod approvals;
mod candidate;
mod determinism;
mod harness;
mod hostile;
mod keys;
mod matrix;
mod reevaluation;
mod replay;
mod rules;
mod vectors;
