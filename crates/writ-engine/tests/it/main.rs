//! writ-engine: the fail-closed matrix (one test per reason code the engine produces,
//! each from a realistic hostile request), temporal and rate rules at fixed clock values,
//! determinism, replay, and the shadow bundle.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod approvals;
mod cancellation;
mod candidate;
mod determinism;
mod harness;
mod hostile;
mod isolation;
mod keys;
mod matrix;
mod reevaluation;
mod renewal;
mod replay;
mod rules;
mod shadow;
mod vectors;
mod watch;
