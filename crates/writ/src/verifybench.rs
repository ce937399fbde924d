//! `writ-dev engine verify-loop`: what the verification loop costs the decision rate. On a
//! fresh data directory (the files `writ serve` uses, a SQLite log), it decides
//! `--decisions` requests through the engine, `CONCURRENCY` in flight, in `--rounds` pairs
//! of phases: with the loop off, then with it running every `--interval-ms` (re-verifying
//! what the decisions append as they append it, plus its random sample of older entries,
//! the active bundle and the keys against the published JWKS). It prints each phase's rate,
//! the medians, their ratio, and what the loop did meanwhile. Alternating the phases keeps a
//! log that grows, or a machine that gets busier, from favouring one side. Every run of the
//! loop must pass: a failure beside honest appends is a false alarm, and an error here.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures_util::StreamExt as _;
use serde_json::json;
use writ_policy::{sign_bundle, starter_bundle};

use crate::benchkit;
use crate::datadir::DataDir;

/// Decisions in flight.
const CONCURRENCY: usize = 64;

/// `writ-dev engine verify-loop`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Decisions per phase.
    #[arg(long, default_value_t = 20_000)]
    decisions: u64,
    /// Pairs of phases (loop off, loop on).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Interval of the loop while it runs, in ms (`writ serve` runs it every 10,000).
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Older entries re-verified at random per run (`writ serve`'s default).
    #[arg(long, default_value_t = 16)]
    sample: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.decisions == 0 || args.interval_ms == 0 || args.rounds == 0 {
        bail!("--decisions, --rounds and --interval-ms must be at least 1");
    }
    benchkit::in_scratch_dir("verifybench", |dir| bench(dir, &args))
}

fn bench(dir: &DataDir, args: &Args) -> Result<()> {
    dir.init_all("demo.example")?;
    let (engine, _lock) = dir.open_engine_with(writ_engine::EngineConfig::default())?;
    dir.publish_jwks(&engine.jwks())?;
    let published = dir.clone();
    engine.configure_verification(writ_engine::VerificationConfig {
        sample: args.sample,
        published_jwks: Some(Arc::new(move || published.published_jwks().map_err(|e| format!("{e:#}")))),
    });
    let issuer = dir.dev_issuer()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let starter = starter_bundle()?;
        engine.activate(&starter, &sign_bundle(&starter, &dir.policy_signer()?)?, None).await?;
        let engine = Arc::new(engine);
        let credentials = benchkit::agent_credentials(&issuer, 64)?;
        let phase = |label: &'static str, round: u32| {
            let engine = engine.clone();
            let credentials = credentials.clone();
            let n = args.decisions;
            async move {
                let bodies: Vec<Vec<u8>> = (0..n)
                    .map(|i| {
                        let token = credentials.get((i % 64) as usize).cloned().unwrap_or_default();
                        serde_json::to_vec(&json!({
                            "credentials": {"workload": token},
                            "action": "read",
                            "resource": "fs:/zones/billing",
                            "arguments": {"path": format!("/zones/billing/{label}-{round}-{i}.csv")},
                        }))
                    })
                    .collect::<Result<_, _>>()?;
                let started = Instant::now();
                let mut recorded = 0u64;
                let mut decisions = futures_util::stream::iter(bodies)
                    .map(|b| {
                        let engine = engine.clone();
                        async move { engine.authorize(&b).await }
                    })
                    .buffer_unordered(CONCURRENCY);
                while let Some(d) = decisions.next().await {
                    if d.log_index.is_some() {
                        recorded += 1;
                    }
                }
                let took = started.elapsed();
                if recorded != n {
                    bail!("{label} {round}: {recorded} of {n} decisions were recorded");
                }
                anyhow::Ok(n as f64 / took.as_secs_f64())
            }
        };
        let (mut off, mut on) = (Vec::new(), Vec::new());
        let (runs0, stats0) = (engine.verification().runs, engine.verification_stats());
        for round in 0..args.rounds {
            let rate = phase("off", round).await?;
            println!("round {round}: loop off {rate:.0} decisions/s");
            off.push(rate);
            let looping = writ_engine::spawn_verification(engine.clone(), Duration::from_millis(args.interval_ms));
            let rate = phase("on", round).await?;
            looping.abort();
            let _ = looping.await;
            println!("round {round}: loop every {} ms {rate:.0} decisions/s", args.interval_ms);
            on.push(rate);
        }
        let (status, stats) = (engine.verification(), engine.verification_stats());
        if stats.runs_failed > stats0.runs_failed {
            bail!("the verification loop failed beside honest appends (a false alarm): {:?}", status.problems);
        }
        let runs = status.runs - runs0;
        let took = stats.duration_sum - stats0.duration_sum;
        let (off, on) = (median(&mut off), median(&mut on));
        println!(
            "decisions/s, {CONCURRENCY} in flight, in-process, {} per phase, median of {}: loop off {off:.0}, loop every {} ms {on:.0}",
            args.decisions, args.rounds, args.interval_ms
        );
        println!(
            "with the loop / without: {:.3} ({:+.1} %); {runs} runs, {:.2} ms each on average, log of {} entries at the end",
            on / off,
            (on / off - 1.0) * 100.0,
            if runs > 0 { took * 1000.0 / runs as f64 } else { 0.0 },
            engine.log().size()
        );
        anyhow::Ok(())
    })
    .context("the verification loop benchmark")
}

/// The median of `v` (not empty).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match (v.get(mid), mid.checked_sub(1).and_then(|m| v.get(m))) {
        (Some(a), Some(b)) if v.len().is_multiple_of(2) => f64::midpoint(*a, *b),
        (Some(a), _) => *a,
        _ => 0.0,
    }
}
