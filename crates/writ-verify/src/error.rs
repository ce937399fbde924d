//! The crate's one error type: what can fail outside a verification's answer (a verification
//! always answers, with a [`crate::WritRejection`] carrying a SPEC §6 reason code).

/// Errors of key sets, feed documents, receipts and the transport.
///
/// Dependency errors stay inside: each variant carries what failed in words, except the
/// workspace's own `writ_log::Error` under a bad receipt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JWKS document that is not a set of Ed25519 public keys (RFC 7517, RFC 8037).
    #[error("JWKS: {why}")]
    Jwks {
        /// What is wrong with it.
        why: String,
    },
    /// A feed document that does not verify or does not follow the feed format.
    #[error("feed document: {why}")]
    Feed {
        /// What is wrong with it.
        why: String,
    },
    /// A receipt that is malformed, not signed by the pinned log key, or does not place the
    /// entry in the log.
    #[error("receipt")]
    Receipt(#[source] writ_log::Error),
    /// A receipt that verifies but proves another entry than the one it was checked for.
    #[error("receipt: {why}")]
    ReceiptMismatch {
        /// What differs.
        why: String,
    },
    /// A pinned log verifier key that is not a C2SP signed-note `vkey`.
    #[error("log key")]
    LogKey(#[source] writ_log::Error),
    /// A key refresh refused: one was made less than the minimum interval ago.
    #[error("key refresh refused: the last one was {ago} s ago, the minimum interval is {min} s")]
    RefreshTooSoon {
        /// Seconds since the last refresh.
        ago: u64,
        /// The minimum interval.
        min: u64,
    },
    /// The control plane could not be reached, or answered with an error.
    #[error("fetching {what}: {why}")]
    Fetch {
        /// What was fetched.
        what: String,
        /// Why it failed.
        why: String,
    },
    /// A URL this crate cannot use (plain `http://host[:port]` only).
    #[error("URL {url:?}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A lock was poisoned by a panic elsewhere.
    #[error("{0} lock poisoned")]
    Poisoned(&'static str),
}

impl Error {
    pub(crate) fn jwks(why: impl Into<String>) -> Self {
        Error::Jwks { why: why.into() }
    }

    pub(crate) fn feed(why: impl Into<String>) -> Self {
        Error::Feed { why: why.into() }
    }
}
