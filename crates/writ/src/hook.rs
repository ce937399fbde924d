//! `writ hook claude-code` and `writ hook exec-request`: the hook enforcement points'
//! command line. The hooks themselves are `writ_enforce::hook`; this module resolves flags
//! and environment (the control plane, the agent's credential, the parent writ), reads one
//! event from standard input (bounded), and prints the answer. Every failure, including a
//! flag or credential that cannot be used, is a deny with exit status 2, never a pass.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use writ_enforce::control::CredentialSource;
use writ_enforce::hook::{self, Answer, Config, MAX_INPUT, Mode};

use crate::agent::parse_duration;

/// `writ hook`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A Claude Code hook: reads one PreToolUse event on standard input and prints the
    /// decision (`permissionDecision` allow, deny or ask); with a PostToolUse or
    /// PostToolUseFailure event, records the call's outcome. Exit status 2 (the reason on
    /// standard error) when no decision could be had.
    #[command(
        after_help = "Install in .claude/settings.json (docs/agent-actions.md):\n  {\"hooks\": {\"PreToolUse\": \
                            [{\"matcher\": \"*\", \"hooks\": [{\"type\": \"command\", \"command\": \"writ hook \
                            claude-code\", \"timeout\": 10}]}],\n             \"PostToolUse\": [{\"matcher\": \"*\", \
                            \"hooks\": [{\"type\": \"command\", \"command\": \"writ hook claude-code --post\", \
                            \"timeout\": 10}]}]}}"
    )]
    ClaudeCode {
        #[command(flatten)]
        common: Common,
        /// Accept only PostToolUse / PostToolUseFailure events (record the outcome).
        #[arg(long)]
        post: bool,
        /// Where the hook keeps the writs of calls awaiting their outcome and the session's
        /// sub-agent lineage [default: $XDG_RUNTIME_DIR/writ-hook, else
        /// ~/.local/state/writ/hook].
        #[arg(long, env = "WRIT_HOOK_STATE_DIR", value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// The generic hook protocol: reads an execution request `{action, resource, arguments,
    /// audience?, parent_writ?}` (JSON) on standard input and prints `{"decision": "allow",
    /// "writ", "decision_id", "log_index"}` (exit status 0) or `{"decision": "deny",
    /// "reason", "reasons", "detail"}` (exit status 2).
    ExecRequest {
        #[command(flatten)]
        common: Common,
    },
}

/// Flags shared by both hooks (the same as `writ mcp`'s).
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The control plane's base URL.
    #[arg(long, env = "WRIT_URL", default_value = "http://127.0.0.1:7070", value_name = "URL")]
    url: String,
    /// A file holding the agent's workload credential (a JWT).
    #[arg(long, value_name = "FILE", conflicts_with = "credential_command")]
    credential_file: Option<PathBuf>,
    /// A command (run with `sh -c`) that prints the agent's workload credential.
    #[arg(long, value_name = "CMD")]
    credential_command: Option<String>,
    /// The deadline for each request to the control plane: slower (or unreachable) is a
    /// deny (`log.unavailable`). Keep it well below the agent CLI's hook timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    decision_timeout: Duration,
    /// How long to wait for an operator's approval of a call that needs one before
    /// answering that it is pending (Claude Code: `ask`).
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DURATION")]
    approval_wait: Duration,
    /// The whole run's deadline (credential, decision, approval wait, retries): past it the
    /// call is denied. Keep it below the hook's `timeout` in the agent CLI's settings.
    #[arg(long, default_value = "8s", value_parser = parse_duration, value_name = "DURATION")]
    deadline: Duration,
    #[command(flatten)]
    keys: crate::agent::WritKeysArg,
}

/// Runs one hook and prints its answer; the exit status is the answer's.
pub fn run(command: Command, data_dir: &Path) -> ExitCode {
    let (common, state_dir, mode, claude) = match command {
        Command::ClaudeCode { common, post, state_dir } => {
            (common, state_dir, if post { Mode::Post } else { Mode::Event }, true)
        }
        Command::ExecRequest { common } => (common, None, Mode::Event, false),
    };
    let answer = match answer(common, state_dir, mode, claude, data_dir) {
        Ok(a) => a,
        Err(why) => Answer { stdout: None, stderr: Some(format!("writ denied this call: {why}")), exit: 2 },
    };
    if let Some(out) = &answer.stdout {
        println!("{out}");
    }
    if let Some(err) = &answer.stderr {
        eprintln!("{err}");
    }
    ExitCode::from(answer.exit)
}

fn answer(
    common: Common,
    state_dir: Option<PathBuf>,
    mode: Mode,
    claude: bool,
    data_dir: &Path,
) -> Result<Answer, String> {
    let credential = if let Some(path) = common.credential_file {
        CredentialSource::File(path)
    } else if let Some(cmd) = common.credential_command {
        CredentialSource::Command(cmd)
    } else if let Ok(token) = std::env::var("WRIT_AGENT_CREDENTIAL") {
        CredentialSource::Value(token)
    } else {
        return Err("identity.missing: no agent credential: give --credential-file FILE, --credential-command CMD, \
                    or set WRIT_AGENT_CREDENTIAL"
            .into());
    };
    let parent_writ = std::env::var("WRIT_PARENT_WRIT").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let config = Config {
        url: common.url,
        credential,
        parent_writ,
        decision_timeout: common.decision_timeout,
        writ_keys: common.keys.path(data_dir),
        approval_wait: common.approval_wait,
        deadline: common.deadline,
        state_dir,
    };
    let mut input = Vec::new();
    let limit = u64::try_from(MAX_INPUT).unwrap_or(u64::MAX).saturating_add(1);
    std::io::stdin()
        .take(limit)
        .read_to_end(&mut input)
        .map_err(|e| format!("request.malformed: reading standard input: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("internal: starting the runtime: {e}"))?;
    Ok(rt.block_on(async {
        if claude { hook::claude_code(&config, mode, &input).await } else { hook::exec_request(&config, &input).await }
    }))
}
