//! The decision commands: keys, development identities, policy bundles, one decision, one
//! verification, replay. JSON in and out; exit status 1 when the answer is "no" (a deny,
//! a rejected writ, a failing policy test, a replay mismatch), 2 on errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};
use writ_core::{ExecutionRequest, Limits, SpiffeId};
use writ_engine::{CandidateRange, Outcome, SystemClock, WritVerifier, replay, replay_candidate};
use writ_identity::{AttestationRequest, IssueRequest};
use writ_policy::{Bundle, sign_bundle, starter_bundle};

use crate::datadir::DataDir;
use crate::remote::{self, Remote, print};

mod policy;
mod shadow;

pub use policy::EvalArgs;
pub(crate) use policy::evaluate as evaluate_policy;
pub use shadow::ShadowArgs;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create every missing key: log, writ signing, policy signing, development issuer,
    /// and the trust files that trust them.
    Generate {
        /// Trust domain of the development issuer.
        #[arg(long, default_value = "demo.example")]
        trust_domain: String,
    },
    /// Add a new writ signing key; older keys stay published so outstanding writs verify.
    /// With `--url`, the running server rotates (recorded in the log, JWKS published).
    Rotate {
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the writ signing keys as a JWKS document (what `/.well-known/jwks.json` serves).
    Jwks,
}

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Mint a workload (or other role) credential from the development issuer, or with
    /// `--operator` an operator credential from the operator issuer.
    Issue {
        /// Mint from the operator issuer (a credential for the admin routes and the console).
        #[arg(long)]
        operator: bool,
        /// The subject's SPIFFE ID.
        #[arg(long)]
        spiffe_id: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Audience (repeatable).
        #[arg(long, default_value = "writ")]
        audience: Vec<String>,
        /// Trust zone claim.
        #[arg(long)]
        zone: Option<String>,
        /// Further claims, `name=value` (JSON values allowed).
        #[arg(long)]
        claim: Vec<String>,
    },
    /// Mint a runtime attestation for a workload from the development issuer.
    Attest {
        #[arg(long)]
        spiffe_id: String,
        #[arg(long)]
        measurement: String,
        #[arg(long)]
        environment: String,
        #[arg(long)]
        region: String,
        #[arg(long, default_value_t = 600)]
        ttl: u64,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a bundle directory against its schema (strict mode). Policies without a
    /// `@reason("…")` annotation are listed under `warnings` (their denies explain
    /// themselves with a generic text); they do not fail the check.
    Check { dir: PathBuf },
    /// Run a bundle's own test cases (tests.json): a PASS/FAIL line per case (a failure
    /// with what was expected, what was decided and why) and a total. Exit status 1 if any
    /// case fails.
    Test {
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate one request against a bundle, writing nothing (no log, no data directory):
    /// the decision, the policies that decided, the reason codes and the explanation.
    Eval(EvalArgs),
    /// Sign a bundle with the policy key; writes `bundle.sig` in the directory.
    Sign { dir: PathBuf },
    /// Activate a signed bundle (recorded in the log). `--starter` activates the built-in
    /// starter bundle, signed with this directory's policy key. With `--url`, the bundle
    /// is uploaded to the running server and activated there in one request. Exit status 1
    /// if the bundle is refused (unsigned, untrusted signer, invalid).
    Activate {
        #[arg(required_unless_present = "starter")]
        dir: Option<PathBuf>,
        #[arg(long, conflicts_with = "dir")]
        starter: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write the starter bundle's files into a directory, to edit.
    Init { dir: PathBuf },
    /// The shadow bundle: a bundle evaluated beside the active one on every decision and
    /// never enforced; each disagreement is recorded on its decision entry. `set <digest>`,
    /// `clear`, `promote` (activate it, then no shadow), `status`.
    Shadow(ShadowArgs),
    /// Replay a candidate bundle against the recorded history: every recorded decision is
    /// evaluated again from its recorded inputs with the candidate, and every decision it
    /// would decide otherwise (outcome or primary reason) is reported. Nothing is enforced
    /// or written; the candidate need not be signed. Exit status 1 if any would change.
    Replay {
        /// The candidate bundle's directory.
        #[arg(required_unless_present = "starter")]
        dir: Option<PathBuf>,
        /// Replay the built-in starter bundle instead.
        #[arg(long, conflicts_with = "dir")]
        starter: bool,
        /// First log index to replay.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// One past the last log index to replay (default: the whole log).
        #[arg(long)]
        to: Option<u64>,
        /// Only the decisions this bundle (digest, `sha256:…`) made: typically the active
        /// bundle's, to see what replacing it would change.
        #[arg(long)]
        decided_by: Option<String>,
        /// Most changes listed (all are counted).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `writ quarantine`'s arguments: where it acts, and what it does.
#[derive(clap::Args)]
pub struct QuarantineArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: QuarantineCommand,
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// Isolate an identity: every request it makes is denied (`quarantined`).
    Isolate {
        spiffe_id: String,
        #[arg(long, default_value = "isolated by an operator")]
        reason: String,
    },
    /// Release an isolated identity.
    Release {
        spiffe_id: String,
        #[arg(long, default_value = "released by an operator")]
        reason: String,
    },
    /// List isolated identities.
    List,
}

pub fn quarantine(dir: &DataDir, args: QuarantineArgs) -> Result<ExitCode> {
    let cmd = args.command;
    if let Some(mut api) = args.remote.api(dir, true)? {
        return match cmd {
            QuarantineCommand::Isolate { spiffe_id, reason } => remote::quarantine(&mut api, &spiffe_id, true, &reason),
            QuarantineCommand::Release { spiffe_id, reason } => {
                remote::quarantine(&mut api, &spiffe_id, false, &reason)
            }
            QuarantineCommand::List => remote::quarantine_list(&mut api),
        };
    }
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    match cmd {
        QuarantineCommand::Isolate { spiffe_id, reason } => {
            let index = rt.block_on(engine.quarantine(&SpiffeId::parse(&spiffe_id)?, true, None, &reason))?;
            print(&json!({"isolated": spiffe_id, "log_index": index}))?;
        }
        QuarantineCommand::Release { spiffe_id, reason } => {
            let index = rt.block_on(engine.quarantine(&SpiffeId::parse(&spiffe_id)?, false, None, &reason))?;
            print(&json!({"released": spiffe_id, "log_index": index}))?;
        }
        QuarantineCommand::List => {
            let list: Vec<_> =
                engine.quarantined().into_iter().map(|(s, a)| json!({"subject": s, "isolated": a})).collect();
            print(&json!({ "quarantined": list }))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `writ health`.
#[derive(Subcommand)]
pub enum HealthCommand {
    /// Run the verification loop once and print its state: the log (entries recomputed,
    /// the newest checkpoint and its consistency), the active bundle and the signing keys
    /// against `trust/jwks.json`. Over the data directory (a stopped server) the whole log is
    /// recomputed; with `--url` the running server runs it (operator credential).
    Verify {
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn health(dir: &DataDir, cmd: HealthCommand) -> Result<ExitCode> {
    let HealthCommand::Verify { remote } = cmd;
    let status = if let Some(mut api) = remote.api(dir, true)? {
        api.post("/v1/health/verify", &json!({}))?.ok()?
    } else {
        let (engine, _lock) = dir.open_engine()?;
        let published = dir.clone();
        engine.configure_verification(writ_engine::VerificationConfig {
            published_jwks: Some(std::sync::Arc::new(move || published.published_jwks().map_err(|e| format!("{e:#}")))),
            ..writ_engine::VerificationConfig::default()
        });
        serde_json::to_value(engine.verify_now())?
    };
    print(&status)?;
    // Success is a run that passed, said so: anything else (failed, or an answer that does
    // not say, from whatever answered at `--url`) is 1.
    Ok(if status.get("state").and_then(serde_json::Value::as_str) == Some("ok") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `writ revoke`: revoke a writ (it no longer verifies or serves as a parent).
pub fn revoke(dir: &DataDir, jti: &str, reason: &str, target: &Remote) -> Result<ExitCode> {
    if let Some(mut api) = target.api(dir, true)? {
        return remote::revoke(&mut api, jti, reason);
    }
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let index = rt.block_on(engine.revoke(jti, None, reason))?;
    print(&json!({"revoked": jti, "log_index": index}))?;
    Ok(ExitCode::SUCCESS)
}

fn now() -> u64 {
    use writ_engine::Clock as _;
    SystemClock.now()
}

/// Largest request file (or standard input) the CLI reads: the request bound with room for
/// whitespace. A request over it is refused whole anyway; reading `/dev/zero` must not take
/// the machine's memory first.
const MAX_INPUT: u64 = 1024 * 1024;

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        read_bounded(std::io::stdin(), MAX_INPUT, "standard input")
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        read_bounded(f, MAX_INPUT, &path.display().to_string())
    }
}

/// Reads at most `max` bytes from `from`; more is an error, not a truncation.
fn read_bounded(from: impl Read, max: u64, what: &str) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    from.take(max.saturating_add(1)).read_to_end(&mut b).with_context(|| format!("reading {what}"))?;
    if b.len() as u64 > max {
        bail!("{what} is over {max} bytes");
    }
    Ok(b)
}

pub fn keys(dir: &DataDir, cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { trust_domain } => {
            let created = dir.init_all(&trust_domain)?;
            let signer = writ_engine::WritSigner::from_seeds("writ", &dir.writ_seeds()?)?;
            // The first key is published here; after that, whoever rotates (through the
            // engine, which checks the keys against the log) publishes, and so does every
            // start of `writ serve`.
            if created.iter().any(|c| c == "keys/writ.keys") {
                dir.publish_jwks(&signer.jwks())?;
            }
            print(&json!({"created": created, "writ_kids": signer.kids(), "log_vkey": dir.log_verifier()?.to_vkey()}))?;
        }
        KeysCommand::Jwks => {
            print(&writ_engine::WritSigner::from_seeds("writ", &dir.writ_seeds()?)?.jwks())?;
        }
        KeysCommand::Rotate { remote: target } => {
            if let Some(mut api) = target.api(dir, true)? {
                return remote::rotate(&mut api);
            }
            // The engine's one rotation path, as `POST /v1/keys/rotate` takes it: the new key
            // is stored, the rotation recorded in the log, the key removed again if that
            // fails, and the JWKS published (under the writer lock: not beside `writ serve`).
            let (engine, _lock) = dir.open_engine()?;
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            let r = rt.block_on(engine.rotate_writ_key_with(dir, None))?;
            engine.log().checkpoint_now_blocking().ok();
            print(&json!({"kid": r.kid, "kids": r.kids, "log_index": r.log_index, "warning": r.warning}))?;
            if let Some(w) = r.warning {
                bail!(
                    "the rotation is recorded and in force, but {w}: enforcement points reading {} do not trust the new key until it is published (`writ serve` publishes at every start)",
                    dir.path("trust/jwks.json").display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn identity(dir: &DataDir, cmd: IdentityCommand) -> Result<ExitCode> {
    match cmd {
        IdentityCommand::Issue { operator, spiffe_id, ttl, audience, zone, claim } => {
            let issuer = if operator { dir.operator_issuer()? } else { dir.dev_issuer()? };
            let subject = SpiffeId::parse(&spiffe_id)?;
            let mut extra = Map::new();
            if let Some(z) = zone {
                extra.insert("zone".into(), json!(z));
            }
            for c in claim {
                let (k, v) = c.split_once('=').context("--claim takes name=value")?;
                extra.insert(k.to_owned(), serde_json::from_str(v).unwrap_or_else(|_| json!(v)));
            }
            let token = issuer.issue(IssueRequest {
                subject: &subject,
                audience,
                ttl_secs: ttl,
                extra_claims: extra,
                now: now(),
            })?;
            println!("{token}");
        }
        IdentityCommand::Attest { spiffe_id, measurement, environment, region, ttl } => {
            let issuer = dir.dev_issuer()?;
            let subject = SpiffeId::parse(&spiffe_id)?;
            let token = issuer.issue_attestation(AttestationRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                measurement: &measurement,
                environment: &environment,
                region: &region,
                ttl_secs: ttl,
                now: now(),
            })?;
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn policy(dir: &DataDir, cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { dir: bdir } => {
            let bundle = Bundle::load_dir(&bdir)?;
            match bundle.compile() {
                Ok(c) => {
                    let warnings: Vec<String> = c
                        .policies_without_reason()
                        .map(|id| {
                            format!(
                                "policy {id:?} has no @reason(\"…\"): its denies explain themselves with a generic text"
                            )
                        })
                        .collect();
                    print(
                        &json!({"ok": true, "name": c.name(), "version": c.version(), "digest": c.digest().to_string(), "warnings": warnings}),
                    )?;
                }
                Err(e) => {
                    print(&json!({"ok": false, "digest": bundle.digest().to_string(), "error": e.to_string()}))?;
                    return Ok(ExitCode::from(1));
                }
            }
        }
        PolicyCommand::Test { dir: bdir, json } => {
            let bundle = Bundle::load_dir(&bdir)?;
            let report = bundle.compile()?.run_tests(bundle.tests());
            if json {
                print(&serde_json::to_value(&report)?)?;
            } else {
                policy::print_tests(&report, bundle.tests());
            }
            if report.failed > 0 {
                return Ok(ExitCode::from(1));
            }
        }
        PolicyCommand::Sign { dir: bdir } => {
            let bundle = Bundle::load_dir(&bdir)?;
            bundle.compile().context("refusing to sign a bundle that does not validate")?;
            let sig = sign_bundle(&bundle, &dir.policy_signer()?)?;
            std::fs::write(bdir.join("bundle.sig"), &sig)?;
            print(&json!({"digest": bundle.digest().to_string(), "signature": bdir.join("bundle.sig")}))?;
        }
        PolicyCommand::Activate { dir: bdir, starter, remote: target } => {
            let (bundle, sig) = match (bdir, starter) {
                (None, true) => {
                    let b = starter_bundle()?;
                    let sig = sign_bundle(&b, &dir.policy_signer()?)?;
                    (b, sig)
                }
                (Some(d), false) => {
                    let b = Bundle::load_dir(&d)?;
                    let sig = std::fs::read_to_string(d.join("bundle.sig"))
                        .with_context(|| format!("{} is not signed (run `writ policy sign`)", d.display()))?;
                    (b, sig)
                }
                _ => bail!("give a bundle directory or --starter"),
            };
            if let Some(mut api) = target.api(dir, true)? {
                return remote::activate(&mut api, &bundle, &sig);
            }
            let (engine, _lock) = dir.open_engine()?;
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            match rt.block_on(engine.activate(&bundle, &sig, None)) {
                Ok(a) => print(&json!({
                    "activated": true,
                    "name": bundle.manifest().name,
                    "digest": a.digest.to_string(),
                    "reevaluation": {
                        "reevaluated": a.reevaluation.reevaluated,
                        "revoked": a.reevaluation.revoked,
                        "descendants": a.reevaluation.descendants,
                        "log_index": a.reevaluation.log_index,
                    },
                }))?,
                Err(e) => {
                    let reason = match &e {
                        writ_engine::EngineError::BundleUntrusted(_) => writ_core::ReasonCode::PolicyBundleUntrusted,
                        writ_engine::EngineError::Log(_) => writ_core::ReasonCode::LogUnavailable,
                        _ => writ_core::ReasonCode::Internal,
                    };
                    print(&json!({"activated": false, "reason": reason, "error": e.detail()}))?;
                    return Ok(ExitCode::from(1));
                }
            }
        }
        PolicyCommand::Eval(args) => return policy::eval(&args),
        PolicyCommand::Shadow(args) => return shadow::shadow(dir, args),
        PolicyCommand::Init { dir: bdir } => {
            starter_bundle()?.write_dir(&bdir)?;
            print(&json!({"written": bdir}))?;
        }
        PolicyCommand::Replay { dir: bdir, starter, from, to, decided_by, limit } => {
            let bundle = match (bdir, starter) {
                (None, true) => starter_bundle()?,
                (Some(d), false) => Bundle::load_dir(&d)?,
                _ => bail!("give a candidate bundle directory or --starter"),
            };
            let candidate = bundle.compile().context("the candidate does not validate against its schema")?;
            let store = dir.store_read_only()?;
            let report = replay_candidate(&store, &candidate, &CandidateRange { from, to, decided_by, limit })?;
            print(&serde_json::to_value(&report)?)?;
            if report.changed > 0 {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn authorize(dir: &DataDir, request: &Path, url: Option<String>) -> Result<ExitCode> {
    let body = read_input(request)?;
    let target = Remote { url, ..Remote::default() };
    if let Some(mut api) = target.api(dir, false)? {
        return remote::authorize(&mut api, &body);
    }
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let decision = rt.block_on(engine.authorize(&body));
    engine.log().checkpoint_now_blocking().ok();
    print(&serde_json::to_value(&decision)?)?;
    Ok(if decision.outcome == Outcome::Allow { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `writ renew`: like `writ authorize`, for `POST /v1/renew`.
pub fn renew(dir: &DataDir, request: &Path, url: Option<String>) -> Result<ExitCode> {
    let body = read_input(request)?;
    let target = Remote { url, ..Remote::default() };
    if let Some(mut api) = target.api(dir, false)? {
        return remote::decide(&mut api, "/v1/renew", &body);
    }
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let decision = rt.block_on(engine.renew(&body));
    engine.log().checkpoint_now_blocking().ok();
    print(&serde_json::to_value(&decision)?)?;
    Ok(if decision.outcome == Outcome::Allow { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `writ verify`'s arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The writ (or a file holding it).
    #[arg(long)]
    writ: String,
    /// The request about to run (JSON file, `-` for stdin).
    #[arg(long)]
    request: PathBuf,
    /// This enforcement point's audience.
    #[arg(long, default_value = "writ-enforcement")]
    audience: String,
    /// The writ signing keys to trust: a JWKS file [default: <data-dir>/trust/jwks.json].
    #[arg(long, conflicts_with = "jwks_url")]
    jwks: Option<PathBuf>,
    /// Fetch the JWKS to trust from this URL instead: plain `http://` only, such as a
    /// control plane's `http://127.0.0.1:7070/.well-known/jwks.json` (a URL without a path
    /// means that path).
    #[arg(long)]
    jwks_url: Option<String>,
}

/// `writ verify`: this process acts as an enforcement point, which holds no signing key.
/// Keys come from public material only (a JWKS file, by default the data directory's
/// `trust/jwks.json`, or a JWKS URL), revocations from the data directory's log (read-only),
/// and used writ ids persist in `enforce/used.txt`, read and appended under an exclusive
/// lock so that a writ verifies once however many verifications run at once.
pub fn verify(dir: &DataDir, args: &VerifyArgs) -> Result<ExitCode> {
    let token = if Path::new(&args.writ).exists() {
        let f = std::fs::File::open(&args.writ).with_context(|| format!("reading {}", args.writ))?;
        String::from_utf8(read_bounded(f, MAX_INPUT, &args.writ)?)
            .with_context(|| format!("{} is not UTF-8", args.writ))?
            .trim()
            .to_owned()
    } else {
        args.writ.clone()
    };
    let body = read_input(&args.request)?;
    let req = ExecutionRequest::parse(&body, &Limits::default())?;
    let digest = req.digest()?;
    let verifier = WritVerifier::new("writ", &trusted_jwks(dir, args)?, &args.audience, 30)?;
    let standing = standing(dir)?;
    // From here to the durable record of its use, no other verification reads the used set.
    let used = UsedWrits::lock(dir)?;
    verifier.remember_used(used.ids());
    match verifier.verify_with(&token, &digest, now(), &|claims| standing.check(claims)) {
        Ok(v) => {
            used.record(&v.claims.jti)?;
            print(&json!({"ok": true, "claims": v.claims}))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(r) => {
            drop(used);
            print(&json!({"ok": false, "reason": r.reason, "detail": r.detail}))?;
            Ok(ExitCode::from(1))
        }
    }
}

/// Largest JWKS document `writ verify` accepts, in bytes.
const MAX_JWKS: usize = 1024 * 1024;

/// The writ signing keys `writ verify` trusts: a JWKS file or URL, public material only
/// (never the private keys in `keys/`, which an enforcement point does not hold).
fn trusted_jwks(dir: &DataDir, args: &VerifyArgs) -> Result<Value> {
    if let Some(url) = &args.jwks_url {
        return fetch_jwks(url);
    }
    let path = args.jwks.clone().unwrap_or_else(|| dir.path("trust/jwks.json"));
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "reading the JWKS {} (give the control plane's keys with --jwks FILE or --jwks-url URL)",
            path.display()
        )
    })?;
    let bytes = read_bounded(file, MAX_JWKS as u64, &format!("the JWKS {}", path.display()))?;
    // Strict: a repeated member (two `x` in one key) is refused, as the verifier's own key
    // set refuses it, rather than the last one trusted silently.
    writ_core::json::parse_value(&bytes)
        .map_err(|e| anyhow::anyhow!("the JWKS {} is not strict JSON: {e}", path.display()))
}

/// Fetches a JWKS over plain HTTP from the URL the user named (and nowhere else).
fn fetch_jwks(url: &str) -> Result<Value> {
    let (addr, path) = crate::client::resolve_url(url)?;
    let path = if path == "/" { "/.well-known/jwks.json".to_owned() } else { path };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reply = rt.block_on(async {
        let mut conn = crate::client::Conn::connect(addr).await?;
        conn.set_timeout(std::time::Duration::from_secs(10));
        conn.get(&path).await
    });
    let reply = reply.with_context(|| format!("fetching the JWKS from {url}"))?;
    if reply.status != hyper::StatusCode::OK {
        bail!("fetching the JWKS from {url}: answered {}", reply.status);
    }
    if reply.body.len() > MAX_JWKS {
        bail!("the JWKS at {url} is over {MAX_JWKS} bytes");
    }
    writ_core::json::parse_value(&reply.body).map_err(|e| anyhow::anyhow!("the JWKS at {url} is not strict JSON: {e}"))
}

/// The writs revoked so far, from the data directory's log (read-only, so it works beside
/// a running `writ serve`). A step of its own, so that verification can take revocations
/// (and more of the log's facts) from elsewhere without touching the rest.
/// The standing of issued writs (revocations across each lineage, quarantine), read from the
/// log: without it, whether the writ was revoked or its principal isolated is unknown.
fn standing(dir: &DataDir) -> Result<writ_engine::Standing> {
    let log = dir.open_log_read_only().context("reading the log (without it, the writ's standing is unknown)")?;
    Ok(writ_engine::Standing::from_log(&log)?)
}

/// The writ ids used at this enforcement point (`enforce/used.txt`, one per line), held
/// under an exclusive lock on the file from the moment they are read until the use of a
/// writ is appended and synced (or the verification fails): concurrent `writ verify`
/// processes take turns, so one writ verifies once. The lock is released when this is
/// dropped (or the process ends).
struct UsedWrits {
    file: std::fs::File,
    path: PathBuf,
    text: String,
}

impl UsedWrits {
    /// Opens and locks the record, waiting for any other verification holding it. A record
    /// that cannot be read fails the verification: an unknown used set is not an empty one.
    fn lock(dir: &DataDir) -> Result<UsedWrits> {
        let enforce = dir.path("enforce");
        std::fs::create_dir_all(&enforce).with_context(|| format!("creating {}", enforce.display()))?;
        let path = enforce.join("used.txt");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock().with_context(|| format!("locking {}", path.display()))?;
        let mut text = String::new();
        file.read_to_string(&mut text).with_context(|| format!("reading the used writs in {}", path.display()))?;
        Ok(UsedWrits { file, path, text })
    }

    fn ids(&self) -> impl Iterator<Item = String> + '_ {
        self.text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned)
    }

    /// Appends `jti` and syncs it (and, for a new record, its directory) before the lock goes.
    fn record(mut self, jti: &str) -> Result<()> {
        use std::io::Write as _;
        // A line cut short by a crash is ended first, so that it cannot swallow this one.
        let sep = if self.text.is_empty() || self.text.ends_with('\n') { "" } else { "\n" };
        writeln!(self.file, "{sep}{jti}").with_context(|| format!("recording the use in {}", self.path.display()))?;
        self.file.sync_all().with_context(|| format!("syncing {}", self.path.display()))?;
        if self.text.is_empty() {
            let parent = self.path.parent().unwrap_or(Path::new("."));
            std::fs::File::open(parent).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }
}

pub fn replay_log(dir: &DataDir) -> Result<ExitCode> {
    let store = dir.store_read_only()?;
    let report = replay(&store)?;
    print(&serde_json::to_value(&report)?)?;
    Ok(if report.mismatches.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
