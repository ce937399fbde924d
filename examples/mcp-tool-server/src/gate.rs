//! The writ check in front of every tool: the writ read from the call's
//! `params._meta["dev.writ/writ"]`, verified in-process by `writ-verify` (signature, time,
//! audience, binding, the revocation feed, single use) for exactly the call received, before
//! the tool runs. The issue 15 call mapping: tool `T` of the server named `S` is the action
//! `mcp:S/T` on the resource `mcp:S`, the writ's audience is `mcp:S`.

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, RequestMetaObject};
use serde_json::{Value, json};
use writ_core::ReasonCode;
use writ_verify::{EnforcementPoint, VerifiedWrit, WritRejection};

/// Where the gateway (`writ mcp`) puts the writ in a `tools/call`'s `_meta`.
pub const WRIT_META_KEY: &str = "dev.writ/writ";
/// Where it puts the decision (`{"id", "log_index"}`), for the record.
pub const DECISION_META_KEY: &str = "dev.writ/decision";

/// A server's name as the gateway and the policy know it, and its verifier.
#[derive(Debug)]
pub struct Gate {
    name: String,
    point: EnforcementPoint,
}

impl Gate {
    /// The gate of the server named `name`, verifying with `point` (whose audience must be
    /// `mcp:<name>`).
    pub fn new(name: &str, point: EnforcementPoint) -> Self {
        Gate { name: name.to_owned(), point }
    }

    /// The resource every call of this server is (`mcp:S`), also the writ's audience.
    pub fn resource(&self) -> String {
        format!("mcp:{}", self.name)
    }

    /// The action a call of `tool` is (`mcp:S/T`).
    pub fn action(&self, tool: &str) -> String {
        format!("mcp:{}/{tool}", self.name)
    }

    /// Verifies the writ in `meta` for the call of `tool` with `arguments` (absent → `{}`)
    /// at `now` (Unix seconds). The binding is recomputed from the call received, never taken
    /// from the writ. A verified writ is used up: the same writ is refused next time.
    pub async fn check(
        &self,
        meta: &RequestMetaObject,
        tool: &str,
        arguments: Option<&JsonObject>,
        now: u64,
    ) -> Result<VerifiedWrit, WritRejection> {
        let token = match meta.0.0.get(WRIT_META_KEY) {
            Some(Value::String(token)) => token,
            // No writ verifies: the same code as a token that is not a JWS at all.
            Some(_) => {
                return Err(WritRejection::new(
                    ReasonCode::WritBadSignature,
                    format!("_meta[\"{WRIT_META_KEY}\"] is not a string"),
                ));
            }
            None => {
                return Err(WritRejection::new(
                    ReasonCode::WritBadSignature,
                    format!(
                        "no writ in _meta[\"{WRIT_META_KEY}\"]: this server runs a tool only with a writ for that \
                         call (launch it behind `writ mcp`)"
                    ),
                ));
            }
        };
        let arguments = arguments.map_or_else(|| Value::Object(JsonObject::new()), |a| Value::Object(a.clone()));
        let digest = writ_core::request_digest(&self.action(tool), &self.resource(), &arguments)
            .map_err(|e| WritRejection::new(ReasonCode::RequestMalformed, format!("the call's arguments: {e}")))?;
        self.point.verify(token, &digest, now).await
    }
}

/// The answer to a call whose writ was refused: a tool result with `isError: true` (the
/// tool did not run), its text naming the reason code, and the same as structured content
/// (`{"writ": {"outcome": "deny", "reason", "detail"}}`, the gateway's shape without the
/// decision, which was made elsewhere).
pub fn refusal(r: &WritRejection) -> CallToolResult {
    let text = format!("writ refused this call: {}: {}", r.reason, r.detail);
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content =
        Some(json!({"writ": {"outcome": "deny", "reason": r.reason.to_string(), "detail": r.detail}}));
    result
}
