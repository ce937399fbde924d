//! The stdio transport (`writ mcp -- <server command> [args]`): the wrapped server process
//! and the two newline-delimited JSON-RPC 2.0 streams of MCP 2025-06-18
//! (<https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#stdio>).
//!
//! One connection is one [`Session`]. Lines are bounded ([`MAX_LINE`]). A line from the
//! client that is not JSON is answered with a parse error (-32700, id null) and not
//! forwarded; a batch is refused with an error per request in it; a line from the server
//! that is not JSON is logged to standard error and dropped. Calls are decided concurrently
//! and answered in any order; everything that is not governed or filtered is relayed byte
//! for byte. The server's exit ends the gateway with its status; the client's end of input
//! closes the server's standard input, and the server is killed if it has not exited 10 s
//! later.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::govern::{Governed, Governor, Inbound, Outbound, Session};
use super::lines::{Line, MAX_LINE, read_line};
use super::{Config, OUTCOME_DRAIN, answer, control_plane, valid_server_name};
use crate::Error;

/// How long the server may take to exit once its standard input is closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Messages queued towards one side before readers wait.
const QUEUE: usize = 1024;

/// A line (or a flush request) for the client.
enum Out {
    Line(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// The state the relay tasks share.
struct Gateway {
    gov: Arc<Governor>,
    session: Session,
    to_client: mpsc::Sender<Out>,
    // Calls being decided at once: past it, the client's next line waits (each holds its
    // message and a control-plane connection; a client writing calls without waiting grew
    // both without bound).
    deciding: Arc<tokio::sync::Semaphore>,
}

/// Most `tools/call`s decided at once per client.
const MAX_DECIDING: usize = 64;

impl Gateway {
    async fn send_client(&self, msg: &Value) {
        match serde_json::to_vec(msg) {
            Ok(bytes) => self.send_client_raw(bytes).await,
            Err(e) => eprintln!("writ mcp: cannot write an answer: {e}"),
        }
    }

    async fn send_client_raw(&self, bytes: Vec<u8>) {
        // Fails only once the client's output is gone, when there is nobody to tell.
        let _ = self.to_client.send(Out::Line(bytes)).await;
    }

    /// One line from the client.
    async fn from_client(self: &Arc<Self>, line: Vec<u8>, to_server: &mpsc::Sender<Vec<u8>>) {
        let msg: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => {
                self.send_client(&super::govern::parse_error(&e)).await;
                return;
            }
        };
        match self.gov.inbound(&self.session, msg).await {
            Inbound::Call(msg) => {
                // The semaphore is never closed.
                let Ok(permit) = self.deciding.clone().acquire_owned().await else { return };
                let gw = self.clone();
                let to_server = to_server.clone();
                tokio::spawn(async move {
                    gw.govern(msg, to_server).await;
                    drop(permit);
                });
            }
            Inbound::Refuse(Some(answer)) => self.send_client(&answer).await,
            Inbound::Refuse(None) => {}
            // Passed on as the message classified (never the client's own bytes). Fails only
            // once the server's input is gone.
            Inbound::Forward(bytes) => {
                let _ = to_server.send(bytes).await;
            }
        }
    }

    /// Decides one `tools/call`; forwards it with its writ, or answers it.
    async fn govern(self: Arc<Self>, msg: Value, to_server: mpsc::Sender<Vec<u8>>) {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        match self.gov.govern(&self.session, msg).await {
            Governed::Forward(bytes) => {
                if to_server.send(bytes).await.is_err() {
                    self.gov.unsent(&self.session, &id).await;
                    let m = "the MCP server's input is closed (it exited); the call was not forwarded";
                    self.send_client(&answer::error(&id, answer::INTERNAL_ERROR, m)).await;
                }
            }
            Governed::Answer(answer) => self.send_client(&answer).await,
        }
    }

    /// One message from the server (an element of a batch is one message).
    async fn from_server(self: &Arc<Self>, line: Vec<u8>, msg: Value) {
        match self.gov.outbound(&self.session, &msg).await {
            Outbound::Relay => self.send_client_raw(line).await,
            Outbound::Rewrite(msg) => self.send_client(&msg).await,
            Outbound::Filter { msg, first_page } => {
                // The preview is a request to the control plane: off the relay's path.
                let gw = self.clone();
                tokio::spawn(async move {
                    let msg = gw.gov.filter_list(&gw.session, msg, first_page).await;
                    gw.send_client(&msg).await;
                });
            }
        }
    }
}

/// Runs the gateway: starts the server, relays between it and the client (`client_in`,
/// `client_out`: the gateway's own standard input and output in `writ mcp`) until the
/// server exits, and returns the server's exit status (128 + the signal that ended it).
pub async fn run<R, W>(config: Config, client_in: R, client_out: W) -> Result<i32, Error>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Some((program, args)) = config.command.split_first() else {
        return Err(Error::Config("no server command: writ mcp [options] -- <server command> [args]".into()));
    };
    if !valid_server_name(&config.name) {
        return Err(Error::Config(format!("--name {:?}: a server name is [a-z0-9_-]+, at most 64", config.name)));
    }
    let gov =
        Arc::new(Governor::new(control_plane(&config)?, &config.name, config.deny_as_error, config.approval_wait));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn { command: program.clone(), source })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Config("the server's standard input and output were not piped".into()));
    };
    let (to_client, client_rx) = mpsc::channel(QUEUE);
    let (to_server, server_rx) = mpsc::channel(QUEUE);
    let gw = Arc::new(Gateway {
        gov: gov.clone(),
        session: Session::default(),
        to_client,
        deciding: Arc::new(tokio::sync::Semaphore::new(MAX_DECIDING)),
    });
    let client_writer = tokio::spawn(write_client(client_out, client_rx));
    let server_writer = tokio::spawn(write_server(stdin, server_rx));
    let mut server_reader = tokio::spawn(server_loop(gw.clone(), BufReader::with_capacity(64 * 1024, stdout)));
    let mut client_reader =
        tokio::spawn(client_loop(gw.clone(), BufReader::with_capacity(64 * 1024, client_in), to_server));
    let watched = gw.clone();
    let watch = tokio::spawn(super::govern::watch_bundle(gov.clone(), config.bundle_poll, move || {
        let gw = watched.clone();
        async move {
            if gw.gov.refresh_visible(&gw.session).await {
                gw.send_client(&answer::list_changed()).await;
            }
        }
    }));

    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut client_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|source| Error::Io { what: "waiting for the server", source })?,
            _ = &mut client_reader, if client_open => {
                // The client's input ended: the server's input closes once the calls being
                // decided are through; it then has SHUTDOWN_GRACE to exit.
                client_open = false;
                kill_at = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            () = sleep_until_some(kill_at) => {
                eprintln!("writ mcp: the server did not exit within {SHUTDOWN_GRACE:?} of its input closing: killing it");
                let _ = child.start_kill();
                kill_at = None;
            }
        }
    };
    // What the server wrote before it exited is still relayed, then the outcomes recorded.
    if tokio::time::timeout(Duration::from_secs(2), &mut server_reader).await.is_err() {
        server_reader.abort();
    }
    if !gov.drain(OUTCOME_DRAIN).await {
        eprintln!("writ mcp: stopped with outcome reports still in flight (see the messages above)");
    }
    let (done, flushed) = oneshot::channel();
    if gw.to_client.send(Out::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), flushed).await;
    }
    watch.abort();
    client_reader.abort();
    server_writer.abort();
    client_writer.abort();
    Ok(exit_code(status))
}
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

#[cfg(not(unix))]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(1)
}

async fn client_loop<R: AsyncRead + Unpin>(
    gw: Arc<Gateway>,
    mut reader: BufReader<R>,
    to_server: mpsc::Sender<Vec<u8>>,
) {
    loop {
        match read_line(&mut reader, MAX_LINE).await {
            Ok(Line::Data(line)) => {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    gw.from_client(line, &to_server).await;
                }
            }
            Ok(Line::TooLong(n)) => {
                let message = format!(
                    "invalid request: a line of {n} bytes is over the gateway's {MAX_LINE}-byte bound; dropped"
                );
                gw.send_client(&answer::error(&Value::Null, answer::INVALID_REQUEST, &message)).await;
            }
            Ok(Line::Eof) => return,
            Err(e) => {
                eprintln!("writ mcp: reading from the client: {e}");
                return;
            }
        }
    }
}

async fn server_loop<R: AsyncRead + Unpin>(gw: Arc<Gateway>, mut reader: BufReader<R>) {
    loop {
        match read_line(&mut reader, MAX_LINE).await {
            Ok(Line::Data(line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Value>(&line) {
                    Ok(Value::Array(items)) => {
                        // A batch (older protocol revisions): each message on its own.
                        for item in items {
                            match serde_json::to_vec(&item) {
                                Ok(bytes) => gw.from_server(bytes, item).await,
                                Err(e) => eprintln!("writ mcp: dropped a message of a batch from the server: {e}"),
                            }
                        }
                    }
                    Ok(msg) => gw.from_server(line, msg).await,
                    Err(e) => {
                        let shown =
                            String::from_utf8_lossy(line.get(..line.len().min(200)).unwrap_or_default()).into_owned();
                        eprintln!("writ mcp: dropped a line from the server that is not JSON ({e}): {shown:?}");
                    }
                }
            }
            Ok(Line::TooLong(n)) => {
                eprintln!("writ mcp: dropped a line of {n} bytes from the server (over the {MAX_LINE}-byte bound)");
            }
            Ok(Line::Eof) => return,
            Err(e) => {
                eprintln!("writ mcp: reading from the server: {e}");
                return;
            }
        }
    }
}

async fn write_client<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::Receiver<Out>) {
    while let Some(item) = rx.recv().await {
        match item {
            Out::Line(mut line) => {
                line.push(b'\n');
                if let Err(e) = out.write_all(&line).await {
                    eprintln!("writ mcp: writing to the client: {e}");
                    return;
                }
                // Flushed once the queue is empty, so that a burst is written together.
                if rx.is_empty()
                    && let Err(e) = out.flush().await
                {
                    eprintln!("writ mcp: writing to the client: {e}");
                    return;
                }
            }
            Out::Flush(done) => {
                let _ = out.flush().await;
                let _ = done.send(());
            }
        }
    }
}

async fn write_server<W: AsyncWrite + Unpin>(mut stdin: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(mut line) = rx.recv().await {
        line.push(b'\n');
        let written = match stdin.write_all(&line).await {
            Ok(()) if rx.is_empty() => stdin.flush().await,
            other => other,
        };
        if let Err(e) = written {
            eprintln!("writ mcp: writing to the server: {e}");
            return;
        }
    }
    // Every sender is gone (the client's input ended): closing stdin tells the server.
    let _ = stdin.shutdown().await;
}
