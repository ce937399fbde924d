//! `writ mcp`: the MCP gateway's command line, in one of two modes: `writ mcp -- <server
//! command> [args]` (stdio: the gateway runs the server and speaks to the client on its own
//! standard input and output) or `writ mcp --upstream URL [--listen ADDR]` (Streamable HTTP:
//! the gateway serves HTTP in front of a running server). The gateway itself is
//! `writ_enforce::mcp`; this module resolves its flags and environment (where the agent's
//! credential and the parent writ come from) and runs it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use writ_enforce::mcp::{self as gateway, Config, HttpOptions};

use crate::agent::{self, AgentArgs, parse_duration};

/// `writ mcp`'s flags.
#[derive(Debug, clap::Args)]
#[command(after_help = "The agent's workload credential: --credential-file, --credential-command, or the \
                        environment variable WRIT_AGENT_CREDENTIAL. A parent writ in WRIT_PARENT_WRIT makes every \
                        governed call a lineage child of it. Example:\n  writ mcp --name fs --credential-file \
                        agent.jwt -- npx -y @modelcontextprotocol/server-filesystem /srv/data\n  writ mcp --name \
                        tools --credential-file agent.jwt --upstream http://127.0.0.1:3001/mcp --listen \
                        127.0.0.1:7071")]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["command", "upstream"]))]
pub struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// The server's name S: its tools are the actions `mcp:S/<tool>` on the resource `mcp:S`
    /// [default: the command's file name without extension, lowercased; with --upstream,
    /// the upstream's host name].
    #[arg(long, value_name = "S")]
    name: Option<String>,
    /// Answer a denied call with a JSON-RPC error (code -32001) instead of a tool result
    /// with `isError: true`.
    #[arg(long)]
    deny_as_error: bool,
    /// How long to wait for an operator's approval of a call that needs one (e.g. `30s`);
    /// 0 answers at once that approval is pending.
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DURATION")]
    approval_wait: Duration,
    /// How often the active bundle is looked at, to tell the client when the tools it may
    /// call change (0: never).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    bundle_poll: Duration,
    /// Streamable HTTP mode: the running MCP server's endpoint (`http://host:port/path`) to
    /// relay to. The gateway serves the same path on --listen.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Streamable HTTP mode: the address to serve on (port 0: any free port; the URL served
    /// is printed on standard output) [default: 127.0.0.1:7071].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Streamable HTTP mode: an origin (as a browser sends it in `Origin`, e.g.
    /// `https://app.example.com`) allowed besides the loopback ones; repeatable. Requests from
    /// any other origin get 403.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Stdio mode: the MCP server command and its arguments, after `--`.
    #[arg(last = true, value_name = "SERVER COMMAND")]
    command: Vec<String>,
}

/// The default server name of an upstream URL: its host, lowercased, every character outside
/// `[a-z0-9_-]` replaced by `-`.
fn upstream_name(url: &str) -> String {
    let host = url.parse::<hyper::Uri>().ok().and_then(|u| u.host().map(str::to_owned)).unwrap_or_default();
    let name: String = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    if name.is_empty() { "-".to_owned() } else { name }
}

/// Runs the gateway: in stdio mode until the server exits (its exit status is the
/// server's), in HTTP mode until interrupted.
pub fn run(args: Args, data_dir: &std::path::Path) -> Result<ExitCode> {
    if args.upstream.is_none() && (args.listen.is_some() || !args.allow_origin.is_empty()) {
        bail!("--listen and --allow-origin belong to the Streamable HTTP mode: give --upstream URL, not a command");
    }
    let credential = args.agent.credential_source()?;
    let name = match (&args.name, &args.upstream) {
        (Some(n), _) => n.clone(),
        (None, Some(url)) => upstream_name(url),
        (None, None) => gateway::server_name(args.command.first().map(String::as_str).unwrap_or_default()),
    };
    if !gateway::valid_server_name(&name) {
        bail!("--name {name:?}: a server name is [a-z0-9_-]+ (at most 64 characters)");
    }
    let parent_writ = agent::parent_writ();
    let config = Config {
        url: args.agent.url,
        name,
        credential,
        parent_writ,
        deny_as_error: args.deny_as_error,
        approval_wait: args.approval_wait,
        decision_timeout: args.agent.decision_timeout,
        writ_keys: args.agent.keys.path(data_dir),
        bundle_poll: args.bundle_poll,
        command: args.command,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    if let Some(upstream) = args.upstream {
        let options = HttpOptions { upstream, allowed_origins: args.allow_origin };
        let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        rt.block_on(serve_http(config, options, listen))?;
        rt.shutdown_timeout(Duration::from_millis(100));
        return Ok(ExitCode::SUCCESS);
    }
    let code = rt.block_on(async {
        let (input, output) = stdio();
        gateway::run(config, input, output).await
    });
    // The standard input's reader is a blocking thread that may still wait for a line.
    rt.shutdown_timeout(Duration::from_millis(100));
    let code = code?;
    Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
}

/// Where the HTTP mode listens unless told.
const DEFAULT_LISTEN: &str = "127.0.0.1:7071";

/// The HTTP mode: binds `listen`, prints the URL served, serves until SIGINT or SIGTERM.
async fn serve_http(config: Config, options: HttpOptions, listen: &str) -> Result<()> {
    let path = options.path()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {listen}: cannot listen: {e}"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "writ mcp: listening on {addr}, which is not a loopback address: anyone who can reach it can use the \
             agent's credential through the gateway"
        );
    }
    println!("writ mcp: serving http://{addr}{path} (upstream {}, server name {})", options.upstream, config.name);
    gateway::serve_http(config, options, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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
    fn upstream_names() {
        assert_eq!(upstream_name("http://127.0.0.1:3001/mcp"), "127-0-0-1");
        assert_eq!(upstream_name("http://Tools.Internal:80/mcp"), "tools-internal");
        assert_eq!(upstream_name("http://[::1]:3001/"), "--1");
    }
}
