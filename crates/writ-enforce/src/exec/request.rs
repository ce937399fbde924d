//! The execution request of one command (the `exec` action, docs/agent-actions.md,
//! "Commands"): the program resolved as `execvp(3)` resolves it (POSIX.1-2017, XBD 8.3
//! `PATH` and XSH `exec`), the arguments, the command line quoted for a POSIX shell
//! (XCU 2.2.3, single quotes), the working directory and the names of selected environment
//! variables. Pure: the environment and the file system are passed in.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

/// The action of every command execution.
pub const ACTION: &str = "exec";

/// The audience of a command's writ.
pub const AUDIENCE: &str = "exec";

/// The program a shell command string runs (`sh -c <string>`), as an agent-CLI hook maps it.
pub const SHELL: &str = "/bin/sh";

/// The directories searched when `PATH` is unset (glibc's and musl's `execvp` default,
/// without the current directory).
pub const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The environment variables whose presence (never their values) the policy sees by
/// default: the search path and the user, and those that make a program load or run other
/// code than its own (the dynamic loader's `LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT` and
/// their macOS counterparts; start-up files and options of shells and interpreters). A
/// permit for `/usr/bin/git` means little if `LD_PRELOAD` puts another library in it.
pub const DEFAULT_ENV_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "SHELL",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "DYLD_INSERT_LIBRARIES",
    "DYLD_LIBRARY_PATH",
    "BASH_ENV",
    "ENV",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "NODE_OPTIONS",
    "PERL5OPT",
    "RUBYOPT",
];

/// One command execution as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// The program's absolute path (symbolic links not resolved).
    pub program: String,
    /// The arguments after the program.
    pub args: Vec<String>,
    /// The whole command line (see [`command_line`]), or a hook's shell command string.
    pub command_line: String,
    /// The absolute working directory.
    pub cwd: String,
    /// The names of the selected environment variables that are set, sorted, once each.
    pub env: Vec<String>,
}

impl ExecRequest {
    /// The request for `argv` (the program as given, then its arguments), its program
    /// resolved to `program`.
    pub fn command(program: &Path, argv: &[String], cwd: &Path, env: Vec<String>) -> Self {
        ExecRequest {
            program: program.to_string_lossy().into_owned(),
            args: argv.get(1..).unwrap_or_default().to_vec(),
            command_line: command_line(argv),
            cwd: cwd.to_string_lossy().into_owned(),
            env: sorted(env),
        }
    }

    /// The request for a shell command string (`/bin/sh -c <command>`), as an agent-CLI hook
    /// maps a shell tool: the command line is the string itself.
    pub fn shell(command: &str, cwd: &Path, env: Vec<String>) -> Self {
        ExecRequest {
            program: SHELL.to_owned(),
            args: vec!["-c".to_owned(), command.to_owned()],
            command_line: command.to_owned(),
            cwd: cwd.to_string_lossy().into_owned(),
            env: sorted(env),
        }
    }

    /// The resource: `exec:<program>`.
    pub fn resource(&self) -> String {
        format!("exec:{}", self.program)
    }

    /// The request's `arguments` (`context.arguments` in policy).
    pub fn arguments(&self) -> Value {
        json!({
            "program": self.program,
            "args": self.args,
            "command_line": self.command_line,
            "cwd": self.cwd,
            "env": self.env,
        })
    }
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

/// The names among `selected` (and [`DEFAULT_ENV_NAMES`]) for which `is_set` holds.
pub fn present_env_names(selected: &[String], is_set: impl Fn(&str) -> bool) -> Vec<String> {
    let names = DEFAULT_ENV_NAMES.iter().map(|s| (*s).to_owned()).chain(selected.iter().cloned());
    sorted(names.filter(|n| !n.is_empty() && is_set(n)).collect())
}

/// `argv` quoted for a POSIX shell and joined by single spaces: a word made only of
/// `A-Z a-z 0-9 _ @ % + = : , . / -` (and not empty) is written as is; any other is put in
/// single quotes, each `'` in it written `'\''` (XCU 2.2.3). Reading the line back with a
/// POSIX shell gives `argv` again.
pub fn command_line(argv: &[String]) -> String {
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'@' | b'%' | b'+' | b'=' | b':' | b',' | b'.' | b'/' | b'-')
        });
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// Why a command cannot run, found before anything is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unrunnable {
    /// No such program (a shell's status 127).
    NotFound(String),
    /// Found, but not an executable file (a shell's status 126).
    NotExecutable(String),
}

impl Unrunnable {
    /// The shell's exit status for it.
    pub fn exit_status(&self) -> u8 {
        match self {
            Unrunnable::NotFound(_) => 127,
            Unrunnable::NotExecutable(_) => 126,
        }
    }
}

impl std::fmt::Display for Unrunnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unrunnable::NotFound(p) => write!(f, "{p}: command not found"),
            Unrunnable::NotExecutable(p) => write!(f, "{p}: not an executable file"),
        }
    }
}

/// The absolute path `execvp` would run for `name`: a name with a `/` is taken as a path
/// (relative to `cwd`); otherwise each directory of `path` (an empty entry is `cwd`) is
/// tried in turn, the first executable regular file wins, and a file found but not
/// executable is reported only when no later directory has one. `.` segments are dropped;
/// `..` segments and symbolic links are kept as written (resolving them would name another
/// file than the one the policy is asked about when a link changes).
pub fn resolve(
    name: &str,
    path: Option<&OsStr>,
    cwd: &Path,
    executable: impl Fn(&Path) -> Access,
) -> Result<PathBuf, Unrunnable> {
    if name.is_empty() {
        return Err(Unrunnable::NotFound(String::new()));
    }
    if name.contains('/') {
        let full = absolute(cwd, Path::new(name));
        return match executable(&full) {
            Access::Executable => Ok(full),
            Access::Missing => Err(Unrunnable::NotFound(name.to_owned())),
            Access::NotExecutable => Err(Unrunnable::NotExecutable(name.to_owned())),
        };
    }
    let search = path.unwrap_or_else(|| OsStr::new(DEFAULT_PATH));
    let mut seen_unexecutable = false;
    for dir in std::env::split_paths(search) {
        let candidate = absolute(cwd, &dir.join(name));
        match executable(&candidate) {
            Access::Executable => return Ok(candidate),
            Access::NotExecutable => seen_unexecutable = true,
            Access::Missing => {}
        }
    }
    if seen_unexecutable {
        Err(Unrunnable::NotExecutable(name.to_owned()))
    } else {
        Err(Unrunnable::NotFound(name.to_owned()))
    }
}

/// What a path is, for [`resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A regular file this process may execute.
    Executable,
    /// Something there, but not that (a directory, no execute permission).
    NotExecutable,
    /// Nothing there.
    Missing,
}

/// `p` made absolute against `cwd`, without `.` segments.
fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    joined.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}
