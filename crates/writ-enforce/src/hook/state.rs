//! What the hook remembers between its runs within one agent session: the writ of each
//! allowed tool call until its PostToolUse records the outcome, and the writ chain of the
//! session's sub-agents (the spawn writs, and which sub-agent each one launched), so that a
//! sub-agent's actions are lineage children of its launch.
//!
//! One JSON file per session in the state directory, named by the SHA-256 of the session
//! id, written whole (a temporary file renamed over it) under an exclusive lock on a
//! companion `.lock` file, since an agent CLI may run hooks for parallel tool calls at once.
//! The directory is created mode 0700 and refused if others may write to it; files are mode
//! 0600. Bounded: at most [`MAX_CALLS`] open calls, [`MAX_SPAWNS`] spawns and
//! [`MAX_AGENTS`] sub-agents per session (oldest dropped first), entries older than
//! [`STALE`] dropped, and session files untouched for [`STALE`] removed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Open calls (allowed, outcome not yet recorded) kept per session.
pub(crate) const MAX_CALLS: usize = 4096;
/// Spawn writs kept per session.
pub(crate) const MAX_SPAWNS: usize = 256;
/// Sub-agents kept per session.
pub(crate) const MAX_AGENTS: usize = 256;
/// Age after which an entry, or a whole session file, is dropped.
pub(crate) const STALE: Duration = Duration::from_secs(24 * 3600);
/// Largest session file read (a bound well above what the limits above allow).
const MAX_FILE: u64 = 64 * 1024 * 1024;
/// How long to wait for another run of the hook to release the session's lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// An allowed call awaiting its outcome.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Call {
    /// The writ's id (the decision id).
    pub(crate) jti: String,
    /// When it was allowed (Unix milliseconds).
    pub(crate) at_ms: u64,
}

/// An allowed sub-agent launch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Spawn {
    /// The spawn writ, presented as the parent of the sub-agent's actions.
    pub(crate) writ: String,
    pub(crate) jti: String,
    /// The type of agent launched (`subagent_type`).
    pub(crate) agent_type: String,
    /// The sub-agent (`agent_id`) that claimed it, once one did.
    pub(crate) claimed_by: Option<String>,
    pub(crate) at_ms: u64,
}

/// One session's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Session {
    /// Open calls by key ([`call_key`]).
    #[serde(default)]
    pub(crate) calls: BTreeMap<String, Call>,
    /// Spawns, oldest first.
    #[serde(default)]
    pub(crate) spawns: Vec<Spawn>,
}

impl Session {
    /// The spawn writ whose sub-agent `agent_id` is: the one it claimed before, else the
    /// oldest unclaimed spawn of its `agent_type` (then claimed for it).
    pub(crate) fn parent_of(&mut self, agent_id: &str, agent_type: Option<&str>) -> Option<String> {
        if let Some(s) = self.spawns.iter().find(|s| s.claimed_by.as_deref() == Some(agent_id)) {
            return Some(s.writ.clone());
        }
        let agent_type = agent_type?;
        let s = self.spawns.iter_mut().find(|s| s.claimed_by.is_none() && s.agent_type == agent_type)?;
        s.claimed_by = Some(agent_id.to_owned());
        Some(s.writ.clone())
    }

    /// Drops stale entries and keeps the bounds.
    fn prune(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(u64::try_from(STALE.as_millis()).unwrap_or(u64::MAX));
        self.calls.retain(|_, c| c.at_ms >= horizon);
        while self.calls.len() > MAX_CALLS {
            let oldest = self.calls.iter().min_by_key(|(_, c)| c.at_ms).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.calls.remove(&k),
                None => break,
            };
        }
        self.spawns.retain(|s| s.at_ms >= horizon);
        // Claimed spawns count towards the sub-agent bound, unclaimed ones towards the spawn bound.
        let claimed = self.spawns.iter().filter(|s| s.claimed_by.is_some()).count();
        let mut drop_claimed = claimed.saturating_sub(MAX_AGENTS);
        let mut drop_unclaimed = (self.spawns.len() - claimed).saturating_sub(MAX_SPAWNS);
        self.spawns.retain(|s| {
            let counter = if s.claimed_by.is_some() { &mut drop_claimed } else { &mut drop_unclaimed };
            if *counter > 0 {
                *counter -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// The key of a call: its `tool_use_id` when the event has one, else the SHA-256 of the
/// tool name and the RFC 8785 form of its input.
pub(crate) fn call_key(tool_use_id: Option<&str>, tool_name: &str, tool_input: &serde_json::Value) -> String {
    match tool_use_id {
        Some(id) => format!("id:{id}"),
        None => {
            let mut h = Sha256::new();
            h.update(tool_name.as_bytes());
            h.update([0u8]);
            h.update(writ_core::canonical_json(tool_input).unwrap_or_default());
            format!("sha256:{}", hex::encode(h.finalize()))
        }
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// The state directory.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// A session's state, locked until dropped.
pub(crate) struct Locked {
    path: PathBuf,
    _lock: File,
    pub(crate) session: Session,
}

impl Store {
    /// Opens (creating it, mode 0700) the state directory and removes stale session files.
    pub(crate) fn open(dir: &Path) -> Result<Store, String> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| format!("creating the state directory {}: {e}", dir.display()))?;
        let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("the state directory {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("the state directory {} is not a directory", dir.display()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o022 != 0 {
                return Err(format!(
                    "the state directory {} may be written by others (mode {:o}): give one only you can write",
                    dir.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        let store = Store { dir: dir.to_owned() };
        store.remove_stale();
        Ok(store)
    }

    /// Removes session files untouched for [`STALE`] (best effort).
    fn remove_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.ends_with(".json") || name.ends_with(".lock") || name.ends_with(".tmp")) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Locks and reads the state of `session_id` (empty when there is none yet).
    pub(crate) fn lock(&self, session_id: &str) -> Result<Locked, String> {
        let stem = hex::encode(Sha256::digest(session_id.as_bytes()));
        let stem = stem.get(..32).unwrap_or(&stem);
        let lock_path = self.dir.join(format!("{stem}.lock"));
        let lock = private_file(&lock_path, false)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(format!("the session state is locked by another run for over {LOCK_WAIT:?}"));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(format!("locking the session state: {e}")),
            }
        }
        let path = self.dir.join(format!("{stem}.json"));
        let session = match File::open(&path) {
            Ok(f) => {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if len > MAX_FILE {
                    return Err(format!("the session state {} is over {MAX_FILE} bytes", path.display()));
                }
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_FILE), &mut bytes)
                    .map_err(|e| format!("reading the session state: {e}"))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the session state {} cannot be read ({e})", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Session::default(),
            Err(e) => return Err(format!("reading the session state {}: {e}", path.display())),
        };
        Ok(Locked { path, _lock: lock, session })
    }
}

impl Locked {
    /// Writes the state back (pruned), then releases the lock.
    pub(crate) fn save(mut self) -> Result<(), String> {
        self.session.prune(now_ms());
        let bytes = serde_json::to_vec(&self.session).map_err(|e| format!("writing the session state: {e}"))?;
        let tmp = self.path.with_extension("tmp");
        let mut f = private_file(&tmp, true)?;
        // Not synced: a state lost to a crash fails closed (the PostToolUse finds no writ and
        // says so; a sub-agent finds no launch and is denied), and the rename is atomic.
        f.write_all(&bytes).map_err(|e| format!("writing the session state {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| format!("writing the session state {}: {e}", self.path.display()))
    }
}

/// Opens `path` for writing, created mode 0600 (truncated when `truncate`).
fn private_file(path: &Path, truncate: bool) -> Result<File, String> {
    let mut o = OpenOptions::new();
    o.create(true).write(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| format!("opening {}: {e}", path.display()))
}
