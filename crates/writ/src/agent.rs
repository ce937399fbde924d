//! The flags and environment every enforcement point of the command line shares (`writ mcp`,
//! `writ exec`, the agent-CLI hooks): where the control plane is, where the agent's workload
//! credential comes from, the parent writ that makes its decisions lineage children, and the
//! deadline of a decision.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use writ_enforce::control::CredentialSource;

/// The environment variable holding the agent's workload credential.
pub const CREDENTIAL_ENV: &str = "WRIT_AGENT_CREDENTIAL";

/// The environment variable holding the parent writ (lineage by possession).
pub const PARENT_WRIT_ENV: &str = "WRIT_PARENT_WRIT";

/// The control plane and the agent's credential.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The control plane's base URL.
    #[arg(long, env = "WRIT_URL", default_value = "http://127.0.0.1:7070", value_name = "URL")]
    pub url: String,
    /// A file holding the agent's workload credential (a JWT; re-read when it expires).
    #[arg(long, value_name = "FILE", conflicts_with = "credential_command")]
    pub credential_file: Option<PathBuf>,
    /// A command (run with `sh -c`) that prints the agent's workload credential; run again
    /// before the credential expires.
    #[arg(long, value_name = "CMD")]
    pub credential_command: Option<String>,
    /// The deadline for a decision: a control plane slower than this (or unreachable)
    /// denies (`log.unavailable`).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub decision_timeout: Duration,
    #[command(flatten)]
    pub keys: WritKeysArg,
}

/// Where the writ signing keys an enforcement point trusts are.
#[derive(Debug, Clone, clap::Args)]
pub struct WritKeysArg {
    /// The control plane's writ signing keys, a JWKS file: the only keys the writ of an allow
    /// is verified with (never the keys the control plane's address serves, which whatever
    /// answers there could make up). Re-read when a writ does not verify with the keys held
    /// (a rotation), at most every 10 s. Copy the control plane's `trust/jwks.json`, or
    /// `writ keys jwks`, to the agent's machine [default: <data-dir>/trust/jwks.json].
    #[arg(long, env = "WRIT_JWKS", value_name = "FILE")]
    pub jwks: Option<PathBuf>,
}

impl WritKeysArg {
    /// `--jwks`, or `trust/jwks.json` in the data directory `data_dir`.
    pub fn path(&self, data_dir: &Path) -> PathBuf {
        self.jwks.clone().unwrap_or_else(|| data_dir.join("trust/jwks.json"))
    }
}

impl AgentArgs {
    /// Where the credential comes from: `--credential-file`, `--credential-command`, or
    /// `WRIT_AGENT_CREDENTIAL`, in that order.
    pub fn credential_source(&self) -> Result<CredentialSource> {
        if let Some(path) = &self.credential_file {
            Ok(CredentialSource::File(path.clone()))
        } else if let Some(cmd) = &self.credential_command {
            Ok(CredentialSource::Command(cmd.clone()))
        } else if let Ok(token) = std::env::var(CREDENTIAL_ENV) {
            Ok(CredentialSource::Value(token))
        } else {
            bail!("no agent credential: give --credential-file FILE, --credential-command CMD, or set {CREDENTIAL_ENV}")
        }
    }
}

/// The parent writ in `WRIT_PARENT_WRIT`, if set and not blank.
pub fn parent_writ() -> Option<String> {
    std::env::var(PARENT_WRIT_ENV).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `500ms`, `2s`, `1.5s`, `2m`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{s:?}: give a duration such as 500ms, 2s or 1m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: the unit is ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "2h", "-1s", "1e9999"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
