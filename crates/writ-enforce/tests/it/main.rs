//! The MCP gateway end to end, in process: a real control plane (`writ_server::app` on
//! 127.0.0.1 over an engine with the test bundle in `fixtures/bundle`), the scripted MCP
//! server `fixtures/mcp_server.py` as the wrapped server, and the test as the MCP client on
//! the gateway's standard input and output (an in-memory pipe).
//! `http.rs`: the same gateway for the Streamable HTTP transport, against a scripted upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod gateway;
mod http;
mod support;
