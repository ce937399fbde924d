//! Hook enforcement points: an agent CLI (or framework) asks before each tool call, and the
//! hook answers with the control plane's decision.
//!
//! - [`claude_code`]: Claude Code's `PreToolUse` / `PostToolUse` command hooks (hooks
//!   reference, code.claude.com/docs/en/hooks, the revision with `tool_use_id` and the
//!   sub-agent fields `agent_id` / `agent_type`). One event in on standard input; the
//!   decision out as `hookSpecificOutput` (`permissionDecision` `allow`, `deny` or `ask`);
//!   the outcome recorded after the tool ran.
//! - [`exec_request`]: the generic protocol, for frameworks whose hooks are not Claude
//!   Code's: an execution request `{action, resource, arguments, audience?, parent_writ?}`
//!   in, `{"decision": "allow", "writ", …}` or `{"decision": "deny", "reason", …}` out.
//!
//! Both fail closed on their own: an event that cannot be read, a credential that cannot be
//! had, state that cannot be kept, a control plane unreachable or slower than the deadline
//! is a deny with exit status 2 and the reason on standard error (which Claude Code shows
//! the model and treats as a block), never a silent pass. The tool mapping is [`mapping`];
//! the state kept between runs (open calls, sub-agent lineage) is [`state`].

mod mapping;
mod state;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use writ_core::ReasonCode;

use crate::control::{ControlPlane, CredentialSource, Denial, Verdict};

/// Largest event or request read from standard input.
pub const MAX_INPUT: usize = 16 * 1024 * 1024;

/// Attempts at recording one outcome.
const OUTCOME_ATTEMPTS: u32 = 3;

/// A hook's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The control plane's base URL (`http://host:port`).
    pub url: String,
    /// Where the agent's workload credential comes from.
    pub credential: CredentialSource,
    /// A parent writ for the agent's own actions (lineage), from `WRIT_PARENT_WRIT`.
    pub parent_writ: Option<String>,
    /// The control plane's writ signing keys, a JWKS file (its `trust/jwks.json`): the only
    /// keys the writ of an allow is verified with.
    pub writ_keys: PathBuf,
    /// The deadline for each request to the control plane.
    pub decision_timeout: Duration,
    /// How long to wait for an operator's approval before answering that it is pending.
    pub approval_wait: Duration,
    /// The whole run's deadline (credential, decision, approval wait, retries, state): past
    /// it the call is denied. Below the agent CLI's own hook timeout, so that the hook always
    /// answers before the CLI gives up on it.
    pub deadline: Duration,
    /// Where the session state is kept (`claude_code` only).
    pub state_dir: Option<PathBuf>,
}

/// What the hook process answers: standard output, standard error, exit status.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Printed on standard output (a JSON document), if anything.
    pub stdout: Option<String>,
    /// Printed on standard error, if anything.
    pub stderr: Option<String>,
    /// The exit status: 0, or 2 for a deny the hook decided itself.
    pub exit: u8,
}

impl Answer {
    /// A deny for want of a decision: exit status 2, the reason on standard error.
    fn blocked(code: ReasonCode, detail: impl std::fmt::Display) -> Answer {
        Answer { stdout: None, stderr: Some(format!("writ denied this call: {}: {detail}", code.as_str())), exit: 2 }
    }

    fn blocked_by(d: &Denial) -> Answer {
        Answer { stdout: None, stderr: Some(format!("writ denied this call: {}: {}", d.reason, d.detail)), exit: 2 }
    }
}

/// Which Claude Code hook event the hook expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Whatever `hook_event_name` says.
    Event,
    /// Only `PostToolUse` / `PostToolUseFailure` (`--post`).
    Post,
}

fn control(config: &Config, parent_writ: Option<String>) -> Result<ControlPlane, crate::Error> {
    ControlPlane::new(
        &config.url,
        config.credential.clone(),
        parent_writ,
        config.decision_timeout,
        config.writ_keys.clone(),
    )
}

/// One required string field of `event`.
fn field<'a>(event: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match event.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("the event's {key} is empty")),
        Some(_) => Err(format!("the event's {key} is not a string")),
        None => Err(format!("the event has no {key}")),
    }
}

/// An optional string field of `event` (absent, null or empty: `None`).
fn optional<'a>(event: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match event.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
        Some(_) => Err(format!("the event's {key} is not a string")),
    }
}

/// A Claude Code tool event, read: the fields the hook needs (others are ignored).
struct Event<'a> {
    name: &'a str,
    session_id: &'a str,
    cwd: &'a str,
    tool_name: &'a str,
    tool_input: &'a Map<String, Value>,
    tool_use_id: Option<&'a str>,
    agent_id: Option<&'a str>,
    agent_type: Option<&'a str>,
}

fn read_event(v: &Value) -> Result<Event<'_>, String> {
    let obj = v.as_object().ok_or("the event is not a JSON object")?;
    let tool_input = match obj.get("tool_input") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err("the event's tool_input is not an object".into()),
        None => return Err("the event has no tool_input".into()),
    };
    Ok(Event {
        name: field(obj, "hook_event_name")?,
        session_id: field(obj, "session_id")?,
        cwd: field(obj, "cwd")?,
        tool_name: field(obj, "tool_name")?,
        tool_input,
        tool_use_id: optional(obj, "tool_use_id")?,
        agent_id: optional(obj, "agent_id")?,
        agent_type: optional(obj, "agent_type")?,
    })
}

/// The default state directory: `$XDG_RUNTIME_DIR/writ-hook`, else
/// `$HOME/.local/state/writ/hook`.
pub fn default_state_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    nonempty("XDG_RUNTIME_DIR")
        .map(|d| d.join("writ-hook"))
        .or_else(|| nonempty("HOME").map(|h| h.join(".local/state/writ/hook")))
}

/// `writ hook claude-code`: one Claude Code hook event (`input`, the bytes read from
/// standard input) answered, within the deadline.
pub async fn claude_code(config: &Config, mode: Mode, input: &[u8]) -> Answer {
    match tokio::time::timeout(config.deadline, claude_code_within(config, mode, input)).await {
        Ok(answer) => answer,
        Err(_) => Answer::blocked(
            ReasonCode::LogUnavailable,
            format!("no decision within the hook's deadline of {:?}", config.deadline),
        ),
    }
}

async fn claude_code_within(config: &Config, mode: Mode, input: &[u8]) -> Answer {
    if input.len() > MAX_INPUT {
        return Answer::blocked(ReasonCode::RequestMalformed, format!("the hook event is over {MAX_INPUT} bytes"));
    }
    // A repeated member name is refused: the agent's framework and writ could read different
    // values (found in review).
    let v: Value = match writ_core::json::parse_value(input) {
        Ok(v) => v,
        Err(e) => {
            return Answer::blocked(ReasonCode::RequestMalformed, format!("the hook event is not plain JSON ({e})"));
        }
    };
    let event = match read_event(&v) {
        Ok(e) => e,
        Err(why) => return Answer::blocked(ReasonCode::RequestMalformed, why),
    };
    let Some(dir) = config.state_dir.clone().or_else(default_state_dir) else {
        return Answer::blocked(
            ReasonCode::Internal,
            "no state directory: give --state-dir, or set XDG_RUNTIME_DIR or HOME",
        );
    };
    let store = match state::Store::open(&dir) {
        Ok(s) => s,
        Err(why) => return Answer::blocked(ReasonCode::Internal, why),
    };
    match (event.name, mode) {
        ("PreToolUse", Mode::Event) => pre_tool_use(config, &store, &event).await,
        ("PostToolUse" | "PostToolUseFailure", _) => {
            let response = v.get("tool_response").or_else(|| v.get("error")).unwrap_or(&Value::Null);
            post_tool_use(config, &store, &event, response).await
        }
        (name, Mode::Post) => {
            Answer::blocked(ReasonCode::RequestMalformed, format!("--post expects a PostToolUse event, not {name:?}"))
        }
        (name, Mode::Event) => Answer::blocked(
            ReasonCode::RequestMalformed,
            format!("the hook answers PreToolUse, PostToolUse and PostToolUseFailure events, not {name:?}"),
        ),
    }
}

/// The decision JSON of a PreToolUse hook.
fn decision(permission: &str, reason: &str) -> String {
    json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": permission,
        "permissionDecisionReason": reason,
    }})
    .to_string()
}

async fn pre_tool_use(config: &Config, store: &state::Store, event: &Event<'_>) -> Answer {
    let mapped = match mapping::map_tool(event.tool_name, event.tool_input, event.cwd) {
        Ok(m) => m,
        Err(mapping::Unmappable(why)) => return Answer::blocked(ReasonCode::RequestMalformed, why),
    };
    // Lineage: a sub-agent's actions are children of the writ that launched it.
    let parent = match event.agent_id {
        None => config.parent_writ.clone(),
        Some(agent_id) => {
            let mut locked = match store.lock(event.session_id) {
                Ok(l) => l,
                Err(why) => return Answer::blocked(ReasonCode::Internal, why),
            };
            let Some(parent) = locked.session.parent_of(agent_id, event.agent_type) else {
                return Answer::blocked(
                    ReasonCode::LineageParentUnknown,
                    format!(
                        "sub-agent {agent_id} ({}) has no launch this hook authorized in session {}: its actions \
                         cannot be placed in the lineage",
                        event.agent_type.unwrap_or("no agent_type"),
                        event.session_id
                    ),
                );
            };
            if let Err(why) = locked.save() {
                return Answer::blocked(ReasonCode::Internal, why);
            }
            Some(parent)
        }
    };
    let control = match control(config, parent) {
        Ok(c) => c,
        Err(e) => return Answer::blocked(ReasonCode::Internal, e),
    };
    let audience = mapped.resource.clone();
    let mut verdict = control.authorize(&mapped.action, &mapped.resource, &mapped.arguments, &audience).await;
    if let Verdict::Pending { id, log_index, .. } = &verdict
        && !config.approval_wait.is_zero()
    {
        verdict = control.await_approval(id, *log_index, config.approval_wait).await;
    }
    // Allowed only with a writ that verifies for exactly this call.
    let verdict = control.checked(verdict, &mapped.action, &mapped.resource, &mapped.arguments, &audience).await;
    match verdict {
        Verdict::Allow { writ, id, log_index } => {
            let key = state::call_key(event.tool_use_id, event.tool_name, &Value::Object(event.tool_input.clone()));
            let kept = store.lock(event.session_id).and_then(|mut locked| {
                let at_ms = state::now_ms();
                locked.session.calls.insert(key, state::Call { jti: id.clone(), at_ms });
                if let Some(agent_type) = &mapped.spawns {
                    locked.session.spawns.push(state::Spawn {
                        writ: writ.clone(),
                        jti: id.clone(),
                        agent_type: agent_type.clone(),
                        claimed_by: None,
                        at_ms,
                    });
                }
                locked.save()
            });
            if let Err(why) = kept {
                // The writ will not be used: say so in the log, then refuse.
                let _ = control
                    .outcome(&id, "not_run", &json!({"why": "the hook could not keep its state"}).to_string())
                    .await;
                return Answer::blocked(ReasonCode::Internal, why);
            }
            let at = log_index.map(|i| format!(", log index {i}")).unwrap_or_default();
            let reason = format!("writ allowed {} on {}: decision {id}{at}", mapped.action, mapped.resource);
            Answer { stdout: Some(decision("allow", &reason)), stderr: None, exit: 0 }
        }
        Verdict::Deny(d) if d.decision.is_some() => {
            let id = d.decision.as_deref().unwrap_or_default();
            let reason = format!("writ denied this call: {}: {} (decision {id})", d.reason, d.detail);
            Answer { stdout: Some(decision("deny", &reason)), stderr: None, exit: 0 }
        }
        Verdict::Deny(d) => Answer::blocked_by(&d),
        Verdict::Pending { id, detail, .. } => {
            let reason = format!(
                "writ: {} on {} waits for an operator's approval (decision {id}): {detail}",
                mapped.action, mapped.resource
            );
            Answer { stdout: Some(decision("ask", &reason)), stderr: None, exit: 0 }
        }
    }
}

async fn post_tool_use(config: &Config, store: &state::Store, event: &Event<'_>, response: &Value) -> Answer {
    let key = state::call_key(event.tool_use_id, event.tool_name, &Value::Object(event.tool_input.clone()));
    let call = match store.lock(event.session_id) {
        Ok(mut locked) => {
            let call = locked.session.calls.remove(&key);
            if let Err(why) = locked.save() {
                return Answer::blocked(ReasonCode::Internal, why);
            }
            call
        }
        Err(why) => return Answer::blocked(ReasonCode::Internal, why),
    };
    let Some(call) = call else {
        return Answer::blocked(
            ReasonCode::RequestMalformed,
            format!(
                "{} ran without a writ this hook knows of (no PreToolUse allow recorded for it in session {}): its \
                 outcome is not recorded",
                event.tool_name, event.session_id
            ),
        );
    };
    let failed = event.name == "PostToolUseFailure"
        || response.get("is_error").and_then(Value::as_bool) == Some(true)
        || response.get("interrupted").and_then(Value::as_bool) == Some(true);
    let status = if failed { "failed" } else { "succeeded" };
    let digest = match writ_core::canonical_json(response) {
        Ok(bytes) => format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        Err(_) => "unavailable".to_owned(),
    };
    let duration_ms = state::now_ms().saturating_sub(call.at_ms);
    let detail = json!({"result": digest, "duration_ms": duration_ms, "tool": event.tool_name}).to_string();
    // The outcome is the agent's own: no parent needed to record it.
    let control = match control(config, None) {
        Ok(c) => c,
        Err(e) => return Answer::blocked(ReasonCode::Internal, e),
    };
    let mut last = None;
    for attempt in 1..=OUTCOME_ATTEMPTS {
        match control.outcome(&call.jti, status, &detail).await {
            Ok(()) => return Answer { stdout: None, stderr: None, exit: 0 },
            Err(e) => {
                last = Some(e);
                if attempt < OUTCOME_ATTEMPTS {
                    tokio::time::sleep(Duration::from_millis(100u64 << attempt)).await;
                }
            }
        }
    }
    let why = last.map(|e| e.to_string()).unwrap_or_default();
    Answer::blocked(
        ReasonCode::LogUnavailable,
        format!(
            "the outcome of writ {} ({status}) was not recorded after {OUTCOME_ATTEMPTS} attempts: {why}",
            call.jti
        ),
    )
}

/// The generic execution request read by [`exec_request`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    action: String,
    resource: String,
    arguments: Map<String, Value>,
    audience: Option<String>,
    parent_writ: Option<String>,
}

/// The answer of `exec-request` for anything but an allow: JSON on standard output, the
/// reason on standard error, exit status 2.
fn request_denied(
    reason: &str,
    detail: &str,
    decision: Option<&str>,
    log_index: Option<u64>,
    reasons: Vec<String>,
) -> Answer {
    let mut out = json!({"decision": "deny", "reason": reason, "reasons": reasons, "detail": detail});
    if let Some(obj) = out.as_object_mut() {
        if let Some(id) = decision {
            obj.insert("decision_id".into(), json!(id));
        }
        if let Some(i) = log_index {
            obj.insert("log_index".into(), json!(i));
        }
    }
    Answer {
        stdout: Some(out.to_string()),
        stderr: Some(format!("writ denied this call: {reason}: {detail}")),
        exit: 2,
    }
}

/// [`request_denied`] for want of a decision.
fn request_refused(code: ReasonCode, detail: &str) -> Answer {
    request_denied(code.as_str(), detail, None, None, vec![code.as_str().to_owned()])
}

/// `writ hook exec-request`: one execution request (`input`, JSON) answered within the
/// deadline. Allow is exit status 0, anything else 2; the answer is JSON on standard output
/// either way.
pub async fn exec_request(config: &Config, input: &[u8]) -> Answer {
    match tokio::time::timeout(config.deadline, exec_request_within(config, input)).await {
        Ok(answer) => answer,
        Err(_) => request_refused(
            ReasonCode::LogUnavailable,
            &format!("no decision within the hook's deadline of {:?}", config.deadline),
        ),
    }
}

async fn exec_request_within(config: &Config, input: &[u8]) -> Answer {
    if input.len() > MAX_INPUT {
        return request_refused(ReasonCode::RequestMalformed, &format!("the request is over {MAX_INPUT} bytes"));
    }
    // As the API: a repeated member name at any depth is malformed (a first-wins reader of
    // the same request would act on another value than the one decided; found in review).
    let request: Request = match writ_core::json::from_slice(input) {
        Ok(r) => r,
        Err(e) => {
            return request_refused(
                ReasonCode::RequestMalformed,
                &format!("the execution request cannot be read: {e}"),
            );
        }
    };
    if request.action.is_empty() || request.resource.is_empty() {
        return request_refused(ReasonCode::RequestMalformed, "the action and the resource must not be empty");
    }
    let parent = request.parent_writ.filter(|p| !p.trim().is_empty()).or_else(|| config.parent_writ.clone());
    let control = match control(config, parent) {
        Ok(c) => c,
        Err(e) => return request_refused(ReasonCode::Internal, &e.to_string()),
    };
    let audience = request.audience.unwrap_or_else(|| request.resource.clone());
    let arguments = Value::Object(request.arguments);
    let mut verdict = control.authorize(&request.action, &request.resource, &arguments, &audience).await;
    if let Verdict::Pending { id, log_index, .. } = &verdict
        && !config.approval_wait.is_zero()
    {
        verdict = control.await_approval(id, *log_index, config.approval_wait).await;
    }
    let verdict = control.checked(verdict, &request.action, &request.resource, &arguments, &audience).await;
    match verdict {
        Verdict::Allow { writ, id, log_index } => Answer {
            stdout: Some(
                json!({"decision": "allow", "writ": writ, "decision_id": id, "log_index": log_index}).to_string(),
            ),
            stderr: None,
            exit: 0,
        },
        Verdict::Deny(d) => request_denied(&d.reason, &d.detail, d.decision.as_deref(), d.log_index, d.reasons),
        Verdict::Pending { id, log_index, detail } => {
            request_denied("pending", &detail, Some(&id), log_index, vec!["pending".to_owned()])
        }
    }
}
