//! writ's enforcement points that reach the control plane over HTTP (SPEC.md §4,
//! "Enforcement points"). They never link the decision engine: every decision is asked of a
//! running `writ serve` through its public API (`POST /v1/authorize`, `/v1/authorize/preview`,
//! `/v1/outcomes`, `GET /v1/approvals/{id}`), so an enforcement point holds no key and no
//! policy and fails closed when the control plane cannot answer.
//!
//! - [`mcp`]: the MCP gateway (`writ mcp -- <server command>`), a stdio proxy that governs
//!   every `tools/call` of the server it wraps and passes everything else through.
//! - [`control`]: the control plane as every enforcement point asks it: the agent's
//!   credential, decisions, approvals, previews, outcomes, the writ keys.
//! - [`exec`]: governed command execution (`writ exec -- <command> [args]`): one command,
//!   authorized, its writ verified, run with its writ for its children, its outcome
//!   recorded.
//! - [`hook`]: hooks an agent CLI or framework runs before each tool call
//!   (`writ hook claude-code`, `writ hook exec-request`): one decision per call, the outcome
//!   recorded after it.
//! - [`client`]: the small HTTP/1.1 client the enforcement points speak to the control
//!   plane with (keep-alive connections, pooled, no TLS).

mod error;

pub mod client;
pub mod control;
pub mod exec;
pub mod hook;
pub mod mcp;

pub use error::{Error, TransportKind};
