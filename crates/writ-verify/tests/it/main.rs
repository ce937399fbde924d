//! Integration tests of `writ-verify` against a real control plane (`writ_server::app`).

fn main() {}
