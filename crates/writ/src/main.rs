//! `writ`: the command-line tool of writ (SPEC.md §4).
//!
//! This binary is the edge: it parses arguments, opens the data directory and prints
//! results; the work is done by the library crates. Errors become a message on stderr and
//! a non-zero exit status.

mod crashtest;
mod datadir;
mod logbench;
mod logcmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "writ", version, about = "Execution trust for autonomous AI systems")]
struct Cli {
    /// Data directory holding keys and stores.
    #[arg(long, global = true, env = "WRIT_DATA_DIR", default_value = "writ-data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The tamper-evident log: audit it from the shell.
    #[command(subcommand)]
    Log(logcmd::LogCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = datadir::DataDir::new(&cli.data_dir);
    let result = match cli.command {
        Command::Log(cmd) => logcmd::run(&dir, cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("writ: {e:#}");
            ExitCode::from(2)
        }
    }
}
