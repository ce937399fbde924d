//! The execution request (SPEC.md §1) as writ accepts it, and its canonical digest
//! (SPEC.md §2): `sha256:` and the hex SHA-256 of the RFC 8785 (JCS) canonical JSON of
//! `{"action": …, "resource": …, "arguments": …}`.
//!
//! Parsing is strict and bounded ([`Limits`]): unknown fields, wrong types, over-long
//! strings, deep nesting, too many values, numbers that JSON cannot carry exactly (integers
//! beyond ±2^53, which RFC 8785 would round) and oversized bodies are all
//! `request.malformed`. A missing workload credential is not malformed: it parses, and the
//! identity stage denies it with `identity.missing`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Bounds on an execution request. The defaults are documented in the README.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Whole request body, in bytes.
    pub max_body: usize,
    /// Any one credential (a JWT), in bytes.
    pub max_credential: usize,
    /// `action`, `resource`, `parent`, `request_id`, `audience`, in bytes.
    pub max_name: usize,
    /// Any string inside `arguments`, in bytes.
    pub max_string: usize,
    /// Nesting depth of `arguments` (an object directly in `arguments` is depth 1).
    pub max_depth: usize,
    /// Values (scalars, arrays, objects) inside `arguments`.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 64 * 1024,
            max_credential: 8 * 1024,
            max_name: 256,
            max_string: 16 * 1024,
            max_depth: 16,
            max_values: 2048,
        }
    }
}

/// The credentials of a request: the acting workload's (required by the identity stage)
/// and the optional delegation chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The acting agent's workload credential (JWT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The human operator on whose behalf it acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The orchestrator that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// The machine it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Its runtime environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// A delegation credential: the parent writ's principal naming the acting agent in its
    /// `may_act` claim, for a child that is another principal than its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
}

/// Every bearer token a request can present, in one list: request validation bounds each
/// by its [`Presented::field`], the engine records each by SHA-256 under its
/// [`Presented::name`] and verifies the vouching ones under the role of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Presented {
    /// `credentials.workload`: the acting workload.
    Workload,
    /// `credentials.operator`.
    Operator,
    /// `credentials.orchestrator`.
    Orchestrator,
    /// `credentials.machine`.
    Machine,
    /// `credentials.runtime`.
    Runtime,
    /// `credentials.delegation`: a `may_act` credential.
    Delegation,
    /// `attestation`: the runtime attestation.
    Attestation,
    /// `parent_writ`: the parent writ, proving possession.
    ParentWrit,
}

impl Presented {
    /// Every kind, in the order requests and records list them.
    pub const ALL: [Presented; 8] = [
        Presented::Workload,
        Presented::Operator,
        Presented::Orchestrator,
        Presented::Machine,
        Presented::Runtime,
        Presented::Delegation,
        Presented::Attestation,
        Presented::ParentWrit,
    ];

    /// Its name in a decision record (`credentials` hashes, `facts.delegation`).
    pub fn name(self) -> &'static str {
        match self {
            Presented::Workload => "workload",
            Presented::Operator => "operator",
            Presented::Orchestrator => "orchestrator",
            Presented::Machine => "machine",
            Presented::Runtime => "runtime",
            Presented::Delegation => "delegation",
            Presented::Attestation => "attestation",
            Presented::ParentWrit => "parent_writ",
        }
    }

    /// Where a request carries it.
    pub fn field(self) -> &'static str {
        match self {
            Presented::Workload => "credentials.workload",
            Presented::Operator => "credentials.operator",
            Presented::Orchestrator => "credentials.orchestrator",
            Presented::Machine => "credentials.machine",
            Presented::Runtime => "credentials.runtime",
            Presented::Delegation => "credentials.delegation",
            Presented::Attestation => "attestation",
            Presented::ParentWrit => "parent_writ",
        }
    }
}

/// A parsed, bounded execution request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionRequest {
    /// Caller's id for this request (echoed in the decision), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Credentials.
    #[serde(default)]
    pub credentials: Credentials,
    /// Signed runtime attestation (JWT), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// The action, e.g. `tool.call` or `fs.write`.
    pub action: String,
    /// The resource acted on, e.g. `mcp:filesystem/write_file`.
    pub resource: String,
    /// The tool arguments (a JSON object).
    #[serde(default = "empty_object")]
    pub arguments: Value,
    /// The parent writ's id (`jti`), for a call made under another writ. Naming it is not
    /// enough: the parent writ itself must be presented in `parent_writ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The parent writ (JWS compact), proving possession of it: verified by the control
    /// plane (signature, issuer), never consumed. Its `jti` is the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_writ: Option<String>,
    /// The audience the writ is for (an enforcement point); the engine's default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn malformed(why: impl Into<String>) -> Error {
    Error::Malformed(why.into())
}

/// Largest integer magnitude that an IEEE 754 double (and so RFC 8785) carries exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl ExecutionRequest {
    /// Parses a request body, enforcing `limits`.
    pub fn parse(body: &[u8], limits: &Limits) -> Result<Self, Error> {
        if body.len() > limits.max_body {
            return Err(malformed(format!("body of {} bytes exceeds {}", body.len(), limits.max_body)));
        }
        // Parse to a value first: serde_json bounds recursion, a repeated member name at any
        // depth is refused, and the value can be checked before it is typed.
        let value = crate::json::parse_value(body).map_err(|e| malformed(format!("not strict JSON: {e}")))?;
        let mut req: ExecutionRequest = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        canonical_numbers(&mut req.arguments)?;
        req.validate(limits)?;
        Ok(req)
    }

    /// Checks the bounds and shapes [`ExecutionRequest::parse`] enforces (for requests built
    /// in code).
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        let name = |field: &str, v: &str| -> Result<(), Error> {
            if v.is_empty() {
                return Err(malformed(format!("{field} is empty")));
            }
            if v.len() > limits.max_name {
                return Err(malformed(format!("{field} is longer than {} bytes", limits.max_name)));
            }
            if v.chars().any(char::is_control) {
                return Err(malformed(format!("{field} contains a control character")));
            }
            Ok(())
        };
        name("action", &self.action)?;
        name("resource", &self.resource)?;
        for (field, v) in [("request_id", &self.request_id), ("parent", &self.parent), ("audience", &self.audience)] {
            if let Some(v) = v {
                name(field, v)?;
            }
        }
        for (kind, v) in self.presented_all() {
            if v.len() > limits.max_credential {
                return Err(malformed(format!("{} is longer than {} bytes", kind.field(), limits.max_credential)));
            }
        }
        if !self.arguments.is_object() {
            return Err(malformed("arguments must be a JSON object"));
        }
        let mut values = 0usize;
        check_value(&self.arguments, 0, limits, &mut values)
    }

    /// The token presented as `kind`, if any.
    pub fn presented(&self, kind: Presented) -> Option<&str> {
        let c = &self.credentials;
        match kind {
            Presented::Workload => c.workload.as_deref(),
            Presented::Operator => c.operator.as_deref(),
            Presented::Orchestrator => c.orchestrator.as_deref(),
            Presented::Machine => c.machine.as_deref(),
            Presented::Runtime => c.runtime.as_deref(),
            Presented::Delegation => c.delegation.as_deref(),
            Presented::Attestation => self.attestation.as_deref(),
            Presented::ParentWrit => self.parent_writ.as_deref(),
        }
    }

    /// Every token presented, in [`Presented::ALL`]'s order.
    pub fn presented_all(&self) -> impl Iterator<Item = (Presented, &str)> {
        Presented::ALL.into_iter().filter_map(|k| self.presented(k).map(|t| (k, t)))
    }

    /// The canonical digest of this request's `{action, resource, arguments}`.
    pub fn digest(&self) -> Result<RequestDigest, Error> {
        request_digest(&self.action, &self.resource, &self.arguments)
    }
}

/// Replaces every number written as a fraction or with an exponent (`120.0`, `2.5e3`,
/// `-0`) by the value its RFC 8785 form reads back as (`120`, `2500`, `0`): the log records
/// arguments in that form, so the policy must evaluate exactly that value, or replay would
/// evaluate something else than the live decision did. Integers are left alone; a number
/// whose canonical form is a fraction (`2.5`) stays a fraction.
fn canonical_numbers(v: &mut Value) -> Result<(), Error> {
    match v {
        Value::Number(n) if n.is_f64() => {
            let text = canonical_json(&Value::Number(n.clone()))?;
            *v = serde_json::from_slice(&text).map_err(|e| malformed(format!("number {n}: {e}")))?;
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(canonical_numbers),
        Value::Object(map) => map.values_mut().try_for_each(canonical_numbers),
        _ => Ok(()),
    }
}

fn check_value(v: &Value, depth: usize, limits: &Limits, values: &mut usize) -> Result<(), Error> {
    *values += 1;
    if *values > limits.max_values {
        return Err(malformed(format!("arguments hold more than {} values", limits.max_values)));
    }
    if depth > limits.max_depth {
        return Err(malformed(format!("arguments are nested deeper than {}", limits.max_depth)));
    }
    match v {
        Value::String(s) if s.len() > limits.max_string => {
            Err(malformed(format!("a string in arguments is longer than {} bytes", limits.max_string)))
        }
        Value::Number(n) => {
            let exact = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_SAFE_INTEGER,
                (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
                (None, None) => n.as_f64().is_some_and(f64::is_finite),
            };
            if exact { Ok(()) } else { Err(malformed(format!("number {n} cannot be represented exactly"))) }
        }
        Value::Array(items) => items.iter().try_for_each(|i| check_value(i, depth + 1, limits, values)),
        Value::Object(map) => map.iter().try_for_each(|(k, i)| {
            if k.len() > limits.max_string {
                return Err(malformed("a key in arguments is too long"));
            }
            check_value(i, depth + 1, limits, values)
        }),
        _ => Ok(()),
    }
}

/// RFC 8785 canonical JSON of a value.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, Error> {
    serde_jcs::to_vec(value).map_err(|e| malformed(format!("cannot canonicalize: {e}")))
}

/// The digest binding a writ to one call: SHA-256 of the RFC 8785 canonical JSON of
/// `{"action": action, "resource": resource, "arguments": arguments}`.
///
/// The three keys are written in their RFC 8785 order around the canonical arguments,
/// the strings escaped as RFC 8785 §3.2.2.2 says (which is what `serde_json` writes), so
/// the object is never built nor copied; a test checks the bytes against `serde_jcs` over
/// the whole object.
pub fn request_digest(action: &str, resource: &str, arguments: &Value) -> Result<RequestDigest, Error> {
    Ok(RequestDigest(Sha256::digest(canonical_request(action, resource, arguments)?).into()))
}

fn canonical_request(action: &str, resource: &str, arguments: &Value) -> Result<Vec<u8>, Error> {
    let arguments = canonical_json(arguments)?;
    let mut out = Vec::with_capacity(arguments.len() + action.len() + resource.len() + 48);
    out.extend_from_slice(br#"{"action":"#);
    serde_json::to_writer(&mut out, action).map_err(|e| malformed(format!("cannot encode: {e}")))?;
    out.extend_from_slice(br#","arguments":"#);
    out.extend_from_slice(&arguments);
    out.extend_from_slice(br#","resource":"#);
    serde_json::to_writer(&mut out, resource).map_err(|e| malformed(format!("cannot encode: {e}")))?;
    out.push(b'}');
    Ok(out)
}

/// Parses the `sha256:<64 lowercase hex>` form that writ writes digests in (SPEC.md §4);
/// uppercase hex and any other length are refused.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    if hex.len() != 64 || hex.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// A request digest, written `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestDigest([u8; 32]);

impl RequestDigest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Option<Self> {
        parse_sha256(s).map(RequestDigest)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for RequestDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for RequestDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestDigest({self})")
    }
}

impl Serialize for RequestDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RequestDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RequestDigest::parse(&s).ok_or_else(|| serde::de::Error::custom("expected sha256:<64 lowercase hex>"))
    }
}

#[cfg(test)]
mod tests;
