//! Governed command execution (`writ exec -- <command> [args]`): one command, authorized
//! before it runs, run only on allow, its outcome recorded.
//!
//! 1. The program is resolved as `execvp(3)` does ([`resolve`]); a command not found
//!    (status 127) or not executable (126) is reported at once, as a shell does: the
//!    resource names the resolved program, so there is nothing to authorize, and nothing
//!    runs.
//! 2. The execution request ([`ExecRequest`]: action `exec`, resource `exec:<program>`,
//!    audience `exec`) is decided by the control plane (`POST /v1/authorize`, with the
//!    parent writ when one is given), while its writ keys are fetched
//!    (`GET /.well-known/jwks.json`). Pending approval is waited for up to the configured
//!    wait. Every deny, a control plane unreachable or slower than the deadline
//!    (`log.unavailable`) and an approval still pending are [`EXIT_DENIED`] (77,
//!    `EX_NOPERM` of `sysexits.h`), with `writ: denied: <code>: <reason>` on standard error.
//! 3. The writ is verified as any enforcement point verifies it (`writ_verify`: signature
//!    by a key of the control plane's JWKS, issuer, time, audience `exec`, and the `req`
//!    binding recomputed from the request sent, RFC 8785 and SHA-256); a writ that does not
//!    verify is a deny.
//! 4. The command runs with its writ in `WRIT_PARENT_WRIT`, so that the `writ exec` and
//!    `writ mcp` it starts are lineage children of this execution (by possession of the
//!    parent writ). SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to it
//!    (SIGINT and SIGQUIT only when they cannot have come from the terminal, which sends
//!    them to the command itself); one that arrives before the command starts stops
//!    everything: nothing runs, and the status is 128 + the signal's number.
//! 5. While it runs, its writ is renewed (`POST /v1/renew`) at two thirds of its lifetime:
//!    each renewal is a new decision under the bundle active then, and its new writ is
//!    verified as in 3. A control plane that cannot answer (`log.unavailable`, `internal`)
//!    is asked again (from 250 ms, doubling, at most every 5 s) until the writ expires. The
//!    command's authority ends when a renewal is refused (a deny, or an approval it would
//!    need) or its writ expires unrenewed (`writ.expired`): it is sent SIGTERM, then
//!    SIGKILL after the stop grace (`--stop-grace`), `writ: denied: <code>: <reason>; the
//!    command's authority ended …` goes to standard error, its outcome is `stopped` with the
//!    reason, and `writ exec` exits 77.
//! 6. Its outcome (`POST /v1/outcomes`, under the writ held last: `succeeded` on exit
//!    status 0, `failed` otherwise, `not_run` if it could not be started, `stopped` as in 5)
//!    is recorded with the exit status or signal, the duration and the renewals, and
//!    `writ exec` exits with the command's status (128 + the signal's number when a signal
//!    ended it, as shells report it).

mod request;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::mpsc;
use writ_core::ReasonCode;

pub use request::{
    ACTION, AUDIENCE, Access, DEFAULT_ENV_NAMES, DEFAULT_PATH, ExecRequest, SHELL, Unrunnable, command_line,
    present_env_names, resolve,
};

use crate::control::{ControlPlane, CredentialSource, Denial, Verdict};

/// The exit status of a command that was not run because it was not authorized
/// (`EX_NOPERM`, sysexits.h): denied, pending, undecidable or a writ that did not verify.
pub const EXIT_DENIED: u8 = 77;

/// The environment variable the command finds its writ in.
pub const PARENT_WRIT_ENV: &str = "WRIT_PARENT_WRIT";

/// Attempts at recording the outcome.
const OUTCOME_ATTEMPTS: u32 = 3;

/// The signals forwarded to the command.
const FORWARDED: [(i32, &str); 6] = [
    (libc_sig::HUP, "SIGHUP"),
    (libc_sig::INT, "SIGINT"),
    (libc_sig::QUIT, "SIGQUIT"),
    (libc_sig::TERM, "SIGTERM"),
    (libc_sig::USR1, "SIGUSR1"),
    (libc_sig::USR2, "SIGUSR2"),
];

/// Signal numbers, from rustix (no C library calls).
mod libc_sig {
    use rustix::process::Signal;
    pub(super) const HUP: i32 = Signal::HUP.as_raw();
    pub(super) const INT: i32 = Signal::INT.as_raw();
    pub(super) const QUIT: i32 = Signal::QUIT.as_raw();
    pub(super) const TERM: i32 = Signal::TERM.as_raw();
    pub(super) const USR1: i32 = Signal::USR1.as_raw();
    pub(super) const USR2: i32 = Signal::USR2.as_raw();
}

/// `writ exec`'s configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The control plane's base URL (`http://host:port`).
    pub url: String,
    /// Where the agent's workload credential comes from; `None` denies (`identity.missing`).
    pub credential: Option<CredentialSource>,
    /// The parent writ presented with the decision (lineage), from `WRIT_PARENT_WRIT`.
    pub parent_writ: Option<String>,
    /// The control plane's name, the `iss` of its writs.
    pub issuer: String,
    /// Environment variable names the policy sees the presence of, beyond
    /// [`DEFAULT_ENV_NAMES`].
    pub env_names: Vec<String>,
    /// How long to wait for an operator's approval.
    pub approval_wait: Duration,
    /// The control plane's writ signing keys, a JWKS file (its `trust/jwks.json`): the only
    /// keys the writ of an allow is verified with.
    pub writ_keys: PathBuf,
    /// The deadline of every request to the control plane.
    pub decision_timeout: Duration,
    /// The command: the program as given, then its arguments.
    pub command: Vec<String>,
    /// Once the command's authority ends (a renewal refused, or its writ expired before a
    /// renewal could be obtained), how long after SIGTERM it has before SIGKILL.
    pub stop_grace: Duration,
}

/// Runs the command if it is authorized; answers the exit status `writ exec` ends with.
/// Messages for the user go to standard error, prefixed `writ: `.
pub async fn run(config: Config) -> u8 {
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return deny_local(ReasonCode::Internal, &format!("cannot handle signals: {e}")),
    };
    // 1. What would run.
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => return deny_local(ReasonCode::RequestMalformed, &format!("the working directory: {e}")),
    };
    let Some(name) = config.command.first() else {
        return deny_local(ReasonCode::RequestMalformed, "no command: writ exec [options] -- <command> [args]");
    };
    let program = match resolve(name, std::env::var_os("PATH").as_deref(), &cwd, access) {
        Ok(p) => p,
        Err(u) => {
            eprintln!("writ: {u}");
            return u.exit_status();
        }
    };
    // The policy sees paths as text: a path that is not UTF-8 would be seen as another (its
    // bytes replaced), and several such paths as one (found in review). Refused, not run.
    for (what, path) in [("the program's path", &program), ("the working directory", &cwd)] {
        if path.to_str().is_none() {
            return deny_local(
                ReasonCode::RequestMalformed,
                &format!("{what} is not UTF-8 ({}): the policy could not see it as it is", path.display()),
            );
        }
    }
    let env = present_env_names(&config.env_names, |n| std::env::var_os(n).is_some());
    let request = ExecRequest::command(&program, &config.command, &cwd, env);
    // What the writ of an allow must be bound to (`req`).
    let digest = match writ_core::request_digest(ACTION, &request.resource(), &request.arguments()) {
        Ok(d) => d,
        Err(e) => return deny_local(ReasonCode::Internal, &format!("the request's digest: {e}")),
    };
    let Some(credential) = config.credential.clone() else {
        return deny_local(
            ReasonCode::IdentityMissing,
            "no agent credential: give --credential-file FILE, --credential-command CMD, or set WRIT_AGENT_CREDENTIAL",
        );
    };
    let control = match ControlPlane::new(
        &config.url,
        credential,
        config.parent_writ.clone(),
        config.decision_timeout,
        config.writ_keys.clone(),
    ) {
        Ok(c) => c.with_issuer(&config.issuer),
        Err(e) => return deny_local(ReasonCode::RequestMalformed, &e.to_string()),
    };
    // 2. The decision (and the keys to verify its writ with), unless a signal stops it.
    let decided = async {
        let (resource, arguments) = (request.resource(), request.arguments());
        let (mut verdict, ()) =
            tokio::join!(control.authorize(ACTION, &resource, &arguments, AUDIENCE), control.prefetch_keys(AUDIENCE));
        if let Verdict::Pending { id, log_index, .. } = &verdict
            && !config.approval_wait.is_zero()
        {
            verdict = control.await_approval(id, *log_index, config.approval_wait).await;
        }
        verdict
    };
    let verdict = tokio::select! {
        d = decided => d,
        sig = signals.next() => {
            eprintln!("writ: {} before the command started: it was not run", signal_name(sig));
            return exit_for_signal(sig);
        }
    };
    let (writ, decision, log_index) = match verdict {
        Verdict::Allow { writ, id, log_index } => (writ, id, log_index),
        Verdict::Deny(d) => return deny(&d),
        Verdict::Pending { id, log_index, detail } => {
            eprintln!(
                "writ: denied: pending: {detail} (decision {id}{}); the command was not run: run it again once an \
                 operator has approved it, or give --approval-wait",
                log_note(log_index)
            );
            return EXIT_DENIED;
        }
    };
    // 3. The writ, verified as an enforcement point verifies it.
    // Just issued for this request, and used once here: revocation is the control plane's
    // (the lineage of the command's children is judged against the log). The writ of the
    // decision answered, not another: the outcome is recorded under it.
    let claims = match control.verify_allow(&writ, &decision, &digest, AUDIENCE).await {
        Ok(c) => c,
        Err(d) => {
            let d = Denial { decision: Some(decision.clone()), log_index, ..d };
            let detail = json!({"error": format!("{}: {}", d.reason, d.detail)});
            record(&control, &decision, "not_run", None, detail).await;
            return deny(&d);
        }
    };
    // 4. The command, with its writ for its children.
    let started = Instant::now();
    let Some(args) = config.command.get(1..) else {
        return deny_local(ReasonCode::Internal, "no command");
    };
    let mut child = match tokio::process::Command::new(&program)
        .arg0(name)
        .args(args)
        .env(PARENT_WRIT_ENV, &writ)
        .kill_on_drop(false)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let status = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
            eprintln!("writ: {name}: {e}");
            record(&control, &decision, "not_run", None, json!({"error": e.to_string()})).await;
            return status;
        }
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let from_terminal = terminal_signals_reach_child();
    // 5. While it runs, its writ is renewed before it expires; once its authority ends it
    // is stopped (SIGTERM, then SIGKILL after the grace).
    let mut held = Held::new(writ, decision, &claims);
    let mut stopped: Option<Denial> = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let waited = loop {
        let tick = held.next_attempt;
        tokio::select! {
            status = child.wait() => break status,
            sig = signals.next() => {
                if from_terminal && (sig == libc_sig::INT || sig == libc_sig::QUIT) {
                    continue;
                }
                if let Some(pid) = pid {
                    forward(pid, sig);
                }
            }
            () = tokio::time::sleep_until(tick), if stopped.is_none() => {
                if let Err(d) = held.renew(&control, &digest).await {
                    if let Some(pid) = pid {
                        forward(pid, libc_sig::TERM);
                    }
                    eprintln!(
                        "writ: denied: {}: {}; the command's authority ended: it was sent SIGTERM{}",
                        d.reason,
                        d.detail,
                        if config.stop_grace.is_zero() { String::new() } else {
                            format!(", and gets SIGKILL after {:?}", config.stop_grace)
                        }
                    );
                    kill_at = Some(crate::control::after(config.stop_grace));
                    stopped = Some(d);
                }
            }
            () = sleep_until_some(kill_at) => {
                kill_at = None;
                if let Some(pid) = pid {
                    forward(pid, rustix::process::Signal::KILL.as_raw());
                }
            }
        }
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // 6. The outcome (under the writ held last), and the command's status.
    let (code, outcome, mut detail) = match waited {
        Ok(status) => exit_of(status, duration_ms),
        Err(e) => (1, "failed", json!({"error": format!("waiting for the command: {e}"), "duration_ms": duration_ms})),
    };
    if let Some(obj) = detail.as_object_mut()
        && held.renewals > 0
    {
        obj.insert("renewals".into(), json!(held.renewals));
        obj.insert("first_writ".into(), json!(held.first));
    }
    let (code, outcome) = match &stopped {
        None => (code, outcome),
        Some(d) => {
            if let Some(obj) = detail.as_object_mut() {
                let mut why = json!({"reason": d.reason, "detail": d.detail});
                if let (Some(w), Some(id)) = (why.as_object_mut(), &d.decision) {
                    w.insert("decision".into(), json!(id));
                }
                obj.insert("stopped".into(), why);
            }
            (EXIT_DENIED, "stopped")
        }
    };
    record(&control, &held.jti, outcome, Some(i64::from(code)), detail).await;
    code
}

/// Sleeps until `at`, or forever when it is `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The first retry of a renewal the control plane could not answer comes this soon.
const RENEW_RETRY_FIRST: Duration = Duration::from_millis(250);

/// The writ a running command holds, and when to renew it.
struct Held {
    writ: String,
    jti: String,
    first: String,
    exp: u64,
    renewals: u32,
    next_attempt: tokio::time::Instant,
    retry: Duration,
    last_failure: Option<Denial>,
}

impl Held {
    fn new(writ: String, jti: String, claims: &writ_verify::WritClaims) -> Held {
        let mut held = Held {
            writ,
            first: jti.clone(),
            jti,
            exp: claims.exp,
            renewals: 0,
            next_attempt: tokio::time::Instant::now(),
            retry: RENEW_RETRY_FIRST,
            last_failure: None,
        };
        held.schedule(claims.iat);
        held
    }

    /// Renews at two thirds of the writ's lifetime.
    fn schedule(&mut self, iat: u64) {
        let lifetime = self.exp.saturating_sub(iat);
        let at = iat.saturating_add((lifetime.saturating_mul(2) / 3).max(1));
        self.next_attempt = instant_at(at);
        self.retry = RENEW_RETRY_FIRST;
        self.last_failure = None;
    }

    /// One attempt: `Ok` while the command keeps its authority (renewed, or a retry is
    /// scheduled before the writ expires); `Err` once it ends (a refusal, or the writ
    /// expired unrenewed).
    async fn renew(&mut self, control: &ControlPlane, digest: &writ_core::RequestDigest) -> Result<(), Denial> {
        if now_secs() >= self.exp {
            let why = self.last_failure.as_ref().map(|d| format!(" (last attempt: {}: {})", d.reason, d.detail));
            return Err(Denial::local(
                ReasonCode::WritExpired,
                format!(
                    "writ {} expired at {} before it could be renewed{}",
                    self.jti,
                    self.exp,
                    why.unwrap_or_default()
                ),
            ));
        }
        let refused = match control.renew(&self.writ).await {
            Verdict::Allow { writ, id, .. } => match control.verify_allow(&writ, &id, digest, AUDIENCE).await {
                Ok(c) => {
                    self.writ = writ;
                    self.jti = id;
                    self.exp = c.exp;
                    self.renewals = self.renewals.saturating_add(1);
                    self.schedule(c.iat);
                    return Ok(());
                }
                Err(d) => Denial { detail: format!("the renewed writ {id}: {}", d.detail), ..d },
            },
            Verdict::Pending { id, log_index, .. } => Denial {
                decision: Some(id),
                log_index,
                ..Denial::local(
                    ReasonCode::PolicyDenied,
                    "the renewal needs an operator's approval, which a running command cannot wait for",
                )
            },
            Verdict::Deny(d) if d.retryable() => {
                // Once more before the writ expires; the expiry ends it.
                let at = tokio::time::Instant::now() + self.retry;
                self.next_attempt = at.min(instant_at(self.exp));
                self.retry = (self.retry * 2).min(Duration::from_secs(5));
                self.last_failure = Some(d);
                return Ok(());
            }
            Verdict::Deny(d) => Denial { detail: format!("renewal of writ {} refused: {}", self.jti, d.detail), ..d },
        };
        Err(refused)
    }
}

/// The monotonic instant of Unix second `at` (now if it has passed).
fn instant_at(at: u64) -> tokio::time::Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::control::after(Duration::from_secs(at).saturating_sub(now))
}

/// The exit status, outcome and detail of a finished command.
fn exit_of(status: std::process::ExitStatus, duration_ms: u64) -> (u8, &'static str, serde_json::Value) {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        let outcome = if code == 0 { "succeeded" } else { "failed" };
        let exit = u8::try_from(code & 0xff).unwrap_or(1);
        return (exit, outcome, json!({"exit_status": code, "duration_ms": duration_ms}));
    }
    let sig = status.signal().unwrap_or(0);
    let name = signal_name(sig);
    (exit_for_signal(sig), "failed", json!({"signal": sig, "signal_name": name, "duration_ms": duration_ms}))
}

/// 128 + the signal's number, as shells report a command ended by a signal.
fn exit_for_signal(sig: i32) -> u8 {
    u8::try_from(128 + sig.clamp(0, 127)).unwrap_or(255)
}

fn signal_name(sig: i32) -> String {
    FORWARDED.iter().find(|(n, _)| *n == sig).map(|(_, name)| (*name).to_owned()).unwrap_or_else(|| {
        if sig == rustix::process::Signal::KILL.as_raw() { "SIGKILL".to_owned() } else { format!("signal {sig}") }
    })
}

/// Records the outcome, a few times if the control plane does not take it; a failure is
/// reported on standard error (the command has run: its status stands).
async fn record(control: &ControlPlane, jti: &str, outcome: &str, exit_code: Option<i64>, detail: serde_json::Value) {
    let detail = detail.to_string();
    for attempt in 1..=OUTCOME_ATTEMPTS {
        match control.outcome_with_exit(jti, outcome, exit_code, &detail).await {
            Ok(()) => return,
            Err(_) if attempt < OUTCOME_ATTEMPTS => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
            Err(e) => eprintln!(
                "writ: the outcome of writ {jti} ({outcome}, {detail}) was not recorded after {OUTCOME_ATTEMPTS} \
                 attempts: {e}"
            ),
        }
    }
}

fn deny(d: &Denial) -> u8 {
    let mut note = String::new();
    if let Some(id) = &d.decision {
        note = format!(" (decision {id}{})", log_note(d.log_index));
    } else if d.log_index.is_some() {
        note = format!(" ({})", log_note(d.log_index).trim_start_matches(", "));
    }
    let detail = if d.detail.is_empty() { "no detail given" } else { d.detail.as_str() };
    eprintln!("writ: denied: {}: {detail}{note}", d.reason);
    EXIT_DENIED
}

fn deny_local(code: ReasonCode, detail: &str) -> u8 {
    deny(&Denial::local(code, detail))
}

fn log_note(log_index: Option<u64>) -> String {
    log_index.map(|i| format!(", log index {i}")).unwrap_or_default()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether the file system says `p` is an executable regular file for this process.
fn access(p: &Path) -> Access {
    match std::fs::metadata(p) {
        Err(_) => Access::Missing,
        Ok(m) if !m.is_file() => Access::NotExecutable,
        Ok(_) => match rustix::fs::access(p, rustix::fs::Access::EXEC_OK) {
            Ok(()) => Access::Executable,
            Err(_) => Access::NotExecutable,
        },
    }
}

/// Sends `sig` to the command.
fn forward(pid: i32, sig: i32) {
    let (Some(pid), Some(signal)) = (rustix::process::Pid::from_raw(pid), rustix::process::Signal::from_named_raw(sig))
    else {
        return;
    };
    // Fails only once the command has exited (it is then reaped by the wait).
    let _ = rustix::process::kill_process(pid, signal);
}

/// Whether the terminal's SIGINT and SIGQUIT (Ctrl-C, Ctrl-\) reach the command without
/// us: the standard input is a terminal whose foreground process group is ours (the
/// command's too, as it stays in it). Forwarding them as well would deliver each twice.
fn terminal_signals_reach_child() -> bool {
    match rustix::termios::tcgetpgrp(std::io::stdin()) {
        Ok(fg) => fg == rustix::process::getpgrp(),
        Err(_) => false,
    }
}

/// The forwarded signals, as one stream of numbers.
struct Signals {
    rx: mpsc::UnboundedReceiver<i32>,
}

impl Signals {
    /// Handles the forwarded signals from now on (their default action, ending this
    /// process, no longer applies).
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = mpsc::unbounded_channel();
        for (sig, _) in FORWARDED {
            let mut stream = signal(SignalKind::from_raw(sig))?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Signals { rx })
    }

    /// The next signal (never ends while the handlers run).
    async fn next(&mut self) -> i32 {
        match self.rx.recv().await {
            Some(sig) => sig,
            None => std::future::pending().await,
        }
    }
}
