//! The tools: `write_note` and `read_note`, files under one directory given on the command
//! line, with the MCP server around them (rmcp's `#[tool]` macros and router). Every
//! `tools/call` passes the [`Gate`] first; only a call whose writ verifies reaches a tool.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResponse};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::gate::{DECISION_META_KEY, Gate, refusal};

/// The longest note accepted, in bytes.
const MAX_NOTE: usize = 1024 * 1024;

/// `write_note`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteNote {
    /// The note's path, relative to the notes directory (no `..`, not absolute).
    pub path: String,
    /// The text to write (the file is replaced).
    pub content: String,
}

/// `read_note`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadNote {
    /// The note's path, relative to the notes directory.
    pub path: String,
}

/// The notes server: its directory, its gate, its tools.
#[derive(Clone, Debug)]
pub struct Notes {
    dir: Arc<PathBuf>,
    gate: Arc<Gate>,
    tool_router: ToolRouter<Self>,
}

impl Notes {
    /// Notes kept under `dir` (canonical, existing), calls checked by `gate`.
    pub fn new(dir: PathBuf, gate: Gate) -> Self {
        Notes { dir: Arc::new(dir), gate: Arc::new(gate), tool_router: Self::tool_router() }
    }
}

/// The file the note path `path` names under `dir`, if it stays there: relative, only plain
/// components (no `..`, `.`, root or prefix), and no symbolic link on the way (a link planted
/// in the directory could point anywhere).
fn confined(dir: &Path, path: &str) -> Result<PathBuf, String> {
    let relative = Path::new(path);
    if path.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?} is not a plain relative path under the notes directory"));
    }
    let target = dir.join(relative);
    let mut at = dir.to_path_buf();
    for part in relative.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(format!("{path:?} goes through a symbolic link")),
            Ok(_) => {}
            // Not there yet: nothing below it can be a link either.
            Err(_) => break,
        }
    }
    Ok(target)
}

#[tool_router]
impl Notes {
    /// Writes a note (creating its directories), replacing any earlier text.
    #[tool(description = "Write a note: a UTF-8 text file under the notes directory, replaced if it exists.")]
    async fn write_note(
        &self,
        Parameters(WriteNote { path, content }): Parameters<WriteNote>,
    ) -> Result<String, String> {
        if content.len() > MAX_NOTE {
            return Err(format!("a note is at most {MAX_NOTE} bytes"));
        }
        let file = confined(&self.dir, &path)?;
        if let Some(parent) = file.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| format!("{path}: {e}"))?;
        }
        tokio::fs::write(&file, content.as_bytes()).await.map_err(|e| format!("{path}: {e}"))?;
        Ok(format!("wrote {} bytes to {path}", content.len()))
    }

    /// Reads a note.
    #[tool(description = "Read a note written under the notes directory.")]
    async fn read_note(&self, Parameters(ReadNote { path }): Parameters<ReadNote>) -> Result<String, String> {
        let file = confined(&self.dir, &path)?;
        let meta = tokio::fs::metadata(&file).await.map_err(|e| format!("{path}: {e}"))?;
        if meta.len() > MAX_NOTE as u64 {
            return Err(format!("{path} is larger than {MAX_NOTE} bytes"));
        }
        tokio::fs::read_to_string(&file).await.map_err(|e| format!("{path}: {e}"))
    }
}

#[tool_handler(router = self.tool_router, instructions = "Notes under one directory. Every call needs a writ for exactly that call in _meta[\"dev.writ/writ\"]: launch this server behind `writ mcp`.")]
impl ServerHandler for Notes {
    /// The gate, then the tool: a call runs only if its writ verifies for exactly this call.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // An unknown tool is the router's answer (nothing runs); it is not a writ question.
        if self.tool_router.has_route(&request.name) {
            let now = unix_now();
            match self.gate.check(&context.meta, &request.name, request.arguments.as_ref(), now).await {
                Ok(writ) => tracing::info!(
                    tool = %request.name,
                    writ = %writ.claims.jti,
                    subject = %writ.claims.sub,
                    decision = ?context.meta.0.0.get(DECISION_META_KEY),
                    "writ verified; running the tool"
                ),
                Err(r) => {
                    tracing::warn!(tool = %request.name, reason = %r.reason, detail = %r.detail, "writ refused; the tool does not run");
                    return Ok(refusal(&r).into());
                }
            }
        }
        self.tool_router.call(ToolCallContext::new(self, request, context)).await
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::confined;

    #[test]
    fn note_paths_stay_under_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(confined(root, "a.txt").unwrap(), root.join("a.txt"));
        assert_eq!(confined(root, "sub/b.txt").unwrap(), root.join("sub/b.txt"));
        for bad in ["", "../x", "/etc/passwd", "a/../../x", "./a", "a/.."] {
            assert!(confined(root, bad).is_err(), "{bad:?} accepted");
        }
        std::os::unix::fs::symlink("/tmp", root.join("out")).unwrap();
        assert!(confined(root, "out/x").is_err(), "a path through a link was accepted");
        assert!(confined(root, "out").is_err());
    }
}
