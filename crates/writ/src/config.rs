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
//! | `verification.interval_ms`  | `--verify-interval-ms` | `WRIT_VERIFY_INTERVAL_MS` | 10000            |
//! | `verification.sample`       | `--verify-sample`      | `WRIT_VERIFY_SAMPLE`      | 16               |
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
    #[serde(default)]
    pub verification: VerificationFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationFile {
    pub interval_ms: Option<u64>,
    pub sample: Option<usize>,
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
    /// How often the verification loop re-verifies the log, checkpoints, active bundle and
    /// signing keys, in ms [default: 10000].
    #[arg(long, env = "WRIT_VERIFY_INTERVAL_MS")]
    pub verify_interval_ms: Option<u64>,
    /// Older log entries the verification loop re-verifies at random each run [default: 16].
    #[arg(long, env = "WRIT_VERIFY_SAMPLE")]
    pub verify_sample: Option<usize>,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub trust_domain: String,
    pub limits: writ_server::Limits,
    pub engine: writ_engine::EngineConfig,
    /// How often the verification loop runs.
    pub verify_interval: Duration,
    /// Older entries it re-verifies at random each run.
    pub verify_sample: usize,
}

/// The largest connection cap and in-flight bound accepted.
const MAX_COUNT: usize = 1_000_000;
/// The longest request, header and idle timeout accepted (a day).
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// The largest clock-skew allowance accepted on credentials and writs (five minutes, as
/// Kerberos and most JWT libraries allow at most).
const MAX_SKEW_SECS: u64 = 300;
/// The deepest lineage limit accepted (a lineage walk stops at 256 steps).
const MAX_DEPTH: u32 = 64;

pub fn read_file(path: &Path) -> Result<File> {
    use std::io::Read as _;
    const MAX_CONFIG: u64 = 1024 * 1024;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG + 1).read_to_string(&mut text))
        .with_context(|| format!("reading the configuration {}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG {
        bail!("the configuration {} is over {MAX_CONFIG} bytes", path.display());
    }
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
    // Bounded above too: a semaphore of more permits than tokio allows panicked after the
    // first start had written the data directory, and a clock-skew allowance of a year (or
    // u64::MAX) accepted credentials and writs that long after they expired. No setting turns
    // an error into an allow.
    if limits.max_in_flight == 0 || limits.max_in_flight > MAX_COUNT {
        bail!("max_in_flight must be between 1 and {MAX_COUNT}");
    }
    if limits.max_connections == 0 || limits.max_connections > MAX_COUNT {
        bail!("max_connections must be between 1 and {MAX_COUNT}");
    }
    for (name, d) in [
        ("request_timeout_ms", limits.request_timeout),
        ("header_timeout_ms", limits.header_timeout),
        ("idle_timeout_ms", limits.idle_timeout),
    ] {
        if d.is_zero() || d > MAX_TIMEOUT {
            bail!("{name} must be between 1 and {}", MAX_TIMEOUT.as_millis());
        }
    }
    if engine.skew > MAX_SKEW_SECS {
        bail!("clock_skew_secs must be at most {MAX_SKEW_SECS}");
    }
    if engine.max_depth > MAX_DEPTH {
        bail!("max_depth must be at most {MAX_DEPTH}");
    }
    if engine.writ_ttl == 0 || engine.writ_ttl > 86_400 {
        bail!("writ_ttl_secs must be between 1 and 86400");
    }
    if engine.approval_ttl == 0 || engine.approval_ttl > 7 * 86_400 {
        bail!("approval_ttl_secs must be between 1 and 604800");
    }
    let verify_interval =
        Duration::from_millis(args.verify_interval_ms.or(file.verification.interval_ms).unwrap_or(10_000));
    if verify_interval < Duration::from_millis(10) || verify_interval > Duration::from_secs(86_400) {
        bail!("verification interval_ms must be between 10 and 86400000");
    }
    let verify_sample = args.verify_sample.or(file.verification.sample).unwrap_or(16);
    if verify_sample > 100_000 {
        bail!("verification sample must be at most 100000");
    }
    let trust_domain = args.trust_domain.clone().or(file.trust_domain).unwrap_or_else(|| "demo.example".into());
    crate::datadir::check_trust_domain(&trust_domain)?;
    Ok(Config {
        data_dir: data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("writ-data")),
        listen: args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070))),
        trust_domain,
        limits,
        engine,
        verify_interval,
        verify_sample,
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
        assert_eq!((c.verify_interval, c.verify_sample), (Duration::from_secs(10), 16), "defaults");

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

        std::fs::write(&path, "[verification]\ninterval_ms = 250\nsample = 4\n").unwrap();
        let c = resolve(&ServeArgs { config: Some(path.clone()), ..ServeArgs::default() }, None).unwrap();
        assert_eq!((c.verify_interval, c.verify_sample), (Duration::from_millis(250), 4));
        let args2 = ServeArgs { config: Some(path.clone()), verify_interval_ms: Some(1000), ..ServeArgs::default() };
        assert_eq!(resolve(&args2, None).unwrap().verify_interval, Duration::from_secs(1), "the flag wins");
        std::fs::write(&path, "[verification]\ninterval_ms = 0\n").unwrap();
        assert!(resolve(&ServeArgs { config: Some(path.clone()), ..ServeArgs::default() }, None).is_err());
        std::fs::write(&path, "[limits]\nmax_in_flihgt = 8\n").unwrap();
        let e = resolve(&args, None).unwrap_err();
        assert!(format!("{e:#}").contains("max_in_flihgt"), "{e:#}");
        std::fs::write(&path, "[limits]\nmax_in_flight = 0\n").unwrap();
        assert!(resolve(&ServeArgs { config: Some(path), ..ServeArgs::default() }, None).is_err());
    }

    /// Found in review: `clock_skew_secs` had no upper bound (expired credentials and writs
    /// accepted for as long as it said), `max_in_flight` above tokio's semaphore bound
    /// panicked after the first start had written the data directory, and a bad trust domain
    /// was refused only after keys named after it were written.
    #[test]
    fn settings_out_of_range_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writ.toml");
        for bad in [
            "[engine]\nclock_skew_secs = 31536000",
            "[engine]\nclock_skew_secs = 18446744073709551615",
            "[engine]\nmax_depth = 4294967295",
            "[limits]\nmax_in_flight = 18446744073709551615",
            "[limits]\nmax_connections = 18446744073709551615",
            "[limits]\nrequest_timeout_ms = 18446744073709551615",
            "[limits]\nheader_timeout_ms = 86400001",
            "[limits]\nidle_timeout_ms = 18446744073709551615",
            "trust_domain = \"EXAMPLE.com\"",
            "trust_domain = \"x/y\"",
            "trust_domain = \"\"",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = resolve(&ServeArgs { config: Some(path.clone()), ..ServeArgs::default() }, None);
            assert!(e.is_err(), "{bad}");
        }
        for good in ["[engine]\nclock_skew_secs = 300", "[limits]\nmax_in_flight = 1000000", "[engine]\nmax_depth = 64"]
        {
            std::fs::write(&path, good).unwrap();
            resolve(&ServeArgs { config: Some(path.clone()), ..ServeArgs::default() }, None).unwrap();
        }
        // The flag, too, and nothing is written for a bad trust domain.
        let args = ServeArgs { clock_skew_secs: Some(301), ..ServeArgs::default() };
        assert!(resolve(&args, None).is_err());
        let data = crate::datadir::DataDir::new(&dir.path().join("data"));
        assert!(data.init_all("x/y").is_err());
        assert!(!dir.path().join("data/keys").exists(), "keys were written for a refused trust domain");
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
