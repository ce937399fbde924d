//! Operator commands against a running control plane: `--url` and an operator credential
//! make `writ quarantine`, `revoke`, `policy activate`, `keys rotate`, `health verify` and `authorize` act
//! through the HTTP API of a running `writ serve` (which holds the data directory's writer
//! lock), the way `kubectl` or `spire-server` commands talk to their server. Without
//! `--url` they act on the data directory directly, for a stopped server.
//!
//! This module owns the choice between the two paths ([`Remote::api`]), where the operator
//! credential comes from ([`Remote::credential`]), and turning the API's answers into the
//! command's output and exit status ([`Api`]): the same JSON the offline path prints, exit
//! status 1 for a "no" (a deny, a refused bundle), 2 for every error, with the server's
//! error code and message (and `error_id`, under which `writ serve`'s log holds a 5xx's
//! cause).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use writ_core::SpiffeId;

use crate::client::{Conn, Reply, resolve_base_url};
use crate::datadir::DataDir;

/// Lifetime of an operator credential minted from the data directory's operator issuer when
/// none is given: one command's worth.
const MINTED_TTL_SECS: u64 = 300;

/// Largest credential file read, in bytes (a JWT is a few hundred).
const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// Where an operator command acts: a running server's API (`--url`) or, without it, the
/// data directory. The flags are global to the command they are given to, so they may come
/// before or after its subcommand.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Remote {
    /// Act through the HTTP API of the `writ serve` at this base URL (`http://host:port`)
    /// instead of on the data directory (which a running server holds).
    #[arg(long, env = "WRIT_URL", global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The operator credential for `--url` (a JWT of the operator issuer). Without it and
    /// without `--credential-file`, a 5-minute credential is minted from the data
    /// directory's operator issuer, if it holds one.
    #[arg(long, env = "WRIT_CREDENTIAL", hide_env_values = true, global = true, value_name = "JWT")]
    pub credential: Option<String>,
    /// A file holding the operator credential for `--url`.
    #[arg(long, env = "WRIT_CREDENTIAL_FILE", global = true, value_name = "FILE", conflicts_with = "credential")]
    pub credential_file: Option<PathBuf>,
}

impl Remote {
    /// The running server to act through, or `None` for the offline path. A credential
    /// given without `--url` is refused: acting on the data directory while the user meant
    /// a server would be a surprise.
    pub fn api(&self, dir: &DataDir, operator: bool) -> Result<Option<Api>> {
        let Some(url) = &self.url else {
            if self.credential.is_some() || self.credential_file.is_some() {
                bail!("an operator credential is for acting through a server's API: add --url (or set WRIT_URL)");
            }
            return Ok(None);
        };
        let addr = resolve_base_url(url)?;
        let credential = if operator { Some(self.credential(dir)?) } else { None };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let conn = rt
            .block_on(Conn::connect(addr))
            .with_context(|| format!("connecting to the control plane at {url} (is `writ serve` running?)"))?;
        Ok(Some(Api { rt, conn, url: url.clone(), credential }))
    }

    /// The operator credential: `--credential` (or `WRIT_CREDENTIAL`), else the file of
    /// `--credential-file` (or `WRIT_CREDENTIAL_FILE`), else one minted from the data
    /// directory's operator issuer (said on standard error).
    pub fn credential(&self, dir: &DataDir) -> Result<String> {
        let token = if let Some(c) = &self.credential {
            c.trim().to_owned()
        } else if let Some(path) = &self.credential_file {
            read_credential_file(path)?
        } else if dir.path("keys/operator-issuer.json").exists() {
            let issuer = dir.operator_issuer()?;
            let subject = SpiffeId::parse(&format!("spiffe://{}/operator/cli", issuer.trust_domain()))?;
            eprintln!(
                "writ: acting as {subject} with a {MINTED_TTL_SECS}-second credential minted from {}",
                dir.path("keys/operator-issuer.json").display()
            );
            return dir.mint_operator(&subject, MINTED_TTL_SECS);
        } else {
            bail!(
                "no operator credential: give --credential JWT, --credential-file FILE, or set WRIT_CREDENTIAL (the \
                 data directory {} holds no operator issuer to mint one from)",
                dir.root().display()
            );
        };
        if token.is_empty() {
            bail!("the operator credential is empty");
        }
        if token.contains(|c: char| c.is_whitespace() || c.is_control()) {
            bail!("the operator credential is not one token (it holds whitespace or control characters)");
        }
        Ok(token)
    }
}

fn read_credential_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("reading the credential file {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_CREDENTIAL_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the credential file {} (UTF-8 text)", path.display()))?;
    if text.len() as u64 > MAX_CREDENTIAL_FILE {
        bail!("the credential file {} is over {MAX_CREDENTIAL_FILE} bytes", path.display());
    }
    Ok(text.trim().to_owned())
}

/// A connection to a running control plane, with the operator credential if the command
/// needs one.
pub struct Api {
    rt: tokio::runtime::Runtime,
    conn: Conn,
    url: String,
    credential: Option<String>,
}

/// What the API answered: a success's JSON, or a refusal the command reports as its "no".
pub enum Answer {
    /// A 2xx answer's JSON body.
    Ok(Value),
    /// A 4xx answer: the server's `error` code and `message`.
    Refused { status: u16, error: String, message: String },
}

impl Api {
    /// `GET path` as the operator.
    pub fn get(&mut self, path: &str) -> Result<Answer> {
        let bearer = self.credential.as_ref().map(|c| format!("Bearer {c}"));
        let headers: Vec<(&str, &str)> = bearer.as_deref().map(|b| ("authorization", b)).into_iter().collect();
        let reply = self
            .rt
            .block_on(self.conn.send(hyper::Method::GET, path, &headers, hyper::body::Bytes::new()))
            .with_context(|| format!("GET {}{path}", self.url))?;
        self.answer(path, &reply)
    }

    /// `POST path` with a JSON body, as the operator.
    pub fn post(&mut self, path: &str, body: &Value) -> Result<Answer> {
        let reply = self
            .rt
            .block_on(self.conn.post_json(path, body, self.credential.as_deref()))
            .with_context(|| format!("POST {}{path}", self.url))?;
        self.answer(path, &reply)
    }

    /// `method path` with a JSON body, as the operator (for `PUT` and `DELETE`).
    pub fn send_json(&mut self, method: hyper::Method, path: &str, body: &Value) -> Result<Answer> {
        let bytes = serde_json::to_vec(body)?;
        let bearer = self.credential.as_ref().map(|c| format!("Bearer {c}"));
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        if let Some(b) = bearer.as_deref() {
            headers.push(("authorization", b));
        }
        let what = format!("{method} {}{path}", self.url);
        let reply = self
            .rt
            .block_on(self.conn.send(method, path, &headers, hyper::body::Bytes::from(bytes)))
            .with_context(|| what)?;
        self.answer(path, &reply)
    }

    /// A success's body, a 4xx as a refusal, and anything else (a 5xx, an answer that is
    /// not the API's JSON) as an error naming what the server said.
    fn answer(&self, path: &str, reply: &Reply) -> Result<Answer> {
        let status = reply.status.as_u16();
        let body = reply.json().with_context(|| format!("{}{path} answered {status}", self.url))?;
        if reply.status.is_success() {
            return Ok(Answer::Ok(body));
        }
        let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
        let (error, message) = (field("error"), field("message"));
        if reply.status.is_client_error() {
            return Ok(Answer::Refused { status, error, message });
        }
        let id = body.get("error_id").and_then(Value::as_str).map(|id| format!(" (error_id {id} in the server's log)"));
        bail!("{}{path} answered {status} {error}: {message}{}", self.url, id.unwrap_or_default())
    }
}

impl Answer {
    /// The success's body; a refusal is an error (exit status 2) naming the code and message.
    pub fn ok(self) -> Result<Value> {
        match self {
            Answer::Ok(v) => Ok(v),
            Answer::Refused { status, error, message } => bail!("refused ({status} {error}): {message}"),
        }
    }
}

/// Prints a JSON value as the commands do (pretty, with a trailing newline).
pub fn print(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `writ quarantine isolate|release` through the API.
pub fn quarantine(api: &mut Api, subject: &str, isolate: bool, reason: &str) -> Result<ExitCode> {
    SpiffeId::parse(subject)?;
    let (path, key) =
        if isolate { ("/v1/quarantine/isolate", "isolated") } else { ("/v1/quarantine/release", "released") };
    let answer = api.post(path, &json!({"subject": subject, "reason": reason}))?.ok()?;
    print(&json!({ key: subject, "log_index": answer.get("log_index") }))?;
    Ok(ExitCode::SUCCESS)
}

/// `writ quarantine list` through the API.
pub fn quarantine_list(api: &mut Api) -> Result<ExitCode> {
    print(&api.get("/v1/quarantine")?.ok()?)?;
    Ok(ExitCode::SUCCESS)
}

/// `writ revoke` through the API.
pub fn revoke(api: &mut Api, jti: &str, reason: &str) -> Result<ExitCode> {
    let answer = api.post("/v1/revocations", &json!({"jti": jti, "reason": reason}))?.ok()?;
    print(&json!({"revoked": jti, "log_index": answer.get("log_index")}))?;
    Ok(ExitCode::SUCCESS)
}

/// `writ keys rotate` through the API: the server stores the key, records the rotation and
/// publishes the JWKS.
pub fn rotate(api: &mut Api) -> Result<ExitCode> {
    let answer = api.post("/v1/keys/rotate", &json!({}))?.ok()?;
    print(&answer)?;
    if let Some(w) = answer.get("warning").and_then(Value::as_str) {
        bail!("the rotation is recorded and in force, but {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `writ policy activate` through the API: uploads the signed bundle and activates it in one
/// request. A bundle the server refuses (unsigned, untrusted signer, invalid) is the
/// command's "no": printed as the offline path prints it, exit status 1.
pub fn activate(api: &mut Api, bundle: &writ_policy::Bundle, signature: &str) -> Result<ExitCode> {
    let (manifest, policies, schema, entities, tests) = bundle.parts();
    let body = json!({
        "bundle": {"manifest": manifest, "policies": policies, "schema": schema, "entities": entities, "tests": tests},
        "signature": signature,
        "activate": true,
    });
    match api.post("/v1/bundles", &body)? {
        Answer::Ok(v) => {
            print(&json!({
                "activated": true,
                "name": bundle.manifest().name,
                "digest": v.get("digest"),
                "reevaluation": v.get("reevaluation"),
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Answer::Refused { status: 400, error, message } => {
            print(&json!({"activated": false, "reason": error, "error": message}))?;
            Ok(ExitCode::from(1))
        }
        refused @ Answer::Refused { .. } => refused.ok().map(|_| ExitCode::SUCCESS),
    }
}

/// `writ authorize` through the API: the request carries its own workload credential, so no
/// operator credential is sent. Exit status 0 on allow, 1 otherwise (as offline).
pub fn authorize(api: &mut Api, body: &[u8]) -> Result<ExitCode> {
    decide(api, "/v1/authorize", body)
}

/// A decision route (`/v1/authorize`, `/v1/renew`) through the API, printed; exit status 0
/// on allow, 1 otherwise.
pub fn decide(api: &mut Api, route: &str, body: &[u8]) -> Result<ExitCode> {
    let request =
        writ_core::json::parse_value(body).map_err(|e| anyhow::anyhow!("the request is not one JSON document: {e}"))?;
    let decision = api.post(route, &request)?.ok()?;
    print(&decision)?;
    Ok(if decision.get("outcome").and_then(Value::as_str) == Some("allow") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
