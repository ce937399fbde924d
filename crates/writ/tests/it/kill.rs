//! The control plane stopped under load. 16 clients authorize as fast as they can.
//!
//! - SIGKILL mid-load, then a restart on the same data directory: every allow a client
//!   received must be in the log at the index it was given, as the decision it was told
//!   about; every writ must verify against the restarted server's JWKS and point at that
//!   entry; and the offline audit (`writ log verify`) must pass beside the running server
//!   and after it.
//! - SIGTERM mid-load (graceful shutdown): every request a client sent before its
//!   connection closed is answered in full, never a 5xx; the process exits 0 within the
//!   bound; the final checkpoint covers the whole log; and the same checks hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use writ_core::{SpiffeId, request_digest};
use writ_engine::WritVerifier;
use writ_identity::{DevIssuer, IssueRequest};
use writ_log::Hash;

use crate::client::Conn;
use crate::support::{Server, server_stderr, start_server};

/// An allow as the client saw it.
struct Allowed {
    id: String,
    index: u64,
    writ: String,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn call() -> Value {
    json!({ "action": "read", "resource": "fs:/zones/billing", "arguments": { "path": "/zones/billing/a.csv" } })
}

/// One authorize request body per client, each its own agent in the zone `kill`.
fn bodies(dir: &Path, clients: usize) -> Vec<Vec<u8>> {
    let issuer =
        DevIssuer::from_secret_json(&std::fs::read_to_string(dir.join("keys/dev-issuer.json")).unwrap()).unwrap();
    (0..clients)
        .map(|i| {
            let subject = SpiffeId::parse(&format!("spiffe://{}/kill/agent-{i}", issuer.trust_domain())).unwrap();
            let mut extra = serde_json::Map::new();
            extra.insert("zone".into(), json!("kill"));
            let token = issuer
                .issue(IssueRequest {
                    subject: &subject,
                    audience: vec!["writ".into()],
                    ttl_secs: 600,
                    extra_claims: extra,
                    now: now(),
                })
                .unwrap();
            let mut request = call();
            request["credentials"] = json!({ "workload": token });
            serde_json::to_vec(&request).unwrap()
        })
        .collect()
}

/// Runs 16 clients against the server, stops it with `stop` after 1.5 s and returns every
/// allow the clients received. Each client must have ended by a transport error (the server
/// gone) before its 8 s deadline, and every answer it got must be a whole 200 allow.
fn allows_until_stopped(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    server: &mut Server,
    stop: impl FnOnce(&mut Server),
) -> Vec<Allowed> {
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let tasks: Vec<_> = bodies(dir, 16)
        .into_iter()
        .map(|body| {
            rt.spawn(async move {
                let mut allowed = Vec::new();
                let mut conn = Conn::connect(addr).await.unwrap();
                conn.set_timeout(Duration::from_secs(5));
                let body = hyper::body::Bytes::from(body);
                // Until the server is gone (the first transport error), or the deadline.
                let ended_by_error = loop {
                    if Instant::now() > deadline {
                        break false;
                    }
                    let reply = match conn
                        .send(
                            hyper::Method::POST,
                            "/v1/authorize",
                            &[("content-type", "application/json")],
                            body.clone(),
                        )
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => break true,
                    };
                    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
                    let d = reply.json().unwrap();
                    assert_eq!(d["outcome"], "allow", "{d}");
                    allowed.push(Allowed {
                        id: d["id"].as_str().unwrap().to_owned(),
                        index: d["log_index"].as_u64().unwrap(),
                        writ: d["writ"].as_str().unwrap().to_owned(),
                    });
                };
                (allowed, ended_by_error)
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    stop(server);
    let mut allowed = Vec::new();
    for t in tasks {
        let (a, ended_by_error) = rt.block_on(t).unwrap();
        assert!(ended_by_error, "a client ran to the deadline: the server was not stopped under load");
        allowed.extend(a);
    }
    assert!(allowed.len() >= 100, "only {} allows before the stop", allowed.len());
    allowed
}

/// Restarts the server on `dir` and checks every allow received against its log and JWKS.
fn every_allow_is_in_the_restarted_log(rt: &tokio::runtime::Runtime, dir: &Path, allowed: &[Allowed]) -> Server {
    let server = start_server(dir);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let (entries, jwks) = rt.block_on(async {
        let mut conn = Conn::connect(addr).await.unwrap();
        let highest = allowed.iter().map(|a| a.index).max().unwrap();
        let mut entries = BTreeMap::new();
        let mut start = 0;
        while start <= highest {
            let end = (start + 1000).min(highest + 1);
            let reply = conn.get(&format!("/v1/log/entries?start={start}&end={end}")).await.unwrap();
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            for e in reply.json().unwrap()["entries"].as_array().unwrap() {
                let bytes = B64.decode(e["entry_base64"].as_str().unwrap()).unwrap();
                entries.insert(e["index"].as_u64().unwrap(), (bytes, e["entry"].clone()));
            }
            start = end;
        }
        let jwks = conn.get("/.well-known/jwks.json").await.unwrap().json().unwrap();
        (entries, jwks)
    });
    let verifier = WritVerifier::new("writ", &jwks, "writ-enforcement", 30).unwrap();
    let c = call();
    let digest =
        request_digest(c["action"].as_str().unwrap(), c["resource"].as_str().unwrap(), &c["arguments"]).unwrap();
    for a in allowed {
        let (bytes, entry) = entries.get(&a.index).unwrap_or_else(|| panic!("allow {} at {} lost", a.id, a.index));
        assert_eq!(entry["kind"], "decision", "{entry}");
        assert_eq!(entry["id"], a.id.as_str(), "entry {} holds another decision", a.index);
        assert_eq!(entry["decision"]["outcome"], "allow", "{entry}");
        assert_eq!(entry["writ"]["jti"], a.id.as_str(), "{entry}");
        let v = verifier.verify(&a.writ, &digest, now(), &|_| false).unwrap_or_else(|r| panic!("writ {}: {r:?}", a.id));
        assert_eq!(v.claims.jti, a.id);
        assert_eq!(v.claims.log.index, a.index);
        assert_eq!(v.claims.log.leaf, Hash::leaf(bytes).to_prefixed());
    }
    // Distinct indices: no two allows were told the same place.
    let distinct: std::collections::HashSet<u64> = allowed.iter().map(|a| a.index).collect();
    assert_eq!(distinct.len(), allowed.len());
    server
}

fn writ_json(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_writ")).arg("--data-dir").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The offline audit (`writ log verify`): it passes; returns the entries it checked.
fn audit(dir: &Path) -> u64 {
    let report = writ_json(dir, &["log", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
    report["entries"].as_u64().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn every_allow_received_survives_a_sigkill_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rt = runtime();
    let mut server = start_server(dir);
    let allowed = allows_until_stopped(&rt, dir, &mut server, |s| {
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
    });
    drop(server);

    let server = every_allow_is_in_the_restarted_log(&rt, dir, &allowed);
    // The offline audit, beside the running server (read-only) and after it stopped.
    let audited = audit(dir);
    eprintln!("kill test: {} allows received before the SIGKILL, all in the log of {audited} entries", allowed.len());
    assert!(audited > allowed.iter().map(|a| a.index).max().unwrap(), "the audit saw {audited} entries");
    drop(server);
    assert!(audit(dir) >= audited);
}

#[test]
fn sigterm_under_load_answers_what_it_took_and_flushes_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rt = runtime();
    let mut server = start_server(dir);
    let mut exit = None;
    let allowed = allows_until_stopped(&rt, dir, &mut server, |s| exit = Some(s.terminate()));
    let exit = exit.unwrap();
    let stderr = server_stderr(dir);
    assert!(exit.success(), "SIGTERM: {exit}\n{stderr}");
    drop(server);

    // The stop printed the final size, and its last checkpoint covers the whole log.
    let size: u64 = stderr
        .split("writ: stopped; log size ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no final log size in:\n{stderr}"));
    assert_eq!(writ_json(dir, &["log", "checkpoint", "--json"])["size"].as_u64(), Some(size), "{stderr}");
    assert_eq!(audit(dir), size);
    assert!(size > allowed.iter().map(|a| a.index).max().unwrap());

    let server = every_allow_is_in_the_restarted_log(&rt, dir, &allowed);
    eprintln!(
        "sigterm test: {} allows answered before the stop, the log of {size} entries checkpointed",
        allowed.len()
    );
    drop(server);
    assert!(audit(dir) >= size);
}
