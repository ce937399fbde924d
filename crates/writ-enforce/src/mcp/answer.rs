//! The messages the gateway writes itself: a denied (or still pending) `tools/call`
//! answered in the shape of the design contract, JSON-RPC errors for lines it cannot relay,
//! and `notifications/tools/list_changed`.
//! (Their transport, a line or an HTTP body or event, is the caller's.)

use serde_json::{Value, json};

use crate::control::Denial;

/// JSON-RPC 2.0 error code of a line that is not JSON.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 error code of a message that is not a valid request.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0 error code of invalid method parameters.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC 2.0 error code of an internal error (the gateway could not relay the message).
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// The error code of a denied call with `--deny-as-error` (design contract).
pub(crate) const DENIED: i64 = -32001;

/// The `structuredContent.writ` object of a deny or pending answer.
fn writ_object(outcome: &str, d: &Denial) -> Value {
    json!({
        "outcome": outcome,
        "reason": d.reason,
        "reasons": d.reasons,
        "detail": d.detail,
        "decision": d.decision,
        "log_index": d.log_index,
    })
}

fn text(outcome: &str, d: &Denial) -> String {
    let human = if d.detail.is_empty() { "no detail given" } else { d.detail.as_str() };
    if outcome == "pending" {
        format!(
            "writ: this call awaits an operator's approval (decision {}): {human}",
            d.decision.as_deref().unwrap_or("?")
        )
    } else {
        format!("writ denied this call: {}: {human}", d.reason)
    }
}

/// The answer to a `tools/call` with JSON-RPC id `id` that is not forwarded: `outcome` is
/// `deny` or `pending`. A tool result with `isError: true` by default, a JSON-RPC error
/// with code -32001 when `as_error`.
pub(crate) fn refusal(id: &Value, outcome: &str, d: &Denial, as_error: bool) -> Value {
    let writ = writ_object(outcome, d);
    let message = text(outcome, d);
    if as_error {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": DENIED, "message": message, "data": writ}})
    } else {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": {
                "content": [{"type": "text", "text": message}],
                "isError": true,
                "structuredContent": {"writ": writ},
            },
        })
    }
}

/// A JSON-RPC error answer.
pub(crate) fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The notification that the list of tools changed.
pub(crate) fn list_changed() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
}
