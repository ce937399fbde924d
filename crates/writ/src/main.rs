//! `writ`: the command-line tool of writ (SPEC.md §4).
//!
//! This binary is the edge: it parses arguments, opens the data directory and prints
//! results; the work is done by the library crates. Errors become a message on stderr and
//! a non-zero exit status.

/// mimalloc: allocation and freeing were ≈ 17% of the server's CPU under load with the
/// system allocator (BENCHMARKS.md, Phase 3).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod bench;
mod client;
mod config;
mod datadir;
mod demo;
mod engcmd;
mod exec;
mod hook;
mod logcmd;
mod mcp;
mod remote;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "writ", version, about = "Execution trust for autonomous AI systems")]
struct Cli {
    /// Data directory holding keys and stores [default: writ-data].
    #[arg(long, global = true, env = "WRIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The control plane: the HTTP API on the embedded default (creates the data directory
    /// and activates the starter bundle on first start).
    Serve(config::ServeArgs),
    /// Load generator: authorizations and verifications against a running `writ serve`
    /// (loopback only), with throughput and latency percentiles.
    Bench(bench::Args),
    /// A simulated fleet of agents against a running `writ serve`: every behaviour, with a
    /// summary by outcome and reason (exits non-zero if a step did not go as expected).
    Demo(demo::Args),
    /// The tamper-evident log: audit it from the shell.
    #[command(subcommand)]
    Log(logcmd::LogCommand),
    /// Keys: generate all, rotate the writ signing key.
    #[command(subcommand)]
    Keys(engcmd::KeysCommand),
    /// Development identities: credentials and attestations from the local issuer.
    #[command(subcommand)]
    Identity(engcmd::IdentityCommand),
    /// Policy bundles: check, test, evaluate one request, sign, activate (here or on a
    /// running server with `--url`), replay a candidate against history.
    #[command(subcommand)]
    Policy(engcmd::PolicyCommand),
    /// The node's self-verification: run the verification loop once (`--url`: on a running
    /// server, else over the data directory). Exit status 1 when a check fails.
    #[command(subcommand)]
    Health(engcmd::HealthCommand),
    /// Quarantine: isolate or release identities (recorded in the log; `--url` acts on a
    /// running server).
    Quarantine(engcmd::QuarantineArgs),
    /// Revoke a writ (recorded in the log): it no longer verifies or serves as a parent.
    Revoke {
        /// The writ id (`jti`).
        jti: String,
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// One decision: a request (JSON file, `-` for stdin) with its credentials in, the
    /// decision (JSON) out. Exit status 0 on allow, 1 on deny or pending.
    Authorize {
        #[arg(long)]
        request: PathBuf,
        /// Ask the `writ serve` at this base URL instead of deciding on the data directory.
        #[arg(long, env = "WRIT_URL", value_name = "URL")]
        url: Option<String>,
    },
    /// One renewal: `{"writ": …, "credentials": {"workload": …}}` (JSON file, `-` for
    /// stdin) in, the renewal decision (JSON) out: the writ's recorded request decided
    /// again under the bundle active now. Exit status 0 on allow, 1 otherwise.
    Renew {
        #[arg(long)]
        request: PathBuf,
        /// Ask the `writ serve` at this base URL instead of deciding on the data directory.
        #[arg(long, env = "WRIT_URL", value_name = "URL")]
        url: Option<String>,
    },
    /// The MCP gateway: runs an MCP server (stdio, `-- <command>`) or fronts a running one
    /// (Streamable HTTP, `--upstream URL`) and governs every `tools/call` of it through the
    /// control plane at `--url`; everything else passes through.
    Mcp(mcp::Args),
    /// Governed command execution: authorizes the command with the control plane at
    /// `--url`, runs it only on allow (its writ in WRIT_PARENT_WRIT for its children), records
    /// its outcome and exits with its status (77 when it was not authorized).
    Exec(exec::Args),
    /// Hooks for agent CLIs and frameworks: one decision per tool call, asked of the
    /// control plane at `--url` (`claude-code`: Claude Code's PreToolUse/PostToolUse hooks;
    /// `exec-request`: a generic JSON execution request). Exit status 2 on a deny the hook
    /// could not get a decision for.
    #[command(subcommand)]
    Hook(hook::Command),
    /// One verification at an enforcement point: does this writ authorize this request?
    /// Trusts public keys only (a JWKS file or URL); single use across concurrent runs.
    Verify(engcmd::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = datadir::DataDir::new(cli.data_dir.as_deref().unwrap_or(std::path::Path::new("writ-data")));
    let result = match cli.command {
        Command::Serve(args) => {
            config::resolve(&args, cli.data_dir.clone()).and_then(|c| serve::run(&c)).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(&dir, args),
        Command::Demo(args) => demo::run(&dir, args),
        Command::Log(cmd) => logcmd::run(&dir, cmd),
        Command::Keys(cmd) => engcmd::keys(&dir, cmd),
        Command::Identity(cmd) => engcmd::identity(&dir, cmd),
        Command::Policy(cmd) => engcmd::policy(&dir, cmd),
        Command::Health(cmd) => engcmd::health(&dir, cmd),
        Command::Quarantine(args) => engcmd::quarantine(&dir, args),
        Command::Revoke { jti, reason, remote } => engcmd::revoke(&dir, &jti, &reason, &remote),
        Command::Authorize { request, url } => engcmd::authorize(&dir, &request, url),
        Command::Renew { request, url } => engcmd::renew(&dir, &request, url),
        Command::Verify(args) => engcmd::verify(&dir, &args),
        Command::Mcp(args) => mcp::run(args, dir.root()),
        Command::Exec(args) => exec::run(args, dir.root()),
        Command::Hook(cmd) => Ok(hook::run(cmd, dir.root())),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("writ: {e:#}");
            ExitCode::from(2)
        }
    }
}
