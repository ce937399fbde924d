//! The tool mapping, path normalisation, and the session state, without a control plane.

use serde_json::{Map, Value, json};

use super::mapping::{Mapped, map_tool, mcp_tool, normalise, origin, write_resource};
use super::state::{self, Session, Spawn, Store};
use super::{Config, Mode, claude_code, exec_request};
use crate::control::CredentialSource;

fn input(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn map(tool: &str, v: Value) -> Mapped {
    map_tool(tool, &input(v), "/work/proj").unwrap_or_else(|e| panic!("{tool}: {e:?}"))
}

#[test]
fn paths_are_normalised_lexically_or_refused() {
    let cases = [
        ("/a/b", None, Some("/a/b")),
        ("/a/./b/", None, Some("/a/b")),
        ("/a//b", None, Some("/a/b")),
        ("/a/b/../c", None, Some("/a/c")),
        ("/", None, Some("/")),
        ("/..", None, None),
        ("/a/../..", None, None),
        ("x/y", Some("/w"), Some("/w/x/y")),
        ("../y", Some("/w/v"), Some("/w/y")),
        ("../../..", Some("/w"), None),
        ("x", None, None),
        ("", Some("/w"), None),
        ("~/x", Some("/w"), None),
        ("/a\0b", None, None),
        // A backslash is an ordinary character on POSIX: kept, for the policy to judge.
        ("/a\\b", None, Some("/a\\b")),
    ];
    for (path, cwd, want) in cases {
        assert_eq!(normalise(path, cwd).ok().as_deref(), want, "{path:?} in {cwd:?}");
    }
}

#[test]
fn a_shell_command_is_an_exec_of_the_shell() {
    let m = map("Bash", json!({"command": "ls -l | wc", "description": "count", "timeout": 1000}));
    assert_eq!(m.action, "exec");
    assert_eq!(m.resource, "exec:/bin/sh");
    assert_eq!(
        m.arguments,
        json!({"program": "/bin/sh", "args": ["-c", "ls -l | wc"], "command_line": "ls -l | wc", "cwd": "/work/proj", "env": []})
    );
    assert!(map_tool("Bash", &input(json!({})), "/w").is_err());
    assert!(map_tool("Bash", &input(json!({"command": 3})), "/w").is_err());
}

#[test]
fn reads_are_read_on_the_absolute_path() {
    let m = map("Read", json!({"file_path": "src/../README.md", "offset": 3}));
    assert_eq!((m.action.as_str(), m.resource.as_str()), ("read", "fs:/work/proj/README.md"));
    assert_eq!(m.arguments, json!({"path": "/work/proj/README.md", "tool": "Read"}));
    let m = map("Grep", json!({"pattern": "fn main"}));
    assert_eq!(m.resource, "fs:/work/proj");
    assert_eq!(m.arguments, json!({"path": "/work/proj", "tool": "Grep", "pattern": "fn main"}));
    let m = map("Glob", json!({"pattern": "**/*.rs", "path": "/etc"}));
    assert_eq!(m.resource, "fs:/etc");
    assert_eq!(map("LS", json!({"path": "/tmp/"})).resource, "fs:/tmp");
    assert_eq!(map("NotebookRead", json!({"notebook_path": "/n/a.ipynb"})).resource, "fs:/n/a.ipynb");
    assert!(map_tool("Read", &input(json!({"file_path": "/../etc/passwd"})), "/w").is_err());
    assert!(map_tool("Read", &input(json!({})), "/w").is_err());
}

#[test]
fn writes_name_the_zone_directory() {
    let m = map("Write", json!({"file_path": "/zones/billing/out/q3.csv", "content": "abc"}));
    assert_eq!((m.action.as_str(), m.resource.as_str()), ("write", "fs:/zones/billing"));
    assert_eq!(m.arguments, json!({"path": "/zones/billing/out/q3.csv", "tool": "Write", "bytes": 3}));
    let m = map("Edit", json!({"file_path": "/zones/billing/../support/x", "old_string": "a", "new_string": "bc"}));
    assert_eq!(m.resource, "fs:/zones/support");
    assert_eq!(m.arguments, json!({"path": "/zones/support/x", "tool": "Edit", "bytes": 2}));
    let m = map(
        "MultiEdit",
        json!({"file_path": "a.txt", "edits": [{"old_string": "a", "new_string": "xy"}, {"new_string": "z"}]}),
    );
    assert_eq!(m.resource, "fs:/work/proj");
    assert_eq!(m.arguments.get("bytes"), Some(&json!(3)));
    let m = map("NotebookEdit", json!({"notebook_path": "/n.ipynb", "new_source": "print(1)"}));
    assert_eq!(m.resource, "fs:/");
    assert!(map_tool("MultiEdit", &input(json!({"file_path": "/a"})), "/w").is_err());
    assert!(map_tool("Write", &input(json!({"file_path": "/a"})), "/w").is_err());
    for (path, resource) in
        [("/zones/billing/a", "fs:/zones/billing"), ("/etc/passwd", "fs:/etc"), ("/x", "fs:/"), ("/", "fs:/")]
    {
        assert_eq!(write_resource(path), resource, "{path}");
    }
}

#[test]
fn web_fetches_name_the_origin() {
    let m = map("WebFetch", json!({"url": "https://Docs.RS:443/tokio/latest?x=1", "prompt": "summarise"}));
    assert_eq!((m.action.as_str(), m.resource.as_str()), ("fetch", "url:https://docs.rs"));
    assert_eq!(m.arguments, json!({"url": "https://Docs.RS:443/tokio/latest?x=1", "host": "docs.rs"}));
    let m = map("WebSearch", json!({"query": "cedar policy", "allowed_domains": ["a.b"]}));
    assert_eq!((m.resource.as_str(), m.arguments.clone()), ("url:search", json!({"query": "cedar policy"})));
    for bad in ["docs.rs/x", "not a url", "https://", "/relative"] {
        assert!(origin(bad).is_err(), "{bad}");
        assert!(map_tool("WebFetch", &input(json!({"url": bad})), "/w").is_err(), "{bad}");
    }
    assert_eq!(origin("http://user@[::1]:8080/x").ok(), Some(("http".to_owned(), "[::1]".to_owned())));
    let m = map("WebFetch", json!({"url": "https://evil@127.0.0.1/x"}));
    assert_eq!((m.resource.as_str(), m.arguments.get("host")), ("url:https://127.0.0.1", Some(&json!("127.0.0.1"))));
    // Found in review: the host as written let a loopback address pass a policy forbidding
    // `127.*` and `localhost`. Every spelling of it is the host it resolves to.
    for (url, host) in [
        ("https://2130706433/", "127.0.0.1"),
        ("https://0x7f.1/", "127.0.0.1"),
        ("https://127.1/", "127.0.0.1"),
        ("https://0177.0.0.1/", "127.0.0.1"),
        ("https://[::ffff:7f00:1]/", "127.0.0.1"),
        ("https://[0:0:0:0:0:0:0:1]/", "[::1]"),
        ("https://localhost./", "localhost"),
        ("https://LOCALHOST/", "localhost"),
        ("https://%6c%6fcalhost/", "localhost"),
        ("https://169.254.169.254./", "169.254.169.254"),
        ("https://0/", "0.0.0.0"),
    ] {
        assert_eq!(origin(url).map(|(_, h)| h).as_deref(), Ok(host), "{url}");
    }
}

#[test]
fn mcp_tools_are_what_writ_mcp_sends() {
    let m = map("mcp__fs__read_text_file", json!({"path": "/srv/a"}));
    assert_eq!(
        (m.action.as_str(), m.resource.as_str(), m.arguments.clone()),
        ("mcp:fs/read_text_file", "mcp:fs", json!({"path": "/srv/a"}))
    );
    assert_eq!(mcp_tool("mcp__git_hub__create__issue"), Some(("git_hub", "create__issue")));
    for not in ["mcp__fs", "mcp____x", "mcp__fs__", "mcpx__a__b"] {
        assert_eq!(mcp_tool(not), None, "{not}");
    }
    let m = map("mcp__fs", json!({}));
    assert_eq!((m.action.as_str(), m.resource.as_str()), ("tool:mcp__fs", "tool:mcp__fs"));
}

#[test]
fn sub_agents_and_other_tools() {
    let m = map("Task", json!({"description": "d", "prompt": "p", "subagent_type": "code-reviewer"}));
    assert_eq!((m.action.as_str(), m.resource.as_str()), ("spawn", "agents:pool"));
    assert_eq!(m.arguments, json!({"agent": "code-reviewer"}));
    assert_eq!(m.spawns.as_deref(), Some("code-reviewer"));
    assert_eq!(map("Agent", json!({"prompt": "p"})).arguments, json!({"agent": "general-purpose"}));
    let m = map("TodoWrite", json!({"todos": []}));
    assert_eq!(
        (m.action.as_str(), m.resource.as_str(), m.arguments.clone()),
        ("tool:TodoWrite", "tool:TodoWrite", json!({"todos": []}))
    );
    assert_eq!(m.spawns, None);
    assert!(map_tool("Read", &input(json!({"file_path": "a"})), "relative/cwd").is_err());
}

fn spawn(agent_type: &str, writ: &str) -> Spawn {
    Spawn {
        writ: writ.into(),
        jti: writ.into(),
        agent_type: agent_type.into(),
        claimed_by: None,
        at_ms: state::now_ms(),
    }
}

#[test]
fn a_sub_agent_claims_the_oldest_launch_of_its_type_once() {
    let mut s = Session {
        spawns: vec![spawn("reviewer", "w1"), spawn("explore", "w2"), spawn("reviewer", "w3")],
        ..Session::default()
    };
    assert_eq!(s.parent_of("a", Some("reviewer")).as_deref(), Some("w1"));
    assert_eq!(s.parent_of("b", Some("reviewer")).as_deref(), Some("w3"));
    // Claimed for good: the same agent finds its launch again, even without its type.
    assert_eq!(s.parent_of("a", None).as_deref(), Some("w1"));
    assert_eq!(s.parent_of("c", Some("reviewer")), None);
    assert_eq!(s.parent_of("d", None), None);
    assert_eq!(s.parent_of("e", Some("explore")).as_deref(), Some("w2"));
}

#[test]
fn state_round_trips_privately_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(&dir.path().join("st")).unwrap_or_else(|e| panic!("{e}"));
    let mut l = store.lock("session-1").unwrap_or_else(|e| panic!("{e}"));
    for i in 0..(state::MAX_CALLS + 10) {
        l.session
            .calls
            .insert(format!("k{i}"), state::Call { jti: format!("w-{i}"), at_ms: state::now_ms() + i as u64 });
    }
    l.session.calls.insert("old".into(), state::Call { jti: "w-old".into(), at_ms: 1 });
    l.session.spawns.push(spawn("x", "w"));
    l.save().unwrap_or_else(|e| panic!("{e}"));
    let l = store.lock("session-1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.session.calls.len(), state::MAX_CALLS);
    assert!(!l.session.calls.contains_key("old") && !l.session.calls.contains_key("k0"));
    assert!(l.session.calls.contains_key(&format!("k{}", state::MAX_CALLS + 9)));
    assert_eq!(l.session.spawns.len(), 1);
    // Another session is another file.
    assert!(store.lock("session-2").map(|l| l.session.calls.is_empty()).unwrap_or(false));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for entry in std::fs::read_dir(dir.path().join("st")).into_iter().flatten().flatten() {
            let mode = entry.metadata().map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            assert_eq!(mode, 0o600, "{:?}", entry.path());
        }
        let mode = std::fs::metadata(dir.path().join("st")).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o700);
        // A directory others may write to is refused.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap_or_else(|e| panic!("{e}"));
        assert!(Store::open(&open).is_err());
    }
}

#[test]
fn a_corrupt_state_file_is_an_error_not_an_empty_session() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    store.lock("s").and_then(|l| l.save()).unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap_or_else(|| panic!("no state file"));
    std::fs::write(&file, b"{not json").unwrap_or_else(|e| panic!("{e}"));
    assert!(store.lock("s").is_err());
}

#[test]
fn call_keys_prefer_the_tool_use_id() {
    let a = state::call_key(Some("toolu_1"), "Read", &json!({"file_path": "/a"}));
    assert_eq!(a, "id:toolu_1");
    let b = state::call_key(None, "Read", &json!({"file_path": "/a", "limit": 1}));
    let c = state::call_key(None, "Read", &json!({"limit": 1, "file_path": "/a"}));
    let d = state::call_key(None, "Write", &json!({"file_path": "/a", "limit": 1}));
    assert_eq!(b, c);
    assert_ne!(b, d);
}

fn offline(dir: &std::path::Path) -> Config {
    Config {
        // Nothing listens on port 9 of loopback in the test environment: refused at once.
        url: "http://127.0.0.1:9".into(),
        credential: CredentialSource::Value("a.b.c".into()),
        parent_writ: None,
        decision_timeout: std::time::Duration::from_millis(500),
        writ_keys: dir.join("no-jwks.json"),
        approval_wait: std::time::Duration::ZERO,
        deadline: std::time::Duration::from_secs(5),
        state_dir: Some(dir.to_owned()),
    }
}

#[tokio::test]
async fn malformed_events_are_blocked_with_exit_status_2() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = offline(dir.path());
    let ok = json!({"session_id": "s", "cwd": "/w", "hook_event_name": "PreToolUse", "tool_name": "Read",
                    "tool_input": {"file_path": "/a"}, "transcript_path": "/t", "unknown_field": 1});
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("not JSON".into(), b"{".to_vec()),
        ("an array".into(), b"[]".to_vec()),
        ("too big".into(), vec![b' '; super::MAX_INPUT + 1]),
    ];
    for key in ["session_id", "cwd", "hook_event_name", "tool_name", "tool_input"] {
        let mut v = ok.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove(key);
        }
        cases.push((format!("without {key}"), v.to_string().into_bytes()));
        let mut v = ok.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert(key.into(), json!(42));
        }
        cases.push((format!("{key} of the wrong type"), v.to_string().into_bytes()));
    }
    let mut v = ok.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("hook_event_name".into(), json!("Stop"));
    }
    cases.push(("another event".into(), v.to_string().into_bytes()));
    // A repeated member name, in the tool's input or around it (found in review: the agent's
    // framework may act on the first, serde_json kept the last).
    cases.push((
        "a repeated tool input member".into(),
        br#"{"session_id": "s", "cwd": "/w", "hook_event_name": "PreToolUse", "tool_name": "Read", "transcript_path": "/t", "tool_input": {"file_path": "/etc/passwd", "file_path": "/a"}}"#.to_vec(),
    ));
    cases.push((
        "a repeated tool name".into(),
        br#"{"session_id": "s", "cwd": "/w", "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_name": "Read", "transcript_path": "/t", "tool_input": {"file_path": "/a"}}"#.to_vec(),
    ));
    for (what, bytes) in cases {
        let a = claude_code(&config, Mode::Event, &bytes).await;
        assert_eq!(a.exit, 2, "{what}: {a:?}");
        assert!(a.stdout.is_none(), "{what}");
        assert!(a.stderr.as_deref().is_some_and(|e| e.contains("request.malformed")), "{what}: {a:?}");
    }
    // --post with a PreToolUse event.
    let a = claude_code(&config, Mode::Post, ok.to_string().as_bytes()).await;
    assert_eq!(a.exit, 2, "{a:?}");
    // The well-formed event, unknown field and all, gets as far as the control plane.
    let a = claude_code(&config, Mode::Event, ok.to_string().as_bytes()).await;
    assert_eq!(a.exit, 2, "{a:?}");
    assert!(a.stderr.as_deref().is_some_and(|e| e.contains("log.unavailable")), "{a:?}");
}

#[tokio::test]
async fn exec_requests_are_read_strictly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = offline(dir.path());
    for bad in [
        json!({"action": "read", "resource": "fs:/a"}),
        json!({"action": "read", "resource": "fs:/a", "arguments": []}),
        json!({"action": "", "resource": "fs:/a", "arguments": {}}),
        json!({"action": "read", "resource": "fs:/a", "arguments": {}, "paren_writ": "x"}),
    ]
    .iter()
    .map(Value::to_string)
    // A repeated argument name (found in review: it was read last-wins and allowed, while a
    // first-wins reader of the same request would act on /etc/passwd).
    .chain([
        r#"{"action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/etc/passwd", "path": "/zones/billing/out.csv"}}"#.to_owned(),
        r#"{"action": "write", "action": "read", "resource": "fs:/a", "arguments": {}}"#.to_owned(),
    ]) {
        let a = exec_request(&config, bad.as_bytes()).await;
        assert_eq!(a.exit, 2, "{bad}");
        let out: Value = serde_json::from_str(a.stdout.as_deref().unwrap_or("null")).unwrap_or_default();
        assert_eq!(out.get("decision"), Some(&json!("deny")), "{bad}");
        assert_eq!(out.get("reason"), Some(&json!("request.malformed")), "{bad}");
    }
    let a =
        exec_request(&config, json!({"action": "read", "resource": "fs:/a", "arguments": {}}).to_string().as_bytes())
            .await;
    assert_eq!(a.exit, 2);
    assert!(a.stdout.as_deref().is_some_and(|o| o.contains("log.unavailable")), "{a:?}");
}
