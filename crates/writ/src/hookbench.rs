//! `writ-dev hook bench`: the round trip of `writ hook claude-code` as the agent CLI sees
//! it: a process started, one event written to its standard input, its decision read, the
//! process reaped. Sequential runs against a running control plane (loopback only), each a
//! `Read` call the starter bundle allows, each followed by its `PostToolUse` (timed apart);
//! latency percentiles with HdrHistogram. Beside them, the same process answering an event
//! it refuses before asking anything (`{}`: exit status 2), which is what starting the
//! process and reading its input costs alone.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use serde_json::json;

/// `writ-dev hook bench`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's base URL (a loopback address).
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    url: String,
    /// The agent's workload credential (`writ identity issue … > agent.jwt`).
    #[arg(long, value_name = "FILE")]
    credential_file: PathBuf,
    /// The control plane's writ signing keys (its `trust/jwks.json`), handed to the hook as
    /// `--jwks` [default: the hook's own, `WRIT_JWKS` or `<data-dir>/trust/jwks.json`].
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
    /// The `writ` binary to run [default: `writ` beside this program].
    #[arg(long, value_name = "PATH")]
    writ: Option<PathBuf>,
    /// Measured round trips (each a PreToolUse and its PostToolUse).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    runs: u32,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 20)]
    warmup: u32,
}

fn once(writ: &std::path::Path, args: &Args, state: &std::path::Path, event: &[u8], ok: bool) -> Result<Duration> {
    let started = Instant::now();
    let mut command = Command::new(writ);
    command.args(["hook", "claude-code", "--url", &args.url, "--credential-file"]).arg(&args.credential_file);
    if let Some(jwks) = &args.jwks {
        command.arg("--jwks").arg(jwks);
    }
    let mut child = command
        .arg("--state-dir")
        .arg(state)
        .env_remove("WRIT_PARENT_WRIT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", writ.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(event)?;
    }
    let out = child.wait_with_output()?;
    let took = started.elapsed();
    if out.status.success() != ok {
        bail!("the hook answered {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let addr = writ_enforce::client::resolve_base_url(&args.url)?;
    if !addr.ip().is_loopback() {
        bail!("{} is not a loopback address: the bench runs against loopback only", addr.ip());
    }
    let writ = match &args.writ {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("writ"),
    };
    let state = std::env::temp_dir().join(format!("writ-hook-bench-{}", std::process::id()));
    let mut pre = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut post = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let cwd = "/zones/billing";
    for i in 0..args.warmup.saturating_add(args.runs) {
        let base = json!({"session_id": "bench", "transcript_path": "/dev/null", "cwd": cwd,
                          "tool_name": "Read", "tool_input": {"file_path": "report.csv"},
                          "tool_use_id": format!("toolu_bench_{i}")});
        let mut pre_event = base.clone();
        let mut post_event = base;
        if let (Some(a), Some(b)) = (pre_event.as_object_mut(), post_event.as_object_mut()) {
            a.insert("hook_event_name".into(), json!("PreToolUse"));
            b.insert("hook_event_name".into(), json!("PostToolUse"));
            b.insert("tool_response".into(), json!({"content": "a,b\n1,2\n"}));
        }
        let a = once(&writ, &args, &state, &serde_json::to_vec(&pre_event)?, true)?;
        let b = once(&writ, &args, &state, &serde_json::to_vec(&post_event)?, true)?;
        let c = once(&writ, &args, &state, b"{}", false)?;
        if i >= args.warmup {
            pre.record(u64::try_from(a.as_micros()).unwrap_or(u64::MAX))?;
            post.record(u64::try_from(b.as_micros()).unwrap_or(u64::MAX))?;
            local.record(u64::try_from(c.as_micros()).unwrap_or(u64::MAX))?;
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    let summary = |h: &Histogram<u64>| {
        json!({"p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99),
               "max_us": h.max(), "mean_us": h.mean().round()})
    };
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({"runs": args.runs, "pre_tool_use": summary(&pre), "post_tool_use": summary(&post),
                    "refused_locally": summary(&local)})
        )?
    );
    Ok(ExitCode::SUCCESS)
}
