//! `writ serve`: the control plane on the embedded default. On first start it creates the
//! data directory (keys, a development identity issuer trusted by the trust bundle, the log)
//! and activates the signed starter bundle; later starts reuse it. Binds 127.0.0.1 unless
//! told otherwise, prints the URLs, and on Ctrl-C or SIGTERM stops accepting, finishes
//! in-flight requests and publishes a final checkpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use writ_policy::{sign_bundle, starter_bundle};

use crate::datadir::DataDir;

pub fn run(dir: &DataDir, listen: SocketAddr, trust_domain: &str) -> Result<()> {
    let created = dir.init_all(trust_domain)?;
    let (engine, _lock) = dir.open_engine()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if engine.active_bundle().is_none() {
        let bundle = starter_bundle()?;
        let sig = sign_bundle(&bundle, &dir.policy_signer()?)?;
        rt.block_on(engine.activate(&bundle, &sig, None)).context("activating the starter bundle")?;
    }
    let engine = Arc::new(engine);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        if !created.is_empty() {
            eprintln!("writ: created {} in {}", created.join(", "), dir.root().display());
        }
        if let Some((name, version, digest)) = engine.active_bundle() {
            eprintln!("writ: active policy bundle {name} {version} ({digest})");
        }
        println!("writ serve: API at http://{addr}/v1  (health http://{addr}/healthz, JWKS http://{addr}/.well-known/jwks.json)");
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
        writ_server::serve(listener, writ_server::AppState::new(engine.clone()), shutdown).await?;
        engine.log().checkpoint_now().await.ok();
        eprintln!("writ: stopped; log size {}", engine.log().size());
        anyhow::Ok(())
    })
}
