//! `writ-mcp-tool-server`: an MCP tool server over stdio, built with the official Rust SDK
//! (`rmcp`), that verifies the writ of every `tools/call` in-process with `writ-verify`
//! before it runs the tool (issue 15, part 6; `docs/mcp.md`, "For tool authors").
//!
//! Keys come from the control plane's JWKS (refreshed on an unknown `kid`), standing from its
//! signed revocation feed (followed over server-sent events; a view older than
//! `--max-staleness` refuses every call), single use from an in-memory replay set. Logs go to
//! standard error: standard output is the protocol.

mod gate;
mod notes;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use rmcp::ServiceExt as _;
use writ_verify::{
    ControlPlane, DEFAULT_MAX_STALENESS, EnforcementPoint, FeedConfig, FeedStatus, FeedSubscriber, FileSource,
    KeyCache, KeySet, KeyUse, SharedFeed, WritVerifier,
};

use crate::gate::Gate;
use crate::notes::Notes;

/// A writ-aware MCP tool server: notes under one directory, every call verified first.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The directory the notes live in (created if missing); no path may leave it.
    #[arg(long)]
    dir: PathBuf,
    /// This server's name as `writ mcp --name` and the policy call it: tool `T` is the action
    /// `mcp:<name>/T` on the resource `mcp:<name>`, writs are for the audience `mcp:<name>`.
    #[arg(long, default_value = "notes")]
    name: String,
    /// The control plane (writ keys, revocation feed).
    #[arg(long, env = "WRIT_URL", default_value = "http://127.0.0.1:7070")]
    url: String,
    /// The control plane's name (`iss` of its writs and feed documents).
    #[arg(long, default_value = "writ")]
    issuer: String,
    /// Writ keys pinned from a JWKS file instead of fetched from the control plane.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// Feed keys pinned from a JWKS file (`use: writ-feed`) instead of fetched: over plain
    /// HTTP, whoever answers for the control plane could otherwise sign the feed.
    #[arg(long)]
    feed_keys: Option<PathBuf>,
    /// Refuse every call (`writ.revoked`) when the revocation feed's view is older than this
    /// many seconds.
    #[arg(long, default_value_t = DEFAULT_MAX_STALENESS)]
    max_staleness: u64,
    /// Clock skew allowed on `nbf` and `exp`, in seconds.
    #[arg(long, default_value_t = 30)]
    skew: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Standard error usually lands in the MCP client's log file: colours only on a terminal.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WRIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let name = args.name.as_str();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        anyhow::bail!("--name {name:?}: use lowercase letters, digits, `_` and `-` (as `writ mcp --name` does)");
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("--dir {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir).with_context(|| format!("--dir {}", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args, dir))
}

async fn run(args: Args, dir: PathBuf) -> anyhow::Result<()> {
    let cp = ControlPlane::new(&args.url).with_context(|| format!("--url {}", args.url))?;
    let keys = match &args.jwks {
        Some(file) => KeyCache::new(FileSource(file.clone()), KeyUse::Writ),
        None => KeyCache::new(cp.jwks(), KeyUse::Writ),
    };
    let keys = Arc::new(keys);
    // A control plane down at start is not fatal: the first call fetches the keys again.
    if let Err(e) = keys.load(unix_now()).await {
        tracing::warn!(error = %e, "writ keys not loaded yet; calls are refused until they are");
    }
    let audience = format!("mcp:{}", args.name);
    let writs = WritVerifier::with_keys(&args.issuer, KeySet::clone(&keys.current()), &audience, args.skew);
    let feed = SharedFeed::new(args.max_staleness);
    let mut config = FeedConfig::new(&args.issuer);
    if let Some(file) = &args.feed_keys {
        config.pinned_keys = Some(std::fs::read(file).with_context(|| format!("--feed-keys {}", file.display()))?);
    }
    let subscriber = FeedSubscriber::spawn(cp, config, feed.clone());
    tokio::spawn(log_feed_status(subscriber.status()));
    let point = EnforcementPoint::new(writs, feed).with_key_cache(keys);
    let notes = Notes::new(dir.clone(), Gate::new(&args.name, point));
    tracing::info!(name = %args.name, dir = %dir.display(), url = %args.url, "serving MCP on stdio");
    let service = notes.serve(rmcp::transport::stdio()).await.context("MCP initialization")?;
    let reason = service.waiting().await?;
    tracing::info!(?reason, "stopped");
    drop(subscriber);
    Ok(())
}

/// Logs the revocation feed's state changes (until the subscriber is dropped).
async fn log_feed_status(mut status: tokio::sync::watch::Receiver<FeedStatus>) {
    while status.changed().await.is_ok() {
        match &*status.borrow_and_update() {
            FeedStatus::Connected => tracing::info!("revocation feed connected"),
            FeedStatus::Retrying(why) => {
                tracing::warn!(%why, "revocation feed interrupted; reconnecting (stale views refuse every call)")
            }
            FeedStatus::Starting => {}
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
