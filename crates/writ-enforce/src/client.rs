//! A small HTTP/1.1 client for the control plane's API: keep-alive connections to one
//! server, pooled so that concurrent requests (one per governed call) each get their own
//! connection, no TLS. Derived from the `writ` binary's one-connection client
//! (`crates/writ/src/client.rs`), with the same rule: a request is re-sent on a fresh
//! connection only when hyper hands it back unsent, so a request that may have reached the
//! server (an authorization is a log entry) is never repeated.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::{Error, TransportKind};

/// Idle connections kept for reuse; more concurrent requests open more connections, which
/// are closed after use.
/// The largest answer read from the control plane, in bytes (a JWKS, a decision, a preview
/// of 1,000 candidates fit many times over).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

const MAX_IDLE: usize = 16;

/// An answer: status and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// Whether the answer says it is JSON (`Content-Type: application/json`).
    pub is_json: bool,
    /// The body, read to the end.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; an answer that is not JSON, or has a repeated member name (two
    /// readers could take different values from it), is [`Error::Answer`].
    pub fn json(&self) -> Result<Value, Error> {
        if !self.is_json {
            return Err(Error::Answer(format!("a {} answer that is not JSON", self.status)));
        }
        writ_core::json::parse_value(&self.body).map_err(|e| Error::Answer(format!("a {} answer: {e}", self.status)))
    }
}

/// A client of one control plane, shared by every task of an enforcement point.
pub struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the control plane at `base_url` (`http://host:port`, optionally followed
    /// by `/` or `/v1`). The host is resolved once, here. Nothing is connected yet.
    pub fn new(base_url: &str) -> Result<Client, Error> {
        let addr = resolve_base_url(base_url)?;
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|e| Error::Url { url: base_url.to_owned(), why: e.to_string() })?;
        Ok(Client { addr, host, idle: Mutex::new(Vec::new()) })
    }

    /// The control plane's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request and reads the whole answer within `timeout`. Any status is an
    /// answer; only transport failures are errors.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json_body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host.clone());
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::Credential("the credential is not a valid header value".into()))?;
            builder = builder.header(AUTHORIZATION, value);
        }
        let body = match json_body {
            Some(v) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).map_err(|e| Error::transport(TransportKind::Request, e))?)
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(body)).map_err(|e| Error::transport(TransportKind::Request, e))?;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::transport(TransportKind::Timeout, format!("no answer within {timeout:?}"))),
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        self.send(Method::POST, path, bearer, Some(body), timeout).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, bearer: Option<&str>, timeout: Duration) -> Result<Reply, Error> {
        self.send(Method::GET, path, bearer, None, timeout).await
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
            && !sender.is_closed()
        {
            idle.push(sender);
        }
    }

    async fn exchange(&self, mut request: Request<Full<Bytes>>) -> Result<Reply, Error> {
        // At most one retry, and only with a request hyper reports as never sent on a pooled
        // connection the server had closed meanwhile.
        for attempt in 0..2 {
            let (mut sender, pooled) = match self.take_idle() {
                Some(s) => (s, true),
                None => (open(self.addr).await?, false),
            };
            if sender.ready().await.is_err() {
                if attempt == 0 && pooled {
                    continue;
                }
                return Err(Error::transport(TransportKind::Io, "the connection closed"));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    // Bounded: a control plane (or whatever answers for it) streaming an
                    // endless answer must not take the enforcement point's memory.
                    let body = http_body_util::Limited::new(body, MAX_ANSWER)
                        .collect()
                        .await
                        .map_err(|e| Error::transport(TransportKind::Io, format!("reading the answer: {e}")))?
                        .to_bytes();
                    self.put_idle(sender);
                    let is_json = parts
                        .headers
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("application/json"));
                    return Ok(Reply { status: parts.status, is_json, body });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if attempt == 0 && pooled => request = unsent,
                    _ => return Err(Error::transport(TransportKind::Io, e.into_error())),
                },
            }
        }
        Err(Error::transport(TransportKind::Io, "the connection closed twice before the request was sent"))
    }
}

/// Opens a TCP connection and does the HTTP/1 handshake; the connection's driver runs as a
/// task that ends when the connection does.
async fn open(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Error> {
    let stream =
        TcpStream::connect(addr).await.map_err(|e| Error::transport(TransportKind::Connect, format!("{addr}: {e}")))?;
    stream.set_nodelay(true).map_err(|e| Error::transport(TransportKind::Connect, e))?;
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| Error::transport(TransportKind::Connect, e))?;
    tokio::spawn(async move {
        // Ends with the connection; its error (if any) surfaces on the next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// The socket address of a control plane's base URL: `http://host:port`, optionally
/// followed by `/` or `/v1` (what `writ serve` prints). Only plain `http` is spoken.
pub fn resolve_base_url(url: &str) -> Result<SocketAddr, Error> {
    let bad = |why: &str| Error::Url { url: url.to_owned(), why: why.to_owned() };
    let rest =
        url.strip_prefix("http://").ok_or_else(|| bad("only http:// URLs are supported (no TLS in this client)"))?;
    let authority = rest.trim_end_matches('/').trim_end_matches("/v1").trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        return Err(bad("give the server's base URL, http://host:port"));
    }
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve {with_port}: {e}")))?
        .next()
        .ok_or_else(|| bad(&format!("{with_port} resolves to no address")))
}
