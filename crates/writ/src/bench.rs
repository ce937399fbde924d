//! `writ bench`: a load generator against a running control plane, over HTTP/1.1 keep-alive
//! connections (one request in flight per connection). It mints its workload credentials with
//! the data directory's development issuer (so it must share the server's `--data-dir`),
//! asks for the starter bundle's always-allowed `read`, and reports throughput, latency
//! percentiles per operation (HdrHistogram), answers by HTTP status and by outcome, and
//! errors by kind. Load goes to loopback only unless `--allow-remote`.
//!
//! Modes: `authorize` (decisions only); `verify` (each connection gets one writ before the
//! run, then verifies it over and over: after the first, the answer is `writ.replayed`, which
//! the server reaches only after the signature, time, audience, binding and revocation
//! checks, so each verification costs what a successful one does); `mixed` (each connection
//! authorizes, then verifies the writ it just got for the exact request, as an enforcement
//! point would); `renew` (each connection gets one writ before the run, then renews the writ
//! it holds over and over, `POST /v1/renew`: a chain of renewals, each a decision recorded
//! under the active bundle and a new writ, as a long-running execution renews).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use hyper::Method;
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use writ_core::SpiffeId;
use writ_identity::IssueRequest;

use crate::client::{Conn, resolve_base_url};
use crate::datadir::DataDir;

/// Most connections.
const MAX_CONNECTIONS: u32 = 4096;
/// Longest measured run.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// Longest warm-up.
const MAX_WARMUP: Duration = Duration::from_secs(60);
/// One request may take this long before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct outcome names kept per operation; further ones are counted as `other`.
const MAX_OUTCOME_KINDS: usize = 32;
/// The resource and arguments of every request: the starter bundle permits `read` anywhere.
const ACTION: &str = "read";
const RESOURCE: &str = "fs:/zones/billing";
const PATH_ARGUMENT: &str = "/zones/billing/report.csv";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `POST /v1/authorize` only.
    Authorize,
    /// `POST /v1/verify` only (one writ per connection, verified over and over).
    Verify,
    /// Each connection authorizes, then verifies the writ it got.
    Mixed,
    /// `POST /v1/renew` only (one writ per connection, then the chain of its renewals).
    Renew,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Authorize => "authorize",
            Mode::Verify => "verify",
            Mode::Mixed => "mixed",
            Mode::Renew => "renew",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The control plane's base URL.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    url: String,
    /// Concurrent keep-alive connections, one request in flight on each (at most 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    connections: u32,
    /// How long to measure, after the warm-up (`10s`, `500ms`, `2m`; at most 600s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before measuring, excluded from the figures (at most 60s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// What to ask.
    #[arg(long, value_enum, default_value_t = Mode::Authorize)]
    mode: Mode,
    /// Distinct SPIFFE subjects (default: one per connection, so that the engine's
    /// per-(subject, action) serial lock does not serialise the connections).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    subjects: Option<u32>,
    /// Worker threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
}

/// Parses `10s`, `250ms`, `2m` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number.parse().map_err(|_| format!("{s:?}: expected a duration such as 10s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The operations timed separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Authorize,
    Verify,
    Renew,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Authorize => "authorize",
            Op::Verify => "verify",
            Op::Renew => "renew",
        }
    }
}

/// What one connection saw in the measured window.
struct Stats {
    latency: BTreeMap<Op, Histogram<u64>>,
    status: BTreeMap<u16, u64>,
    outcomes: BTreeMap<Op, BTreeMap<String, u64>>,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn new() -> Result<Self> {
        let mut latency = BTreeMap::new();
        for op in [Op::Authorize, Op::Verify, Op::Renew] {
            // Microseconds, 1 µs to 60 s, 3 significant digits.
            latency.insert(op, Histogram::new_with_bounds(1, 60_000_000, 3)?);
        }
        Ok(Stats { latency, status: BTreeMap::new(), outcomes: BTreeMap::new(), errors: BTreeMap::new() })
    }

    fn outcome(&mut self, op: Op, name: String) {
        let per_op = self.outcomes.entry(op).or_default();
        let key = if per_op.contains_key(&name) || per_op.len() < MAX_OUTCOME_KINDS { name } else { "other".into() };
        *per_op.entry(key).or_default() += 1;
    }

    fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    fn merge(&mut self, other: Stats) -> Result<()> {
        for (op, h) in other.latency {
            if let Some(mine) = self.latency.get_mut(&op) {
                mine.add(&h)?;
            }
        }
        for (k, v) in other.status {
            *self.status.entry(k).or_default() += v;
        }
        for (op, m) in other.outcomes {
            for (k, v) in m {
                let per_op = self.outcomes.entry(op).or_default();
                let key = if per_op.contains_key(&k) || per_op.len() < MAX_OUTCOME_KINDS { k } else { "other".into() };
                *per_op.entry(key).or_default() += v;
            }
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        Ok(())
    }

    fn count(&self, op: Op) -> u64 {
        self.latency.get(&op).map_or(0, Histogram::len)
    }
}

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
struct Live {
    /// Answers and failures, warm-up included.
    done: AtomicU64,
    /// Answers and failures within the measured window.
    measured: AtomicU64,
    /// Failures, warm-up included.
    errors: AtomicU64,
}

/// The window in which answers are counted.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Window {
    fn counts(&self, at: Instant) -> bool {
        at >= self.measure_from && at <= self.end
    }
}

/// One connection's fixed material.
struct Worker {
    conn: Conn,
    mode: Mode,
    /// Authorization bodies of the subjects this connection cycles through.
    bodies: Vec<Bytes>,
    /// In `verify` mode: the verify body (writ and request) to send over and over.
    verify_body: Option<Bytes>,
    /// In `renew` mode: the writ held now, and the workload credential renewing it.
    held: Option<(String, String)>,
}

#[derive(Deserialize)]
struct AuthorizeAnswer {
    outcome: String,
    #[serde(default)]
    reasons: Vec<String>,
    writ: Option<String>,
}

#[derive(Deserialize)]
struct VerifyAnswer {
    ok: bool,
    reason: Option<String>,
}

/// The `{action, resource, arguments}` part of every request, which a writ is bound to.
fn call() -> Value {
    json!({ "action": ACTION, "resource": RESOURCE, "arguments": { "path": PATH_ARGUMENT } })
}

fn verify_body(writ: &str) -> Result<Bytes> {
    Ok(Bytes::from(serde_json::to_vec(&json!({ "writ": writ, "request": call() }))?))
}

pub fn run(dir: &DataDir, args: Args) -> Result<ExitCode> {
    if args.duration.is_zero() || args.duration > MAX_DURATION {
        bail!("--duration must be above 0 and at most {}s", MAX_DURATION.as_secs());
    }
    if args.warmup > MAX_WARMUP {
        bail!("--warmup must be at most {}s", MAX_WARMUP.as_secs());
    }
    let addr = resolve_base_url(&args.url)?;
    if !addr.ip().is_loopback() && !args.allow_remote {
        bail!("{} is not a loopback address: load goes to loopback only (pass --allow-remote to override)", addr.ip());
    }
    let connections = args.connections;
    let subjects = args.subjects.unwrap_or(connections);
    let issuer = dir.dev_issuer().context(
        "writ bench mints credentials with the development issuer of the server's data directory: pass the server's --data-dir",
    )?;
    let ttl = args.warmup.as_secs() + args.duration.as_secs() + 120;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let mut bodies = Vec::new();
    for i in 0..subjects {
        let subject = SpiffeId::parse(&format!("spiffe://{}/bench/agent-{i}", issuer.trust_domain()))?;
        let mut extra = Map::new();
        extra.insert("zone".into(), json!("bench"));
        let token = issuer.issue(IssueRequest {
            subject: &subject,
            audience: vec!["writ".into()],
            ttl_secs: ttl,
            extra_claims: extra,
            now,
        })?;
        let mut request = call();
        if let Some(o) = request.as_object_mut() {
            o.insert("credentials".into(), json!({ "workload": token }));
        }
        bodies.push(Bytes::from(serde_json::to_vec(&request)?));
    }

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(usize::from(args.threads)).enable_all().build()?;
    let (stats, window, bundle) = rt.block_on(load(addr, &args, connections, bodies))?;
    let measured = window.end.saturating_duration_since(window.measure_from).as_secs_f64();
    let mut summary = summarize(&args, subjects, measured, &stats);
    if let Some(o) = summary.as_object_mut() {
        o.insert("bundle".into(), bundle);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_human(&summary);
    }
    let errors: u64 = stats.errors.values().sum();
    let answered = stats.count(Op::Authorize) + stats.count(Op::Verify) + stats.count(Op::Renew);
    Ok(if errors > 0 || answered == 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn load(addr: SocketAddr, args: &Args, connections: u32, bodies: Vec<Bytes>) -> Result<(Stats, Window, Value)> {
    // The server must be up and have an active bundle before anything is timed.
    let mut probe =
        Conn::connect(addr).await.with_context(|| format!("connecting to {addr} (is `writ serve` running?)"))?;
    let ready = probe.get("/readyz").await?;
    if !ready.status.is_success() {
        bail!("{addr} is not ready ({}): {}", ready.status, String::from_utf8_lossy(&ready.body));
    }
    let bundle = ready.json().ok().and_then(|r| r.get("bundle").cloned()).unwrap_or(Value::Null);
    drop(probe);

    let subjects = bodies.len();
    let mut workers = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..connections as usize {
        // Connection c takes subjects c, c + connections, c + 2·connections, …, so that no two
        // connections share one; with fewer subjects than connections, subject c mod subjects.
        let mut mine: Vec<Bytes> =
            (c..subjects).step_by(connections as usize).filter_map(|i| bodies.get(i).cloned()).collect();
        if mine.is_empty() {
            mine.extend(bodies.get(c % subjects.max(1)).cloned());
        }
        let mode = args.mode;
        set.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            conn.set_timeout(REQUEST_TIMEOUT);
            let needs_writ = matches!(mode, Mode::Verify | Mode::Renew);
            let mut held = None;
            let verify_body = if needs_writ {
                let first: Value = serde_json::from_slice(mine.first().map_or(&b"{}"[..], |b| &b[..]))?;
                let answer = conn.post_json("/v1/authorize", &first, None).await?;
                let decision: AuthorizeAnswer = answer
                    .json()
                    .and_then(|v| Ok(serde_json::from_value(v)?))
                    .with_context(|| format!("authorize answered {}: not a decision", answer.status))?;
                let Some(writ) = decision.writ else {
                    bail!("the setup authorization was denied ({:?}): no writ to verify", decision.reasons);
                };
                let token = first.pointer("/credentials/workload").and_then(Value::as_str).unwrap_or_default();
                held = Some((writ.clone(), token.to_owned()));
                Some(verify_body(&writ)?)
            } else {
                None
            };
            anyhow::Ok(Worker { conn, mode, bodies: mine, verify_body, held })
        });
        // Do not open thousands of connections at once.
        if set.len() >= 64
            && let Some(w) = set.join_next().await
        {
            workers.push(w??);
        }
    }
    while let Some(w) = set.join_next().await {
        workers.push(w??);
    }

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let window = Window { start, measure_from, end: measure_from + args.duration };
    let live = Arc::new(Live::default());
    let progress = tokio::spawn(progress(window, live.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in workers {
        let live = live.clone();
        tasks.spawn(drive(w, window, live));
    }
    let mut stats = Stats::new()?;
    while let Some(s) = tasks.join_next().await {
        stats.merge(s??)?;
    }
    progress.abort();
    Ok((stats, window, bundle))
}

/// One connection's loop: until the end of the window, one request at a time.
async fn drive(mut w: Worker, window: Window, live: Arc<Live>) -> Result<Stats> {
    let mut stats = Stats::new()?;
    let json = [("content-type", "application/json")];
    let mut n = 0usize;
    while Instant::now() < window.end {
        match w.mode {
            Mode::Authorize | Mode::Mixed => {
                let body = w.bodies.get(n % w.bodies.len().max(1)).cloned().unwrap_or_default();
                n = n.wrapping_add(1);
                let (counts, answer) =
                    timed(&mut w.conn, Op::Authorize, "/v1/authorize", &json, body, window, &live, &mut stats).await;
                let writ = match answer.and_then(|b| authorize_outcome(&b)) {
                    Ok((outcome, writ)) => {
                        record_outcome(&mut stats, Op::Authorize, outcome, counts);
                        writ
                    }
                    Err(kind) => {
                        record_error(&mut stats, kind, counts, &live);
                        None
                    }
                };
                if let (Mode::Mixed, Some(writ)) = (w.mode, writ) {
                    let body = match verify_body(&writ) {
                        Ok(b) => b,
                        Err(_) => {
                            record_error(&mut stats, "encode", counts, &live);
                            continue;
                        }
                    };
                    verify_once(&mut w.conn, body, window, &live, &mut stats).await;
                }
            }
            Mode::Verify => {
                let body = w.verify_body.clone().unwrap_or_default();
                verify_once(&mut w.conn, body, window, &live, &mut stats).await;
            }
            Mode::Renew => {
                let Some((writ, token)) = w.held.clone() else { break };
                let body = match serde_json::to_vec(&json!({"writ": writ, "credentials": {"workload": token}})) {
                    Ok(b) => Bytes::from(b),
                    Err(_) => break,
                };
                let (counts, answer) =
                    timed(&mut w.conn, Op::Renew, "/v1/renew", &json, body, window, &live, &mut stats).await;
                match answer.and_then(|b| authorize_outcome(&b)) {
                    Ok((outcome, next)) => {
                        record_outcome(&mut stats, Op::Renew, outcome, counts);
                        // The chain goes on from the new writ; a refusal ends this connection.
                        match next {
                            Some(next) => w.held = Some((next, token)),
                            None => break,
                        }
                    }
                    Err(kind) => record_error(&mut stats, kind, counts, &live),
                }
            }
        }
    }
    Ok(stats)
}

async fn verify_once(conn: &mut Conn, body: Bytes, window: Window, live: &Live, stats: &mut Stats) {
    let json = [("content-type", "application/json")];
    let (counts, answer) = timed(conn, Op::Verify, "/v1/verify", &json, body, window, live, stats).await;
    match answer.and_then(|b| verify_outcome(&b)) {
        Ok(o) => record_outcome(stats, Op::Verify, o, counts),
        Err(kind) => record_error(stats, kind, counts, live),
    }
}

/// Sends one POST and times it; counts the status and the latency if the answer came within
/// the measured window. Returns whether it did (its outcome or error is then counted too,
/// so that every figure covers the same answers) and the body of a 2xx answer, or the
/// error kind.
#[expect(clippy::too_many_arguments, reason = "one call site per operation; a struct would only rename them")]
async fn timed(
    conn: &mut Conn,
    op: Op,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    window: Window,
    live: &Live,
    stats: &mut Stats,
) -> (bool, Result<Bytes, &'static str>) {
    let sent = Instant::now();
    let result = conn.send(Method::POST, path, headers, body).await;
    let done = Instant::now();
    live.done.fetch_add(1, Ordering::Relaxed);
    let counts = window.counts(done);
    if counts {
        live.measured.fetch_add(1, Ordering::Relaxed);
    }
    match result {
        Ok(reply) => {
            if counts {
                *stats.status.entry(reply.status.as_u16()).or_default() += 1;
                let us = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                if let Some(h) = stats.latency.get_mut(&op) {
                    h.saturating_record(us.max(1));
                }
            }
            (counts, if reply.status.is_success() { Ok(reply.body) } else { Err("http_status") })
        }
        Err(e) => {
            // Do not spin on a server that is gone.
            tokio::time::sleep(Duration::from_millis(20)).await;
            (counts, Err(e.kind().as_str()))
        }
    }
}

fn authorize_outcome(body: &[u8]) -> Result<(String, Option<String>), &'static str> {
    let a: AuthorizeAnswer = serde_json::from_slice(body).map_err(|_| "decode")?;
    Ok(match a.outcome.as_str() {
        "allow" if a.writ.is_some() => ("allow".into(), a.writ),
        "allow" => ("allow_without_writ".into(), None),
        other => (format!("{other}:{}", a.reasons.first().map_or("none", String::as_str)), None),
    })
}

fn verify_outcome(body: &[u8]) -> Result<String, &'static str> {
    let v: VerifyAnswer = serde_json::from_slice(body).map_err(|_| "decode")?;
    Ok(if v.ok { "ok".into() } else { format!("rejected:{}", v.reason.as_deref().unwrap_or("none")) })
}

fn record_outcome(stats: &mut Stats, op: Op, outcome: String, counts: bool) {
    if counts {
        stats.outcome(op, outcome);
    }
}

fn record_error(stats: &mut Stats, kind: &str, counts: bool, live: &Live) {
    live.errors.fetch_add(1, Ordering::Relaxed);
    if counts {
        stats.error(kind);
    }
}

/// A line on stderr every second: elapsed time, requests per second, errors.
async fn progress(window: Window, live: Arc<Live>) {
    let mut tick = tokio::time::interval_at((window.start + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut last = 0u64;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let done = live.done.load(Ordering::Relaxed);
        let measured_secs = now.saturating_duration_since(window.measure_from).as_secs_f64();
        let so_far = if measured_secs >= 0.5 {
            format!("{:.0} req/s measured so far", live.measured.load(Ordering::Relaxed) as f64 / measured_secs)
        } else {
            "warm-up".to_owned()
        };
        eprintln!(
            "writ bench: {:>5.1}s: {:>7} req/s last second, {so_far}, errors {}",
            now.duration_since(window.start).as_secs_f64(),
            done.saturating_sub(last),
            live.errors.load(Ordering::Relaxed),
        );
        last = done;
    }
}

fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}

fn summarize(args: &Args, subjects: u32, measured_secs: f64, stats: &Stats) -> Value {
    let per_s = |n: u64| if measured_secs > 0.0 { (n as f64 / measured_secs * 10.0).round() / 10.0 } else { 0.0 };
    let ops: Vec<Op> = match args.mode {
        Mode::Authorize => vec![Op::Authorize],
        Mode::Verify => vec![Op::Verify],
        Mode::Mixed => vec![Op::Authorize, Op::Verify],
        Mode::Renew => vec![Op::Renew],
    };
    let mut operations = Map::new();
    let mut outcomes = Map::new();
    let mut total = 0;
    for op in ops {
        let Some(h) = stats.latency.get(&op) else { continue };
        total += h.len();
        operations.insert(
            op.as_str().into(),
            json!({ "count": h.len(), "per_s": per_s(h.len()), "latency_us": latency_json(h) }),
        );
        let o: Map<String, Value> =
            stats.outcomes.get(&op).into_iter().flatten().map(|(k, v)| (k.clone(), json!(v))).collect();
        outcomes.insert(op.as_str().into(), Value::Object(o));
    }
    json!({
        "url": args.url,
        "mode": args.mode.as_str(),
        "connections": args.connections,
        "subjects": subjects,
        "threads": args.threads,
        "warmup_s": args.warmup.as_secs_f64(),
        "duration_s": (measured_secs * 1000.0).round() / 1000.0,
        "requests": total,
        "requests_per_s": per_s(total),
        "operations": operations,
        "status": stats.status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>(),
        "outcomes": outcomes,
        "errors": stats.errors.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
    })
}

fn print_human(s: &Value) {
    let get = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let text = |v: &Value, k: &str| v.get(k).map_or_else(String::new, Value::to_string);
    println!(
        "writ bench: {} mode, {} connections, {} subjects, {} s measured after {} s warm-up, against {}",
        get(s, "mode").as_str().unwrap_or(""),
        get(s, "connections"),
        get(s, "subjects"),
        get(s, "duration_s"),
        get(s, "warmup_s"),
        get(s, "url").as_str().unwrap_or(""),
    );
    println!("requests: {} ({} /s)", get(s, "requests"), get(s, "requests_per_s"));
    println!(
        "{:<10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "operation", "count", "per s", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
    if let Some(ops) = s.get("operations").and_then(Value::as_object) {
        for (name, o) in ops {
            let l = get(o, "latency_us");
            println!(
                "{:<10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
                name,
                text(o, "count"),
                text(o, "per_s"),
                text(&l, "p50"),
                text(&l, "p90"),
                text(&l, "p99"),
                text(&l, "max")
            );
        }
    }
    let line = |title: &str, v: &Value| {
        let parts: Vec<String> = v.as_object().into_iter().flatten().map(|(k, n)| format!("{k} {n}")).collect();
        println!("{title}: {}", if parts.is_empty() { "none".to_owned() } else { parts.join(", ") });
    };
    line("HTTP status", &get(s, "status"));
    if let Some(outcomes) = s.get("outcomes").and_then(Value::as_object) {
        for (op, o) in outcomes {
            line(&format!("{op} outcomes"), o);
        }
    }
    line("errors", &get(s, "errors"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "10h", "-1s", "1e9s", "99999999m", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outcome_names_are_bounded() {
        let mut stats = Stats::new().unwrap();
        for i in 0..100 {
            stats.outcome(Op::Authorize, format!("deny:code-{i}"));
        }
        let per_op = &stats.outcomes[&Op::Authorize];
        assert_eq!(per_op.len(), MAX_OUTCOME_KINDS + 1);
        assert_eq!(per_op["other"], 100 - MAX_OUTCOME_KINDS as u64);
    }
}
