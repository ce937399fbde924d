//! `writ policy eval` (one decision against a bundle, written nowhere) and the printing of
//! `writ policy test`.
//!
//! `eval` runs the engine's own [`writ_engine::decide`] (the function the live pipeline,
//! `writ log replay` and `writ policy replay` call) on facts given as flags: the principal
//! and its claims stand for a verified credential, `--at` for the clock, the usage and
//! lineage flags for the counters the engine would read from its log. Every stage of the
//! pipeline runs as it would (a claim of the wrong type, a missing attestation the bundle
//! requires, the policy), so the Cedar request, its entities and its context are built by
//! the same code; nothing opens the data directory's log or keys.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};
use writ_core::{ExecutionRequest, Limits, SpiffeId};
use writ_engine::{
    AttestationFact, Checked, Decided, Facts, IdentityFact, Outcome, ParentFact, RecordedLimits, RecordedRequest,
    Scope, Usage, decide, parse_rfc3339, rfc3339,
};
use writ_policy::{Bundle, CompiledBundle, Expect, Explanation, PolicyOutcome, TestCase, TestReport, starter_bundle};

/// Exit status of `policy eval` for a decision that waits for an operator's approval.
pub const EXIT_PENDING: u8 = 3;

/// `writ policy eval`'s flags.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 allow, 1 deny, 3 pending an operator's approval, 2 on errors \
(an unreadable bundle or a malformed request or flag). Nothing is written: not the log, not the data directory.")]
pub struct EvalArgs {
    /// The bundle's directory.
    #[arg(required_unless_present = "starter")]
    pub dir: Option<PathBuf>,
    /// Evaluate the built-in starter bundle instead.
    #[arg(long, conflicts_with = "dir")]
    pub starter: bool,
    /// The execution request: a JSON file, or `-` for standard input. The body of
    /// `POST /v1/authorize` without credentials, parent or attestation (`action`,
    /// `resource`, `arguments`, optional `request_id` and `audience`).
    #[arg(long, short = 'r')]
    pub request: String,
    /// The acting agent's SPIFFE ID (as a verified credential would name it).
    #[arg(long)]
    pub principal: String,
    /// A verified claim of the principal, `NAME=VALUE` (a string), e.g. `zone=billing`.
    /// Repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// The evaluation time (RFC 3339, e.g. `2026-12-03T03:00:00Z`); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Allowed decisions of this principal for this action in the last minute
    /// (`context.usage.last_minute`).
    #[arg(long, default_value_t = 0)]
    pub last_minute: u64,
    /// Allowed decisions in the last hour (`context.usage.last_hour`).
    #[arg(long, default_value_t = 0)]
    pub last_hour: u64,
    /// The lineage depth the call would have (`context.lineage.depth`; 0: a root).
    #[arg(long, default_value_t = 0)]
    pub depth: u32,
    /// The parent writ's action, for a call at depth 1 or more
    /// (`context.lineage.parent_action`).
    #[arg(long)]
    pub parent_action: Option<String>,
    /// A verified runtime attestation's fact, `environment=…`, `region=…` or
    /// `measurement=…` (`context.runtime`); without any, no attestation. Repeatable.
    #[arg(long = "runtime", value_name = "NAME=VALUE")]
    pub runtime: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn pair(s: &str, what: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').with_context(|| format!("{what} {s:?} is not NAME=VALUE"))?;
    if k.is_empty() {
        bail!("{what} {s:?} has an empty name");
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn load(dir: Option<&Path>, starter: bool) -> Result<CompiledBundle> {
    let bundle = match (dir, starter) {
        (None, true) => starter_bundle()?,
        (Some(d), false) => Bundle::load_dir(d)?,
        _ => bail!("give a bundle directory or --starter"),
    };
    Ok(bundle.compile()?)
}

/// The request's body, read and parsed as `/v1/authorize` parses it.
fn read_request(source: &str) -> Result<ExecutionRequest> {
    let mut body = Vec::new();
    if source == "-" {
        std::io::stdin().read_to_end(&mut body).context("reading the request from standard input")?;
    } else {
        body = std::fs::read(source).with_context(|| format!("reading the request {source}"))?;
    }
    let request = ExecutionRequest::parse(&body, &Limits::default())
        .map_err(|e| anyhow::anyhow!("the request is malformed: {e}"))?;
    let c = &request.credentials;
    if [&c.workload, &c.operator, &c.orchestrator, &c.machine, &c.runtime, &c.delegation].iter().any(|c| c.is_some()) {
        bail!("the request carries credentials, which `policy eval` does not read: give --principal and --claim");
    }
    if request.parent.is_some() || request.parent_writ.is_some() || request.attestation.is_some() {
        bail!("the request names a parent or an attestation: give --depth, --parent-action and --runtime instead");
    }
    Ok(request)
}

/// The decision `writ serve` would make for this request and these facts, with this bundle.
pub fn evaluate(bundle: &CompiledBundle, args: &EvalArgs, request: &ExecutionRequest, time: u64) -> Result<Decided> {
    let subject = SpiffeId::parse(&args.principal).map_err(|e| anyhow::anyhow!("--principal: {e}"))?;
    let mut claims = Map::new();
    for c in &args.claims {
        let (k, v) = pair(c, "--claim")?;
        claims.insert(k, Value::String(v));
    }
    let zone = claims.get("zone").and_then(Value::as_str).unwrap_or_default().to_owned();
    let attestation = if args.runtime.is_empty() {
        None
    } else {
        let mut fact = AttestationFact {
            environment: String::new(),
            measurement: format!("sha256:{}", "0".repeat(64)),
            region: String::new(),
        };
        for r in &args.runtime {
            match pair(r, "--runtime")? {
                (k, v) if k == "environment" => fact.environment = v,
                (k, v) if k == "region" => fact.region = v,
                (k, v) if k == "measurement" => fact.measurement = v,
                (k, _) => bail!("--runtime {k:?}: give environment, region or measurement"),
            }
        }
        Some(Checked::Ok(fact))
    };
    // A call below a root is evaluated under a parent that let it act: same principal,
    // every action in its scope, not expired, not revoked.
    let parent = args.depth.checked_sub(1).map(|depth| ParentFact::Known {
        action: args.parent_action.clone().unwrap_or_else(|| "spawn".to_owned()),
        allowed: true,
        depth,
        exp: u64::MAX,
        revoked: false,
        root: "w-eval-root".to_owned(),
        scope: Some(Scope { zone: zone.clone(), actions: vec!["*".to_owned()] }),
        subject: Some(subject.to_string()),
    });
    let digest = request.digest().map_err(|e| anyhow::anyhow!("the request is malformed: {e}"))?;
    let recorded = RecordedRequest {
        action: request.action.clone(),
        arguments: request.arguments.clone(),
        audience: request.audience.clone().unwrap_or_else(|| "writ-eval".to_owned()),
        credentials: BTreeMap::new(),
        digest: digest.to_string(),
        parent: parent.as_ref().map(|_| "w-eval-parent".to_owned()),
        request_id: request.request_id.clone(),
        resource: request.resource.clone(),
        withheld: None,
    };
    let facts = Facts {
        attestation,
        delegation: BTreeMap::new(),
        identity: Checked::Ok(IdentityFact {
            claims,
            issuer: "writ policy eval".to_owned(),
            subject: subject.to_string(),
            trust_domain: subject.trust_domain().to_owned(),
        }),
        parent,
        parent_writ: None,
        renewal: None,
        quarantined: false,
        usage: Usage { last_hour: args.last_hour, last_minute: args.last_minute },
    };
    // The bundle decides, not the engine's depth limit.
    let limits = RecordedLimits { lineage_by_possession: false, max_depth: u32::MAX };
    Ok(decide(&recorded, &facts, &limits, time, Some(bundle)))
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
        Outcome::Pending => "pending-approval",
    }
}

/// The explanation as indented lines.
pub fn explanation_lines(e: &Explanation) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &e.forbidden_by {
        lines.push(format!("forbidden by {}: {}", f.policy, f.reason));
    }
    if e.forbidden_by.is_empty() {
        if e.closest_permits.is_empty() {
            lines.push("no permit policy applies to this action and resource".to_owned());
        }
        for p in &e.closest_permits {
            lines.push(format!("closest permit {} requires: {}", p.policy, p.requires));
        }
        if e.more_permits > 0 {
            lines.push(format!("and {} more permits", e.more_permits));
        }
    }
    lines
}

pub fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let bundle = load(args.dir.as_deref(), args.starter)?;
    let request = read_request(&args.request)?;
    let time = match &args.at {
        Some(at) => parse_rfc3339(at).with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?,
        None => {
            use writ_engine::Clock as _;
            writ_engine::SystemClock.now()
        }
    };
    let decided = evaluate(&bundle, args, &request, time)?;
    let d = &decided.outcome;
    if args.json {
        let v = json!({
            "outcome": outcome_name(d.outcome),
            "reasons": d.reasons,
            "policies": d.policies,
            "detail": d.detail,
            "explanation": decided.explanation,
            "at": rfc3339(time),
            "bundle": {"name": bundle.name(), "version": bundle.version(), "digest": bundle.digest().to_string()},
            "recorded": false,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
        let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
        println!("decision: {}{reasons}", outcome_name(d.outcome));
        let policies = if d.policies.is_empty() { "none".to_owned() } else { d.policies.join(", ") };
        println!("decided by: {policies}");
        match &decided.explanation {
            Some(e) => explanation_lines(e).iter().for_each(|l| println!("  {l}")),
            None => println!("detail: {}", d.detail),
        }
        println!(
            "evaluated at {} against {} {} ({}), not recorded",
            rfc3339(time),
            bundle.name(),
            bundle.version(),
            bundle.digest()
        );
    }
    Ok(match d.outcome {
        Outcome::Allow => ExitCode::SUCCESS,
        Outcome::Deny => ExitCode::from(1),
        Outcome::Pending => ExitCode::from(EXIT_PENDING),
    })
}

/// `writ policy test`'s text: a line per case, failures with what was expected, got, and
/// why; a total.
pub fn print_tests(report: &TestReport, cases: &[TestCase]) {
    for (r, case) in report.results.iter().zip(cases) {
        println!("{} {}", if r.passed { "PASS" } else { "FAIL" }, r.name);
        if r.passed {
            continue;
        }
        let expected = match (case.expect, &case.reason) {
            (Expect::Allow, _) => "allow".to_owned(),
            (Expect::Approval, _) => "approval".to_owned(),
            (Expect::Deny, Some(reason)) => format!("deny ({reason})"),
            (Expect::Deny, None) => "deny".to_owned(),
        };
        let (got, detail, explanation) = match &r.outcome {
            PolicyOutcome::Allow { policies } => (format!("allow by {}", policies.join(", ")), None, None),
            PolicyOutcome::Approval { policies, detail } => {
                (format!("approval by {}", policies.join(", ")), Some(detail), None)
            }
            PolicyOutcome::Deny { reason, detail, explanation, .. } => {
                (format!("deny ({reason})"), Some(detail), explanation.as_ref())
            }
        };
        println!("     expected {expected}, got {got}");
        match (explanation, detail) {
            (Some(e), _) => explanation_lines(e).iter().for_each(|l| println!("     {l}")),
            (None, Some(d)) => println!("     {d}"),
            (None, None) => {}
        }
    }
    println!("{} passed, {} failed, {} cases", report.passed, report.failed, report.results.len());
}
