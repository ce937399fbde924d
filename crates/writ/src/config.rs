//! `writ serve`'s configuration, in one place: flags, then environment variables, then an
//! optional TOML file (`--config` / `WRIT_CONFIG`), then the defaults. Unknown keys in the
//! file are errors, so a typo cannot silently fall back to a default.
//!
//! | key (TOML)                  | flag                   | environment               | default          |
//! |-----------------------------|------------------------|---------------------------|------------------|
//! | `data_dir`                  | `--data-dir`           | `WRIT_DATA_DIR`           | `writ-data`      |
//! | `listen`                    | `--listen`             | `WRIT_LISTEN`             | `127.0.0.1:7070` |
//! | `trust_domain`              | `--trust-domain`       | `WRIT_TRUST_DOMAIN`       | `demo.example`   |
//! | `limits.max_in_flight`      | `--max-in-flight`      | `WRIT_MAX_IN_FLIGHT`      | 4096             |
//! | `limits.request_timeout_ms` | `--request-timeout-ms` | `WRIT_REQUEST_TIMEOUT_MS` | 10000            |
//! | `limits.max_connections`    | `--max-connections`    | `WRIT_MAX_CONNECTIONS`    | 1024 (\*)       |
//! | `limits.header_timeout_ms`  | `--header-timeout-ms`  | `WRIT_HEADER_TIMEOUT_MS`  | 10000            |
//! | `limits.idle_timeout_ms`    | `--idle-timeout-ms`    | `WRIT_IDLE_TIMEOUT_MS`    | 30000            |
//! | `engine.writ_ttl_secs`      | `--writ-ttl-secs`      | `WRIT_WRIT_TTL_SECS`      | 300              |
//! | `engine.max_depth`          | `--max-depth`          | `WRIT_MAX_DEPTH`          | 3                |
//! | `engine.clock_skew_secs`    | `--clock-skew-secs`    | `WRIT_CLOCK_SKEW_SECS`    | 30               |
//! | `engine.approval_ttl_secs`  | `--approval-ttl-secs`  | `WRIT_APPROVAL_TTL_SECS`  | 900              |
//!
//! (\*) `writ serve` lowers the connection cap to what the file-descriptor limit leaves after
//! [`FD_RESERVE`] descriptors for the store and the rest, and says so.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub engine: EngineFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_in_flight: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFile {
    pub writ_ttl_secs: Option<u64>,
    pub max_depth: Option<u32>,
    pub clock_skew_secs: Option<u64>,
    pub approval_ttl_secs: Option<u64>,
}

/// What flags and environment variables gave (clap resolves those two).
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// A TOML configuration file (see the README's Configuration section).
    #[arg(long, env = "WRIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, env = "WRIT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Trust domain of the development issuers created on first start [default: demo.example].
    #[arg(long, env = "WRIT_TRUST_DOMAIN")]
    pub trust_domain: Option<String>,
    /// Requests handled at once; more are refused with 503 and Retry-After [default: 4096].
    #[arg(long, env = "WRIT_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Longest a request may take before it is answered 503, in ms [default: 10000].
    #[arg(long, env = "WRIT_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Connections open at once; at the cap the one idle longest makes room, or, if every
    /// one is in a request, new ones wait [default: 1024, lowered to fit the
    /// file-descriptor limit].
    #[arg(long, env = "WRIT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Longest the head of a request may take to arrive before the connection is closed, in
    /// ms [default: 10000].
    #[arg(long, env = "WRIT_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Longest an open connection may wait for its next request before it is closed, in ms
    /// [default: 30000].
    #[arg(long, env = "WRIT_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Lifetime of issued writs, in seconds [default: 300].
    #[arg(long, env = "WRIT_WRIT_TTL_SECS")]
    pub writ_ttl_secs: Option<u64>,
    /// Deepest lineage allowed (a root writ is depth 0) [default: 3].
    #[arg(long, env = "WRIT_MAX_DEPTH")]
    pub max_depth: Option<u32>,
    /// Clock skew allowed on credentials and writs, in seconds [default: 30].
    #[arg(long, env = "WRIT_CLOCK_SKEW_SECS")]
    pub clock_skew_secs: Option<u64>,
    /// How long a decision that needs a human approval waits for one, in seconds [default: 900].
    #[arg(long, env = "WRIT_APPROVAL_TTL_SECS")]
    pub approval_ttl_secs: Option<u64>,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub trust_domain: String,
    pub limits: writ_server::Limits,
    pub engine: writ_engine::EngineConfig,
}

pub fn read_file(path: &Path) -> Result<File> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the configuration {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing the configuration {}", path.display()))
}

/// Resolves flags and environment (`args`, `data_dir`) over the file over the defaults.
pub fn resolve(args: &ServeArgs, data_dir: Option<PathBuf>) -> Result<Config> {
    let file = match &args.config {
        Some(p) => read_file(p)?,
        None => File::default(),
    };
    let defaults = writ_server::Limits::default();
    let mut engine = writ_engine::EngineConfig::default();
    engine.writ_ttl = args.writ_ttl_secs.or(file.engine.writ_ttl_secs).unwrap_or(engine.writ_ttl);
    engine.max_depth = args.max_depth.or(file.engine.max_depth).unwrap_or(engine.max_depth);
    engine.skew = args.clock_skew_secs.or(file.engine.clock_skew_secs).unwrap_or(engine.skew);
    engine.approval_ttl = args.approval_ttl_secs.or(file.engine.approval_ttl_secs).unwrap_or(engine.approval_ttl);
    let limits = writ_server::Limits {
        max_in_flight: args.max_in_flight.or(file.limits.max_in_flight).unwrap_or(defaults.max_in_flight),
        request_timeout: args
            .request_timeout_ms
            .or(file.limits.request_timeout_ms)
            .map_or(defaults.request_timeout, Duration::from_millis),
        max_connections: args.max_connections.or(file.limits.max_connections).unwrap_or(defaults.max_connections),
        header_timeout: args
            .header_timeout_ms
            .or(file.limits.header_timeout_ms)
            .map_or(defaults.header_timeout, Duration::from_millis),
        idle_timeout: args
            .idle_timeout_ms
            .or(file.limits.idle_timeout_ms)
            .map_or(defaults.idle_timeout, Duration::from_millis),
    };
    if limits.max_in_flight == 0 {
        bail!("max_in_flight must be at least 1");
    }
    if limits.request_timeout.is_zero() {
        bail!("request_timeout_ms must be at least 1");
    }
    if limits.max_connections == 0 {
        bail!("max_connections must be at least 1");
    }
    if limits.header_timeout.is_zero() {
        bail!("header_timeout_ms must be at least 1");
    }
    if limits.idle_timeout.is_zero() {
        bail!("idle_timeout_ms must be at least 1");
    }
    if engine.writ_ttl == 0 || engine.writ_ttl > 86_400 {
        bail!("writ_ttl_secs must be between 1 and 86400");
    }
    if engine.approval_ttl == 0 || engine.approval_ttl > 7 * 86_400 {
        bail!("approval_ttl_secs must be between 1 and 604800");
    }
    Ok(Config {
        data_dir: data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("writ-data")),
        listen: args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070))),
        trust_domain: args.trust_domain.clone().or(file.trust_domain).unwrap_or_else(|| "demo.example".into()),
        limits,
        engine,
    })
}

/// File descriptors `writ serve` keeps out of the connection cap: the store (database, WAL,
/// shared memory, the reader pool), the lock and key files, the listener, the runtime's
/// own, and room for `/readyz`'s probe and the audit reads. An idle server holds about 30.
pub const FD_RESERVE: u64 = 64;

/// The connection cap that fits `soft` (the soft `RLIMIT_NOFILE`) after [`FD_RESERVE`]:
/// `limits` unchanged when it fits, else the cap lowered (at least 1) and why.
pub fn fit_descriptors(mut limits: writ_server::Limits, soft: u64) -> (writ_server::Limits, Option<String>) {
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX).max(1);
    if limits.max_connections <= room {
        return (limits, None);
    }
    let asked = limits.max_connections;
    limits.max_connections = room;
    let why = format!(
        "max_connections lowered from {asked} to {room}: the file-descriptor limit (ulimit -n) is {soft} and {FD_RESERVE} are kept for the store and the rest"
    );
    (limits, Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_file_over_defaults_and_typos_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writ.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ntrust_domain = \"corp.example\"\n[limits]\nmax_in_flight = 8\n[engine]\nmax_depth = 5\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(path.clone()), max_in_flight: Some(16), ..ServeArgs::default() };
        let c = resolve(&args, None).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.trust_domain, "corp.example");
        assert_eq!(c.limits.max_in_flight, 16, "the flag wins over the file");
        assert_eq!(c.engine.max_depth, 5);
        assert_eq!(c.engine.writ_ttl, 300, "default");
        assert_eq!(c.data_dir, PathBuf::from("writ-data"));

        assert_eq!(c.limits.max_connections, 1024, "default");
        assert_eq!(c.limits.header_timeout, Duration::from_secs(10), "default");
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(30), "default");
        std::fs::write(&path, "[limits]\nmax_connections = 8\nheader_timeout_ms = 1500\nidle_timeout_ms = 2500\n")
            .unwrap();
        let args = ServeArgs { config: Some(path.clone()), idle_timeout_ms: Some(700), ..ServeArgs::default() };
        let c = resolve(&args, None).unwrap();
        assert_eq!(c.limits.max_connections, 8);
        assert_eq!(c.limits.header_timeout, Duration::from_millis(1500));
        assert_eq!(c.limits.idle_timeout, Duration::from_millis(700), "the flag wins over the file");
        for zero in ["max_connections = 0", "header_timeout_ms = 0", "idle_timeout_ms = 0"] {
            std::fs::write(&path, format!("[limits]\n{zero}\n")).unwrap();
            assert!(
                resolve(&ServeArgs { config: Some(path.clone()), ..ServeArgs::default() }, None).is_err(),
                "{zero}"
            );
        }

        std::fs::write(&path, "[limits]\nmax_in_flihgt = 8\n").unwrap();
        let e = resolve(&args, None).unwrap_err();
        assert!(format!("{e:#}").contains("max_in_flihgt"), "{e:#}");
        std::fs::write(&path, "[limits]\nmax_in_flight = 0\n").unwrap();
        assert!(resolve(&ServeArgs { config: Some(path), ..ServeArgs::default() }, None).is_err());
    }

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        let limits = writ_server::Limits::default();
        let (fit, why) = fit_descriptors(limits, 1_048_576);
        assert_eq!(fit.max_connections, 1024);
        assert!(why.is_none());
        let (fit, why) = fit_descriptors(limits, 256);
        assert_eq!(fit.max_connections, 256 - FD_RESERVE as usize);
        assert!(why.unwrap().contains("lowered from 1024 to 192"));
        let (fit, _) = fit_descriptors(limits, 10);
        assert_eq!(fit.max_connections, 1, "never zero");
    }
}
