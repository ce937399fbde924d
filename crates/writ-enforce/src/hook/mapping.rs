//! The one mapping from an agent CLI's tools to execution requests (docs/agent-actions.md,
//! "Agent CLI tools"), so that one policy bundle governs shell commands, file reads and
//! edits, web fetches, MCP tools and sub-agent launches alike. Tool names and inputs are
//! Claude Code's (hooks reference, code.claude.com/docs/en/hooks).
//!
//! Paths are made absolute against the event's working directory and normalised
//! lexically (`.` and `..` segments resolved on the string, never through the file system,
//! so no symbolic link is followed and nothing is read); a path that cannot be made absolute
//! and normalised is refused. URLs are parsed with the `http` crate (RFC 3986 syntax).

use serde_json::{Map, Value, json};

/// The program a shell command string runs under (the `Bash` tool runs it with a shell).
pub(crate) const SHELL: &str = "/bin/sh";

/// The resource of every sub-agent launch.
pub(crate) const AGENT_POOL: &str = "agents:pool";

/// How many leading directories of a written path name its resource (`/zones/billing/a/b`
/// is `fs:/zones/billing`).
pub(crate) const WRITE_RESOURCE_DEPTH: usize = 2;

/// The sub-agent type Claude Code launches when `subagent_type` is not given.
pub(crate) const DEFAULT_AGENT: &str = "general-purpose";

/// One tool call as an execution request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Mapped {
    pub(crate) action: String,
    pub(crate) resource: String,
    pub(crate) arguments: Value,
    /// For a sub-agent launch, the type of the agent launched.
    pub(crate) spawns: Option<String>,
}

/// Why a tool call has no execution request (it is denied, `request.malformed`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Unmappable(pub(crate) String);

fn bad<T>(why: impl Into<String>) -> Result<T, Unmappable> {
    Err(Unmappable(why.into()))
}

/// The execution request for the tool `name` called with `input` in the working directory
/// `cwd` (absolute).
pub(crate) fn map_tool(name: &str, input: &Map<String, Value>, cwd: &str) -> Result<Mapped, Unmappable> {
    let cwd = normalise(cwd, None).map_err(|why| Unmappable(format!("the working directory {cwd:?}: {why}")))?;
    let text = |key: &str| text(name, input, key);
    let optional = |key: &str| optional(name, input, key);
    let path_of = |raw: &str| -> Result<String, Unmappable> {
        normalise(raw, Some(cwd.as_str())).map_err(|why| Unmappable(format!("{name}: the path {raw:?}: {why}")))
    };
    match name {
        "Bash" => {
            let command = text("command")?;
            Ok(Mapped {
                action: "exec".into(),
                resource: format!("exec:{SHELL}"),
                arguments: json!({
                    "program": SHELL,
                    "args": ["-c", command],
                    "command_line": command,
                    "cwd": cwd,
                    "env": [],
                }),
                spawns: None,
            })
        }
        "Read" | "Grep" | "Glob" | "LS" | "NotebookRead" => {
            let raw = match name {
                "Read" => Some(text("file_path")?),
                "NotebookRead" => Some(text("notebook_path")?),
                "LS" => Some(text("path")?),
                // Grep and Glob search the working directory when no path is given.
                _ => optional("path")?,
            };
            let path = match raw {
                Some(raw) => path_of(raw)?,
                None => cwd.clone(),
            };
            let mut arguments = json!({"path": path, "tool": name});
            if let (Some(pattern), Some(obj)) = (optional("pattern")?, arguments.as_object_mut()) {
                obj.insert("pattern".into(), json!(pattern));
            }
            Ok(Mapped { action: "read".into(), resource: format!("fs:{path}"), arguments, spawns: None })
        }
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => {
            let path = path_of(text(if name == "NotebookEdit" { "notebook_path" } else { "file_path" })?)?;
            let bytes = match name {
                "Write" => Some(text("content")?.len()),
                "Edit" => Some(text("new_string")?.len()),
                "NotebookEdit" => optional("new_source")?.map(str::len),
                _ => match input.get("edits") {
                    Some(Value::Array(edits)) => Some(
                        edits.iter().filter_map(|e| e.get("new_string").and_then(Value::as_str)).map(str::len).sum(),
                    ),
                    _ => return bad(format!("{name}: tool_input.edits is not an array")),
                },
            };
            let mut arguments = json!({"path": path, "tool": name});
            if let (Some(bytes), Some(obj)) = (bytes, arguments.as_object_mut()) {
                obj.insert("bytes".into(), json!(bytes));
            }
            Ok(Mapped { action: "write".into(), resource: write_resource(&path), arguments, spawns: None })
        }
        "WebFetch" => {
            let url = text("url")?;
            let (scheme, host) = origin(url).map_err(|why| Unmappable(format!("{name}: the URL {url:?}: {why}")))?;
            Ok(Mapped {
                action: "fetch".into(),
                resource: format!("url:{scheme}://{host}"),
                arguments: json!({"url": url, "host": host}),
                spawns: None,
            })
        }
        "WebSearch" => {
            let query = text("query")?;
            Ok(Mapped {
                action: "fetch".into(),
                resource: "url:search".into(),
                arguments: json!({"query": query}),
                spawns: None,
            })
        }
        "Task" | "Agent" => {
            let agent = optional("subagent_type")?.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_AGENT);
            Ok(Mapped {
                action: "spawn".into(),
                resource: AGENT_POOL.into(),
                arguments: json!({"agent": agent}),
                spawns: Some(agent.to_owned()),
            })
        }
        _ => match mcp_tool(name) {
            Some((server, tool)) => Ok(Mapped {
                action: format!("mcp:{server}/{tool}"),
                resource: format!("mcp:{server}"),
                arguments: Value::Object(input.clone()),
                spawns: None,
            }),
            None => Ok(Mapped {
                action: format!("tool:{name}"),
                resource: format!("tool:{name}"),
                arguments: Value::Object(input.clone()),
                spawns: None,
            }),
        },
    }
}

/// The string member `key` of a tool's input.
fn text<'a>(tool: &str, input: &'a Map<String, Value>, key: &str) -> Result<&'a str, Unmappable> {
    match input.get(key) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => bad(format!("{tool}: tool_input.{key} is not a string")),
        None => bad(format!("{tool}: tool_input.{key} is missing")),
    }
}

/// The string member `key` of a tool's input, if present (and not null).
fn optional<'a>(tool: &str, input: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Unmappable> {
    match input.get(key) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => bad(format!("{tool}: tool_input.{key} is not a string")),
    }
}

/// `mcp__<server>__<tool>` split into server and tool (the server name ends at the first
/// `__` after the prefix); `None` for any other name or an empty part.
pub(crate) fn mcp_tool(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("mcp__")?;
    let (server, tool) = rest.split_once("__")?;
    (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
}

/// The resource of a write to the absolute, normalised `path`: its first
/// [`WRITE_RESOURCE_DEPTH`] directories (`/zones/billing/out/a.csv` is `fs:/zones/billing`);
/// for a shallower path, the directory it is in (`/etc/passwd` is `fs:/etc`, `/x` is `fs:/`).
pub(crate) fn write_resource(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The file itself is never its own resource: at most the directories above it.
    let dirs = segments.len().saturating_sub(1).min(WRITE_RESOURCE_DEPTH);
    let prefix = segments.get(..dirs).unwrap_or_default();
    format!("fs:/{}", prefix.join("/"))
}

/// `path` made absolute against `cwd` (when relative) and normalised lexically: no `.`
/// segment, `..` removes the segment before it, no empty segment, no trailing `/` (except
/// the root itself). Refused: an empty path, a NUL, a `~` (a shell would expand it), a
/// relative path without a working directory, and a `..` above the root.
pub(crate) fn normalise(path: &str, cwd: Option<&str>) -> Result<String, &'static str> {
    if path.is_empty() {
        return Err("it is empty");
    }
    if path.contains('\0') {
        return Err("it holds a NUL");
    }
    if path.starts_with('~') {
        return Err("it starts with ~ (home-relative paths are not resolved)");
    }
    let joined;
    let full = if path.starts_with('/') {
        path
    } else {
        let Some(cwd) = cwd else { return Err("it is not absolute") };
        joined = format!("{cwd}/{path}");
        &joined
    };
    let mut out: Vec<&str> = Vec::new();
    for segment in full.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err("a .. goes above the root");
                }
            }
            s => out.push(s),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// The scheme and host of an absolute URL as the WHATWG URL Standard parses it, which is how
/// the agent CLI's runtime will resolve it: the scheme lowercased; the host lowercased and
/// IDNA-mapped, an IPv4 address in any of its forms (`2130706433`, `0x7f.1`, `127.1`)
/// written dotted-decimal, an IPv4-mapped IPv6 address (`[::ffff:7f00:1]`) written as the
/// IPv4 address it is, another IPv6 address in brackets, compressed, and a domain's trailing
/// dot dropped (`localhost.` is `localhost`). The user information, the port and everything
/// after the host are left out. Found in review: the host was taken as written, so
/// `https://2130706433/` passed a policy forbidding `127.*`.
pub(crate) fn origin(url: &str) -> Result<(String, String), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not an absolute URL ({e})"))?;
    let host = match parsed.host() {
        None => return Err("no host".into()),
        Some(url::Host::Domain("")) => return Err("no host".into()),
        Some(url::Host::Domain(d)) => d.strip_suffix('.').unwrap_or(d).to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{a}]"),
        },
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((parsed.scheme().to_owned(), host))
}
