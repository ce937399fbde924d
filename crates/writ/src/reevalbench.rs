//! `writ-dev engine reevaluate`: the cost of re-evaluation on activation. On a fresh data
//! directory (the same files `writ serve` uses, a SQLite log), it issues `--writs`
//! outstanding writs through the engine (half writes inside the agent's zone, half reads,
//! from `--agents` principals), serves the control plane on a loopback port, follows its
//! revocation feed with `writ-verify`'s `FeedSubscriber` as an enforcement point does, then
//! activates the starter bundle with every write forbidden and reports:
//!
//! - the activation's time, and writs re-evaluated per second over it (deciding every
//!   outstanding writ again and recording each revocation and the `reevaluation` entry);
//! - the time from the start of the activation to the enforcement point's view including
//!   the last revocation (its snapshot covers the `reevaluation` entry, which follows them).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures_util::StreamExt as _;
use writ_policy::{Bundle, sign_bundle, starter_bundle};
use writ_verify::{ControlPlane, FeedConfig, FeedSubscriber, SharedFeed};

use crate::benchkit;
use crate::datadir::DataDir;

/// Decisions in flight while the writs are issued.
const CONCURRENCY: usize = 64;

/// `writ-dev engine reevaluate`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Outstanding writs when the bundle is activated.
    #[arg(long, default_value_t = 100_000)]
    writs: u64,
    /// Principals they are issued to.
    #[arg(long, default_value_t = 100)]
    agents: u64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.writs == 0 || args.agents == 0 {
        bail!("--writs and --agents must be at least 1");
    }
    benchkit::in_scratch_dir("reevalbench", |dir| bench(dir, &args))
}

fn bench(dir: &DataDir, args: &Args) -> Result<()> {
    dir.init_all("demo.example")?;
    // Long-lived writs, so that none expires while 100,000 are issued.
    let config = writ_engine::EngineConfig { writ_ttl: 3600, ..writ_engine::EngineConfig::default() };
    let (engine, _lock) = dir.open_engine_with(config)?;
    let policy_key = dir.policy_signer()?;
    let issuer = dir.dev_issuer()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let starter = starter_bundle()?;
        engine.activate(&starter, &sign_bundle(&starter, &policy_key)?, None).await?;
        let engine = Arc::new(engine);

        // The outstanding writs.
        let credentials = benchkit::agent_credentials(&issuer, args.agents)?;
        let bodies = (0..args.writs).map(|i| benchkit::mixed_body(&credentials, i));
        let started = Instant::now();
        let mut allowed = 0u64;
        let mut decisions = futures_util::stream::iter(bodies)
            .map(|b| {
                let engine = engine.clone();
                async move {
                    let body = b?;
                    anyhow::Ok(engine.authorize(&body).await)
                }
            })
            .buffer_unordered(CONCURRENCY);
        while let Some(d) = decisions.next().await {
            if d?.outcome == writ_engine::Outcome::Allow {
                allowed += 1;
            }
        }
        drop(decisions);
        let issuing = started.elapsed();
        if allowed != args.writs {
            bail!("{allowed} of {} requests were allowed: the bench needs every one outstanding", args.writs);
        }
        println!(
            "issued {allowed} writs in {:.2} s ({:.0} decisions/s, {CONCURRENCY} in flight, in-process)",
            issuing.as_secs_f64(),
            allowed as f64 / issuing.as_secs_f64()
        );

        // The control plane on loopback, and an enforcement point following its feed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state =
            writ_server::AppState::new(engine.clone()).with_feed_signer(Arc::new(dir.feed_signer(&engine.issuer())?));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(writ_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let feed = SharedFeed::new(30);
        let control_plane = ControlPlane::new(&url).map_err(|e| anyhow::anyhow!("{e}"))?;
        let subscriber = FeedSubscriber::spawn(control_plane, FeedConfig::new(&engine.issuer()), feed.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        while feed.snapshot_size().is_none() {
            if Instant::now() > deadline {
                bail!("the enforcement point got no first snapshot from the feed in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // The stricter bundle: every write forbidden.
        let frozen = frozen_starter()?;
        let sig = sign_bundle(&frozen, &policy_key)?;
        let started = Instant::now();
        let activated = engine.activate(&frozen, &sig, None).await?;
        let activation = started.elapsed();
        let r = &activated.reevaluation;
        let deadline = Instant::now() + Duration::from_secs(600);
        while feed.snapshot_size().is_none_or(|size| size <= r.log_index) {
            if Instant::now() > deadline {
                bail!("the feed did not reach the reevaluation entry in 600 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let on_stream = started.elapsed();
        println!(
            "activation with {} outstanding writs: re-evaluated {}, revoked {} (+{} descendants) in {:.3} s \
             ({:.0} writs re-evaluated/s, revocations recorded included)",
            args.writs,
            r.reevaluated,
            r.revoked,
            r.descendants,
            activation.as_secs_f64(),
            r.reevaluated as f64 / activation.as_secs_f64()
        );
        println!(
            "activation → last revocation in an enforcement point's view (feed stream, loopback): {:.3} s",
            on_stream.as_secs_f64()
        );
        drop(subscriber);
        let _ = stop.send(());
        let _ = server.await;
        anyhow::Ok(())
    })
    .context("the re-evaluation benchmark")
}

/// The starter bundle with every write forbidden.
fn frozen_starter() -> Result<Bundle> {
    let (manifest, policies, schema, entities, _) = starter_bundle()?.parts();
    let manifest = manifest.replace("\"version\": \"", "\"version\": \"frozen-");
    let policies = format!(
        "{policies}\n@id(\"freeze\")\n@reason(\"no writes\")\nforbid (principal, action == Writ::Action::\"write\", resource);\n"
    );
    Ok(Bundle::from_parts(&manifest, &policies, &schema, entities.as_deref(), None)?)
}
