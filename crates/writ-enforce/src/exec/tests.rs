use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn command_lines_are_posix_shell_quoted() {
    assert_eq!(command_line(&argv(&["git", "push", "origin"])), "git push origin");
    assert_eq!(command_line(&argv(&["echo", "a b", ""])), "echo 'a b' ''");
    assert_eq!(command_line(&argv(&["sh", "-c", "rm -rf / ; echo it's"])), r"sh -c 'rm -rf / ; echo it'\''s'");
    assert_eq!(command_line(&argv(&["a=b", "x@y:1,2.3/4%+-_"])), "a=b x@y:1,2.3/4%+-_");
    // Anything a shell would read specially is quoted: globs, $, ~, newlines, non-ASCII.
    for w in ["*", "$HOME", "~", "a\nb", "é", "a;b", "`x`", "a|b", "\"q\""] {
        let line = command_line(&argv(&[w]));
        assert!(line.starts_with('\'') && line.ends_with('\''), "{w:?} -> {line}");
    }
}

#[test]
fn the_request_is_the_contract() {
    let r = ExecRequest::command(
        Path::new("/usr/bin/git"),
        &argv(&["git", "push", "origin"]),
        Path::new("/work/repo"),
        argv(&["PATH", "HOME", "PATH"]),
    );
    assert_eq!(r.resource(), "exec:/usr/bin/git");
    assert_eq!(
        r.arguments(),
        json!({"program": "/usr/bin/git", "args": ["push", "origin"], "command_line": "git push origin",
               "cwd": "/work/repo", "env": ["HOME", "PATH"]})
    );
    let s = ExecRequest::shell("ls -l | wc -l", Path::new("/tmp"), Vec::new());
    assert_eq!(s.resource(), "exec:/bin/sh");
    assert_eq!(
        s.arguments(),
        json!({"program": "/bin/sh", "args": ["-c", "ls -l | wc -l"], "command_line": "ls -l | wc -l",
               "cwd": "/tmp", "env": []})
    );
}

#[test]
fn env_names_are_the_defaults_and_the_selected_ones_that_are_set() {
    let set = ["PATH", "LD_PRELOAD", "AWS_PROFILE", "SECRET"];
    let names = present_env_names(&argv(&["AWS_PROFILE", "NOT_SET", ""]), |n| set.contains(&n));
    assert_eq!(names, argv(&["AWS_PROFILE", "LD_PRELOAD", "PATH"]));
}

/// A fake file system for `resolve`.
fn fs<'a>(files: &'a [(&'a str, Access)]) -> impl Fn(&Path) -> Access + 'a {
    move |p: &Path| files.iter().find(|(f, _)| Path::new(f) == p).map(|(_, a)| *a).unwrap_or(Access::Missing)
}

#[test]
fn programs_resolve_as_execvp_does() {
    let files = [
        ("/usr/local/bin/tool", Access::NotExecutable),
        ("/usr/bin/tool", Access::Executable),
        ("/usr/bin/git", Access::Executable),
        ("/home/u/bin/only-here", Access::NotExecutable),
        ("/work/./x", Access::Executable),
        ("/work/x", Access::Executable),
        ("/work/cwdtool", Access::Executable),
    ];
    let path = OsStr::new("/usr/local/bin:/usr/bin:/home/u/bin");
    let cwd = Path::new("/work");
    let r = |name: &str, path: Option<&OsStr>| resolve(name, path, cwd, fs(&files));
    // A later directory's executable wins over an earlier non-executable file.
    assert_eq!(r("tool", Some(path)), Ok(PathBuf::from("/usr/bin/tool")));
    assert_eq!(r("git", Some(path)), Ok(PathBuf::from("/usr/bin/git")));
    assert_eq!(r("only-here", Some(path)), Err(Unrunnable::NotExecutable("only-here".into())));
    assert_eq!(r("nope", Some(path)), Err(Unrunnable::NotFound("nope".into())));
    // Unset PATH: /bin:/usr/bin.
    assert_eq!(r("git", None), Ok(PathBuf::from("/usr/bin/git")));
    // A name with a slash is a path, made absolute against the working directory, without `.`.
    assert_eq!(r("./x", Some(path)), Ok(PathBuf::from("/work/x")));
    assert_eq!(r("/usr/bin/git", Some(OsStr::new(""))), Ok(PathBuf::from("/usr/bin/git")));
    assert_eq!(r("/usr/local/bin/tool", Some(path)), Err(Unrunnable::NotExecutable("/usr/local/bin/tool".into())));
    // An empty PATH entry is the working directory.
    assert_eq!(r("cwdtool", Some(OsStr::new("/nowhere::/usr/bin"))), Ok(PathBuf::from("/work/cwdtool")));
    assert_eq!(r("", Some(path)), Err(Unrunnable::NotFound(String::new())));
    assert_eq!(Unrunnable::NotFound("x".into()).exit_status(), 127);
    assert_eq!(Unrunnable::NotExecutable("x".into()).exit_status(), 126);
}

#[test]
fn statuses_of_signals_are_as_shells_report_them() {
    assert_eq!(exit_for_signal(libc_sig::TERM), 143);
    assert_eq!(exit_for_signal(libc_sig::INT), 130);
    assert_eq!(signal_name(libc_sig::TERM), "SIGTERM");
    assert_eq!(signal_name(9), "SIGKILL");
}
