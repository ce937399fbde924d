//! `writ demo`: drives a simulated fleet of agents against a running `writ serve`, so a
//! newcomer sees every behaviour of the control plane, and leaves the log full of realistic
//! history for the console.
//!
//! The fleet uses the starter bundle: reads anywhere, writes inside and outside an agent's
//! zone, a payment above every limit (whose deny names the permits that came closest),
//! payments that wait for an operator's approval (one approved and collected by the agent,
//! one rejected), a sub-agent chain that runs into the depth limit, a forged and a
//! tampered credential, a replayed writ and a writ presented for another call, a rogue
//! agent that the starter bundle's isolation rule `forged-writ` quarantines by itself when
//! it presents an altered writ (its victim stays free), execution outcomes, and a
//! policy activation that changes outcomes and by itself revokes the outstanding writs it
//! would deny (re-evaluation on activation), and is then rolled back.
//!
//! Every live step's outcome is the same at any hour. The starter bundle's time windows
//! (payments below 1,000 from 09:00 to 17:00 UTC, maintenance outside those hours) are
//! shown with a clock the demo controls: the requests are evaluated with the starter
//! bundle at 10:30 and at 03:00 UTC today by the engine's decision function, as
//! `writ policy eval --at` does, and printed as evaluated, not recorded.
//!
//! Every step states the outcome it expects; the run prints each step, then a summary by
//! outcome and reason code, and exits non-zero if any step did not go as expected. The
//! credentials come from the data directory's development issuers and the policy key, so the
//! demo runs beside the server on the same data directory.
//!
//! The same scenario runs from the console: `writ serve` hands [`ServerDemo`] to the server
//! (`POST /v1/demo/runs`), which runs it over HTTP against the server itself and narrates each
//! section, step and note as a JSON event ([`Narrator::Events`]) instead of printing it.

#![allow(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing only: a missing key reads as Null, and the objects written to are built here"
)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};
use writ_core::SpiffeId;
use writ_engine::Outcome;
use writ_identity::{DevIssuer, IssueRequest};
use writ_policy::{Bundle, CompiledBundle, sign_bundle};

use crate::client::{Conn, resolve_base_url};
use crate::datadir::DataDir;
use crate::engcmd::{EvalArgs, evaluate_policy};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's base URL.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    url: String,
    /// Print each answer's detail.
    #[arg(long)]
    verbose: bool,
}

/// What a step expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Pending,
    Deny(&'static str),
}

/// Where the run's narration goes.
pub enum Narrator {
    /// Printed on standard output (`writ demo`); each answer's detail too when verbose.
    Print {
        /// Print each answer's detail.
        verbose: bool,
    },
    /// As JSON events (the console's runs): `{"type": "section" | "step" | "note" | "summary", ...}`.
    Events(writ_server::Narrate),
}

impl Narrator {
    fn section(&self, title: &str) {
        match self {
            Narrator::Print { .. } => println!("\n== {title}"),
            Narrator::Events(f) => f(json!({"type": "section", "title": title})),
        }
    }

    fn note(&self, text: &str) {
        match self {
            Narrator::Print { .. } => println!("       {text}"),
            Narrator::Events(f) => f(json!({"type": "note", "text": text})),
        }
    }
}

/// The built-in scenario as the server runs it for the console: against the server's own
/// address, with the data directory's issuers.
pub struct ServerDemo {
    /// The server's data directory.
    pub dir: DataDir,
    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
}

impl writ_server::DemoRunner for ServerDemo {
    fn run(&self, narrate: writ_server::Narrate) -> std::result::Result<bool, String> {
        run_with(&self.dir, &self.url, Narrator::Events(narrate)).map_err(|e| format!("{e:#}"))
    }
}

struct Demo {
    conn: Conn,
    issuer: DevIssuer,
    td: String,
    operator: String,
    operator_id: String,
    narrator: Narrator,
    /// (outcome, reason) → count.
    counts: BTreeMap<(String, String), u64>,
    failures: Vec<String>,
    steps: u64,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Demo {
    fn id(&self, path: &str) -> Result<SpiffeId> {
        Ok(SpiffeId::parse(&format!("spiffe://{}/{path}", self.td))?)
    }

    fn credential(&self, path: &str, zone: &str) -> Result<String> {
        let subject = self.id(path)?;
        let mut extra = Map::new();
        extra.insert("zone".into(), json!(zone));
        Ok(self.issuer.issue(IssueRequest {
            subject: &subject,
            audience: vec!["writ".into()],
            ttl_secs: 600,
            extra_claims: extra,
            now: now(),
        })?)
    }

    fn section(&self, title: &str) {
        self.narrator.section(title);
    }

    /// One authorization; records and checks the outcome. Returns the decision.
    async fn authorize(&mut self, label: &str, request: Value, expect: Expect) -> Result<Value> {
        let reply = self.conn.post_json("/v1/authorize", &request, None).await?;
        if !reply.status.is_success() {
            bail!("{label}: the server answered {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
        }
        let d = reply.json()?;
        let outcome = d["outcome"].as_str().unwrap_or("?").to_owned();
        let reason = d["reasons"].get(0).and_then(Value::as_str).unwrap_or("").to_owned();
        *self.counts.entry((outcome.clone(), reason.clone())).or_default() += 1;
        let ok = match expect {
            Expect::Allow => outcome == "allow",
            Expect::Pending => outcome == "pending",
            Expect::Deny(code) => outcome == "deny" && (code.is_empty() || reason == code),
        };
        let facts = json!({
            "kind": "decision", "outcome": outcome, "reason": reason, "id": d["id"],
            "log_index": d["log_index"], "action": request["action"], "resource": request["resource"],
            "parent": request.get("parent_writ").is_some_and(|p| !p.is_null()),
        });
        self.step(label, ok, &format!("{outcome:<5} {reason}"), &format!("{expect:?}"), d["detail"].as_str(), facts);
        Ok(d)
    }

    fn check(&mut self, label: &str, ok: bool, got: &str, expected: &str, detail: Option<&str>) {
        self.step(label, ok, got, expected, detail, json!({"kind": "check"}));
    }

    /// One step: narrated (printed, or sent as an event with `facts`: what kind of step,
    /// the decision's outcome, reason, id and log index when there is one).
    fn step(&mut self, label: &str, ok: bool, got: &str, expected: &str, detail: Option<&str>, facts: Value) {
        self.steps += 1;
        match &self.narrator {
            Narrator::Print { verbose } => {
                let mark = if ok { "ok " } else { "!! " };
                println!("  {mark} {label:<58} {got}");
                if *verbose && let Some(d) = detail {
                    println!("       {d}");
                }
            }
            Narrator::Events(f) => {
                let mut event = json!({
                    "type": "step", "n": self.steps, "label": label, "ok": ok, "got": got.trim_end(),
                    "expected": expected, "detail": detail,
                });
                if let (Some(e), Value::Object(more)) = (event.as_object_mut(), facts) {
                    e.extend(more);
                }
                f(event);
            }
        }
        if !ok {
            self.failures.push(format!("{label}: got {got}, expected {expected}"));
        }
    }

    /// One request evaluated with the starter bundle at a time the demo sets (as
    /// `writ policy eval --at` does): nothing is recorded, the server is not asked.
    fn evaluate(
        &mut self,
        label: &str,
        bundle: &CompiledBundle,
        request: &Value,
        at: u64,
        expect: Expect,
    ) -> Result<()> {
        let (Some(action), Some(resource)) = (request["action"].as_str(), request["resource"].as_str()) else {
            bail!("{label}: the request has no action or resource");
        };
        let body = json!({"action": action, "resource": resource, "arguments": request["arguments"]});
        let parsed = writ_core::ExecutionRequest::parse(&serde_json::to_vec(&body)?, &writ_core::Limits::default())?;
        let args = EvalArgs {
            dir: None,
            starter: true,
            request: String::new(),
            principal: self.id("agent/billing-1")?.to_string(),
            claims: vec!["zone=billing".to_owned()],
            at: None,
            last_minute: 0,
            last_hour: 0,
            depth: 0,
            parent_action: None,
            runtime: Vec::new(),
            json: false,
        };
        let decided = evaluate_policy(bundle, &args, &parsed, at)?;
        let o = &decided.outcome;
        let (outcome, reason) = match o.outcome {
            Outcome::Allow => ("allow", String::new()),
            Outcome::Pending => ("pending", String::new()),
            Outcome::Deny => ("deny", o.reasons.first().map(ToString::to_string).unwrap_or_default()),
        };
        let ok = match expect {
            Expect::Allow => o.outcome == Outcome::Allow,
            Expect::Pending => o.outcome == Outcome::Pending,
            Expect::Deny(code) => o.outcome == Outcome::Deny && (code.is_empty() || reason == code),
        };
        let when = writ_engine::rfc3339(at);
        let label = format!("{label} at {}", when.get(11..16).unwrap_or(when.as_str()));
        self.step(
            &label,
            ok,
            &format!("{outcome:<5} {reason} (evaluated, not recorded)"),
            &format!("{expect:?}"),
            Some(o.detail.as_str()),
            json!({"kind": "evaluated", "outcome": outcome, "reason": reason, "at": when, "action": action, "resource": resource}),
        );
        Ok(())
    }

    /// A verification at an enforcement point; returns the reason (empty if it verified).
    async fn verify(&mut self, label: &str, writ: &Value, call: &Value, expect: &str) -> Result<()> {
        let reply = self.conn.post_json("/v1/verify", &json!({"writ": writ, "request": call}), None).await?;
        let v = reply.json()?;
        let got = if v["ok"] == true { "verified".to_owned() } else { v["reason"].as_str().unwrap_or("?").to_owned() };
        let facts = json!({"kind": "verification", "outcome": if v["ok"] == true { "verified" } else { "refused" },
            "reason": v["reason"], "id": v["claims"]["jti"], "action": call["action"], "resource": call["resource"]});
        self.step(label, got == expect, &got, expect, v["detail"].as_str(), facts);
        Ok(())
    }

    async fn admin(&mut self, label: &str, path: &str, body: &Value) -> Result<Value> {
        let reply = self.conn.post_json(path, body, Some(&self.operator.clone())).await?;
        let v = reply.json().unwrap_or(Value::Null);
        let ok = reply.status.is_success();
        let facts = json!({"kind": "operator", "route": path, "log_index": v["log_index"], "operator": self.operator_id,
            "reason": body.get("reason")});
        self.step(label, ok, &format!("HTTP {}", reply.status.as_u16()), "HTTP 200", v["message"].as_str(), facts);
        Ok(v)
    }
}

fn call(r: &Value) -> Value {
    json!({"action": r["action"], "resource": r["resource"], "arguments": r["arguments"]})
}

pub fn run(dir: &DataDir, args: Args) -> Result<ExitCode> {
    let ok = run_with(dir, &args.url, Narrator::Print { verbose: args.verbose })?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs the scenario against the server at `url`, narrated by `narrator`: whether every step
/// went as expected.
pub fn run_with(dir: &DataDir, url: &str, narrator: Narrator) -> Result<bool> {
    let addr = resolve_base_url(url)?;
    let issuer = dir.dev_issuer().context("the demo mints credentials with the data directory's development issuer")?;
    let td = issuer.trust_domain().to_owned();
    let admin = SpiffeId::parse(&format!("spiffe://{td}/operator/demo"))?;
    let operator = dir.mint_operator(&admin, 3600)?;
    let policy_key = dir.policy_signer()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let conn =
            Conn::connect(addr).await.with_context(|| format!("connecting to {url} (is `writ serve` running?)"))?;
        let mut demo = Demo {
            conn,
            issuer,
            td,
            operator,
            operator_id: admin.to_string(),
            narrator,
            counts: BTreeMap::new(),
            failures: Vec::new(),
            steps: 0,
        };
        scenario(&mut demo, &policy_key).await?;
        let ok = demo.failures.is_empty();
        match &demo.narrator {
            Narrator::Print { .. } => {
                println!("\n== Summary: {} steps", demo.steps);
                for ((outcome, reason), n) in &demo.counts {
                    println!("  {n:>5}  {outcome:<5} {reason}");
                }
                if ok {
                    println!("every step went as expected; open the console to see the decisions, lineage and proofs");
                } else {
                    println!("{} step(s) did not go as expected:", demo.failures.len());
                    for f in &demo.failures {
                        println!("  {f}");
                    }
                }
            }
            Narrator::Events(f) => {
                let counts: Vec<Value> = demo
                    .counts
                    .iter()
                    .map(|((outcome, reason), n)| json!({"outcome": outcome, "reason": reason, "count": n}))
                    .collect();
                f(json!({"type": "summary", "steps": demo.steps, "ok": ok, "counts": counts, "failures": demo.failures}));
            }
        }
        Ok(ok)
    })
}

async fn scenario(d: &mut Demo, policy_key: &writ_log::NoteSigner) -> Result<()> {
    let today = now() - now() % 86_400;
    let run = format!("{:04x}", fastrand::u16(..));
    let billing = d.credential("agent/billing-1", "billing")?;
    let support = d.credential("agent/support-1", "support")?;

    d.section("Reads and writes");
    let mut writs = Vec::new();
    for (who, token, path) in
        [("billing-1", &billing, "/zones/billing/ledger.csv"), ("support-1", &support, "/zones/billing/faq.md")]
    {
        let r = json!({"credentials": {"workload": token}, "action": "read", "resource": "fs:/zones/billing", "arguments": {"path": path}});
        d.authorize(&format!("{who} reads {path}"), r, Expect::Allow).await?;
    }
    let write = json!({"credentials": {"workload": billing}, "action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/out.csv", "bytes": 120}});
    let w = d.authorize("billing-1 writes in its own zone", write.clone(), Expect::Allow).await?;
    writs.push((w.clone(), call(&write)));
    if let Some(jti) = w["id"].as_str() {
        let reply = d
            .conn
            .post_json("/v1/outcomes", &json!({"jti": jti, "status": "succeeded", "exit_code": 0}), Some(&billing))
            .await?;
        let ok = reply.status.is_success();
        d.check(
            "billing-1 reports the write's outcome",
            ok,
            &format!("HTTP {}", reply.status.as_u16()),
            "HTTP 200",
            None,
        );
    }
    let cross = json!({"credentials": {"workload": support}, "action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/out.csv"}});
    d.authorize("support-1 writes into the billing zone", cross, Expect::Deny("policy.denied")).await?;

    // Payments and maintenance have complementary windows in the starter bundle. Their
    // outcome depends on the hour, so they are evaluated at two hours of today with the
    // starter bundle (`writ policy eval --at`), not sent to the server.
    d.section(
        "Time windows (payments below 1,000 09:00-17:00 UTC, maintenance outside), evaluated at 10:30 and 03:00 UTC",
    );
    let starter = writ_policy::starter_bundle()?.compile()?;
    let pay = |amount: u64| json!({"credentials": {"workload": billing}, "action": "payment", "resource": "payments:stripe", "arguments": {"amount": amount, "currency": "EUR"}});
    let maintenance = json!({"credentials": {"workload": billing}, "action": "maintenance", "resource": "service:billing-db", "arguments": {"task": "restart"}});
    let (morning, night) = (today + 10 * 3600 + 1800, today + 3 * 3600);
    d.evaluate("a payment of 250, inside its window", &starter, &pay(250), morning, Expect::Allow)?;
    d.evaluate("a payment of 250, outside its window", &starter, &pay(250), night, Expect::Deny("policy.denied"))?;
    d.evaluate(
        "a database restart, outside its window",
        &starter,
        &maintenance,
        morning,
        Expect::Deny("policy.denied"),
    )?;
    d.evaluate("a database restart, inside its window", &starter, &maintenance, night, Expect::Allow)?;

    d.section("A deny that explains itself (live: the same at any hour)");
    let over = d.authorize("a payment of 50000, above every limit", pay(50_000), Expect::Deny("policy.denied")).await?;
    if let Some(closest) = over["explanation"]["closest_permits"].as_array() {
        for p in closest {
            d.narrator.note(&format!(
                "closest permit {} requires: {}",
                p["policy"].as_str().unwrap_or("?"),
                p["requires"].as_str().unwrap_or("?")
            ));
        }
    }
    let named = over["explanation"]["closest_permits"]
        .as_array()
        .is_some_and(|l| l.iter().any(|p| p["policy"] == "payment-needs-approval"));
    d.check("its explanation names the closest permits", named, if named { "named" } else { "missing" }, "named", None);

    d.section("Human approval (payments of 1,000 to 9,999, at any hour)");
    // An agent of its own per run: payments waiting for approval count against the
    // payment rate rule (5 a minute), and the demo may run several times a minute.
    let treasury = d.credential(&format!("agent/treasury-{run}"), "billing")?;
    let pay = |amount: u64| json!({"credentials": {"workload": treasury}, "action": "payment", "resource": "payments:stripe", "arguments": {"amount": amount, "currency": "EUR"}});
    let asked = d
        .authorize(&format!("treasury-{run}: a payment of 2500 waits for an operator"), pay(2500), Expect::Pending)
        .await?;
    let id = asked["id"].as_str().unwrap_or_default().to_owned();
    let status = format!("/v1/approvals/{id}");
    let bearer = format!("Bearer {treasury}");
    let before = d.conn.send(hyper::Method::GET, &status, &[("authorization", &bearer)], Default::default()).await?;
    let before = before.json()?;
    let waiting = before["status"] == "pending" && before.get("writ").is_none();
    d.check(
        "the agent asks: still pending, no writ",
        waiting,
        before["status"].as_str().unwrap_or("?"),
        "pending",
        None,
    );
    d.admin("an operator approves it", &format!("{status}/approve"), &json!({"reason": "invoice checked"})).await?;
    let after = d.conn.send(hyper::Method::GET, &status, &[("authorization", &bearer)], Default::default()).await?;
    let after = after.json()?;
    let approved = after["status"] == "approved" && after["writ"].is_string();
    d.check("the agent collects its writ", approved, after["status"].as_str().unwrap_or("?"), "approved", None);
    d.verify("the approved writ verifies for that payment", &after["writ"], &call(&pay(2500)), "verified").await?;
    let second = d.authorize("a payment of 4000 waits for an operator", pay(4000), Expect::Pending).await?;
    let second = second["id"].as_str().unwrap_or_default().to_owned();
    d.admin("an operator rejects it", &format!("/v1/approvals/{second}/reject"), &json!({"reason": "unknown payee"}))
        .await?;

    d.section("Sub-agent chain (the bundle: spawns below depth 3; the engine: nothing deeper than 3)");
    // A child proves its parent by presenting the parent's writ (ids are public in the log).
    let mut parent: Option<String> = None;
    let mut root_id: Option<String> = None;
    for depth in 0..4u32 {
        let mut r = json!({"credentials": {"workload": billing}, "action": "spawn", "resource": "agents:pool", "arguments": {"agent": format!("helper-{depth}")}});
        if let Some(p) = &parent {
            r["parent_writ"] = json!(p);
        }
        if depth < 3 {
            let dec = d.authorize(&format!("spawn at depth {depth}"), r, Expect::Allow).await?;
            parent = dec["writ"].as_str().map(str::to_owned);
            if depth == 0 {
                root_id = dec["id"].as_str().map(str::to_owned);
            }
        } else {
            d.authorize("spawn at depth 3: the bundle's limit", r, Expect::Deny("policy.denied")).await?;
        }
    }
    // Under the deepest sub-agent, a read at depth 3 is allowed; one more level is past
    // the engine's depth limit, whatever the policy says.
    let read_under = |parent: &Option<String>| json!({"credentials": {"workload": billing}, "action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/ledger.csv"}, "parent_writ": parent});
    let dec = d.authorize("a tool call of the depth-2 sub-agent (depth 3)", read_under(&parent), Expect::Allow).await?;
    let leaf = dec["writ"].as_str().map(str::to_owned);
    d.authorize("a tool call one level deeper (depth 4)", read_under(&leaf), Expect::Deny("lineage.depth_exceeded"))
        .await?;
    let orphan = json!({"credentials": {"workload": billing}, "action": "spawn", "resource": "agents:pool", "arguments": {"agent": "x"}, "parent": "w-does-not-exist"});
    d.authorize("a sub-agent naming an unknown parent", orphan, Expect::Deny("lineage.parent_unknown")).await?;
    let squatter = json!({"credentials": {"workload": billing}, "action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/ledger.csv"}, "parent": root_id});
    d.authorize(
        "a call naming the chain's root by its public id, without holding its writ",
        squatter,
        Expect::Deny("lineage.parent_unknown"),
    )
    .await?;

    d.section("Forged and tampered credentials");
    let rogue = DevIssuer::generate(&d.td, d.issuer.issuer())?;
    let subject = d.id("agent/billing-1")?;
    let forged = rogue.issue(IssueRequest {
        subject: &subject,
        audience: vec!["writ".into()],
        ttl_secs: 600,
        extra_claims: Map::new(),
        now: now(),
    })?;
    let r = json!({"credentials": {"workload": forged}, "action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    d.authorize("a credential from a look-alike issuer", r, Expect::Deny("identity.untrusted_issuer")).await?;
    // Flip one character in the middle of the signature segment.
    let mut tampered = billing.clone().into_bytes();
    let at = billing.rfind('.').map_or(0, |dot| dot + 10);
    if let Some(c) = tampered.get_mut(at) {
        *c = if *c == b'A' { b'B' } else { b'A' };
    }
    let tampered = String::from_utf8(tampered)?;
    let r = json!({"credentials": {"workload": tampered}, "action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    d.authorize("a credential with a tampered signature", r, Expect::Deny("identity.bad_signature")).await?;
    let r = json!({"action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    d.authorize("no credential at all", r, Expect::Deny("identity.missing")).await?;

    d.section("Writs at an enforcement point");
    let read = json!({"credentials": {"workload": billing}, "action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/ledger.csv"}});
    let granted = d.authorize("billing-1 reads the ledger", read.clone(), Expect::Allow).await?;
    let mut other = call(&read);
    other["arguments"]["path"] = json!("/zones/billing/secrets.env");
    d.verify("the writ presented for another file", &granted["writ"], &other, "writ.binding_mismatch").await?;
    d.verify("the writ presented for its own call", &granted["writ"], &call(&read), "verified").await?;
    d.verify("the same writ replayed", &granted["writ"], &call(&read), "writ.replayed").await?;

    d.section("A compromised agent, isolated automatically");
    let rogue_path = format!("agent/rogue-{run}");
    let rogue_token = d.credential(&rogue_path, "support")?;
    for target in ["billing", "billing"] {
        let r = json!({"credentials": {"workload": rogue_token}, "action": "write", "resource": format!("fs:/zones/{target}"), "arguments": {"path": format!("/zones/{target}/payload.sh")}});
        d.authorize(&format!("rogue-{run} writes into {target}"), r, Expect::Deny("policy.denied")).await?;
    }
    // It takes billing-1's writ, alters it, and presents it as the parent of its own call.
    // The starter bundle's rule `forged-writ` isolates the caller whose credential is
    // proven, never the principal the altered writ names.
    let stolen = granted["writ"].as_str().unwrap_or_default();
    let mut forged = stolen.as_bytes().to_vec();
    let at = stolen.rfind('.').map_or(0, |dot| dot + 10);
    if let Some(c) = forged.get_mut(at) {
        *c = if *c == b'A' { b'B' } else { b'A' };
    }
    let forged = String::from_utf8(forged)?;
    let r = json!({"credentials": {"workload": rogue_token}, "action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/ledger.csv"}, "parent_writ": forged});
    let tripped = d
        .authorize(
            &format!("rogue-{run} presents billing-1's writ, altered, as its parent"),
            r,
            Expect::Deny("lineage.parent_unknown"),
        )
        .await?;
    let rogue_id = d.id(&rogue_path)?.to_string();
    let reply = d
        .conn
        .send(
            hyper::Method::GET,
            "/v1/quarantine",
            &[("authorization", &format!("Bearer {}", d.operator))],
            Default::default(),
        )
        .await?;
    let list = reply.json()?;
    let isolation = list["quarantined"]
        .as_array()
        .and_then(|l| l.iter().find(|q| q["subject"] == rogue_id.as_str()))
        .map(|q| q["isolated"].clone())
        .unwrap_or(Value::Null);
    let named = isolation["rule"] == "forged-writ"
        && isolation["triggers"].as_array().is_some_and(|t| t.contains(&tripped["log_index"]));
    d.check(
        &format!("rogue-{run} is isolated by the rule forged-writ, naming that decision"),
        named,
        &format!("rule {} triggers {}", isolation["rule"], isolation["triggers"]),
        &format!("rule \"forged-writ\" with entry {}", tripped["log_index"]),
        isolation["reason"].as_str(),
    );
    let r = json!({"credentials": {"workload": rogue_token}, "action": "read", "resource": "fs:/zones/support", "arguments": {}});
    d.authorize(&format!("rogue-{run} now even reads nothing"), r, Expect::Deny("quarantined")).await?;
    let read_again = json!({"credentials": {"workload": billing}, "action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/ledger.csv"}});
    d.authorize("billing-1, whose writ was altered, is not isolated", read_again, Expect::Allow).await?;

    d.section("A policy change: writes frozen, outstanding writs revoked by the activation, then rolled back");
    let before = d.authorize("billing-1 writes (before the freeze)", write.clone(), Expect::Allow).await?;
    writs.push((before, call(&write)));
    let reply = d
        .conn
        .send(
            hyper::Method::GET,
            "/v1/bundles",
            &[("authorization", &format!("Bearer {}", d.operator))],
            Default::default(),
        )
        .await?;
    let bundles = reply.json()?;
    let previous = bundles["bundles"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["active"] == true))
        .and_then(|b| b["digest"].as_str())
        .map(str::to_owned)
        .context("no active bundle to roll back to")?;
    let freeze = frozen_bundle(&run)?;
    let sig = sign_bundle(&freeze, policy_key)?;
    let (manifest, policies, schema, entities, tests) = freeze.parts();
    let body = json!({"bundle": {"manifest": manifest, "policies": policies, "schema": schema, "entities": entities, "tests": tests}, "signature": sig, "activate": true});
    let activated = d.admin("an operator activates the write-freeze bundle", "/v1/bundles", &body).await?;
    // Whatever happens during the freeze (a refused request, a dropped connection), the
    // previous bundle is activated again before the scenario ends.
    let during = async {
        // No operator revokes anything: the activation re-evaluates every outstanding writ
        // under the new bundle and revokes those it would deny.
        let revoked = activated["reevaluation"]["revoked"].as_u64().unwrap_or(0);
        let expected = u64::try_from(writs.len()).unwrap_or(u64::MAX);
        d.check(
            "the activation revokes the outstanding write writs by itself",
            revoked >= expected,
            &format!("{revoked} of {} re-evaluated revoked", activated["reevaluation"]["reevaluated"]),
            &format!("at least {expected} revoked"),
            None,
        );
        d.authorize("billing-1 writes (during the freeze)", write.clone(), Expect::Deny("policy.denied")).await?;
        for (dec, c) in &writs {
            if let Some(w) = dec.get("writ").filter(|w| w.is_string()) {
                d.verify("a write writ issued before the freeze, at an enforcement point", w, c, "writ.revoked")
                    .await?;
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    d.admin("roll back to the previous bundle", &format!("/v1/bundles/{previous}/activate"), &json!({})).await?;
    during?;
    d.authorize("billing-1 writes (after the rollback)", write, Expect::Allow).await?;
    Ok(())
}

/// The starter bundle with every write forbidden.
fn frozen_bundle(run: &str) -> Result<Bundle> {
    let (manifest, policies, schema, entities, tests) = writ_policy::starter_bundle()?.parts();
    let mut m: Value = serde_json::from_str(&manifest)?;
    m["version"] = json!(format!("{}-freeze-{run}", m["version"].as_str().unwrap_or("0")));
    m["description"] = json!("The starter bundle with every write frozen (writ demo).");
    let policies = format!(
        "{policies}\n// Incident response: no writes anywhere until the freeze is lifted.\n@id(\"write-freeze\")\nforbid (principal, action == Writ::Action::\"write\", resource);\n"
    );
    let _ = tests;
    Ok(Bundle::from_parts(&serde_json::to_string_pretty(&m)?, &policies, &schema, entities.as_deref(), None)?)
}
