//! `writ serve`: the control plane on the embedded default. On first start it creates the
//! data directory (keys, the development identity and operator issuers trusted by the trust
//! bundle, the log), activates the signed starter bundle and prints an operator credential;
//! later starts reuse it. Binds 127.0.0.1 unless told otherwise, prints the URLs, and on
//! Ctrl-C or SIGTERM stops accepting, finishes in-flight requests, keeps the writs
//! `/v1/verify` used (single use across restarts: `single_use_across_restarts`) and
//! publishes a final checkpoint. The verification loop (`writ_engine::spawn_verification`)
//! runs from the start, every `--verify-interval-ms`, against the published
//! `trust/jwks.json` too. Configuration: [`crate::config`].

use std::sync::Arc;

use anyhow::{Context as _, Result};
use writ_core::SpiffeId;
use writ_policy::{sign_bundle, starter_bundle};

use crate::config::Config;
use crate::datadir::DataDir;

/// Lifetime of the operator credential printed on first start (the verifier's maximum is a day).
const FIRST_OPERATOR_TTL: u64 = 12 * 3600;

pub fn run(config: &Config) -> Result<()> {
    init_tracing();
    // The port first: a start that cannot listen writes nothing (no data directory, keys,
    // activation or "shown once" credential for a server that never ran).
    let listener = bind(config.listen)?;
    let dir = DataDir::new(&config.data_dir);
    let trust_domain = config.trust_domain.as_str();
    let created = dir.init_all(trust_domain)?;
    let (engine, _lock) = dir.open_engine_with(config.engine.clone())?;
    single_use_across_restarts(&dir, &engine)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if engine.active_bundle().is_none() {
        let bundle = starter_bundle()?;
        let sig = sign_bundle(&bundle, &dir.policy_signer()?)?;
        rt.block_on(engine.activate(&bundle, &sig, None)).context("activating the starter bundle")?;
    }
    // An activation whose re-evaluation a stop interrupted is finished before any request.
    rt.block_on(finish_reevaluation(&engine));
    // So is an automatic isolation that was due, or whose revocations were cut short.
    rt.block_on(finish_isolations(&engine));
    // The published keys are those the engine signs with, from the first start on.
    dir.publish_jwks(&engine.jwks())?;
    let engine = Arc::new(engine);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        // Said before the URL, which tells a supervisor (and the tests) that the server is up.
        let (limits, lowered) = crate::config::fit_descriptors(config.limits, descriptor_limit());
        if let Some(why) = lowered {
            tracing::warn!("{why}");
        }
        if !created.is_empty() {
            eprintln!("writ: created {} in {}", created.join(", "), dir.root().display());
        }
        if let Some((name, version, digest)) = engine.active_bundle() {
            eprintln!("writ: active policy bundle {name} {version} ({digest})");
        }
        println!("writ serve: console at http://{addr}/console/governance  API at http://{addr}/v1  (OpenAPI http://{addr}/v1/openapi.json, metrics http://{addr}/metrics)");
        if created.iter().any(|c| c == "keys/operator-issuer.json") {
            let admin = SpiffeId::parse(&format!("spiffe://{trust_domain}/operator/admin"))?;
            let token = dir.mint_operator(&admin, FIRST_OPERATOR_TTL)?;
            eprintln!("writ: operator credential for {admin} (valid 12 h; shown once):\n\n{token}\n");
            eprintln!(
                "writ: use it as `Authorization: Bearer <credential>` on the admin routes and in the console, or as\n  writ quarantine list --url http://{addr} --credential <credential>\n(without --credential, operator commands given --url mint a 5-minute one from {}); mint more with\n  writ --data-dir {} identity issue --operator --spiffe-id spiffe://{trust_domain}/operator/<name> --ttl 3600",
                dir.root().display(),
                dir.root().display()
            );
        }
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
        };
        // One that failed (the log unavailable) is tried again until it is done.
        let retry = engine.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                finish_reevaluation(&retry).await;
                finish_isolations(&retry).await;
            }
        });
        // The verification loop: now, then every interval; decisions are denied while it fails.
        let published = dir.clone();
        engine.configure_verification(writ_engine::VerificationConfig {
            sample: config.verify_sample,
            published_jwks: Some(Arc::new(move || published.published_jwks().map_err(|e| format!("{e:#}")))),
        });
        let verification = writ_engine::spawn_verification(engine.clone(), config.verify_interval);
        let state = writ_server::AppState::with_limits(engine.clone(), limits)
            .with_key_store(Arc::new(dir.clone()))
            .with_feed_signer(Arc::new(dir.feed_signer(&engine.issuer())?))
            .with_node(node_identity(addr)?)
            // The console's demo page runs `writ demo`'s scenario against this server.
            .with_demo(Arc::new(crate::demo::ServerDemo { dir: dir.clone(), url: format!("http://{addr}") }));
        tracing::info!(
            %addr,
            data_dir = %dir.root().display(),
            max_connections = limits.max_connections,
            "serving"
        );
        writ_server::serve(listener, state, shutdown).await?;
        verification.abort();
        // The writs verified are kept for the next start. Connections dropped after the
        // drain may still be running: verification is closed first, so none of them can
        // verify a writ the record misses.
        if let Err(e) = dir.keep_served_used(&engine.close_verification()) {
            tracing::error!(error = %format!("{e:#}"), "keeping the used writs failed: the next start refuses writs issued before it");
        }
        if let Err(e) = engine.flush_anonymous().await {
            tracing::warn!(error = %e, "the count of unrecorded anonymous attempts could not be recorded");
        }
        engine.log().checkpoint_now().await.ok();
        eprintln!("writ: stopped; log size {}", engine.log().size());
        anyhow::Ok(())
    })
}

/// This node's id and address for its heartbeat and `GET /v1/nodes`: the id is
/// `WRIT_NODE_ID` if set, else `<host name>:<port>` (unique among nodes sharing a store as
/// long as their host names are).
fn node_identity(addr: std::net::SocketAddr) -> Result<writ_server::NodeIdentity> {
    let id = match std::env::var("WRIT_NODE_ID") {
        Ok(id) => id,
        Err(_) => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "writ".to_owned());
            format!("{host}:{}", addr.port())
        }
    };
    writ_server::NodeIdentity::new(&id, &addr.to_string()).map_err(|e| anyhow::anyhow!("WRIT_NODE_ID: {e}"))
}

/// Binds the listening socket (the standard library's, made non-blocking for tokio), with a
/// message that says what to do when the address is taken.
fn bind(listen: std::net::SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "{listen} is already in use (another `writ serve`?): stop it, or listen elsewhere with --listen HOST:PORT; nothing was written"
        ),
        _ => anyhow::Error::new(e).context(format!("binding {listen}; nothing was written")),
    })?;
    listener.set_nonblocking(true).context("making the listening socket non-blocking")?;
    Ok(listener)
}

/// The soft limit on open file descriptors (`ulimit -n`); unlimited as `u64::MAX`.
#[cfg(unix)]
fn descriptor_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(not(unix))]
fn descriptor_limit() -> u64 {
    u64::MAX
}

/// Keeps `/v1/verify`'s single use across restarts. A clean stop kept the writs verified
/// and the refuse-issued-before horizon (`enforce/served-used.json`), and this start takes
/// both back, so a horizon set after a kill survives every later clean restart. With no
/// such record while the log holds decisions (the last run was killed), any writ issued
/// before this start may have been used already: those are refused as `writ.replayed`. The
/// start waits for the next whole second so that a writ's `iat` (seconds) tells the two
/// runs apart.
fn single_use_across_restarts(dir: &DataDir, engine: &writ_engine::Engine) -> Result<()> {
    match dir.take_served_used()? {
        Some(used) => engine.restore_used_writs(used),
        None if engine.log().size() > 0 => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            std::thread::sleep(
                std::time::Duration::from_secs(1)
                    .saturating_sub(std::time::Duration::from_nanos(u64::from(now.subsec_nanos()))),
            );
            let horizon = now.as_secs() + 1;
            engine.refuse_writs_issued_before(horizon);
            tracing::warn!(
                horizon,
                "no record of the writs verified before this start (the last run did not stop cleanly): writs issued before it are refused as replayed"
            );
        }
        None => {}
    }
    Ok(())
}

/// The control plane's own log, on standard error: operator actions, failed commits and
/// checkpoints, server errors, decisions that could not be recorded. `WRIT_LOG` sets the
/// filter (`tracing-subscriber`'s `EnvFilter` syntax, such as `debug` or
/// `writ_server=debug`); `info` by default. A bad filter falls back to the default.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WRIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A subscriber already set (a second `run` in one process) is kept.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// Makes the automatic isolations that are due and finishes those a stop or a failure
/// interrupted, and says so; a failure is logged (and tried again by the caller).
async fn finish_isolations(engine: &writ_engine::Engine) {
    match engine.finish_isolations().await {
        Ok(done) => {
            for i in done {
                tracing::warn!(subject = %i.subject, rule = %i.rule, log_index = i.log_index, revoked = i.revoked, descendants = i.descendants, "finished an automatic isolation");
            }
        }
        Err(e) => tracing::error!(error = %e.detail(), "an automatic isolation is not finished: retrying"),
    }
}

/// Finishes the re-evaluation of an activation that a stop or a failure interrupted, and
/// says so; a failure is logged (and tried again by the caller).
async fn finish_reevaluation(engine: &writ_engine::Engine) {
    match engine.finish_reevaluation().await {
        Ok(None) => {}
        Ok(Some(r)) => tracing::warn!(
            bundle = %r.bundle,
            reevaluated = r.reevaluated,
            revoked = r.revoked,
            descendants = r.descendants,
            "finished an interrupted re-evaluation of the outstanding writs"
        ),
        Err(e) => tracing::error!(
            error = %e.detail(),
            "the re-evaluation of the outstanding writs after the last activation is not finished: retrying"
        ),
    }
}
