//! `writ exec` against a running `writ serve`: a command runs only when allowed, its writ
//! reaches it (and its own `writ exec` children) as the parent writ, statuses and signals
//! pass through, outcomes land in the log, and every failure to obtain a verified allow
//! (deny, control plane down or silent, a bad credential) is exit status 77 with nothing run.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::serve::http_as;
use crate::support::{Server, issue, start_server, writ};

const WRIT: &str = env!("CARGO_BIN_EXE_writ");
const AGENT: &str = "spiffe://demo.example/agent/ops-1";

/// A control plane whose active bundle is the starter plus a permit for the programs the
/// tests run (the shell, `sleep` and `writ` itself), and an agent's credential.
struct Plane {
    tmp: tempfile::TempDir,
    server: Server,
    credential: String,
}

impl Plane {
    fn start() -> Plane {
        Plane::start_with(|_| {})
    }

    /// [`Plane::start`] with the bundle's manifest edited by `manifest` first.
    fn start_with(edit: impl Fn(&mut Value)) -> Plane {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let server = start_server(dir);
        let bundle = dir.join("bundle");
        assert!(writ(dir, &["policy", "init", bundle.to_str().unwrap()], None).status.success());
        let policies = bundle.join("policies.cedar");
        let mut text = std::fs::read_to_string(&policies).unwrap();
        text.push_str(&format!(
            "\n@id(\"test-programs\")\n@reason(\"the programs of writ's exec tests\")\npermit (principal, action == \
             Writ::Action::\"exec\", resource)\nwhen {{ resource in [Writ::Resource::\"exec:/bin/sh\", \
             Writ::Resource::\"exec:{WRIT}\"] }};\n\n@id(\"test-approval\")\n@approval(\"an operator approves \
             /bin/sleep\")\n@reason(\"sleep, approved\")\npermit (principal, action == Writ::Action::\"exec\", \
             resource == Writ::Resource::\"exec:/bin/sleep\");\n"
        ));
        text.push_str(
            "\n@id(\"test-mcp\")\n@reason(\"the fixture server's echo\")\npermit (principal, action == \
             Writ::Action::\"mcp:fixture/echo\", resource == Writ::Resource::\"mcp:fixture\");\n",
        );
        std::fs::write(&policies, text).unwrap();
        // The fixture MCP server's echo tool (crates/writ-enforce/tests/it/fixtures), declared.
        let schema_path = bundle.join("schema.cedarschema");
        let schema = std::fs::read_to_string(&schema_path).unwrap();
        let end = schema.rfind('}').unwrap();
        let echo = "  action \"mcp:fixture/echo\" appliesTo {\n    principal: [Agent],\n    resource: [Resource],\n    \
                    context: { \"now\": datetime, \"lineage\": Lineage, \"usage\": Usage, \"runtime\"?: Runtime, \
                    \"arguments\": { \"message\"?: String } },\n  };\n";
        std::fs::write(&schema_path, format!("{}{echo}}}\n", &schema[..end])).unwrap();
        let manifest_path = bundle.join("manifest.json");
        let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        manifest["version"] = Value::from("9.9.9-exec");
        edit(&mut manifest);
        std::fs::write(&manifest_path, manifest.to_string()).unwrap();
        assert!(writ(dir, &["policy", "sign", bundle.to_str().unwrap()], None).status.success());
        let url = format!("http://{}", server.addr);
        let o = writ(dir, &["policy", "activate", bundle.to_str().unwrap(), "--url", &url], None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let credential = issue(dir, AGENT, "ops");
        Plane { tmp, server, credential }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// `writ exec --url URL -- COMMAND` with the agent's credential, no parent writ.
    fn exec(&self, command: &[&str]) -> Command {
        exec_with(self.dir(), &self.url(), &self.credential, command)
    }

    fn operator(&self) -> String {
        let o = writ(
            self.dir(),
            &["identity", "issue", "--operator", "--spiffe-id", "spiffe://demo.example/operator/t"],
            None,
        );
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http_as(&self.server.addr, "GET", path, None, Some(&self.operator()));
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Every log entry, parsed (the route is public; read one at a time up to the end).
    fn entries(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let path = format!("/v1/log/entries?start={}&end={}", out.len(), out.len() + 1);
            let (status, body) = http_as(&self.server.addr, "GET", &path, None, None);
            if status != 200 {
                return out;
            }
            let v: Value = serde_json::from_slice(&body).unwrap();
            out.push(v["entries"][0]["entry"].clone());
        }
    }

    /// The outcome entry recorded for `jti`.
    fn outcome(&self, jti: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self.entries().into_iter().find(|e| e["kind"] == "outcome" && e["jti"] == jti);
            if let Some(e) = found {
                return e;
            }
            assert!(Instant::now() < deadline, "no outcome for {jti} in the log");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `writ exec` at `url` trusting the writ keys of the control plane whose data directory is
/// `keys` (its `trust/jwks.json`, in `WRIT_JWKS`, which the commands it runs inherit).
fn exec_with(keys: &Path, url: &str, credential: &str, command: &[&str]) -> Command {
    exec_flags(keys, url, credential, &[], command)
}

fn exec_flags(keys: &Path, url: &str, credential: &str, flags: &[&str], command: &[&str]) -> Command {
    let mut c = Command::new(WRIT);
    c.args(["exec", "--url", url])
        .args(flags)
        .arg("--")
        .args(command)
        .env("WRIT_AGENT_CREDENTIAL", credential)
        .env("WRIT_JWKS", keys.join("trust/jwks.json"))
        .env_remove("WRIT_PARENT_WRIT")
        .env_remove("WRIT_URL")
        .stdin(Stdio::null());
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The claims of a JWT, unverified (the tests read what the server issued).
fn claims(jwt: &str) -> Value {
    let payload = jwt.trim().split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The decision id a deny message names.
fn decision_of(err: &str) -> String {
    let at = err.find("(decision ").unwrap_or_else(|| panic!("no decision in {err:?}")) + "(decision ".len();
    err[at..].split([',', ')']).next().unwrap().to_owned()
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

#[test]
fn an_allowed_command_runs_with_its_writ_and_its_outcome_is_recorded() {
    let p = Plane::start();
    let out = p.dir().join("ran");
    let script = format!("printf %s \"$WRIT_PARENT_WRIT\" > '{}'", out.display());
    let o = run(p.exec(&sh(&script).iter().map(String::as_str).collect::<Vec<_>>()).current_dir(p.dir()));
    assert!(o.status.success(), "{}", stderr(&o));
    let writ = std::fs::read_to_string(&out).expect("the command ran");
    let c = claims(&writ);
    assert_eq!(c["act"], "exec");
    assert_eq!(c["res"], "exec:/bin/sh");
    assert_eq!(c["aud"], "exec");
    assert_eq!(c["sub"], AGENT);
    let jti = c["jti"].as_str().unwrap();
    let e = p.outcome(jti);
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["exit_code"], 0, "{e}");
    let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["exit_status"], 0);
    assert!(detail["duration_ms"].is_u64(), "{detail}");
    // The decision's arguments are the contract's.
    let decision = p.entries().into_iter().find(|e| e["id"] == jti).expect("the decision");
    let args = &decision["request"]["arguments"];
    assert_eq!(args["program"], "/bin/sh", "{decision}");
    assert_eq!(args["args"], serde_json::json!(["-c", script]));
    assert_eq!(args["cwd"], p.dir().canonicalize().unwrap().to_str().unwrap());
    assert!(args["env"].as_array().unwrap().contains(&Value::from("PATH")), "{args}");
}

#[test]
fn a_denied_command_does_not_run() {
    let p = Plane::start();
    let marker = p.dir().join("must-not-exist");
    let o = run(&mut p.exec(&["/usr/bin/touch", marker.to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(!marker.exists(), "a denied command ran");
    let err = stderr(&o);
    assert!(err.starts_with("writ: denied: policy.denied: "), "{err}");
    assert!(err.contains("log index"), "{err}");
    let id = decision_of(&err);
    let d = p.entries().into_iter().find(|e| e["id"] == id).expect("the deny is in the log");
    assert_eq!(d["decision"]["outcome"], "deny", "{d}");
    assert_eq!(d["request"]["resource"], "exec:/usr/bin/touch", "{d}");

    // A permitted program with a dangerous command line, and one with LD_PRELOAD set.
    let o = run(&mut p.exec(
        &sh(&format!("echo x > {} ; sudo true", marker.display())).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    let o = run(p
        .exec(&sh(&format!("echo x > {}", marker.display())).iter().map(String::as_str).collect::<Vec<_>>())
        .env("LD_PRELOAD", "/nonexistent.so"));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("writ: denied: policy.denied: forbidden by exec-no-loader-injection"),
        "{}",
        stderr(&o)
    );
    assert!(!marker.exists(), "a denied command ran");
}

#[test]
fn statuses_pass_through_and_unrunnable_commands_are_reported_as_shells_do() {
    let p = Plane::start();
    let o = run(&mut p.exec(&["/bin/sh", "-c", "exit 3"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = run(&mut p.exec(&["/bin/sh", "-c", "kill -USR1 $$"]));
    assert_eq!(o.status.code(), Some(128 + 10), "{}", stderr(&o));
    // Found before anything is asked: nothing is decided, nothing runs.
    let o = run(&mut p.exec(&["/nonexistent/program"]));
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = run(&mut p.exec(&["no-such-program-anywhere"]));
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let plain = p.dir().join("plain");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let o = run(&mut p.exec(&[plain.to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
}

#[test]
fn a_failing_command_is_a_failed_outcome_with_its_status() {
    let p = Plane::start();
    let out = p.dir().join("writ");
    let o = run(&mut p.exec(
        &sh(&format!("printf %s \"$WRIT_PARENT_WRIT\" > '{}'; exit 3", out.display()))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let jti = claims(&std::fs::read_to_string(&out).unwrap())["jti"].as_str().unwrap().to_owned();
    let e = p.outcome(&jti);
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["exit_code"], 3, "{e}");
}

#[test]
fn sigterm_reaches_the_command_and_its_status_is_143() {
    let p = Plane::start();
    let started = p.dir().join("started");
    let writ_file = p.dir().join("writ");
    let script = format!(
        "printf %s \"$WRIT_PARENT_WRIT\" > '{}'; trap 'echo got-term; exit 143' TERM; : > '{}'; while :; do sleep 0.05; done",
        writ_file.display(),
        started.display()
    );
    let child = p
        .exec(&sh(&script).iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the command did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    // The command's trap ran: the signal reached it (writ exec itself did not die of it).
    assert!(String::from_utf8_lossy(&o.stdout).contains("got-term"), "{}", stderr(&o));
    let jti = claims(&std::fs::read_to_string(&writ_file).unwrap())["jti"].as_str().unwrap().to_owned();
    assert_eq!(p.outcome(&jti)["status"], "failed");

    // Killed by the signal itself (no trap): 128 + 15 as well, the signal in the outcome.
    let script = format!(
        "printf %s \"$WRIT_PARENT_WRIT\" > '{}'; : > '{}.2'; exec /bin/sleep 30",
        writ_file.display(),
        started.display()
    );
    let _ = std::fs::remove_file(&writ_file);
    let mut child = p.exec(&sh(&script).iter().map(String::as_str).collect::<Vec<_>>()).spawn().unwrap();
    let second = p.dir().join("started.2");
    while !second.exists() {
        assert!(Instant::now() < deadline, "the command did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let jti = claims(&std::fs::read_to_string(&writ_file).unwrap())["jti"].as_str().unwrap().to_owned();
    let detail: Value = serde_json::from_str(p.outcome(&jti)["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["signal"], 15, "{detail}");
    assert_eq!(detail["signal_name"], "SIGTERM", "{detail}");
}

#[test]
fn nested_writ_execs_are_lineage_children_three_levels_deep() {
    let p = Plane::start();
    let out = p.dir().join("innermost");
    let script = format!("printf %s \"$WRIT_PARENT_WRIT\" > '{}'", out.display());
    let url = p.url();
    let inner: Vec<&str> =
        vec![WRIT, "exec", "--url", &url, "--", WRIT, "exec", "--url", &url, "--", "/bin/sh", "-c", &script];
    let o = run(&mut p.exec(&inner));
    assert!(o.status.success(), "{}", stderr(&o));
    let c = claims(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(c["dep"], 2, "{c}");
    assert_eq!(c["res"], "exec:/bin/sh");
    let lineage = p.get(&format!("/v1/lineage/{}", c["jti"].as_str().unwrap()));
    let nodes = lineage["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{lineage}");
    let (root, middle, leaf) = (&nodes[0], &nodes[1], &nodes[2]);
    assert_eq!(root["parent"], Value::Null, "{lineage}");
    assert_eq!(middle["parent"], root["id"], "{lineage}");
    assert_eq!(leaf["parent"], middle["id"], "{lineage}");
    assert_eq!(leaf["id"], c["jti"]);
    assert_eq!(c["par"], middle["id"]);
    assert_eq!(c["root"], root["id"]);
    for (n, depth) in nodes.iter().zip([0, 1, 2]) {
        assert_eq!(n["depth"], depth, "{lineage}");
        assert_eq!(n["action"], "exec", "{lineage}");
        assert_eq!(n["outcome"], "allow", "{lineage}");
    }
    // Every level's outcome is recorded once it has ended.
    for n in nodes {
        assert_eq!(p.outcome(n["id"].as_str().unwrap())["status"], "succeeded");
    }

    // A parent writ that is not one (garbled) is refused: the child does not run.
    let marker = p.dir().join("must-not-exist");
    let o =
        run(p.exec(&["/bin/sh", "-c", &format!(": > '{}'", marker.display())]).env("WRIT_PARENT_WRIT", "e30.e30.AAAA"));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(!marker.exists());
}

#[test]
fn a_writ_mcp_started_by_writ_exec_is_its_lineage_child() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let p = Plane::start();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../writ-enforce/tests/it/fixtures/mcp_server.py");
    let fixture = fixture.canonicalize().unwrap();
    let url = p.url();
    let mut child = p
        .exec(&[
            WRIT,
            "mcp",
            "--url",
            &url,
            "--name",
            "fixture",
            "--bundle-poll",
            "0",
            "--",
            "python3",
            fixture.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |line: &str, id: i64| -> Value {
        writeln!(input, "{line}").unwrap();
        input.flush().unwrap();
        loop {
            let mut answer = String::new();
            assert!(output.read_line(&mut answer).unwrap() > 0, "the gateway ended");
            let v: Value = serde_json::from_str(&answer).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    ask(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        1,
    );
    let v = ask(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
        2,
    );
    let text = v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{v}"));
    let echoed: Value = serde_json::from_str(text).unwrap();
    let call = claims(echoed["meta"]["dev.writ/writ"].as_str().unwrap());
    drop(input);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(call["act"], "mcp:fixture/echo");
    assert_eq!(call["dep"], 1, "{call}");
    let lineage = p.get(&format!("/v1/lineage/{}", call["jti"].as_str().unwrap()));
    let nodes = lineage["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{lineage}");
    assert_eq!(nodes[0]["action"], "exec", "{lineage}");
    assert_eq!(nodes[0]["parent"], Value::Null, "{lineage}");
    assert_eq!(nodes[1]["parent"], nodes[0]["id"], "{lineage}");
    assert_eq!(call["par"], nodes[0]["id"]);
}

#[test]
fn no_decision_means_nothing_runs() {
    let p = Plane::start();
    let marker = p.dir().join("must-not-exist");
    let touch = format!(": > '{}'", marker.display());
    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let o = run(&mut exec_with(p.dir(), &dead, &p.credential, &["/bin/sh", "-c", &touch]));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: log.unavailable: "), "{}", stderr(&o));
    // A control plane that accepts and never answers: denied at the deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let o = run(&mut exec_flags(
        p.dir(),
        &url,
        &p.credential,
        &["--decision-timeout", "300ms"],
        &["/bin/sh", "-c", &touch],
    ));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).contains("log.unavailable"), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    drop(silent);
    assert!(!marker.exists(), "a command ran without a decision");
}

#[test]
fn bad_credentials_deny() {
    let p = Plane::start();
    let marker = p.dir().join("must-not-exist");
    let touch = format!(": > '{}'", marker.display());
    let cmd = ["/bin/sh", "-c", touch.as_str()];
    // Garbled.
    let o = run(&mut exec_with(p.dir(), &p.url(), "not-a-jwt", &cmd));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: identity."), "{}", stderr(&o));
    // Forged: the agent's credential with another subject, the signature kept.
    let parts: Vec<&str> = p.credential.split('.').collect();
    let mut c = claims(&p.credential);
    c["sub"] = Value::from("spiffe://demo.example/agent/admin");
    let forged =
        format!("{}.{}.{}", parts[0], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string()), parts[2]);
    let o = run(&mut exec_with(p.dir(), &p.url(), &forged, &cmd));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: identity.bad_signature: "), "{}", stderr(&o));
    // None at all.
    let o = run(exec_with(p.dir(), &p.url(), "", &cmd).env_remove("WRIT_AGENT_CREDENTIAL"));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: identity.missing: "), "{}", stderr(&o));
    assert!(!marker.exists(), "a command ran with a bad credential");
}

#[test]
fn a_command_awaiting_approval_is_not_run() {
    let p = Plane::start();
    let o = run(&mut p.exec(&["/bin/sleep", "0"]));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: pending: "), "{}", stderr(&o));
    let first = decision_of(&stderr(&o));
    // Approved while it waits: it runs.
    let url = p.url();
    let child = exec_flags(p.dir(), &url, &p.credential, &["--approval-wait", "20s"], &["/bin/sleep", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let operator = p.operator();
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (_, body) = http_as(&p.server.addr, "GET", "/v1/approvals?status=pending", None, Some(&operator));
        let v: Value = serde_json::from_slice(&body).unwrap();
        let pending = v["approvals"].as_array().unwrap();
        // The first run's decision stays pending (nobody approves it): not that one.
        if let Some(a) = pending.iter().find(|a| a["resource"] == "exec:/bin/sleep" && a["id"] != first.as_str()) {
            break a["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no pending approval: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, body) = http_as(
        &p.server.addr,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(r#"{"reason": "test"}"#),
        Some(&operator),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(p.outcome(&id)["status"], "succeeded");
}

#[test]
fn exec_help_documents_the_exit_statuses() {
    let o = Command::new(WRIT).args(["exec", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("77") && help.contains("127") && help.contains("126"), "{help}");
}

/// A stand-in for the control plane on loopback: answers `POST /v1/authorize` with `allow`
/// and the writ given, `GET /.well-known/jwks.json` with `jwks`, anything else with 200 `{}`
/// (one request per connection).
fn impostor(writ: String, jwks: String) -> String {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (writ, jwks) = (writ.clone(), jwks.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let answer = if first.starts_with("POST /v1/authorize ") {
                    serde_json::json!({"id": "w-impostor", "outcome": "allow", "reasons": [], "writ": writ, "log_index": 1})
                        .to_string()
                } else if first.starts_with("GET /.well-known/jwks.json") {
                    jwks
                } else {
                    "{}".to_owned()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    url
}

#[test]
fn a_writ_that_does_not_verify_is_a_deny() {
    let p = Plane::start();
    let marker = p.dir().join("must-not-exist");
    let touch = format!(": > '{}'", marker.display());
    let (_, jwks) = http_as(&p.server.addr, "GET", "/.well-known/jwks.json", None, None);
    let jwks = String::from_utf8(jwks).unwrap();
    // A real writ of this control plane, for another command: the binding refuses it.
    let body = serde_json::json!({
        "credentials": {"workload": p.credential}, "action": "exec", "resource": "exec:/bin/sh", "audience": "exec",
        "arguments": {"program": "/bin/sh", "args": ["-c", "true"], "command_line": "/bin/sh -c true",
                      "cwd": "/", "env": []}});
    let (status, answer) = http_as(&p.server.addr, "POST", "/v1/authorize", Some(&body.to_string()), None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let other = serde_json::from_slice::<Value>(&answer).unwrap()["writ"].as_str().unwrap().to_owned();
    let o =
        run(&mut exec_with(p.dir(), &impostor(other.clone(), jwks.clone()), &p.credential, &["/bin/sh", "-c", &touch]));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: writ.binding_mismatch: "), "{}", stderr(&o));
    // Garbage.
    let o =
        run(&mut exec_with(p.dir(), &impostor("e30.e30.AAAA".into(), jwks), &p.credential, &["/bin/sh", "-c", &touch]));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: writ.bad_signature: "), "{}", stderr(&o));
    // A whole other control plane answering at the address, with keys of its own that it
    // serves and genuine writs for this very command (found in review: the keys were taken
    // from the address, so it allowed anything). Only the keys given are trusted.
    let other_plane = Plane::start();
    let command = ["/bin/sh", "-c", touch.as_str()];
    let o = run(&mut exec_with(p.dir(), &other_plane.url(), &other_plane.credential, &command));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: writ.bad_signature: "), "{}", stderr(&o));
    // No key file: nothing is trusted.
    let o = run(exec_with(p.dir(), &p.url(), &p.credential, &command).env("WRIT_JWKS", p.dir().join("absent.json")));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("writ: denied: internal: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("--jwks"), "{}", stderr(&o));
    assert!(!marker.exists(), "a command ran with a writ that does not verify");
    // The same command with the keys of the control plane answering runs (the test can fail).
    let o = run(&mut exec_with(other_plane.dir(), &other_plane.url(), &other_plane.credential, &command));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(marker.exists());
}

#[test]
fn a_signal_before_the_command_starts_stops_everything() {
    let p = Plane::start();
    let marker = p.dir().join("must-not-exist");
    // A control plane that accepts and never answers: the decision is still awaited.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let mut child = exec_flags(
        p.dir(),
        &url,
        &p.credential,
        &["--decision-timeout", "20s"],
        &["/bin/sh", "-c", &format!(": > '{}'", marker.display())],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(started.elapsed() < Duration::from_secs(5), "it waited for the decision");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("SIGTERM before the command started"), "{err}");
    assert!(!marker.exists(), "the command ran after the signal");
    drop(silent);
}

/// The exec tests' control plane with writs of commands capped at 3 seconds by the bundle
/// (`max_lifetime_seconds`), so that a command running a few seconds is renewed.
fn short_lived() -> Plane {
    Plane::start_with(|m| m["max_lifetime_seconds"] = serde_json::json!({"exec": 3}))
}

/// Waits for `path` to exist.
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_long_command_keeps_running_across_renewals() {
    let p = short_lived();
    let writ_file = p.dir().join("writ");
    let script = format!("printf %s \"$WRIT_PARENT_WRIT\" > '{}'; sleep 7", writ_file.display());
    let started = Instant::now();
    let o = run(&mut p.exec(&sh(&script).iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(started.elapsed() >= Duration::from_secs(7));
    let first = claims(&std::fs::read_to_string(&writ_file).unwrap());
    assert_eq!(first["exp"].as_u64().unwrap() - first["iat"].as_u64().unwrap(), 3, "capped by the bundle");
    let first_jti = first["jti"].as_str().unwrap().to_owned();
    // Its writ was renewed (a chain of renewals, each linked to the one before), and the
    // outcome is recorded under the last.
    let entries = p.entries();
    let mut chain = vec![first_jti.clone()];
    while let Some(next) =
        entries.iter().find(|e| e["kind"] == "decision" && e["renews"] == chain.last().unwrap().as_str())
    {
        assert_eq!(next["decision"]["outcome"], "allow", "{next}");
        assert_eq!(next["request"]["arguments"]["args"], serde_json::json!(["-c", script]));
        chain.push(next["id"].as_str().unwrap().to_owned());
    }
    assert!(chain.len() >= 3, "renewed at least twice in 7 s of 3 s writs: {chain:?}");
    let e = p.outcome(chain.last().unwrap());
    assert_eq!(e["status"], "succeeded", "{e}");
    let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["renewals"], chain.len() - 1, "{detail}");
    assert_eq!(detail["first_writ"], first_jti.as_str());
    // The lineage view links each renewal to the writ it renews.
    let lineage = p.get(&format!("/v1/lineage/{}", chain.last().unwrap()));
    assert_eq!(lineage["root"], first_jti.as_str(), "{lineage}");
    let nodes = lineage["nodes"].as_array().unwrap();
    for pair in chain.windows(2) {
        let n = nodes.iter().find(|n| n["id"] == pair[1].as_str()).unwrap();
        assert_eq!(n["renews"], pair[0].as_str(), "{n}");
    }
}

/// A stricter bundle activated while a command runs: its next renewal is refused, and it
/// is stopped (SIGTERM, then SIGKILL after the grace for one that ignores SIGTERM).
#[test]
fn a_command_is_stopped_once_a_stricter_bundle_refuses_its_renewal() {
    let p = short_lived();
    let started = p.dir().join("started");
    let writ_file = p.dir().join("writ");
    // It ignores SIGTERM (the disposition survives the exec): only SIGKILL ends it.
    let script = format!(
        "printf %s \"$WRIT_PARENT_WRIT\" > '{}'; : > '{}'; trap '' TERM; exec sleep 30",
        writ_file.display(),
        started.display()
    );
    let begun = Instant::now();
    let command = sh(&script);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let child = exec_flags(p.dir(), &p.url(), &p.credential, &["--stop-grace", "1s"], &command)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&started);
    // The stricter bundle: no shell.
    let bundle = p.dir().join("bundle");
    let policies = bundle.join("policies.cedar");
    let mut text = std::fs::read_to_string(&policies).unwrap();
    text.push_str(
        "\n@id(\"no-shell\")\n@reason(\"no shell any more\")\nforbid (principal, action == Writ::Action::\"exec\", \
         resource == Writ::Resource::\"exec:/bin/sh\");\n",
    );
    std::fs::write(&policies, text).unwrap();
    let manifest_path = bundle.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["version"] = Value::from("9.9.10-stricter");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    assert!(writ(p.dir(), &["policy", "sign", bundle.to_str().unwrap()], None).status.success());
    let o = writ(p.dir(), &["policy", "activate", bundle.to_str().unwrap(), "--url", &p.url()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(begun.elapsed() < Duration::from_secs(25), "stopped long before its 30 s");
    assert!(err.contains("writ: denied: writ.revoked:") && err.contains("authority ended"), "{err}");
    // Recorded: stopped, with the reason and the signal that ended it (SIGKILL: it ignored
    // SIGTERM), under the writ it held last.
    let jti = claims(&std::fs::read_to_string(&writ_file).unwrap())["jti"].as_str().unwrap().to_owned();
    let entries = p.entries();
    let mut last = jti.clone();
    while let Some(next) = entries
        .iter()
        .find(|e| e["kind"] == "decision" && e["renews"] == last.as_str() && e["decision"]["outcome"] == "allow")
    {
        last = next["id"].as_str().unwrap().to_owned();
    }
    let refused = entries
        .iter()
        .find(|e| e["kind"] == "decision" && e["renews"] == last.as_str() && e["decision"]["outcome"] == "deny");
    let e = p.outcome(&last);
    assert_eq!(e["status"], "stopped", "{e} (refusal {refused:?})");
    let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["stopped"]["reason"], "writ.revoked", "{detail}");
    assert_eq!(detail["signal"], 9, "{detail}");
}

#[test]
fn a_command_whose_writ_expires_unrenewed_is_stopped() {
    let mut p = short_lived();
    let started = p.dir().join("started");
    let script = format!(": > '{}'; exec sleep 30", started.display());
    let begun = Instant::now();
    let child = p
        .exec(&sh(&script).iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&started);
    // The control plane goes away: no renewal can be had.
    p.server.terminate();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(begun.elapsed() < Duration::from_secs(20), "{err}");
    assert!(err.contains("writ: denied: writ.expired:") && err.contains("before it could be renewed"), "{err}");
    assert!(err.contains("log.unavailable"), "the last attempt's failure is named: {err}");
}

/// Found in review: the program's path reached the policy with its non-UTF-8 bytes
/// replaced, so the policy judged another path than the one that would run (and several
/// such paths as one). Such a command is refused, nothing asked, nothing run.
#[test]
fn a_program_whose_path_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt as _;
    let p = Plane::start();
    let odd = p.dir().join(std::ffi::OsStr::from_bytes(b"bin-\xff"));
    std::fs::create_dir_all(&odd).unwrap();
    let marker = p.dir().join("must-not-exist");
    let tool = odd.join("tool");
    std::fs::write(&tool, format!("#!/bin/sh\n: > '{}'\n", marker.display())).unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Found through PATH (an argument that is not UTF-8 is already a usage error).
    let mut path = odd.clone().into_os_string();
    path.push(":/usr/bin:/bin");
    let mut c = exec_with(p.dir(), &p.url(), &p.credential, &["tool"]);
    c.env("PATH", path);
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("writ: denied: request.malformed: the program's path is not UTF-8"),
        "{}",
        stderr(&o)
    );
    assert!(!marker.exists());
}
