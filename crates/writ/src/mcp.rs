//! `writ mcp -- <server command> [args]`: the MCP gateway's command line. The gateway itself
//! is `writ_enforce::mcp`; this module resolves its flags and environment (where the
//! agent's credential and the parent writ come from) and runs it on the process's standard
//! input and output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use writ_enforce::mcp::{self as gateway, Config, CredentialSource};

/// `writ mcp`'s flags.
#[derive(Debug, clap::Args)]
#[command(after_help = "The agent's workload credential: --credential-file, --credential-command, or the \
                        environment variable WRIT_AGENT_CREDENTIAL. A parent writ in WRIT_PARENT_WRIT makes every \
                        governed call a lineage child of it. Example:\n  writ mcp --name fs --credential-file \
                        agent.jwt -- npx -y @modelcontextprotocol/server-filesystem /srv/data")]
pub struct Args {
    /// The control plane's base URL.
    #[arg(long, env = "WRIT_URL", default_value = "http://127.0.0.1:7070", value_name = "URL")]
    url: String,
    /// The server's name S: its tools are the actions `mcp:S/<tool>` on the resource `mcp:S`
    /// [default: the command's file name without extension, lowercased].
    #[arg(long, value_name = "S")]
    name: Option<String>,
    /// A file holding the agent's workload credential (a JWT; re-read when it expires).
    #[arg(long, value_name = "FILE", conflicts_with = "credential_command")]
    credential_file: Option<PathBuf>,
    /// A command (run with `sh -c`) that prints the agent's workload credential; run again
    /// before the credential expires.
    #[arg(long, value_name = "CMD")]
    credential_command: Option<String>,
    /// Answer a denied call with a JSON-RPC error (code -32001) instead of a tool result
    /// with `isError: true`.
    #[arg(long)]
    deny_as_error: bool,
    /// How long to wait for an operator's approval of a call that needs one (e.g. `30s`);
    /// 0 answers at once that approval is pending.
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DURATION")]
    approval_wait: Duration,
    /// The deadline for a decision: a control plane slower than this (or unreachable)
    /// denies the call (`log.unavailable`).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    decision_timeout: Duration,
    /// How often the active bundle is looked at, to tell the client when the tools it may
    /// call change (0: never).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    bundle_poll: Duration,
    /// The MCP server command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "SERVER COMMAND")]
    command: Vec<String>,
}

/// `500ms`, `2s`, `1.5s`, `2m`, or a number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// Runs the gateway until the server exits; its exit status is the server's.
pub fn run(args: Args) -> Result<ExitCode> {
    let credential = if let Some(path) = args.credential_file {
        CredentialSource::File(path)
    } else if let Some(cmd) = args.credential_command {
        CredentialSource::Command(cmd)
    } else if let Ok(token) = std::env::var("WRIT_AGENT_CREDENTIAL") {
        CredentialSource::Value(token)
    } else {
        bail!(
            "no agent credential: give --credential-file FILE, --credential-command CMD, or set WRIT_AGENT_CREDENTIAL"
        );
    };
    let name = match args.name {
        Some(n) => n,
        None => gateway::server_name(args.command.first().map(String::as_str).unwrap_or_default()),
    };
    if !gateway::valid_server_name(&name) {
        bail!("--name {name:?}: a server name is [a-z0-9_-]+ (at most 64 characters)");
    }
    let parent_writ = std::env::var("WRIT_PARENT_WRIT").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let config = Config {
        url: args.url,
        name,
        credential,
        parent_writ,
        deny_as_error: args.deny_as_error,
        approval_wait: args.approval_wait,
        decision_timeout: args.decision_timeout,
        bundle_poll: args.bundle_poll,
        command: args.command,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let code = rt.block_on(async {
        let (input, output) = stdio();
        gateway::run(config, input, output).await
    });
    // The standard input's reader is a blocking thread that may still wait for a line.
    rt.shutdown_timeout(Duration::from_millis(100));
    let code = code?;
    Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
}

type Input = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The process's standard input and output for the gateway: when they are pipes (as an MCP
/// client starts a server), read and written through the runtime's reactor; otherwise
/// through tokio's standard streams, which hand every read and write to a blocking thread
/// (half a millisecond per call more in `tests/mcp/bench.py`).
fn stdio() -> (Input, Output) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use tokio::net::unix::pipe;
        let input = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| pipe::Receiver::from_file(std::fs::File::from(fd)).ok());
        // Non-blocking mode belongs to the open pipe, which the server's inherited standard
        // error may share (`2>&1`): then the standard output stays as it is.
        let output = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
            .filter(|out| !same_file(out, &std::io::stderr()))
            .and_then(|out| pipe::Sender::from_file(out).ok());
        let input: Input = match input {
            Some(p) => Box::new(p),
            None => Box::new(tokio::io::stdin()),
        };
        let output: Output = match output {
            Some(p) => Box::new(p),
            None => Box::new(tokio::io::stdout()),
        };
        (input, output)
    }
    #[cfg(not(unix))]
    {
        (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
    }
}

/// Whether `file` and `other` are the same open file (device and inode).
#[cfg(unix)]
fn same_file(file: &std::fs::File, other: &impl std::os::fd::AsFd) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(other) = other.as_fd().try_clone_to_owned().map(std::fs::File::from) else {
        return true;
    };
    match (file.metadata(), other.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => true,
    }
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
