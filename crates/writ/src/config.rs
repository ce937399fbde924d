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
//! | `engine.writ_ttl_secs`      | `--writ-ttl-secs`      | `WRIT_WRIT_TTL_SECS`      | 300              |
//! | `engine.max_depth`          | `--max-depth`          | `WRIT_MAX_DEPTH`          | 3                |
//! | `engine.clock_skew_secs`    | `--clock-skew-secs`    | `WRIT_CLOCK_SKEW_SECS`    | 30               |
//! | `engine.approval_ttl_secs`  | `--approval-ttl-secs`  | `WRIT_APPROVAL_TTL_SECS`  | 900              |

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
    };
    if limits.max_in_flight == 0 {
        bail!("max_in_flight must be at least 1");
    }
    if limits.request_timeout.is_zero() {
        bail!("request_timeout_ms must be at least 1");
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

        std::fs::write(&path, "[limits]\nmax_in_flihgt = 8\n").unwrap();
        let e = resolve(&args, None).unwrap_err();
        assert!(format!("{e:#}").contains("max_in_flihgt"), "{e:#}");
        std::fs::write(&path, "[limits]\nmax_in_flight = 0\n").unwrap();
        assert!(resolve(&ServeArgs { config: Some(path), ..ServeArgs::default() }, None).is_err());
    }
}
