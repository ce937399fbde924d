//! The MCP gateway (`writ mcp`): writ in the path of every tool call an agent makes through
//! the Model Context Protocol, revision 2025-06-18
//! (<https://modelcontextprotocol.io/specification/2025-06-18>), for both standard
//! transports: [`run`] wraps a server speaking stdio (`writ mcp -- <server command>`),
//! [`serve_http`] fronts a server speaking Streamable HTTP
//! (`writ mcp --upstream URL --listen ADDR`).
//!
//! What the gateway does to the traffic is the same for both (`govern.rs`):
//!
//! - **Governed**: every `tools/call` request from the client. Tool `T` of the server named
//!   `S` is the execution request `{action: "mcp:S/T", resource: "mcp:S", arguments}` with
//!   audience `mcp:S` (the issue-15 design contract). The call is forwarded only on allow,
//!   with the writ in `params._meta["dev.writ/writ"]` and the decision in
//!   `params._meta["dev.writ/decision"]`; otherwise the gateway answers it itself with the
//!   client's id. Its outcome (succeeded or failed, the SHA-256 of the RFC 8785 form of the
//!   result, the duration) is recorded after the answer has been relayed.
//! - **Filtered**: the results of `tools/list`, through `POST /v1/authorize/preview`: a tool
//!   every call of which would be denied is left out; when the preview cannot be had, every
//!   tool is shown (calls stay governed). When the active bundle changes, the last listed
//!   tools are previewed again and `notifications/tools/list_changed` is sent if the visible
//!   set changed; the `initialize` result advertises `tools.listChanged` accordingly.
//! - **Passed through unchanged**: everything else in both directions (notifications,
//!   progress, cancellation, resources, prompts, server-to-client requests such as sampling,
//!   elicitation and roots, and their responses). JSON-RPC ids are never rewritten.
//!
//! The transports (`stdio.rs`, `http.rs`) own the bytes, the bounds and the connections.

mod answer;
mod govern;
mod http;
mod lines;
mod sse;
mod stdio;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use crate::control::CredentialSource;
pub use http::{HttpOptions, serve as serve_http};
pub use lines::MAX_LINE;
pub use stdio::run;

use crate::Error;
use crate::control::ControlPlane;

/// How long outcome reports still in flight are waited for when the gateway stops.
const OUTCOME_DRAIN: Duration = Duration::from_secs(5);

/// The gateway's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The control plane's base URL (`http://host:port`).
    pub url: String,
    /// The server's name `S` in `mcp:S/T` (see [`server_name`]).
    pub name: String,
    /// Where the agent's workload credential comes from.
    pub credential: CredentialSource,
    /// A parent writ presented with every decision (lineage), from `WRIT_PARENT_WRIT`.
    pub parent_writ: Option<String>,
    /// Answer a denied call with a JSON-RPC error (-32001) instead of an `isError` result.
    pub deny_as_error: bool,
    /// How long to wait for a human approval before answering that it is pending.
    pub approval_wait: Duration,
    /// The control plane's writ signing keys, a JWKS file (its `trust/jwks.json`): the only
    /// keys the writ of an allow is verified with.
    pub writ_keys: PathBuf,
    /// The deadline for a decision (and for every other request to the control plane).
    pub decision_timeout: Duration,
    /// How often the active bundle is looked at, to refresh the visible tools.
    pub bundle_poll: Duration,
    /// The server command and its arguments (the stdio transport, [`run`]; [`serve_http`]
    /// does not read it).
    pub command: Vec<String>,
}

/// The default server name for a command: its file name without extension, lowercased,
/// every character outside `[a-z0-9_-]` replaced by `-`.
pub fn server_name(command: &str) -> String {
    let file = std::path::Path::new(command).file_stem().and_then(|s| s.to_str()).unwrap_or(command);
    let name: String = file
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    if name.is_empty() { "-".to_owned() } else { name }
}

/// Whether `name` may name a server (`[a-z0-9_-]+`, at most 64 characters).
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The control plane as the configuration names it.
fn control_plane(config: &Config) -> Result<ControlPlane, Error> {
    ControlPlane::new(
        &config.url,
        config.credential.clone(),
        config.parent_writ.clone(),
        config.decision_timeout,
        config.writ_keys.clone(),
    )
}
