//! `writ-dev`: the developer's tools, kept out of the shipped `writ` binary's commands: the
//! log's kill-and-reopen crash test (and the child process it kills), the log's append and
//! proof benchmarks, the engine's re-evaluation-on-activation, shadow-bundle and
//! verification-loop benchmarks and the hook's round-trip benchmark. Built beside `writ`
//! (`cargo build --release -p writ`), run from the build directory: `target/release/writ-dev
//! log crashtest`, `writ-dev log bench`, `writ-dev engine reevaluate`, `writ-dev engine
//! shadow`, `writ-dev engine verify-loop`, `writ-dev hook bench`.
//!
//! It shares the `writ` crate's modules that do the work (by path, as the integration tests
//! share the HTTP client), so the figures and the crash test measure the same code the
//! product runs.

/// The same allocator as `writ`, so that the benchmarks measure what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benchkit.rs"]
mod benchkit;
#[path = "../crashtest.rs"]
mod crashtest;
#[path = "../datadir.rs"]
#[allow(dead_code, reason = "the data directory module of `writ`; the crash test uses only its log parts")]
mod datadir;
#[path = "../hookbench.rs"]
mod hookbench;
#[path = "../logbench.rs"]
mod logbench;
#[path = "../reevalbench.rs"]
mod reevalbench;
#[path = "../shadowbench.rs"]
mod shadowbench;
#[path = "../verifybench.rs"]
mod verifybench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "writ-dev", version, about = "writ's developer tools: the log's crash test and benchmarks")]
struct Cli {
    /// Data directory [default: writ-data].
    #[arg(long, global = true, env = "WRIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The tamper-evident log's developer tools.
    #[command(subcommand)]
    Log(LogCommand),
    /// The decision engine's benchmarks.
    #[command(subcommand)]
    Engine(EngineCommand),
    /// The hook enforcement points' developer tools.
    #[command(subcommand)]
    Hook(HookCommand),
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Re-evaluation on activation: writs re-evaluated per second, and the time from the
    /// activation to the last revocation in an enforcement point's view of the feed.
    Reevaluate(reevalbench::Args),
    /// The shadow bundle's cost: decisions per second with no shadow and with one, in
    /// alternating rounds of the same load in one run, and their ratio.
    Shadow(shadowbench::Args),
    /// The verification loop's cost on the decision rate: decisions per second with the
    /// loop off, running at a short interval, and off again, and the ratio.
    VerifyLoop(verifybench::Args),
}

#[derive(Subcommand)]
enum HookCommand {
    /// The round trip of `writ hook claude-code` as a process, against a running control
    /// plane on loopback (PreToolUse and PostToolUse, p50/p99).
    Bench(hookbench::Args),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Kill-and-reopen crash test: appends under concurrency in a child process, SIGKILLs
    /// it at random moments, and checks every acknowledged append survived.
    Crashtest(crashtest::Args),
    /// Append and proof benchmarks against a fresh store.
    Bench(logbench::Args),
    /// (internal) the child process of `crashtest`.
    #[command(hide = true)]
    CrashChild {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = datadir::DataDir::new(cli.data_dir.as_deref().unwrap_or(std::path::Path::new("writ-data")));
    let result = match cli.command {
        Command::Log(LogCommand::Crashtest(args)) => crashtest::run(&dir, args),
        Command::Log(LogCommand::Bench(args)) => logbench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Engine(EngineCommand::Reevaluate(args)) => reevalbench::run(args),
        Command::Engine(EngineCommand::Shadow(args)) => shadowbench::run(args),
        Command::Engine(EngineCommand::VerifyLoop(args)) => verifybench::run(args),
        Command::Hook(HookCommand::Bench(args)) => hookbench::run(args),
        Command::Log(LogCommand::CrashChild { concurrency }) => {
            crashtest::child(&dir, concurrency).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("writ-dev: {e:#}");
            ExitCode::from(2)
        }
    }
}
