//! The crate's one error type.

use std::fmt;

/// What went wrong with an HTTP exchange with the control plane, coarsely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransportKind {
    /// The TCP connection or the HTTP handshake failed.
    Connect,
    /// The exchange did not complete within its deadline.
    Timeout,
    /// The connection broke while sending the request or reading the answer.
    Io,
    /// The request could not be built (a bad path or header).
    Request,
}

impl TransportKind {
    /// A stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Connect => "connect",
            TransportKind::Timeout => "timeout",
            TransportKind::Io => "io",
            TransportKind::Request => "request",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the enforcement points. None of them is ever turned into an allow: a call the
/// gateway could not get a decision for is denied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The control plane's URL is not one this client speaks (`http://host:port`).
    #[error("control plane URL {url:?}: {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// An HTTP exchange with the control plane failed before an answer arrived.
    #[error("control plane {kind}: {detail}")]
    Transport {
        /// What kind of failure.
        kind: TransportKind,
        /// Detail for the operator's log.
        detail: String,
    },
    /// The control plane answered something this client cannot use.
    #[error("unexpected answer from the control plane: {0}")]
    Answer(String),
    /// The agent's credential could not be obtained (file, environment, command).
    #[error("agent credential: {0}")]
    Credential(String),
    /// The gateway was configured wrongly.
    #[error("{0}")]
    Config(String),
    /// The wrapped MCP server could not be started.
    #[error("starting the MCP server {command:?}: {source}")]
    Spawn {
        /// The server command.
        command: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Reading from or writing to the client or the server failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn transport(kind: TransportKind, detail: impl fmt::Display) -> Self {
        Error::Transport { kind, detail: detail.to_string() }
    }

    /// The transport failure's kind, if this is one.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            Error::Transport { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
