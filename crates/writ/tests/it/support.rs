//! What the binary's integration tests share: a real `writ serve` on an ephemeral loopback
//! port.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `writ serve` child process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_writ"))
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("{line:?}"));
    Server { addr: addr.to_owned(), child }
}
