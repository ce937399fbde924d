//! `writ-dev engine shadow`: the cost of a shadow bundle on the decision rate. On a fresh
//! data directory (the same files `writ serve` uses, a SQLite log), with the starter bundle
//! active, it runs the same decision load (half writes inside the agent's zone, half reads,
//! from `--agents` principals, `--concurrency` in flight, in-process) in alternating
//! rounds with no shadow and with a shadow set, and prints the decisions per second of
//! each and their ratio. Alternating rounds in one run share the machine's state (caches,
//! the log's size, other load), so the ratio is the shadow's cost, not the noise between two runs.
//!
//! The shadow is the starter bundle with every write forbidden: half the decisions
//! disagree, so half the entries also carry the shadow's verdict (the worst case for the
//! log); `--agreeing` takes the starter's own policies instead (no disagreement: the cost
//! of the second evaluation alone).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures_util::StreamExt as _;
use writ_engine::{Engine, Outcome};
use writ_policy::{Bundle, sign_bundle, starter_bundle};

use crate::benchkit;
use crate::datadir::DataDir;

/// `writ-dev engine shadow`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Decisions per round.
    #[arg(long, default_value_t = 20_000)]
    decisions: u64,
    /// Rounds of each kind (no shadow, shadow), alternating.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Principals the requests come from.
    #[arg(long, default_value_t = 100)]
    agents: u64,
    /// Decisions in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// A shadow that agrees with the active bundle on every decision (the starter's own
    /// policies), instead of one that forbids every write.
    #[arg(long)]
    agreeing: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.decisions == 0 || args.agents == 0 || args.rounds == 0 || args.concurrency == 0 {
        bail!("--decisions, --rounds, --agents and --concurrency must be at least 1");
    }
    benchkit::in_scratch_dir("shadowbench", |dir| bench(dir, &args))
}

fn bench(dir: &DataDir, args: &Args) -> Result<()> {
    dir.init_all("demo.example")?;
    let (engine, _lock) = dir.open_engine()?;
    let policy_key = dir.policy_signer()?;
    let issuer = dir.dev_issuer()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let starter = starter_bundle()?;
        engine.activate(&starter, &sign_bundle(&starter, &policy_key)?, None).await?;
        let shadow = shadow_bundle(args.agreeing)?;
        let digest = engine.upload(&shadow, &sign_bundle(&shadow, &policy_key)?, None).await?.to_string();
        let engine = Arc::new(engine);
        let credentials = benchkit::agent_credentials(&issuer, args.agents)?;
        let bodies: Vec<Vec<u8>> = (0..args.decisions)
            .map(|i| benchkit::mixed_body(&credentials, i))
            .collect::<Result<_, _>>()?;
        // A warm-up round, not counted.
        round(&engine, &bodies, args.concurrency).await?;
        let (mut plain, mut shadowed) = (Duration::ZERO, Duration::ZERO);
        for r in 0..args.rounds {
            let took = round(&engine, &bodies, args.concurrency).await?;
            plain += took;
            println!("round {r}: no shadow   {:>8.0} decisions/s", args.decisions as f64 / took.as_secs_f64());
            engine.set_shadow(&digest, None, "benchmark").await?;
            let before = engine.shadow();
            let took = round(&engine, &bodies, args.concurrency).await?;
            shadowed += took;
            let after = engine.shadow();
            engine.clear_shadow(None, "benchmark").await?;
            println!(
                "round {r}: with shadow {:>8.0} decisions/s ({} evaluated, {} disagreements recorded)",
                args.decisions as f64 / took.as_secs_f64(),
                after.evaluated - before.evaluated,
                after.disagreements - before.disagreements
            );
        }
        let total = args.decisions as f64 * f64::from(args.rounds);
        let (a, b) = (total / plain.as_secs_f64(), total / shadowed.as_secs_f64());
        println!(
            "no shadow: {a:.0} decisions/s; with a shadow ({}): {b:.0} decisions/s; ratio {:.3} ({} in flight, in-process, {} rounds of {})",
            if args.agreeing { "agreeing" } else { "denying every write: half disagree" },
            b / a,
            args.concurrency,
            args.rounds,
            args.decisions
        );
        anyhow::Ok(())
    })
    .context("the shadow benchmark")
}

/// One round of the load; its duration. Every decision must be an allow (the shadow never
/// changes one).
async fn round(engine: &Arc<Engine>, bodies: &[Vec<u8>], concurrency: usize) -> Result<Duration> {
    let started = Instant::now();
    let mut decisions = futures_util::stream::iter(bodies)
        .map(|b| {
            let engine = engine.clone();
            async move { engine.authorize(b).await }
        })
        .buffer_unordered(concurrency);
    let mut allowed = 0usize;
    while let Some(d) = decisions.next().await {
        if d.outcome == Outcome::Allow {
            allowed += 1;
        }
    }
    let took = started.elapsed();
    if allowed != bodies.len() {
        bail!("{allowed} of {} requests were allowed: every one must be", bodies.len());
    }
    Ok(took)
}

/// The shadow: the starter bundle with every write forbidden, or (agreeing) its own policies.
fn shadow_bundle(agreeing: bool) -> Result<Bundle> {
    let (manifest, policies, schema, entities, _) = starter_bundle()?.parts();
    let manifest = manifest.replace("\"version\": \"", "\"version\": \"shadow-");
    let policies = if agreeing {
        policies
    } else {
        format!(
            "{policies}\n@id(\"freeze\")\n@reason(\"no writes\")\nforbid (principal, action == Writ::Action::\"write\", resource);\n"
        )
    };
    Ok(Bundle::from_parts(&manifest, &policies, &schema, entities.as_deref(), None)?)
}
