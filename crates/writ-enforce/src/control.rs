//! An enforcement point's side of the control plane's API, shared by every enforcement
//! point of this crate (`writ mcp`, `writ exec`, the agent-CLI hooks): the agent's
//! credential ([`CredentialSource`], [`Credential`]), one decision per governed call
//! (`POST /v1/authorize`, [`ControlPlane::authorize`]), the wait for a human approval
//! (`GET /v1/approvals/{id}`, [`ControlPlane::await_approval`]), the actions a caller could
//! be allowed (`POST /v1/authorize/preview`, [`ControlPlane::preview`]), the outcome of an
//! execution (`POST /v1/outcomes`, [`ControlPlane::outcome`]), the renewal of a running
//! execution's writ (`POST /v1/renew`, [`ControlPlane::renew`]) and the writ signing keys it
//! publishes (`GET /.well-known/jwks.json`, [`ControlPlane::jwks`]).
//!
//! Every failure to obtain a decision is a deny ([`Verdict::Deny`]), never an allow: the
//! control plane unreachable, slower than the deadline or answering 5xx is
//! `log.unavailable` (no decision could be recorded); an answer that cannot be read is
//! `internal`. An allow is acted on only once its writ verified as any enforcement point
//! verifies it ([`ControlPlane::checked`]): the control plane is spoken to over plain HTTP,
//! and whatever answers for it must not be able to say "allow" with a writ of its own
//! making, or with a writ of another call. The keys a writ is verified with are therefore
//! never taken from that address: they are a JWKS file the enforcement point is given (the
//! control plane's `trust/jwks.json`, distributed as a SPIFFE trust bundle is), re-read
//! when a writ does not verify with the keys held (a rotation), at most every 10 s.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use writ_core::ReasonCode;

use crate::Error;
use crate::client::{Client, Reply};

/// Largest credential (file or command output) read, in bytes (a JWT is a few hundred).
const MAX_CREDENTIAL: usize = 64 * 1024;

/// How long a `--credential-command` may run.
const CREDENTIAL_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A cached credential is renewed this long before its `exp`.
const RENEW_BEFORE_EXP_SECS: u64 = 30;

/// Most candidates `POST /v1/authorize/preview` takes at once.
const MAX_CANDIDATES: usize = 1000;

/// Time between two polls of a pending approval.
const APPROVAL_POLL: Duration = Duration::from_millis(250);

/// Where the agent's workload credential comes from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// Given as is (`WRIT_AGENT_CREDENTIAL`).
    Value(String),
    /// A file, re-read when the credential it held expires (`--credential-file`).
    File(PathBuf),
    /// A command run with `sh -c`, its standard output trimmed (`--credential-command`):
    /// re-run before the cached credential's `exp`, or when the control plane answers
    /// `identity.expired`.
    Command(String),
}

/// The agent's credential, cached.
#[derive(Debug)]
pub struct Credential {
    source: CredentialSource,
    cached: Mutex<Option<(String, Option<u64>)>>,
}

impl Credential {
    /// A credential taken from `source` when first asked for.
    pub fn new(source: CredentialSource) -> Self {
        Credential { source, cached: Mutex::new(None) }
    }

    /// Whether asking again can give another credential.
    pub fn renewable(&self) -> bool {
        !matches!(self.source, CredentialSource::Value(_))
    }

    /// The current credential: the cached one unless `renew` or it is about to expire.
    pub async fn get(&self, renew: bool) -> Result<String, Error> {
        let mut cached = self.cached.lock().await;
        if let Some((token, exp)) = cached.as_ref()
            && !renew
            && exp.is_none_or(|exp| now_secs().saturating_add(RENEW_BEFORE_EXP_SECS) < exp)
        {
            return Ok(token.clone());
        }
        let token = match &self.source {
            CredentialSource::Value(v) => v.trim().to_owned(),
            CredentialSource::File(path) => read_file(path).await?,
            CredentialSource::Command(cmd) => run_command(cmd).await?,
        };
        if token.is_empty() {
            return Err(Error::Credential("the credential is empty".into()));
        }
        if token.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(Error::Credential("the credential is not one token (whitespace or control characters)".into()));
        }
        *cached = Some((token.clone(), jwt_exp(&token)));
        Ok(token)
    }
}

async fn read_file(path: &std::path::Path) -> Result<String, Error> {
    // Bounded as it is read (a path such as /dev/zero would otherwise never end).
    let bytes = read_bounded(path, MAX_CREDENTIAL)
        .await
        .map_err(|e| Error::Credential(format!("reading the credential file {}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| Error::Credential(format!("the credential file {} is not UTF-8", path.display())))
}

async fn run_command(cmd: &str) -> Result<String, Error> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Credential(format!("running the credential command: {e}")))?;
    let out = tokio::time::timeout(CREDENTIAL_COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Credential(format!("the credential command ran over {CREDENTIAL_COMMAND_TIMEOUT:?}")))?
        .map_err(|e| Error::Credential(format!("running the credential command: {e}")))?;
    if !out.status.success() {
        return Err(Error::Credential(format!("the credential command failed ({})", out.status)));
    }
    if out.stdout.len() > MAX_CREDENTIAL {
        return Err(Error::Credential(format!("the credential command printed over {MAX_CREDENTIAL} bytes")));
    }
    String::from_utf8(out.stdout)
        .map(|s| s.trim().to_owned())
        .map_err(|_| Error::Credential("the credential command printed something that is not UTF-8".into()))
}

/// The `exp` of a JWT, read without verifying it (only to know when to renew it; the control
/// plane verifies it).
fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?.get("exp")?.as_u64()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A deny: what the agent is told, in the shape of the design contract.
#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    /// The primary reason code (`pending` for an approval still awaited).
    pub reason: String,
    /// Every reason code, primary first.
    pub reasons: Vec<String>,
    /// The human reason.
    pub detail: String,
    /// The decision id, when the control plane made one.
    pub decision: Option<String>,
    /// The decision's log index, when recorded.
    pub log_index: Option<u64>,
}

impl Denial {
    /// Whether asking again may give another answer: no decision was recorded because the
    /// control plane could not be reached, could not record it, or failed itself
    /// (`log.unavailable`, `internal`). Any other deny is a decision.
    pub fn retryable(&self) -> bool {
        self.reason == ReasonCode::LogUnavailable.as_str() || self.reason == ReasonCode::Internal.as_str()
    }

    /// A deny the gateway decides itself (no decision was obtained).
    pub fn local(code: ReasonCode, detail: impl Into<String>) -> Self {
        Denial {
            reason: code.as_str().to_owned(),
            reasons: vec![code.as_str().to_owned()],
            detail: detail.into(),
            decision: None,
            log_index: None,
        }
    }
}

/// What the control plane decided for one call.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Allowed: the writ and the decision.
    Allow {
        /// The writ (JWS compact).
        writ: String,
        /// The decision id (the writ's `jti`).
        id: String,
        /// The decision's log index.
        log_index: Option<u64>,
    },
    /// Denied (by the control plane, or by the enforcement point for want of a decision).
    Deny(Denial),
    /// Waiting for a human approval.
    Pending {
        /// The pending decision's id (what an operator approves).
        id: String,
        /// The decision's log index.
        log_index: Option<u64>,
        /// Why approval is needed.
        detail: String,
    },
}

/// The control plane, as an enforcement point uses it.
#[derive(Debug)]
pub struct ControlPlane {
    client: Client,
    credential: Credential,
    parent_writ: Option<String>,
    decision_timeout: Duration,
    issuer: String,
    writ_keys: PathBuf,
    checker: Mutex<Option<WritChecker>>,
}

/// The verifier of the writs of allows for one audience, and when its keys were fetched.
#[derive(Debug)]
struct WritChecker {
    audience: String,
    verifier: writ_verify::WritVerifier,
    fetched: std::time::Instant,
}

/// Clock skew allowed on the writ of an allow, in seconds.
const CHECK_SKEW_SECS: u64 = 30;
/// The writ keys are read again for a writ they do not verify at most this often.
const KEY_REFETCH: Duration = Duration::from_secs(10);

/// Largest writ key file read (a JWKS of a few keys is a few hundred bytes a key).
const MAX_KEY_FILE: usize = 1024 * 1024;

impl ControlPlane {
    /// The control plane at `url` (`http://host:port`), asked with the agent's credential
    /// from `credential`, every decision a lineage child of `parent_writ` when given, every
    /// request bounded by `decision_timeout`; the writs of its allows verified with the keys
    /// of the JWKS file `writ_keys` (the control plane's `trust/jwks.json`), the trust root.
    pub fn new(
        url: &str,
        credential: CredentialSource,
        parent_writ: Option<String>,
        decision_timeout: Duration,
        writ_keys: PathBuf,
    ) -> Result<Self, Error> {
        Ok(ControlPlane {
            client: Client::new(url)?,
            credential: Credential::new(credential),
            parent_writ,
            decision_timeout,
            issuer: "writ".to_owned(),
            writ_keys,
            checker: Mutex::new(None),
        })
    }

    /// The same client, expecting writs whose `iss` is `issuer` (default `writ`).
    #[must_use]
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        issuer.clone_into(&mut self.issuer);
        self
    }

    /// `verdict`, once its writ (for an allow) verified for the exact call about to run
    /// ([`ControlPlane::verify_allow`]); anything else is a deny carrying the decision. A
    /// deny or a pending verdict is returned as it is.
    pub async fn checked(
        &self,
        verdict: Verdict,
        action: &str,
        resource: &str,
        arguments: &Value,
        audience: &str,
    ) -> Verdict {
        let Verdict::Allow { writ, id, log_index } = verdict else { return verdict };
        let checked = match writ_core::request_digest(action, resource, arguments) {
            Ok(digest) => self.verify_allow(&writ, &id, &digest, audience).await,
            Err(e) => Err(Denial::local(ReasonCode::Internal, format!("the call's request digest: {e}"))),
        };
        match checked {
            Ok(_) => Verdict::Allow { writ, id, log_index },
            Err(d) => Verdict::Deny(Denial { decision: Some(id), log_index, ..d }),
        }
    }

    /// Reads the writ keys for `audience` unless they are held: beside a decision, so that
    /// verifying its writ waits for nothing more. A failure is left for
    /// [`ControlPlane::verify_allow`] to meet (and deny on).
    pub async fn prefetch_keys(&self, audience: &str) {
        let mut checker = self.checker.lock().await;
        if checker.as_ref().is_none_or(|c| c.audience != audience) {
            // An error leaves nothing held; the verification fetches again and denies.
            let _ = self.fetch_checker(&mut checker, audience).await;
        }
    }

    /// The claims of `writ`, the writ of allow `id`, once verified for the exact call about
    /// to run (`digest`): signed by a key of the writ key file (read once, and again at most
    /// every 10 s for a writ the keys held do not verify), `iss`, time, `aud` = `audience`,
    /// `req` = `digest`, and the writ of the decision answered (`jti` = `id`). A key file
    /// that cannot be read denies `internal`; anything else that fails denies with the
    /// verifier's reason code. The denial names no decision (the caller's to add).
    pub async fn verify_allow(
        &self,
        writ: &str,
        id: &str,
        digest: &writ_core::RequestDigest,
        audience: &str,
    ) -> Result<writ_verify::WritClaims, Denial> {
        let mut checker = self.checker.lock().await;
        for attempt in 0..2 {
            let fresh = checker.as_ref().is_some_and(|c| c.audience == audience);
            if !fresh || attempt == 1 {
                if attempt == 1 && checker.as_ref().is_some_and(|c| c.fetched.elapsed() < KEY_REFETCH) {
                    break;
                }
                self.fetch_checker(&mut checker, audience).await?;
            }
            let Some(c) = checker.as_ref() else { break };
            match c.verifier.verify(writ, digest, now_secs(), &|_: &str| false) {
                Ok(v) if v.claims.jti == id => return Ok(v.claims),
                Ok(v) => {
                    return Err(Denial::local(
                        ReasonCode::WritBindingMismatch,
                        format!("the writ of the allow is {}'s, not the decision's ({id})", v.claims.jti),
                    ));
                }
                // Perhaps signed by a key rotated in since the keys were fetched: once more.
                Err(r) if r.reason == ReasonCode::WritBadSignature && attempt == 0 => {}
                Err(r) => {
                    return Err(Denial::local(r.reason, format!("the writ of the allow did not verify: {}", r.detail)));
                }
            }
        }
        Err(Denial::local(
            ReasonCode::WritBadSignature,
            "the writ of the allow is not signed by a key of the control plane",
        ))
    }

    /// Reads the writ key file into `checker`, a verifier of writs for `audience`.
    async fn fetch_checker(&self, checker: &mut Option<WritChecker>, audience: &str) -> Result<(), Denial> {
        let keys = read_bounded(&self.writ_keys, MAX_KEY_FILE)
            .await
            .and_then(|bytes| {
                writ_verify::KeySet::from_jwks(&bytes, writ_verify::KeyUse::Writ).map_err(|e| e.to_string())
            })
            .map_err(|e| {
                Denial::local(
                    ReasonCode::Internal,
                    format!(
                        "the writ of the allow could not be verified: the writ keys ({}): {e}; give the control \
                         plane's trust/jwks.json with --jwks FILE (or WRIT_JWKS)",
                        self.writ_keys.display()
                    ),
                )
            })?;
        // The same audience keeps its verifier, and with it the writs it has accepted: each is
        // accepted once (`writ.replayed` after), across key re-reads.
        if let Some(c) = checker.as_mut().filter(|c| c.audience == audience)
            && c.verifier.set_keys(keys.clone()).is_ok()
        {
            c.fetched = std::time::Instant::now();
            return Ok(());
        }
        let verifier = writ_verify::WritVerifier::with_keys(&self.issuer, keys, audience, CHECK_SKEW_SECS);
        *checker = Some(WritChecker { audience: audience.to_owned(), verifier, fetched: std::time::Instant::now() });
        Ok(())
    }

    /// The parent writ presented with every decision.
    pub fn parent_writ(&self) -> Option<&str> {
        self.parent_writ.as_deref()
    }

    /// The deadline of every request.
    pub fn decision_timeout(&self) -> Duration {
        self.decision_timeout
    }

    /// The agent's credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The HTTP client (its connections are kept alive and pooled).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The writ signing keys the control plane publishes (`GET /.well-known/jwks.json`), as
    /// it sent them. Not a trust root: whatever answers at the control plane's address
    /// sends these (the writs of allows are verified with the key file given to
    /// [`ControlPlane::new`]).
    pub async fn jwks(&self) -> Result<Vec<u8>, Error> {
        let reply = self.client.get("/.well-known/jwks.json", None, self.decision_timeout).await?;
        if !reply.status.is_success() {
            return Err(Error::Answer(format!("the JWKS answered {}", reply.status)));
        }
        Ok(reply.body.to_vec())
    }

    /// One decision for `action` on `resource` with `arguments`, within the deadline.
    pub async fn authorize(&self, action: &str, resource: &str, arguments: &Value, audience: &str) -> Verdict {
        let mut renewed = false;
        loop {
            let token = match self.credential.get(renewed).await {
                Ok(t) => t,
                Err(e) => return Verdict::Deny(Denial::local(ReasonCode::IdentityMissing, e.to_string())),
            };
            let mut body = json!({
                "credentials": {"workload": token},
                "action": action,
                "resource": resource,
                "arguments": arguments,
                "audience": audience,
            });
            if let (Some(parent), Some(obj)) = (&self.parent_writ, body.as_object_mut()) {
                obj.insert("parent_writ".into(), json!(parent));
            }
            let verdict = match self.client.post_json("/v1/authorize", &body, None, self.decision_timeout).await {
                Ok(reply) => read_decision(&reply),
                Err(e) => Verdict::Deny(unavailable(&e, self.decision_timeout)),
            };
            // An expired credential from a source that can give a fresh one: once more.
            if let Verdict::Deny(d) = &verdict
                && d.reason == ReasonCode::IdentityExpired.as_str()
                && self.credential.renewable()
                && !renewed
            {
                renewed = true;
                continue;
            }
            return verdict;
        }
    }

    /// Renews `writ` (`POST /v1/renew`) with the agent's credential, within the deadline: an
    /// allow carries the new writ (same request, same lineage, a later `exp`). A deny with
    /// a decision is the control plane's refusal (the execution's authority ends); a
    /// control plane unreachable, slower than the deadline or answering 5xx is
    /// `log.unavailable` with no decision (see [`Denial::retryable`]).
    pub async fn renew(&self, writ: &str) -> Verdict {
        let mut renewed = false;
        loop {
            let token = match self.credential.get(renewed).await {
                Ok(t) => t,
                Err(e) => return Verdict::Deny(Denial::local(ReasonCode::IdentityMissing, e.to_string())),
            };
            let body = json!({"writ": writ, "credentials": {"workload": token}});
            let verdict = match self.client.post_json("/v1/renew", &body, None, self.decision_timeout).await {
                Ok(reply) => read_decision(&reply),
                Err(e) => Verdict::Deny(unavailable(&e, self.decision_timeout)),
            };
            if let Verdict::Deny(d) = &verdict
                && d.reason == ReasonCode::IdentityExpired.as_str()
                && self.credential.renewable()
                && !renewed
            {
                renewed = true;
                continue;
            }
            return verdict;
        }
    }

    /// Waits up to `wait` for an operator to answer the pending decision `id`: the writ
    /// once approved, a deny once rejected or expired, still pending at the end of the wait.
    pub async fn await_approval(&self, id: &str, log_index: Option<u64>, wait: Duration) -> Verdict {
        let deadline = after(wait);
        let mut last_detail = String::from("waiting for an operator's approval");
        loop {
            match self.approval(id).await {
                Ok(Some(v)) => return v,
                Ok(None) => {}
                Err(e) => last_detail = format!("waiting for an operator's approval (last poll: {e})"),
            }
            if tokio::time::Instant::now() + APPROVAL_POLL >= deadline {
                return Verdict::Pending { id: id.to_owned(), log_index, detail: last_detail };
            }
            tokio::time::sleep(APPROVAL_POLL).await;
        }
    }

    /// One look at a pending decision: `None` while it is still pending.
    async fn approval(&self, id: &str) -> Result<Option<Verdict>, Error> {
        let token = self.credential.get(false).await?;
        let path = format!("/v1/approvals/{}", percent_encode(id));
        let reply = self.client.get(&path, Some(&token), self.decision_timeout).await?;
        let v = reply.json()?;
        if !reply.status.is_success() {
            if reply.status.is_server_error() {
                return Err(Error::Answer(format!("{} from the control plane", reply.status)));
            }
            // 409: approved, but revoked or quarantined since; 403/404: not ours.
            return Ok(Some(Verdict::Deny(error_denial(&v, Some(id)))));
        }
        let log_index = v.get("log_index").and_then(Value::as_u64);
        match v.get("status").and_then(Value::as_str) {
            Some("pending") => Ok(None),
            Some("approved") => match v.get("writ").and_then(Value::as_str) {
                Some(writ) => Ok(Some(Verdict::Allow { writ: writ.to_owned(), id: id.to_owned(), log_index })),
                None => Err(Error::Answer("an approved decision without its writ".into())),
            },
            Some(status @ ("rejected" | "expired")) => {
                let why = v
                    .pointer("/resolution/reason")
                    .and_then(Value::as_str)
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let detail = if status == "rejected" {
                    format!("an operator rejected the approval{why}")
                } else {
                    "no operator approved it before its deadline".to_owned()
                };
                let mut d = Denial::local(ReasonCode::PolicyDenied, detail);
                d.decision = Some(id.to_owned());
                d.log_index = log_index;
                Ok(Some(Verdict::Deny(d)))
            }
            _ => Err(Error::Answer("an approval without a known status".into())),
        }
    }

    /// For each candidate action on `resource`, whether some call of it could be allowed.
    /// `Err` for any failure (the caller then shows every tool). Asked in chunks of the
    /// route's bound.
    pub async fn preview(&self, actions: &[String], resource: &str) -> Result<Vec<bool>, Error> {
        let mut possible = Vec::with_capacity(actions.len());
        for chunk in actions.chunks(MAX_CANDIDATES) {
            possible.extend(self.preview_chunk(chunk, resource).await?);
        }
        Ok(possible)
    }

    async fn preview_chunk(&self, actions: &[String], resource: &str) -> Result<Vec<bool>, Error> {
        let token = self.credential.get(false).await?;
        let candidates: Vec<Value> = actions.iter().map(|a| json!({"action": a, "resource": resource})).collect();
        let mut body = json!({"credentials": {"workload": token}, "candidates": candidates});
        if let (Some(parent), Some(obj)) = (&self.parent_writ, body.as_object_mut()) {
            obj.insert("parent_writ".into(), json!(parent));
        }
        let reply = self.client.post_json("/v1/authorize/preview", &body, None, self.decision_timeout).await?;
        if !reply.status.is_success() {
            return Err(Error::Answer(format!("preview answered {}", reply.status)));
        }
        let v = reply.json()?;
        let answers = v
            .get("candidates")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Answer("a preview without candidates".into()))?;
        if answers.len() != actions.len() {
            return Err(Error::Answer("a preview with another number of candidates".into()));
        }
        actions
            .iter()
            .zip(answers)
            .map(|(action, a)| {
                if a.get("action").and_then(Value::as_str) != Some(action) {
                    return Err(Error::Answer("a preview whose candidates are not in request order".into()));
                }
                a.get("possible")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| Error::Answer("a candidate without possible".into()))
            })
            .collect()
    }

    /// Records how an execution ended (`succeeded`, `failed` or `not_run`) with a detail.
    pub async fn outcome(&self, jti: &str, status: &str, detail: &str) -> Result<(), Error> {
        self.outcome_with_exit(jti, status, None, detail).await
    }

    /// [`ControlPlane::outcome`] with a command's exit code (`exit_code` of the log entry).
    pub async fn outcome_with_exit(
        &self,
        jti: &str,
        status: &str,
        exit_code: Option<i64>,
        detail: &str,
    ) -> Result<(), Error> {
        let token = self.credential.get(false).await?;
        let mut body = json!({"jti": jti, "status": status, "detail": detail});
        if let (Some(code), Some(obj)) = (exit_code, body.as_object_mut()) {
            obj.insert("exit_code".into(), json!(code));
        }
        let reply = self.client.post_json("/v1/outcomes", &body, Some(&token), self.decision_timeout).await?;
        if reply.status.is_success() || reply.status == hyper::StatusCode::CONFLICT {
            // 409: already recorded (a retry whose first attempt got through).
            return Ok(());
        }
        let why = String::from_utf8_lossy(reply.body.get(..reply.body.len().min(300)).unwrap_or_default()).into_owned();
        Err(Error::Answer(format!("{}: {why}", reply.status)))
    }

    /// The digest of the active bundle (`GET /readyz`), `None` when none is active.
    pub async fn active_bundle(&self) -> Result<Option<String>, Error> {
        let reply = self.client.get("/readyz", None, self.decision_timeout).await?;
        let v = reply.json()?;
        Ok(v.pointer("/bundle/digest").and_then(Value::as_str).map(str::to_owned))
    }
}

/// `id` with everything but unreserved characters percent-encoded, for a path segment.
fn percent_encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The deny for a decision that could not be obtained.
fn unavailable(e: &Error, timeout: Duration) -> Denial {
    let detail = match e.transport_kind() {
        Some(crate::TransportKind::Timeout) => format!("the control plane did not decide within {timeout:?}"),
        Some(_) => format!("the control plane is unreachable ({e})"),
        None => e.to_string(),
    };
    Denial::local(ReasonCode::LogUnavailable, detail)
}

/// The verdict in an answer of `POST /v1/authorize`.
pub fn read_decision(reply: &Reply) -> Verdict {
    if reply.status.is_server_error() {
        let message = reply.json().ok().and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned));
        return Verdict::Deny(Denial::local(
            ReasonCode::LogUnavailable,
            format!("the control plane answered {}: {}", reply.status, message.as_deref().unwrap_or("no decision")),
        ));
    }
    let v = match reply.json() {
        Ok(v) => v,
        Err(e) => return Verdict::Deny(Denial::local(ReasonCode::Internal, e.to_string())),
    };
    if !reply.status.is_success() {
        return Verdict::Deny(error_denial(&v, None));
    }
    let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
    let log_index = v.get("log_index").and_then(Value::as_u64);
    let bad = |what: &str| Verdict::Deny(Denial::local(ReasonCode::Internal, format!("a decision {what}")));
    match (v.get("outcome").and_then(Value::as_str), id) {
        (Some("allow"), Some(id)) => match v.get("writ").and_then(Value::as_str) {
            Some(writ) => Verdict::Allow { writ: writ.to_owned(), id, log_index },
            None => bad("allow without a writ"),
        },
        (Some("pending"), Some(id)) => Verdict::Pending {
            id,
            log_index,
            detail: v.get("detail").and_then(Value::as_str).unwrap_or("an operator must approve it").to_owned(),
        },
        (Some("deny"), id) => {
            let reasons: Vec<String> = v
                .get("reasons")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            let reason = reasons.first().cloned().unwrap_or_else(|| ReasonCode::Internal.as_str().to_owned());
            let detail = v.get("detail").and_then(Value::as_str).unwrap_or_default().to_owned();
            Verdict::Deny(Denial {
                reasons: if reasons.is_empty() { vec![reason.clone()] } else { reasons },
                reason,
                detail,
                decision: id,
                log_index,
            })
        }
        _ => bad("without a known outcome and id"),
    }
}

/// A deny from an API error answer (`{"error": <code>, "message": …}`).
fn error_denial(v: &Value, decision: Option<&str>) -> Denial {
    let code = v
        .get("error")
        .and_then(Value::as_str)
        .and_then(|c| c.parse::<ReasonCode>().ok())
        .unwrap_or(ReasonCode::Internal);
    let message = v.get("message").and_then(Value::as_str).unwrap_or("the control plane refused the request");
    let mut d = Denial::local(code, message);
    d.decision = decision.map(str::to_owned);
    d
}

/// The instant `d` from now; a `d` past what the clock can hold (a `--stop-grace`, an
/// `--approval-wait` or a writ expiry of centuries) is a century from now, not a panic: a
/// panic in `writ exec` left a command whose authority had ended running, never killed
/// (found in review).
pub(crate) fn after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The file at `path`, at most `limit` bytes.
async fn read_bounded(path: &std::path::Path, limit: usize) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    let most = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(most).read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
    if bytes.len() > limit {
        return Err(format!("over {limit} bytes"));
    }
    Ok(bytes)
}
