//! What the binary's integration tests share: a real `writ serve` on an ephemeral loopback
//! port.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `writ serve` child process, killed when dropped. Its standard error goes to
/// `serve-stderr.log` in the data directory (appended to across starts).
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Stops the server as an operator would (SIGTERM) and waits for it, at most 20 s.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "writ serve did not stop within 20 s of SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// What the servers started on `dir` wrote to standard error.
pub fn server_stderr(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serve-stderr.log")).unwrap_or_default()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `writ serve` on `dir` and an ephemeral loopback port; returns once it prints its
/// URL (it listens by then).
pub fn start_server(dir: &Path) -> Server {
    start_server_with(dir, &[])
}

/// [`start_server`] with more `writ serve` flags.
pub fn start_server_with(dir: &Path, flags: &[&str]) -> Server {
    spawn_server(Command::new(env!("CARGO_BIN_EXE_writ")), dir, flags)
}

/// [`start_server_with`] under a soft limit of `nofile` open file descriptors (`ulimit -n`).
pub fn start_server_limited(dir: &Path, nofile: u64, flags: &[&str]) -> Server {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_writ"));
    spawn_server(sh, dir, flags)
}

fn spawn_server(mut command: Command, dir: &Path, flags: &[&str]) -> Server {
    let mut child = command
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve-stderr.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("{line:?}"));
    Server { addr: addr.to_owned(), child }
}

/// Runs `writ --data-dir DIR ARGS`, with `stdin` as its standard input.
pub fn writ(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_writ"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write as _;
        // A command that refuses its arguments may exit before it reads its input: a broken
        // pipe is then what it asked for, not a failure.
        if let Err(e) = child.stdin.take().unwrap().write_all(input.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing the command's input: {e}");
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// The JSON a command printed (its output and errors in the panic message otherwise).
pub fn json_out(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// A workload credential of the development issuer for `spiffe_id` in `zone`.
pub fn issue(dir: &Path, spiffe_id: &str, zone: &str) -> String {
    let out = writ(dir, &["identity", "issue", "--spiffe-id", spiffe_id, "--zone", zone], None);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
