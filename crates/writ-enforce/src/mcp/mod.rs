//! The MCP gateway (`writ mcp -- <server command> [args]`): a proxy for the stdio transport
//! of the Model Context Protocol, revision 2025-06-18
//! (<https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#stdio>).
//!
//! It owns the wrapped server process and the two newline-delimited JSON-RPC 2.0 streams:
//!
//! - **Governed**: every `tools/call` request from the client. Tool `T` of the server named
//!   `S` is the execution request `{action: "mcp:S/T", resource: "mcp:S", arguments}` with
//!   audience `mcp:S` (the issue-15 design contract). The call is forwarded only on allow,
//!   with the writ in `params._meta["dev.writ/writ"]` and the decision in
//!   `params._meta["dev.writ/decision"]`; otherwise the gateway answers it itself with the
//!   client's id ([`answer`]). Its outcome (succeeded or failed, the SHA-256 of the RFC 8785
//!   form of the result, the duration) is recorded after the answer has been relayed.
//! - **Filtered**: the results of `tools/list`, through `POST /v1/authorize/preview`: a tool
//!   every call of which would be denied is left out; when the preview cannot be had, every
//!   tool is shown (calls stay governed). When the active bundle changes, the last listed
//!   tools are previewed again and `notifications/tools/list_changed` is sent if the visible
//!   set changed; the `initialize` result advertises `tools.listChanged` accordingly.
//! - **Passed through unchanged**, byte for byte: everything else in both directions
//!   (notifications, progress, cancellation, resources, prompts, server-to-client requests
//!   such as sampling, elicitation and roots, and their responses). JSON-RPC ids are never
//!   rewritten.
//!
//! Lines are bounded ([`MAX_LINE`]). A line from the client that is not JSON is answered
//! with a parse error (-32700, id null) and not forwarded; a batch (JSON-RPC arrays, removed
//! from MCP in 2025-06-18) is refused with an error per request in it; a line from the server
//! that is not JSON is logged to standard error and dropped. Calls are decided concurrently
//! and answered in any order. The server's exit ends the gateway with its status; the
//! client's end of input closes the server's standard input, and the server is killed if it
//! has not exited 10 s later.

mod answer;
pub(crate) mod control;
mod lines;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

pub use control::CredentialSource;
pub use lines::MAX_LINE;

use self::control::{ControlPlane, Credential, Denial, Verdict};
use self::lines::{Line, read_line};
use crate::Error;
use crate::client::Client;

/// How long the server may take to exit once its standard input is closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long outcome reports still in flight are waited for when the gateway stops.
const OUTCOME_DRAIN: Duration = Duration::from_secs(5);

/// Attempts at recording one outcome.
const OUTCOME_ATTEMPTS: u32 = 3;

/// Messages queued towards one side before readers wait.
const QUEUE: usize = 1024;

/// The gateway's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The control plane's base URL (`http://host:port`).
    pub url: String,
    /// The server's name `S` in `mcp:S/T` (see [`server_name`]).
    pub name: String,
    /// Where the agent's workload credential comes from.
    pub credential: CredentialSource,
    /// A parent writ presented with every decision (lineage), from `WRIT_PARENT_WRIT`.
    pub parent_writ: Option<String>,
    /// Answer a denied call with a JSON-RPC error (-32001) instead of an `isError` result.
    pub deny_as_error: bool,
    /// How long to wait for a human approval before answering that it is pending.
    pub approval_wait: Duration,
    /// The deadline for a decision (and for every other request to the control plane).
    pub decision_timeout: Duration,
    /// How often the active bundle is looked at, to refresh the visible tools.
    pub bundle_poll: Duration,
    /// The server command and its arguments.
    pub command: Vec<String>,
}

/// The default server name for a command: its file name without extension, lowercased,
/// every character outside `[a-z0-9_-]` replaced by `-`.
pub fn server_name(command: &str) -> String {
    let file = std::path::Path::new(command).file_stem().and_then(|s| s.to_str()).unwrap_or(command);
    let name: String = file
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    if name.is_empty() { "-".to_owned() } else { name }
}

/// Whether `name` may name a server (`[a-z0-9_-]+`, at most 64 characters).
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A line (or a flush request) for the client.
enum Out {
    Line(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// A forwarded call awaiting the server's answer.
struct Forwarded {
    jti: String,
    started: Instant,
}

/// The tools the client was last shown.
#[derive(Default)]
struct Listed {
    /// Every tool name of the last listing (all its pages).
    names: Vec<String>,
    /// Those shown.
    visible: BTreeSet<String>,
}

/// Counts tasks still running (outcome reports), to wait for them at the end.
#[derive(Default)]
struct Tracker {
    running: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    fn begin(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }
    fn end(&self) {
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The state the relay tasks share.
struct Gateway {
    control: ControlPlane,
    name: String,
    resource: String,
    deny_as_error: bool,
    approval_wait: Duration,
    to_client: mpsc::Sender<Out>,
    /// Forwarded `tools/call`s by JSON-RPC id (its JSON text).
    calls: Mutex<HashMap<String, Forwarded>>,
    /// `tools/list` requests by id: whether each asked for the first page.
    lists: Mutex<HashMap<String, bool>>,
    /// `initialize` requests by id.
    inits: Mutex<HashSet<String>>,
    listed: Mutex<Listed>,
    outcomes: Tracker,
}

/// The key of a JSON-RPC id (`1` and `"1"` differ).
fn id_key(id: &Value) -> String {
    id.to_string()
}

impl Gateway {
    async fn send_client(&self, msg: &Value) {
        match serde_json::to_vec(msg) {
            Ok(bytes) => self.send_client_raw(bytes).await,
            Err(e) => eprintln!("writ mcp: cannot write an answer: {e}"),
        }
    }

    async fn send_client_raw(&self, bytes: Vec<u8>) {
        // Fails only once the client's output is gone, when there is nobody to tell.
        let _ = self.to_client.send(Out::Line(bytes)).await;
    }

    fn action(&self, tool: &str) -> String {
        format!("mcp:{}/{tool}", self.name)
    }

    /// One line from the client.
    async fn from_client(self: &Arc<Self>, line: Vec<u8>, to_server: &mpsc::Sender<Vec<u8>>) {
        let msg: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => {
                let message = format!("parse error: the line is not JSON ({e}); it was not forwarded");
                self.send_client(&answer::error(&Value::Null, answer::PARSE_ERROR, &message)).await;
                return;
            }
        };
        let Value::Object(obj) = &msg else {
            self.refuse_batch_or_garbage(&msg).await;
            return;
        };
        let method = obj.get("method").and_then(Value::as_str);
        let id = obj.get("id").filter(|id| !id.is_null());
        match (method, id) {
            (Some("tools/call"), Some(_)) => {
                let gw = self.clone();
                let to_server = to_server.clone();
                tokio::spawn(async move { gw.govern(msg, to_server).await });
                return;
            }
            (Some("tools/call"), None) => {
                // A notification (or a null id) cannot carry a governed call's answer: never
                // forwarded ungoverned.
                eprintln!("writ mcp: dropped a tools/call without an id from the client");
                if obj.contains_key("id") {
                    let msg = "a tools/call needs a non-null id; it was not forwarded";
                    self.send_client(&answer::error(&Value::Null, answer::INVALID_REQUEST, msg)).await;
                }
                return;
            }
            (Some("tools/list"), Some(id)) => {
                let first_page = msg.pointer("/params/cursor").is_none_or(Value::is_null);
                self.lists.lock().await.insert(id_key(id), first_page);
            }
            (Some("initialize"), Some(id)) => {
                self.inits.lock().await.insert(id_key(id));
            }
            _ => {}
        }
        // Passed through byte for byte. Fails only once the server's input is gone.
        let _ = to_server.send(line).await;
    }

    /// A line from the client that is JSON but not one message: a batch gets an error per
    /// request in it (so that the client is not left waiting), anything else one error.
    async fn refuse_batch_or_garbage(&self, msg: &Value) {
        let Value::Array(items) = msg else {
            let message = "invalid request: not a JSON-RPC message object; it was not forwarded";
            self.send_client(&answer::error(&Value::Null, answer::INVALID_REQUEST, message)).await;
            return;
        };
        let message = "invalid request: writ mcp does not relay JSON-RPC batches (MCP 2025-06-18 removed them); send \
                       each message on its own line";
        let errors: Vec<Value> = items
            .iter()
            .filter(|m| m.get("method").is_some())
            .filter_map(|m| m.get("id").filter(|id| !id.is_null()))
            .map(|id| answer::error(id, answer::INVALID_REQUEST, message))
            .collect();
        if errors.is_empty() {
            eprintln!("writ mcp: dropped a JSON-RPC batch from the client (no request in it to answer)");
            if items.is_empty() {
                self.send_client(&answer::error(&Value::Null, answer::INVALID_REQUEST, message)).await;
            }
        } else {
            self.send_client(&Value::Array(errors)).await;
        }
    }

    /// Decides one `tools/call`; forwards it with its writ, or answers it.
    async fn govern(self: Arc<Self>, mut msg: Value, to_server: mpsc::Sender<Vec<u8>>) {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let Some(tool) = msg.pointer("/params/name").and_then(Value::as_str).map(str::to_owned) else {
            let m = "invalid params: a tools/call names its tool in params.name (a string); it was not forwarded";
            self.send_client(&answer::error(&id, answer::INVALID_PARAMS, m)).await;
            return;
        };
        let arguments = match msg.pointer("/params/arguments") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                let m = "invalid params: params.arguments of a tools/call is an object; it was not forwarded";
                self.send_client(&answer::error(&id, answer::INVALID_PARAMS, m)).await;
                return;
            }
        };
        let action = self.action(&tool);
        let mut verdict = self.control.authorize(&action, &self.resource, &arguments, &self.resource).await;
        if let Verdict::Pending { id: decision, log_index, .. } = &verdict
            && !self.approval_wait.is_zero()
        {
            verdict = self.control.await_approval(decision, *log_index, self.approval_wait).await;
        }
        match verdict {
            Verdict::Allow { writ, id: decision, log_index } => {
                if let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut) {
                    params.insert("arguments".into(), arguments);
                    let meta = params.entry("_meta").or_insert_with(|| json!({}));
                    if !meta.is_object() {
                        *meta = json!({});
                    }
                    if let Some(meta) = meta.as_object_mut() {
                        meta.insert("dev.writ/writ".into(), json!(writ));
                        meta.insert("dev.writ/decision".into(), json!({"id": decision, "log_index": log_index}));
                    }
                }
                let bytes = match serde_json::to_vec(&msg) {
                    Ok(b) => b,
                    Err(e) => {
                        let d = Denial::local(writ_core::ReasonCode::Internal, format!("cannot write the call: {e}"));
                        self.send_client(&answer::refusal(&id, "deny", &d, self.deny_as_error)).await;
                        return;
                    }
                };
                self.calls.lock().await.insert(id_key(&id), Forwarded { jti: decision, started: Instant::now() });
                if to_server.send(bytes).await.is_err() {
                    self.calls.lock().await.remove(&id_key(&id));
                    let m = "the MCP server's input is closed (it exited); the call was not forwarded";
                    self.send_client(&answer::error(&id, -32603, m)).await;
                }
            }
            Verdict::Deny(d) => self.send_client(&answer::refusal(&id, "deny", &d, self.deny_as_error)).await,
            Verdict::Pending { id: decision, log_index, detail } => {
                let d = Denial {
                    reason: "pending".into(),
                    reasons: vec!["pending".into()],
                    detail,
                    decision: Some(decision),
                    log_index,
                };
                self.send_client(&answer::refusal(&id, "pending", &d, self.deny_as_error)).await;
            }
        }
    }

    /// One message from the server (an element of a batch is one message).
    async fn from_server(self: &Arc<Self>, line: Vec<u8>, msg: Value) {
        let response_id = match &msg {
            Value::Object(obj) if !obj.contains_key("method") => obj.get("id").map(id_key),
            _ => None,
        };
        if let Some(key) = response_id {
            let forwarded = self.calls.lock().await.remove(&key);
            if let Some(f) = forwarded {
                self.send_client_raw(line).await;
                self.record_outcome(f, &msg);
                return;
            }
            let list = self.lists.lock().await.remove(&key);
            if let Some(first_page) = list {
                let gw = self.clone();
                tokio::spawn(async move { gw.filter_list(msg, first_page).await });
                return;
            }
            let init = self.inits.lock().await.remove(&key);
            if init {
                let mut msg = msg;
                if let Some(tools) = msg.pointer_mut("/result/capabilities/tools").and_then(Value::as_object_mut) {
                    tools.insert("listChanged".into(), json!(true));
                }
                self.send_client(&msg).await;
                return;
            }
        }
        self.send_client_raw(line).await;
    }

    /// Records a forwarded call's outcome, off the relay's path.
    fn record_outcome(self: &Arc<Self>, f: Forwarded, msg: &Value) {
        let duration_ms = f.started.elapsed().as_millis();
        let (status, body) = match msg.get("error") {
            Some(error) => ("failed", error),
            None => {
                let result = msg.get("result").unwrap_or(&Value::Null);
                let failed = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
                (if failed { "failed" } else { "succeeded" }, result)
            }
        };
        let digest = match writ_core::canonical_json(body) {
            Ok(bytes) => format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            Err(_) => "unavailable".to_owned(),
        };
        let detail = json!({"result": digest, "duration_ms": duration_ms}).to_string();
        let gw = self.clone();
        self.outcomes.begin();
        tokio::spawn(async move {
            for attempt in 1..=OUTCOME_ATTEMPTS {
                match gw.control.outcome(&f.jti, status, &detail).await {
                    Ok(()) => break,
                    Err(e) if attempt < OUTCOME_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(200u64 << attempt)).await;
                        let _ = e;
                    }
                    Err(e) => eprintln!(
                        "writ mcp: the outcome of writ {} ({status}, {detail}) was not recorded after {OUTCOME_ATTEMPTS} \
                         attempts: {e}",
                        f.jti
                    ),
                }
            }
            gw.outcomes.end();
        });
    }

    /// Filters a `tools/list` result through the preview and relays it.
    async fn filter_list(self: Arc<Self>, mut msg: Value, first_page: bool) {
        let names: Vec<String> = match msg.pointer("/result/tools").and_then(Value::as_array) {
            Some(tools) => {
                tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).map(str::to_owned).collect()
            }
            None => {
                self.send_client(&msg).await;
                return;
            }
        };
        let actions: Vec<String> = names.iter().map(|n| self.action(n)).collect();
        let visible: BTreeSet<String> = match self.control.preview(&actions, &self.resource).await {
            Ok(possible) => names.iter().zip(possible).filter(|(_, p)| *p).map(|(n, _)| n.clone()).collect(),
            Err(e) => {
                eprintln!("writ mcp: tools/list shown unfiltered (calls stay governed): the preview failed: {e}");
                names.iter().cloned().collect()
            }
        };
        if let Some(tools) = msg.pointer_mut("/result/tools").and_then(Value::as_array_mut) {
            tools.retain(|t| t.get("name").and_then(Value::as_str).is_none_or(|n| visible.contains(n)));
        }
        {
            let mut listed = self.listed.lock().await;
            if first_page {
                *listed = Listed::default();
            }
            listed.names.extend(names);
            listed.visible.extend(visible);
        }
        self.send_client(&msg).await;
    }

    /// Previews the last listed tools again; tells the client if the visible set changed.
    async fn refresh_visible(&self) {
        let names = self.listed.lock().await.names.clone();
        if names.is_empty() {
            return;
        }
        let actions: Vec<String> = names.iter().map(|n| self.action(n)).collect();
        let visible: BTreeSet<String> = match self.control.preview(&actions, &self.resource).await {
            Ok(possible) => names.iter().zip(possible).filter(|(_, p)| *p).map(|(n, _)| n.clone()).collect(),
            Err(e) => {
                eprintln!("writ mcp: the visible tools were not refreshed after a bundle change: {e}");
                return;
            }
        };
        let changed = {
            let mut listed = self.listed.lock().await;
            let changed = listed.visible != visible;
            listed.visible = visible;
            changed
        };
        if changed {
            self.send_client(&answer::list_changed()).await;
        }
    }
}

/// Runs the gateway: starts the server, relays between it and the client (`client_in`,
/// `client_out`: the gateway's own standard input and output in `writ mcp`) until the
/// server exits, and returns the server's exit status (128 + the signal that ended it).
pub async fn run<R, W>(config: Config, client_in: R, client_out: W) -> Result<i32, Error>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Some((program, args)) = config.command.split_first() else {
        return Err(Error::Config("no server command: writ mcp [options] -- <server command> [args]".into()));
    };
    if !valid_server_name(&config.name) {
        return Err(Error::Config(format!("--name {:?}: a server name is [a-z0-9_-]+, at most 64", config.name)));
    }
    let client = Client::new(&config.url)?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn { command: program.clone(), source })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Config("the server's standard input and output were not piped".into()));
    };
    let (to_client, client_rx) = mpsc::channel(QUEUE);
    let (to_server, server_rx) = mpsc::channel(QUEUE);
    let gw = Arc::new(Gateway {
        control: ControlPlane {
            client,
            credential: Credential::new(config.credential.clone()),
            parent_writ: config.parent_writ.clone(),
            decision_timeout: config.decision_timeout,
        },
        resource: format!("mcp:{}", config.name),
        name: config.name.clone(),
        deny_as_error: config.deny_as_error,
        approval_wait: config.approval_wait,
        to_client,
        calls: Mutex::default(),
        lists: Mutex::default(),
        inits: Mutex::default(),
        listed: Mutex::default(),
        outcomes: Tracker::default(),
    });
    let client_writer = tokio::spawn(write_client(client_out, client_rx));
    let server_writer = tokio::spawn(write_server(stdin, server_rx));
    let mut server_reader = tokio::spawn(server_loop(gw.clone(), BufReader::with_capacity(64 * 1024, stdout)));
    let mut client_reader =
        tokio::spawn(client_loop(gw.clone(), BufReader::with_capacity(64 * 1024, client_in), to_server));
    let watch = tokio::spawn(watch_bundle(gw.clone(), config.bundle_poll));

    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut client_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|source| Error::Io { what: "waiting for the server", source })?,
            _ = &mut client_reader, if client_open => {
                // The client's input ended: the server's input closes once the calls being
                // decided are through; it then has SHUTDOWN_GRACE to exit.
                client_open = false;
                kill_at = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            () = sleep_until_some(kill_at) => {
                eprintln!("writ mcp: the server did not exit within {SHUTDOWN_GRACE:?} of its input closing: killing it");
                let _ = child.start_kill();
                kill_at = None;
            }
        }
    };
    // What the server wrote before it exited is still relayed, then the outcomes recorded.
    if tokio::time::timeout(Duration::from_secs(2), &mut server_reader).await.is_err() {
        server_reader.abort();
    }
    if tokio::time::timeout(OUTCOME_DRAIN, gw.outcomes.wait_idle()).await.is_err() {
        eprintln!("writ mcp: stopped with outcome reports still in flight (see the messages above)");
    }
    let (done, flushed) = oneshot::channel();
    if gw.to_client.send(Out::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), flushed).await;
    }
    watch.abort();
    client_reader.abort();
    server_writer.abort();
    client_writer.abort();
    Ok(exit_code(status))
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

#[cfg(not(unix))]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(1)
}

async fn client_loop<R: AsyncRead + Unpin>(
    gw: Arc<Gateway>,
    mut reader: BufReader<R>,
    to_server: mpsc::Sender<Vec<u8>>,
) {
    loop {
        match read_line(&mut reader, MAX_LINE).await {
            Ok(Line::Data(line)) => {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    gw.from_client(line, &to_server).await;
                }
            }
            Ok(Line::TooLong(n)) => {
                let message = format!(
                    "invalid request: a line of {n} bytes is over the gateway's {MAX_LINE}-byte bound; dropped"
                );
                gw.send_client(&answer::error(&Value::Null, answer::INVALID_REQUEST, &message)).await;
            }
            Ok(Line::Eof) => return,
            Err(e) => {
                eprintln!("writ mcp: reading from the client: {e}");
                return;
            }
        }
    }
}

async fn server_loop<R: AsyncRead + Unpin>(gw: Arc<Gateway>, mut reader: BufReader<R>) {
    loop {
        match read_line(&mut reader, MAX_LINE).await {
            Ok(Line::Data(line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Value>(&line) {
                    Ok(Value::Array(items)) => {
                        // A batch (older protocol revisions): each message on its own.
                        for item in items {
                            match serde_json::to_vec(&item) {
                                Ok(bytes) => gw.from_server(bytes, item).await,
                                Err(e) => eprintln!("writ mcp: dropped a message of a batch from the server: {e}"),
                            }
                        }
                    }
                    Ok(msg) => gw.from_server(line, msg).await,
                    Err(e) => {
                        let shown =
                            String::from_utf8_lossy(line.get(..line.len().min(200)).unwrap_or_default()).into_owned();
                        eprintln!("writ mcp: dropped a line from the server that is not JSON ({e}): {shown:?}");
                    }
                }
            }
            Ok(Line::TooLong(n)) => {
                eprintln!("writ mcp: dropped a line of {n} bytes from the server (over the {MAX_LINE}-byte bound)");
            }
            Ok(Line::Eof) => return,
            Err(e) => {
                eprintln!("writ mcp: reading from the server: {e}");
                return;
            }
        }
    }
}

async fn write_client<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::Receiver<Out>) {
    while let Some(item) = rx.recv().await {
        match item {
            Out::Line(mut line) => {
                line.push(b'\n');
                if let Err(e) = out.write_all(&line).await {
                    eprintln!("writ mcp: writing to the client: {e}");
                    return;
                }
                // Flushed once the queue is empty, so that a burst is written together.
                if rx.is_empty()
                    && let Err(e) = out.flush().await
                {
                    eprintln!("writ mcp: writing to the client: {e}");
                    return;
                }
            }
            Out::Flush(done) => {
                let _ = out.flush().await;
                let _ = done.send(());
            }
        }
    }
}

async fn write_server<W: AsyncWrite + Unpin>(mut stdin: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(mut line) = rx.recv().await {
        line.push(b'\n');
        let written = match stdin.write_all(&line).await {
            Ok(()) if rx.is_empty() => stdin.flush().await,
            other => other,
        };
        if let Err(e) = written {
            eprintln!("writ mcp: writing to the server: {e}");
            return;
        }
    }
    // Every sender is gone (the client's input ended): closing stdin tells the server.
    let _ = stdin.shutdown().await;
}

/// Looks at the active bundle every `poll`; on a change, refreshes the visible tools.
async fn watch_bundle(gw: Arc<Gateway>, poll: Duration) {
    if poll.is_zero() {
        return;
    }
    let mut last: Option<Option<String>> = None;
    loop {
        if let Ok(bundle) = gw.control.active_bundle().await {
            if last.as_ref().is_some_and(|l| *l != bundle) {
                gw.refresh_visible().await;
            }
            last = Some(bundle);
        }
        tokio::time::sleep(poll).await;
    }
}
