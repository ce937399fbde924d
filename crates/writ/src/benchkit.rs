//! What `writ-dev`'s engine benchmarks share: a scratch data directory removed afterwards,
//! workload credentials for `bench-N` agents of the billing zone, and the request bodies of
//! their load.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Map, json};
use writ_core::SpiffeId;
use writ_identity::{DevIssuer, IssueRequest};

use crate::datadir::DataDir;

/// Runs `bench` on a data directory of its own under the system's temporary directory,
/// removed afterwards whatever the outcome.
pub fn in_scratch_dir(name: &str, bench: impl FnOnce(&DataDir) -> Result<()>) -> Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("writ-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = DataDir::new(&root);
    let result = bench(&dir);
    let _ = std::fs::remove_dir_all(&root);
    result.map(|()| ExitCode::SUCCESS)
}

/// Workload credentials (two hours) for `agents` principals
/// `spiffe://demo.example/agent/bench-N` of the billing zone.
pub fn agent_credentials(issuer: &DevIssuer, agents: u64) -> Result<Vec<String>> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    (0..agents)
        .map(|a| {
            let subject = SpiffeId::parse(&format!("spiffe://demo.example/agent/bench-{a}"))?;
            let mut extra = Map::new();
            extra.insert("zone".into(), json!("billing"));
            Ok(issuer.issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 7200,
                extra_claims: extra,
                now,
            })?)
        })
        .collect()
}

/// The `i`th request of the load: from agent `i mod agents`, a write inside its zone for
/// even `i`, a read for odd `i` (the starter bundle allows both).
pub fn mixed_body(credentials: &[String], i: u64) -> serde_json::Result<Vec<u8>> {
    let token = credentials.get((i % credentials.len().max(1) as u64) as usize).cloned().unwrap_or_default();
    let (action, path) =
        if i.is_multiple_of(2) { ("write", format!("/zones/billing/{i}.csv")) } else { ("read", format!("/r/{i}")) };
    serde_json::to_vec(&json!({
        "credentials": {"workload": token},
        "action": action,
        "resource": "fs:/zones/billing",
        "arguments": {"path": path},
    }))
}
