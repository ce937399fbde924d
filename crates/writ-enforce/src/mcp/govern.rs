//! The governing logic both transports share ([`super::stdio`] and [`super::http`]): what
//! a message from the client is (governed, filtered on its way back, or passed through), the
//! decision of a `tools/call` and the message that goes on in its place (the call with its
//! writ, or the gateway's own answer), what becomes of a message from the server (relayed,
//! rewritten, filtered, and the outcome of a governed call recorded), the visible tools of a
//! session and their refresh when the active bundle changes.
//!
//! A transport owns the bytes and the connections; this module sees one JSON-RPC message at
//! a time and one [`Session`] (the stdio connection, or one `Mcp-Session-Id`), and never
//! writes anything itself.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, Notify};

use super::answer;
use crate::control::{ControlPlane, Denial, Verdict};

/// Attempts at recording one outcome.
const OUTCOME_ATTEMPTS: u32 = 3;

/// The longest request id accepted, in bytes.
const MAX_ID_LEN: usize = 256;

/// A `tools/call` in flight: being decided (`jti` empty), or forwarded and awaiting the
/// server's answer.
struct Forwarded {
    jti: String,
    started: Instant,
}

impl Forwarded {
    /// The reservation of a call's id while it is decided.
    fn deciding() -> Self {
        Forwarded { jti: String::new(), started: Instant::now() }
    }
}

/// The tools the client was last shown.
#[derive(Default)]
struct Listed {
    /// Every tool name of the last listing (all its pages).
    names: Vec<String>,
    /// Those shown.
    visible: BTreeSet<String>,
}

/// What one client session has in flight and was last shown. JSON-RPC ids are unique per
/// session and direction, so the server's answers are matched by id.
#[derive(Default)]
pub(crate) struct Session {
    /// Forwarded `tools/call`s by JSON-RPC id (its JSON text).
    calls: Mutex<HashMap<String, Forwarded>>,
    /// `tools/list` requests by id: whether each asked for the first page.
    lists: Mutex<HashMap<String, bool>>,
    /// `initialize` requests by id.
    inits: Mutex<HashSet<String>>,
    listed: Mutex<Listed>,
}

impl Session {
    /// Whether a `tools/call`, `tools/list` or `initialize` with this id awaits its answer.
    async fn in_flight(&self, id: &Value) -> bool {
        let key = id_key(id);
        self.calls.lock().await.contains_key(&key)
            || self.lists.lock().await.contains_key(&key)
            || self.inits.lock().await.contains(&key)
    }
}

/// The key of a JSON-RPC id (`1` and `"1"` differ).
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A message from the client, classified ([`Governor::inbound`]).
pub(crate) enum Inbound {
    /// A `tools/call` with an id: to be decided ([`Governor::govern`]).
    Call(Value),
    /// Passed on, as this re-serialization of the message classified (a request whose answer
    /// must be rewritten is registered). Never the client's own bytes: a line with raw
    /// carriage returns (JSON whitespace to serde, line ends to most MCP SDKs' line readers)
    /// or a repeated member (first-wins parsers) would reach the server as another message
    /// than the one classified, such as a `tools/call` hidden in a notification's params.
    Forward(Vec<u8>),
    /// Not forwarded; the answer for the client, when there is one to give.
    Refuse(Option<Value>),
}

/// A decided `tools/call`.
pub(crate) enum Governed {
    /// Allowed: the call to forward, with the writ in its `_meta`.
    Forward(Vec<u8>),
    /// Not forwarded: the gateway's answer (deny, pending, invalid params).
    Answer(Value),
}

/// What becomes of a message from the server ([`Governor::outbound`]).
pub(crate) enum Outbound {
    /// Relayed as it came.
    Relay,
    /// Relayed as this message instead (the `initialize` result advertising
    /// `tools.listChanged`).
    Rewrite(Value),
    /// A `tools/list` result, to be filtered ([`Governor::filter_list`]) before it is relayed.
    Filter { msg: Value, first_page: bool },
}

/// The answer to a line or body that is not JSON.
pub(crate) fn parse_error(e: &serde_json::Error) -> Value {
    let message = format!("parse error: the message is not JSON ({e}); it was not forwarded");
    answer::error(&Value::Null, answer::PARSE_ERROR, &message)
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

/// The governance of one named server, shared by every session of a gateway.
pub(crate) struct Governor {
    pub(crate) control: ControlPlane,
    name: String,
    resource: String,
    deny_as_error: bool,
    approval_wait: Duration,
    outcomes: Tracker,
}

impl Governor {
    pub(crate) fn new(control: ControlPlane, name: &str, deny_as_error: bool, approval_wait: Duration) -> Self {
        Governor {
            control,
            name: name.to_owned(),
            resource: format!("mcp:{name}"),
            deny_as_error,
            approval_wait,
            outcomes: Tracker::default(),
        }
    }

    fn action(&self, tool: &str) -> String {
        format!("mcp:{}/{tool}", self.name)
    }

    /// Waits up to `within` for the outcome reports still in flight; whether they all ended.
    pub(crate) async fn drain(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.outcomes.wait_idle()).await.is_ok()
    }

    /// Classifies one message from the client and registers the requests whose answers are
    /// rewritten (`tools/list`, `initialize`) in `session`.
    pub(crate) async fn inbound(&self, session: &Session, msg: Value) -> Inbound {
        let Value::Object(obj) = &msg else {
            return Inbound::Refuse(refuse_batch_or_garbage(&msg));
        };
        let method = obj.get("method").and_then(Value::as_str);
        let id = obj.get("id").filter(|id| !id.is_null());
        if let (Some(_), Some(id)) = (method, id) {
            // JSON-RPC request ids are strings or integers: anything else (an object of 16 MiB,
            // 1.0 which servers answer as 1) could never be matched with its answer, and its
            // entry would stay for the session's life.
            let valid = match id {
                Value::String(s) => s.len() <= MAX_ID_LEN,
                Value::Number(n) => n.is_i64() || n.is_u64(),
                _ => false,
            };
            if !valid {
                let m = format!(
                    "invalid request: a request id is a string of at most {MAX_ID_LEN} bytes or an integer; it was not forwarded"
                );
                return Inbound::Refuse(Some(answer::error(&Value::Null, answer::INVALID_REQUEST, &m)));
            }
            // An id still in flight in this session: its answer would be matched with the wrong
            // request (an outcome recorded against another call's writ, a tools/list answer
            // taken for a call's and relayed unfiltered).
            if matches!(method, Some("tools/call" | "tools/list" | "initialize")) && session.in_flight(id).await {
                let m = "invalid request: a request with this id is still in flight; it was not forwarded";
                return Inbound::Refuse(Some(answer::error(id, answer::INVALID_REQUEST, m)));
            }
        }
        match (method, id) {
            (Some("tools/call"), Some(id)) => {
                // Reserved until decided: two calls with one id cannot both be in flight.
                session.calls.lock().await.insert(id_key(id), Forwarded::deciding());
                return Inbound::Call(msg);
            }
            (Some("tools/call"), None) => {
                // A notification (or a null id) cannot carry a governed call's answer: never
                // forwarded ungoverned.
                eprintln!("writ mcp: dropped a tools/call without an id from the client");
                let answer = obj.contains_key("id").then(|| {
                    let m = "a tools/call needs a non-null id; it was not forwarded";
                    answer::error(&Value::Null, answer::INVALID_REQUEST, m)
                });
                return Inbound::Refuse(answer);
            }
            (Some("tools/list"), Some(id)) => {
                let first_page = msg.pointer("/params/cursor").is_none_or(Value::is_null);
                session.lists.lock().await.insert(id_key(id), first_page);
            }
            (Some("initialize"), Some(id)) => {
                session.inits.lock().await.insert(id_key(id));
            }
            _ => {}
        }
        match serde_json::to_vec(&msg) {
            Ok(bytes) => Inbound::Forward(bytes),
            Err(e) => {
                let m = format!("the message cannot be written: {e}; it was not forwarded");
                Inbound::Refuse(Some(answer::error(&Value::Null, answer::INTERNAL_ERROR, &m)))
            }
        }
    }

    /// Decides one `tools/call`: the call to forward with its writ (registered in `session`
    /// to record its outcome), or the answer to give instead (its id's reservation is then
    /// released).
    pub(crate) async fn govern(&self, session: &Session, msg: Value) -> Governed {
        let key = id_key(msg.get("id").unwrap_or(&Value::Null));
        let governed = self.decide(session, msg).await;
        if let Governed::Answer(_) = governed {
            let mut calls = session.calls.lock().await;
            if calls.get(&key).is_some_and(|f| f.jti.is_empty()) {
                calls.remove(&key);
            }
        }
        governed
    }

    async fn decide(&self, session: &Session, mut msg: Value) -> Governed {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let Some(tool) = msg.pointer("/params/name").and_then(Value::as_str).map(str::to_owned) else {
            let m = "invalid params: a tools/call names its tool in params.name (a string); it was not forwarded";
            return Governed::Answer(answer::error(&id, answer::INVALID_PARAMS, m));
        };
        let arguments = match msg.pointer("/params/arguments") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                let m = "invalid params: params.arguments of a tools/call is an object; it was not forwarded";
                return Governed::Answer(answer::error(&id, answer::INVALID_PARAMS, m));
            }
        };
        let action = self.action(&tool);
        let mut verdict = self.control.authorize(&action, &self.resource, &arguments, &self.resource).await;
        if let Verdict::Pending { id: decision, log_index, .. } = &verdict
            && !self.approval_wait.is_zero()
        {
            verdict = self.control.await_approval(decision, *log_index, self.approval_wait).await;
        }
        // Forwarded only with a writ that verifies for exactly this call.
        let verdict = self.control.checked(verdict, &action, &self.resource, &arguments, &self.resource).await;
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
                match serde_json::to_vec(&msg) {
                    Ok(bytes) => {
                        session
                            .calls
                            .lock()
                            .await
                            .insert(id_key(&id), Forwarded { jti: decision, started: Instant::now() });
                        Governed::Forward(bytes)
                    }
                    Err(e) => {
                        let d = Denial::local(writ_core::ReasonCode::Internal, format!("cannot write the call: {e}"));
                        Governed::Answer(answer::refusal(&id, "deny", &d, self.deny_as_error))
                    }
                }
            }
            Verdict::Deny(d) => Governed::Answer(answer::refusal(&id, "deny", &d, self.deny_as_error)),
            Verdict::Pending { id: decision, log_index, detail } => {
                let d = Denial {
                    reason: "pending".into(),
                    reasons: vec!["pending".into()],
                    detail,
                    decision: Some(decision),
                    log_index,
                };
                Governed::Answer(answer::refusal(&id, "pending", &d, self.deny_as_error))
            }
        }
    }

    /// Forgets a forwarded call that never reached the server (its answer is the gateway's).
    pub(crate) async fn unsent(&self, session: &Session, id: &Value) {
        session.calls.lock().await.remove(&id_key(id));
    }

    /// One message from the server (an element of a batch is one message). The answer to a
    /// governed call has its outcome recorded, off the relay's path.
    pub(crate) async fn outbound(self: &Arc<Self>, session: &Session, msg: &Value) -> Outbound {
        let response_id = match msg {
            Value::Object(obj) if !obj.contains_key("method") => obj.get("id").map(id_key),
            _ => None,
        };
        let Some(key) = response_id else {
            return Outbound::Relay;
        };
        {
            let mut calls = session.calls.lock().await;
            match calls.get(&key) {
                // An answer to a call still being decided (so never forwarded): the server's
                // own doing, relayed and recorded as nothing; the reservation stays.
                Some(f) if f.jti.is_empty() => return Outbound::Relay,
                Some(_) => {
                    if let Some(f) = calls.remove(&key) {
                        drop(calls);
                        self.record_outcome(f, msg);
                    }
                    return Outbound::Relay;
                }
                None => {}
            }
        }
        let list = session.lists.lock().await.remove(&key);
        if let Some(first_page) = list {
            return Outbound::Filter { msg: msg.clone(), first_page };
        }
        let init = session.inits.lock().await.remove(&key);
        if init {
            let mut msg = msg.clone();
            if let Some(tools) = msg.pointer_mut("/result/capabilities/tools").and_then(Value::as_object_mut) {
                tools.insert("listChanged".into(), json!(true));
            }
            return Outbound::Rewrite(msg);
        }
        Outbound::Relay
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
        let gov = self.clone();
        self.outcomes.begin();
        tokio::spawn(async move {
            for attempt in 1..=OUTCOME_ATTEMPTS {
                match gov.control.outcome(&f.jti, status, &detail).await {
                    Ok(()) => break,
                    Err(_) if attempt < OUTCOME_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(200u64 << attempt)).await;
                    }
                    Err(e) => eprintln!(
                        "writ mcp: the outcome of writ {} ({status}, {detail}) was not recorded after {OUTCOME_ATTEMPTS} \
                         attempts: {e}",
                        f.jti
                    ),
                }
            }
            gov.outcomes.end();
        });
    }

    /// Filters a `tools/list` result through the preview; the message to relay.
    pub(crate) async fn filter_list(&self, session: &Session, mut msg: Value, first_page: bool) -> Value {
        let names: Vec<String> = match msg.pointer("/result/tools").and_then(Value::as_array) {
            Some(tools) => {
                tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).map(str::to_owned).collect()
            }
            None => return msg,
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
        let mut listed = session.listed.lock().await;
        if first_page {
            *listed = Listed::default();
        }
        listed.names.extend(names);
        listed.visible.extend(visible);
        msg
    }

    /// Previews the session's last listed tools again; whether the visible set changed (the
    /// client is then to be sent [`answer::list_changed`]).
    pub(crate) async fn refresh_visible(&self, session: &Session) -> bool {
        let names = session.listed.lock().await.names.clone();
        if names.is_empty() {
            return false;
        }
        let actions: Vec<String> = names.iter().map(|n| self.action(n)).collect();
        let visible: BTreeSet<String> = match self.control.preview(&actions, &self.resource).await {
            Ok(possible) => names.iter().zip(possible).filter(|(_, p)| *p).map(|(n, _)| n.clone()).collect(),
            Err(e) => {
                eprintln!("writ mcp: the visible tools were not refreshed after a bundle change: {e}");
                return false;
            }
        };
        let mut listed = session.listed.lock().await;
        let changed = listed.visible != visible;
        listed.visible = visible;
        changed
    }
}

/// A message from the client that is JSON but not one message: a batch gets an error per
/// request in it (so that the client is not left waiting), anything else one error.
fn refuse_batch_or_garbage(msg: &Value) -> Option<Value> {
    let Value::Array(items) = msg else {
        let message = "invalid request: not a JSON-RPC message object; it was not forwarded";
        return Some(answer::error(&Value::Null, answer::INVALID_REQUEST, message));
    };
    let message = "invalid request: writ mcp does not relay JSON-RPC batches (MCP 2025-06-18 removed them); send each \
                   message on its own";
    let errors: Vec<Value> = items
        .iter()
        .filter(|m| m.get("method").is_some())
        .filter_map(|m| m.get("id").filter(|id| !id.is_null()))
        .map(|id| answer::error(id, answer::INVALID_REQUEST, message))
        .collect();
    if errors.is_empty() {
        eprintln!("writ mcp: dropped a JSON-RPC batch from the client (no request in it to answer)");
        items.is_empty().then(|| answer::error(&Value::Null, answer::INVALID_REQUEST, message))
    } else {
        Some(Value::Array(errors))
    }
}

/// Looks at the active bundle every `poll`; on a change, calls `changed`.
pub(crate) async fn watch_bundle<F, Fut>(gov: Arc<Governor>, poll: Duration, changed: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    if poll.is_zero() {
        return;
    }
    let mut last: Option<Option<String>> = None;
    loop {
        if let Ok(bundle) = gov.control.active_bundle().await {
            if last.as_ref().is_some_and(|l| *l != bundle) {
                changed().await;
            }
            last = Some(bundle);
        }
        tokio::time::sleep(poll).await;
    }
}
