//! The decision commands: keys, development identities, policy bundles, one decision, one
//! verification, replay. JSON in and out; exit status 1 when the answer is "no" (a deny,
//! a rejected writ, a failing policy test, a replay mismatch), 2 on errors.

use std::io::Read as _;
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
    Rotate,
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
    /// Validate a bundle directory against its schema (strict mode).
    Check { dir: PathBuf },
    /// Run a bundle's own test cases (tests.json).
    Test { dir: PathBuf },
    /// Sign a bundle with the policy key; writes `bundle.sig` in the directory.
    Sign { dir: PathBuf },
    /// Activate a signed bundle (recorded in the log). `--starter` activates the built-in
    /// starter bundle, signed with this directory's policy key.
    Activate {
        dir: Option<PathBuf>,
        #[arg(long)]
        starter: bool,
    },
    /// Write the starter bundle's files into a directory, to edit.
    Init { dir: PathBuf },
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

pub fn quarantine(dir: &DataDir, cmd: QuarantineCommand) -> Result<ExitCode> {
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

/// `writ revoke`: revoke a writ (it no longer verifies or serves as a parent).
pub fn revoke(dir: &DataDir, jti: &str, reason: &str) -> Result<ExitCode> {
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let index = rt.block_on(engine.revoke(jti, None, reason))?;
    print(&json!({"revoked": jti, "log_index": index}))?;
    Ok(ExitCode::SUCCESS)
}

fn print(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn now() -> u64 {
    use writ_engine::Clock as _;
    SystemClock.now()
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b)?;
        Ok(b)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

pub fn keys(dir: &DataDir, cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { trust_domain } => {
            let created = dir.init_all(&trust_domain)?;
            let signer = writ_engine::WritSigner::from_seeds("writ", &dir.writ_seeds()?)?;
            dir.publish_jwks(&signer.jwks())?;
            print(&json!({"created": created, "writ_kids": signer.kids(), "log_vkey": dir.log_verifier()?.to_vkey()}))?;
        }
        KeysCommand::Jwks => {
            print(&writ_engine::WritSigner::from_seeds("writ", &dir.writ_seeds()?)?.jwks())?;
        }
        KeysCommand::Rotate => {
            let n = dir.rotate_writ_key()?.len();
            let signer = writ_engine::WritSigner::from_seeds("writ", &dir.writ_seeds()?)?;
            dir.publish_jwks(&signer.jwks())?;
            print(&json!({"keys": n, "current_kid": signer.kids().last(), "jwks": signer.jwks()}))?;
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
                Ok(c) => print(
                    &json!({"ok": true, "name": c.name(), "version": c.version(), "digest": c.digest().to_string()}),
                )?,
                Err(e) => {
                    print(&json!({"ok": false, "digest": bundle.digest().to_string(), "error": e.to_string()}))?;
                    return Ok(ExitCode::from(1));
                }
            }
        }
        PolicyCommand::Test { dir: bdir } => {
            let bundle = Bundle::load_dir(&bdir)?;
            let report = bundle.compile()?.run_tests(bundle.tests());
            print(&serde_json::to_value(&report)?)?;
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
        PolicyCommand::Activate { dir: bdir, starter } => {
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
            let (engine, _lock) = dir.open_engine()?;
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            match rt.block_on(engine.activate(&bundle, &sig, None)) {
                Ok(d) => print(&json!({"activated": true, "name": bundle.manifest().name, "digest": d.to_string()}))?,
                Err(e) => {
                    print(&json!({"activated": false, "reason": e.reason(), "error": e.to_string()}))?;
                    return Ok(ExitCode::from(1));
                }
            }
        }
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

pub fn authorize(dir: &DataDir, request: &Path) -> Result<ExitCode> {
    let body = read_input(request)?;
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let decision = rt.block_on(engine.authorize(&body));
    engine.log().checkpoint_now_blocking().ok();
    print(&serde_json::to_value(&decision)?)?;
    Ok(if decision.outcome == Outcome::Allow { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `writ verify`: this process acts as an enforcement point. Keys come from the data
/// directory's JWKS, revocations from its log, and used writ ids persist in
/// `enforce/used.txt` so that a writ verifies once.
pub fn verify(dir: &DataDir, writ: &str, request: &Path, audience: &str) -> Result<ExitCode> {
    let token =
        if Path::new(writ).exists() { std::fs::read_to_string(writ)?.trim().to_owned() } else { writ.to_owned() };
    let body = read_input(request)?;
    let req = ExecutionRequest::parse(&body, &Limits::default())?;
    let digest = req.digest()?;
    let signer = writ_engine::WritSigner::from_seeds("writ", &dir.writ_seeds()?)?;
    let verifier = WritVerifier::new("writ", &signer.jwks(), audience, 30)?;
    let used_path = dir.path("enforce/used.txt");
    std::fs::create_dir_all(dir.path("enforce"))?;
    let used = std::fs::read_to_string(&used_path).unwrap_or_default();
    verifier.remember_used(used.lines().map(str::to_owned));
    let log = dir.open_log_read_only()?;
    let revoked = revoked_ids(&log)?;
    match verifier.verify(&token, &digest, now(), &|jti| revoked.contains(jti)) {
        Ok(v) => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&used_path)?;
            writeln!(f, "{}", v.claims.jti)?;
            f.sync_all()?;
            print(&json!({"ok": true, "claims": v.claims}))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(r) => {
            print(&json!({"ok": false, "reason": r.reason, "detail": r.detail}))?;
            Ok(ExitCode::from(1))
        }
    }
}

fn revoked_ids(log: &writ_log::Log) -> Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    let size = log.size();
    let mut start = 0;
    while start < size {
        let end = (start + 1024).min(size);
        for e in log.entries(start, end)? {
            if let Ok(writ_engine::Entry::Revocation { jti, .. }) = serde_json::from_slice(&e) {
                out.insert(jti);
            }
        }
        start = end;
    }
    Ok(out)
}

pub fn replay_log(dir: &DataDir) -> Result<ExitCode> {
    let store = dir.store_read_only()?;
    let report = replay(&store)?;
    print(&serde_json::to_value(&report)?)?;
    Ok(if report.mismatches.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
