//! A control plane on loopback, credentials, and a client session through the gateway.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream, ReadHalf, WriteHalf};
use writ_core::SpiffeId;
use writ_enforce::mcp::{Config, CredentialSource};
use writ_engine::testkit::TestEngine;
use writ_engine::{Engine, SystemClock};
use writ_identity::{DevIssuer, IssueRequest};
use writ_log::NoteSigner;
use writ_policy::{Bundle, sign_bundle};

pub const AGENT: &str = "spiffe://demo.example/agent/tools-1";

/// A control plane serving on an ephemeral loopback port.
pub struct ControlPlane {
    pub url: String,
    pub engine: Arc<Engine>,
    pub issuer: DevIssuer,
    pub operators: DevIssuer,
    /// Its writ signing keys as a JWKS file (its `trust/jwks.json`), what a gateway trusts.
    pub keys: PathBuf,
    policy_key: NoteSigner,
    _dir: tempfile::TempDir,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures")
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        let TestEngine { engine, issuer, operators, policy_key, dir } = TestEngine::open(Arc::new(SystemClock));
        let bundle = Bundle::load_dir(&fixtures().join("bundle")).unwrap();
        let sig = sign_bundle(&bundle, &policy_key).unwrap();
        engine.activate(&bundle, &sig, None).await.unwrap();
        let keys = dir.path().join("jwks.json");
        std::fs::write(&keys, serde_json::to_vec(&engine.jwks()).unwrap()).unwrap();
        let engine = Arc::new(engine);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = writ_server::AppState::new(engine.clone());
        tokio::spawn(writ_server::serve(listener, state, std::future::pending()));
        ControlPlane { url, engine, issuer, operators, keys, policy_key, _dir: dir }
    }

    /// Rotates its writ signing key to one of its own (every test engine starts with the
    /// same key): its writs no longer verify with another test control plane's keys.
    pub async fn rotate_to_own_key(&self) {
        struct Fresh;
        impl writ_engine::WritKeyStore for Fresh {
            fn add(&self) -> Result<Vec<[u8; 32]>, String> {
                Ok(vec![writ_engine::testkit::WRIT_SEED, [0x5a; 32]])
            }
            fn remove_newest(&self) -> Result<(), String> {
                Ok(())
            }
            fn published(&self, _: &Value) -> Result<(), String> {
                Ok(())
            }
        }
        self.engine.rotate_writ_key_with(&Fresh, None).await.unwrap();
        std::fs::write(&self.keys, serde_json::to_vec(&self.engine.jwks()).unwrap()).unwrap();
    }

    /// Activates the fixture bundle with `policy` added to its policies.
    pub async fn activate_with_extra_policy(&self, policy: &str) {
        let (manifest, policies, schema, entities, tests) =
            Bundle::load_dir(&fixtures().join("bundle")).unwrap().parts();
        let bundle = Bundle::from_parts(
            &manifest,
            &format!("{policies}\n{policy}"),
            &schema,
            entities.as_deref(),
            tests.as_deref(),
        )
        .unwrap();
        let sig = sign_bundle(&bundle, &self.policy_key).unwrap();
        self.engine.activate(&bundle, &sig, None).await.unwrap();
    }

    /// A workload credential for the test agent.
    pub fn workload(&self) -> String {
        let subject = SpiffeId::parse(AGENT).unwrap();
        let mut extra = Map::new();
        extra.insert("zone".into(), json!("tools"));
        self.issuer
            .issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 600,
                extra_claims: extra,
                now: now(),
            })
            .unwrap()
    }

    /// An operator credential.
    pub fn operator(&self) -> String {
        let subject = SpiffeId::parse("spiffe://demo.example/operator/alice").unwrap();
        self.operators
            .issue(IssueRequest {
                subject: &subject,
                audience: vec!["writ".into()],
                ttl_secs: 600,
                extra_claims: Map::new(),
                now: now(),
            })
            .unwrap()
    }

    /// `POST path` with a JSON body (and a bearer token), the answer's status and JSON.
    pub async fn post(&self, path: &str, body: &Value, bearer: Option<&str>) -> (u16, Value) {
        let client = writ_enforce::client::Client::new(&self.url).unwrap();
        let reply = client.post_json(path, body, bearer, Duration::from_secs(10)).await.unwrap();
        (reply.status.as_u16(), serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let client = writ_enforce::client::Client::new(&self.url).unwrap();
        let reply = client.get(path, bearer, Duration::from_secs(10)).await.unwrap();
        (reply.status.as_u16(), serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
    }

    /// The log entries (parsed) from `start` on.
    pub async fn entries(&self, start: u64) -> Vec<Value> {
        let end = self.engine.log().size();
        let (_, v) = self.get(&format!("/v1/log/entries?start={start}&end={end}"), None).await;
        v["entries"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["entry"].clone()).collect()
    }

    /// A gateway configuration for the fixture server, logging what it receives to `log`.
    pub fn config(&self, log: &Path) -> Config {
        Config {
            url: self.url.clone(),
            name: "fixture".into(),
            credential: CredentialSource::Value(self.workload()),
            parent_writ: None,
            deny_as_error: false,
            approval_wait: Duration::ZERO,
            decision_timeout: Duration::from_secs(2),
            writ_keys: self.keys.clone(),
            bundle_poll: Duration::ZERO,
            command: vec![
                "env".into(),
                format!("FIXTURE_LOG={}", log.display()),
                "python3".into(),
                fixtures().join("mcp_server.py").display().to_string(),
            ],
        }
    }
}

/// The MCP client's side of a gateway running in process.
pub struct Session {
    writer: WriteHalf<DuplexStream>,
    reader: BufReader<ReadHalf<DuplexStream>>,
    /// Messages read while waiting for another.
    pub seen: Vec<Value>,
    pub gateway: tokio::task::JoinHandle<Result<i32, writ_enforce::Error>>,
}

impl Session {
    pub fn start(config: Config) -> Session {
        let (client, gateway_end) = tokio::io::duplex(1 << 20);
        let (gw_read, gw_write) = tokio::io::split(gateway_end);
        let gateway = tokio::spawn(writ_enforce::mcp::run(config, gw_read, gw_write));
        let (reader, writer) = tokio::io::split(client);
        Session { writer, reader: BufReader::new(reader), seen: Vec::new(), gateway }
    }

    /// Writes one raw line.
    pub async fn send_raw(&mut self, line: &[u8]) {
        self.writer.write_all(line).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
        self.writer.flush().await.unwrap();
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_raw(msg.to_string().as_bytes()).await;
    }

    /// The next message, within 10 s.
    pub async fn next(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("no message from the gateway within 10 s")
            .unwrap();
        assert!(n > 0, "the gateway closed its output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// The next message that is not a notification or request from the server (those are
    /// kept in `seen`: the fixture's log notification may come at any point).
    pub async fn next_not_notification(&mut self) -> Value {
        loop {
            let m = self.next().await;
            if m.get("method").is_none() {
                return m;
            }
            self.seen.push(m);
        }
    }

    /// The answer with JSON-RPC id `id` (other messages are kept in `seen`).
    pub async fn answer(&mut self, id: &Value) -> Value {
        if let Some(i) = self.seen.iter().position(|m| m.get("id") == Some(id) && m.get("method").is_none()) {
            return self.seen.remove(i);
        }
        loop {
            let m = self.next().await;
            if m.get("id") == Some(id) && m.get("method").is_none() {
                return m;
            }
            self.seen.push(m);
        }
    }

    /// A `tools/call` of `tool` with `arguments`, and its answer.
    pub async fn call(&mut self, id: i64, tool: &str, arguments: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}))
            .await;
        self.answer(&json!(id)).await
    }

    /// `initialize` and `notifications/initialized`.
    pub async fn initialize(&mut self) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"roots": {}}, "clientInfo": {"name": "test", "version": "1"}}}))
            .await;
        let init = self.answer(&json!(0)).await;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        init
    }

    /// Closes the gateway's input and waits for it to end; its exit status.
    pub async fn close(mut self) -> i32 {
        self.writer.shutdown().await.unwrap();
        drop(self.writer);
        tokio::time::timeout(Duration::from_secs(20), self.gateway).await.unwrap().unwrap().unwrap()
    }
}

/// The lines the fixture server received.
pub fn received(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The claims of a JWS compact, unverified.
pub fn claims(jws: &str) -> Value {
    use base64::Engine as _;
    let payload = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
