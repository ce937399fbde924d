//! `writ exec -- <command> [args]`: governed command execution's command line. The
//! enforcement point itself is `writ_enforce::exec`; this module resolves its flags and
//! environment and runs it on a single-threaded runtime (one decision, one child).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use writ_enforce::exec::{self, Config};

use crate::agent::{self, AgentArgs, parse_duration};

/// `writ exec`'s flags.
#[derive(Debug, clap::Args)]
#[command(after_help = "The command is the action `exec` on the resource `exec:<absolute program path>` (audience \
                        `exec`); the policy sees context.arguments.program, .args (a set), .command_line, .cwd and \
                        .env (names of environment variables that are set, never their values).\n\nExit status: the \
                        command's (128 + N when signal N ended it); 77 when it was not authorized (denied, pending, \
                        control plane unreachable: `writ: denied: <code>: <reason>` on standard error) or was \
                        stopped because its authority ended (its writ's renewal refused, or expired unrenewed: \
                        SIGTERM, then SIGKILL after --stop-grace); 127 not \
                        found, 126 not executable (before anything is asked); 2 for a usage error.\n\nExample:\n  \
                        writ exec --credential-file agent.jwt -- git status")]
pub struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// Names of environment variables whose presence the policy sees (`context.arguments.env`),
    /// beyond the default list (PATH, HOME, USER, SHELL, LD_PRELOAD, LD_LIBRARY_PATH,
    /// LD_AUDIT, DYLD_INSERT_LIBRARIES, DYLD_LIBRARY_PATH, BASH_ENV, ENV, PYTHONPATH,
    /// PYTHONSTARTUP, NODE_OPTIONS, PERL5OPT, RUBYOPT). Values are never sent.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    env_names: Vec<String>,
    /// How long to wait for an operator's approval of a command that needs one (e.g. `5m`);
    /// 0 denies at once (exit status 77) while approval is pending.
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DURATION")]
    approval_wait: Duration,
    /// Once the command's authority ends while it runs (a renewal of its writ refused, or
    /// the writ expired before it could be renewed), how long it has after SIGTERM before
    /// SIGKILL (e.g. `10s`; 0 kills at once).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    stop_grace: Duration,
    /// The control plane's name (the `iss` of its writs).
    #[arg(long, default_value = "writ", value_name = "NAME")]
    issuer: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs the command if the control plane allows it; the exit status is the command's.
pub fn run(args: Args, data_dir: &std::path::Path) -> Result<ExitCode> {
    let config = Config {
        url: args.agent.url.clone(),
        // No credential configured is a deny (identity.missing, exit 77), not a usage error.
        credential: args.agent.credential_source().ok(),
        parent_writ: agent::parent_writ(),
        issuer: args.issuer,
        env_names: args.env_names,
        approval_wait: args.approval_wait,
        decision_timeout: args.agent.decision_timeout,
        writ_keys: args.agent.keys.path(data_dir),
        command: args.command,
        stop_grace: args.stop_grace,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let code = rt.block_on(exec::run(config));
    Ok(ExitCode::from(code))
}
