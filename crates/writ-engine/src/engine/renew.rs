//! Renewal (`POST /v1/renew`): a long-running execution renews its writ before it expires.
//! A renewal is a new decision, made now under the *current* bundle, from the request the
//! writ's own decision entry recorded (same action, resource, arguments, audience and
//! parent), with the caller's credentials of now and the state facts of now. It is recorded
//! as a decision entry carrying `renews: <the writ's id>`, and on allow a new writ is issued
//! (new `jti`, same `req`, `par` and `root`, same depth and scope). A refused renewal is a
//! deny with a stable reason code; the enforcement point that asked stops the execution.
//!
//! What the writ presented must be, recorded as the decision's `renewal` fact (so that
//! `writ log replay` reproduces the refusal from the log alone):
//!
//! - its signature verifies with a writ key of this control plane (else `writ.bad_signature`),
//!   and it was issued here by an allow, or an approval (else `writ.revoked`: no writ of that
//!   id stands, e.g. a pending decision's id);
//! - the caller's verified workload identity is its `sub` (else `writ.binding_mismatch`);
//! - it has not expired: no grace after `exp` (else `writ.expired`), since a writ renewed
//!   after its expiry would extend an authority that already ended;
//! - it was not renewed before (else `writ.replayed`: renew the writ that renewed it), and
//!   its execution has not reported an outcome (else `writ.replayed`);
//! - no writ of its lineage is revoked (else `writ.revoked`), no principal of it isolated
//!   (else `quarantined`).
//!
//! A writ whose signature does not verify, or that stands for no allowed decision, has no
//! trustworthy request to decide again: its renewal is recorded like an unparseable request
//! (no request, the body's SHA-256), with `renews` naming the id it claims, within the
//! anonymous record budget.
//!
//! A renewal counts as a call for rate and quota rules: its writ is a fresh writ for the
//! same call, which an enforcement point accepts once, so it can run the call once more.
//!
//! In the state a renewal hangs below the writ it renews: the lineage view shows it there
//! (with `renews`), a revocation of the writ renewed (or of anything above it) stops the
//! renewal too, and a parent that was renewed keeps its children renewable. The re-evaluation
//! that follows an activation treats renewals like any outstanding writ.

use serde::Deserialize;
use writ_core::{Credentials, ExecutionRequest, ReasonCode};

use super::Engine;
use super::pipeline::{Decision, sha256_hex};
use crate::record::{Checked, DecisionOutcome, Entry, IdentityFact, Outcome};
use crate::writ::new_writ_id;

/// A renewal request: the writ to renew, and the caller's credentials (as for an
/// authorization request: the workload credential, and any delegation, vouching
/// credentials or runtime attestation the bundle needs for the action).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    writ: String,
    #[serde(default)]
    credentials: Credentials,
    #[serde(default)]
    attestation: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

/// The writ being renewed, as its signature and its decision entry establish it.
pub(super) struct Renewing {
    /// Its id.
    pub(super) jti: String,
    /// Its principal.
    pub(super) sub: String,
    /// Its expiry.
    pub(super) exp: u64,
    /// Its lineage root (the renewal keeps it).
    pub(super) root: String,
    /// The parent possession fact its decision recorded.
    pub(super) parent_writ: Option<Checked<String>>,
}

/// Why a renewal has no request to decide again.
struct Untrusted {
    reason: ReasonCode,
    detail: String,
    claimed: Option<String>,
    /// False when the control plane, not the writ, failed (its state or its log could not be
    /// read): that is answered `internal` or `log.unavailable` and not recorded, so that
    /// neither the workload nor an auditor reads a revocation that never happened.
    record: bool,
}

impl Engine {
    /// Renews a writ (see the module documentation). Always answers; errors deny.
    pub async fn renew(&self, body: &[u8]) -> Decision {
        let now = self.clock.now();
        let id = match new_writ_id() {
            Ok(id) => id,
            Err(e) => return Decision::unrecorded(String::new(), None, ReasonCode::Internal, e.to_string()),
        };
        let parsed = self.parse_renewal(body);
        let (request_id, outcome) = match parsed {
            Err(u) => (None, Err(u)),
            Ok(r) => (r.request_id.clone(), self.renewal_request(r)),
        };
        let decision = match outcome {
            Ok((request, renewing)) => self.authorize_request(id, now, request, Some(renewing)).await,
            Err(Untrusted { reason, detail, record: false, .. }) => {
                Decision::unrecorded(id, request_id, reason, format!("renewal: {detail}"))
            }
            Err(Untrusted { reason, detail, claimed, record: true }) => {
                let entry = Entry::Decision {
                    id: id.clone(),
                    time: now,
                    request: None,
                    body_digest: Some(sha256_hex(body)),
                    facts: None,
                    limits: self.limits(),
                    bundle: None,
                    decision: DecisionOutcome {
                        outcome: Outcome::Deny,
                        reasons: vec![reason],
                        policies: Vec::new(),
                        detail: format!("renewal: {detail}"),
                    },
                    renews: claimed,
                    writ: None,
                    shadow: None,
                };
                self.record(id, request_id, entry).await
            }
        };
        // A refused renewal can trip an isolation rule like any decision.
        self.after_recorded().await;
        decision
    }

    fn parse_renewal(&self, body: &[u8]) -> Result<RenewRequest, Untrusted> {
        let limits = &self.config.limits;
        let malformed =
            |detail: String| Untrusted { reason: ReasonCode::RequestMalformed, detail, claimed: None, record: true };
        if body.len() > limits.max_body {
            return Err(malformed(format!("body of {} bytes exceeds {}", body.len(), limits.max_body)));
        }
        let value = writ_core::json::parse_value(body).map_err(|e| malformed(format!("not strict JSON: {e}")))?;
        // A struct deserializes from an array too (`["<writ>"]`): only an object is a request.
        if !value.is_object() {
            return Err(malformed("the request is not a JSON object".into()));
        }
        let r: RenewRequest = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        if r.writ.len() > limits.max_credential {
            return Err(malformed(format!("writ is longer than {} bytes", limits.max_credential)));
        }
        Ok(r)
    }

    /// The request to decide again and the writ it renews; or why there is none.
    fn renewal_request(&self, r: RenewRequest) -> Result<(ExecutionRequest, Renewing), Untrusted> {
        let claims = self.verifier.verify_possession(&r.writ).map_err(|rej| Untrusted {
            reason: ReasonCode::WritBadSignature,
            detail: format!("the writ does not verify ({}: {})", rej.reason, rej.detail),
            claimed: Some(claimed_id(&r.writ)),
            record: true,
        })?;
        let revoked = |detail: String| Untrusted {
            reason: ReasonCode::WritRevoked,
            detail,
            claimed: Some(claims.jti.clone()),
            record: true,
        };
        let failed = |reason: ReasonCode, detail: String| Untrusted { reason, detail, claimed: None, record: false };
        let known = self
            .state
            .lock()
            .map_err(|_| failed(ReasonCode::Internal, "the state is unreadable (a panic poisoned it)".into()))?
            .decision(&claims.jti)
            .map(|(i, o, _)| (i, o));
        let index = match known {
            None => return Err(revoked(format!("writ {} is not in this control plane's log", claims.jti))),
            Some((index, Outcome::Allow)) => index,
            Some((_, o)) => {
                return Err(revoked(format!(
                    "decision {} is {}: no writ of that id was issued",
                    claims.jti,
                    if o == Outcome::Pending { "pending" } else { "a deny" }
                )));
            }
        };
        let entry = self
            .log
            .entries(index, index.saturating_add(1))
            .map_err(|e| failed(ReasonCode::LogUnavailable, format!("reading entry {index} back: {e}")))?
            .into_iter()
            .next()
            .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok());
        // The state says an allow of this id is at `index`: anything else there is the
        // control plane's failure (the verification loop reports an altered entry), not the
        // writ's.
        let Some(Entry::Decision { id, request: Some(recorded), facts: Some(facts), .. }) = entry else {
            return Err(failed(
                ReasonCode::Internal,
                format!("entry {index}, the decision of writ {}, cannot be read back from the log", claims.jti),
            ));
        };
        if id != claims.jti || recorded.digest != claims.req {
            return Err(revoked(format!("the decision of writ {} is not the one the writ is bound to", claims.jti)));
        }
        let request = ExecutionRequest {
            request_id: r.request_id,
            credentials: r.credentials,
            attestation: r.attestation,
            action: recorded.action,
            resource: recorded.resource,
            arguments: recorded.arguments,
            parent: recorded.parent,
            parent_writ: None,
            audience: Some(recorded.audience),
        };
        request.validate(&self.config.limits).map_err(|e| Untrusted {
            reason: ReasonCode::RequestMalformed,
            detail: e.to_string(),
            claimed: Some(claims.jti.clone()),
            record: true,
        })?;
        let renewing = Renewing {
            jti: claims.jti,
            sub: claims.sub,
            exp: claims.exp,
            root: claims.root,
            parent_writ: facts.parent_writ,
        };
        Ok((request, renewing))
    }

    /// The renewal fact: whether the writ presented still stands for this caller at `now`.
    /// Taken under the principal's serial lock, so that two renewals of one writ cannot
    /// both pass.
    pub(super) fn renewal_fact(&self, r: &Renewing, identity: &Checked<IdentityFact>, now: u64) -> Checked<String> {
        let failed = |reason, detail: String| Checked::Failed { reason, detail };
        if let Checked::Ok(i) = identity
            && i.subject != r.sub
        {
            return failed(
                ReasonCode::WritBindingMismatch,
                format!("writ {} is {}'s, not {}'s: only its own principal renews a writ", r.jti, r.sub, i.subject),
            );
        }
        if now >= r.exp {
            return failed(
                ReasonCode::WritExpired,
                format!("writ {} expired at {}: a writ is renewed before it expires", r.jti, r.exp),
            );
        }
        let Ok(state) = self.state.lock() else {
            return failed(ReasonCode::Internal, "the state lock is poisoned".into());
        };
        if let Some(ended) = state.execution_ended(&r.jti) {
            return failed(
                ReasonCode::WritReplayed,
                format!("the execution of writ {ended} reported its outcome: a finished execution is not renewed"),
            );
        }
        if let Some(next) = state.renewed_by(&r.jti) {
            return failed(
                ReasonCode::WritReplayed,
                format!("writ {} was already renewed by {next}: renew that writ", r.jti),
            );
        }
        match state.standing(&r.jti, &r.sub) {
            Ok(()) => Checked::Ok(r.jti.clone()),
            Err((reason, detail)) => failed(reason, format!("writ {}: {detail}", r.jti)),
        }
    }
}

/// The id a writ that does not verify claims (its payload's `jti`, read without trusting
/// it, when it is a short printable string), else the SHA-256 of the token.
fn claimed_id(token: &str) -> String {
    use base64::Engine as _;
    let claimed = token
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("jti").and_then(|j| j.as_str()).map(str::to_owned))
        .filter(|j| !j.is_empty() && j.len() <= 64 && j.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    claimed.unwrap_or_else(|| sha256_hex(token.as_bytes()))
}
