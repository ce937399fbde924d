//! A small HTTP/1.1 keep-alive client for talking to a control plane (`writ bench`, and the
//! commands that drive a running `writ serve`): one TCP connection per [`Conn`], requests sent
//! one at a time over it (hyper's HTTP/1 connection, no pooling, no TLS).
//!
//! A connection the server closed is replaced transparently, but a request is re-sent on a
//! fresh connection only when hyper hands it back unsent: a request that may have reached the
//! server is never repeated (an authorization is not idempotent: each one is a log entry).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// How long one request may take by default (connecting, sending, reading the whole answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read from a control plane, in bytes (a page of 1,000 log entries, a
/// bundle and its history fit many times over).
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// What went wrong with a request, coarsely, for counting (`writ bench` reports errors by
/// kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection or the HTTP handshake failed.
    Connect,
    /// The request did not complete within the timeout.
    Timeout,
    /// The connection broke while sending the request or reading the answer.
    Io,
    /// The request could not be built (a bad path or header).
    Request,
}

impl ErrorKind {
    /// A stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Request => "request",
        }
    }
}

/// A failed request.
#[derive(Debug)]
pub struct ClientError {
    kind: ErrorKind,
    detail: String,
}

impl ClientError {
    fn new(kind: ErrorKind, detail: impl fmt::Display) -> Self {
        ClientError { kind, detail: detail.to_string() }
    }

    /// What kind of failure it was.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for ClientError {}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, read to the end.
    pub body: Bytes,
}

impl Reply {
    /// The body parsed as JSON; an answer whose `Content-Type` is not JSON is refused.
    pub fn json(&self) -> anyhow::Result<Value> {
        let content_type = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with("application/json") {
            anyhow::bail!("a {} answer of type {content_type:?}, not JSON", self.status);
        }
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// One keep-alive HTTP/1.1 connection to one server.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("addr", &self.addr).field("connected", &self.sender.is_some()).finish()
    }
}

impl Conn {
    /// Connects to `addr` (the connection is kept open between requests).
    pub async fn connect(addr: SocketAddr) -> Result<Conn, ClientError> {
        let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| ClientError::new(ErrorKind::Request, e))?;
        let mut conn = Conn { addr, host, timeout: DEFAULT_TIMEOUT, sender: None };
        let sender = tokio::time::timeout(conn.timeout, open(addr))
            .await
            .map_err(|_| ClientError::new(ErrorKind::Timeout, format!("connecting to {addr}")))??;
        conn.sender = Some(sender);
        Ok(conn)
    }

    /// Sets the time one request may take (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends one request and reads the whole answer. Reconnects first if the server closed
    /// the connection. Any status is an answer; only transport failures are errors.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host.clone());
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| ClientError::new(ErrorKind::Request, e))?;
            let value = HeaderValue::from_str(value).map_err(|e| ClientError::new(ErrorKind::Request, e))?;
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(body)).map_err(|e| ClientError::new(ErrorKind::Request, e))?;
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => {
                // The connection's state is unknown (an answer may still arrive): start afresh.
                self.sender = None;
                Err(ClientError::new(ErrorKind::Timeout, format!("no answer within {timeout:?}")))
            }
        }
    }

    async fn exchange(&mut self, mut request: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        // At most one retry, and only with a request hyper reports as never sent.
        for attempt in 0..2 {
            let sender = match self.sender.take() {
                Some(s) if !s.is_closed() => s,
                _ => open(self.addr).await?,
            };
            let mut sender = sender;
            if sender.ready().await.is_err() {
                if attempt == 0 {
                    continue;
                }
                return Err(ClientError::new(ErrorKind::Io, "the connection closed"));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    // Bounded: a server streaming an endless answer must not take this
                    // process's memory (the request timeout alone allowed gigabytes).
                    let body = http_body_util::Limited::new(body, MAX_REPLY)
                        .collect()
                        .await
                        .map_err(|e| ClientError::new(ErrorKind::Io, format!("reading the answer: {e}")))?
                        .to_bytes();
                    self.sender = Some(sender);
                    return Ok(Reply { status: parts.status, headers: parts.headers, body });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if attempt == 0 => request = unsent,
                    _ => return Err(ClientError::new(ErrorKind::Io, e.into_error())),
                },
            }
        }
        Err(ClientError::new(ErrorKind::Io, "the connection closed twice before the request was sent"))
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST path` with a JSON body, and a bearer token if given.
    pub async fn post_json(&mut self, path: &str, body: &Value, bearer: Option<&str>) -> Result<Reply, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::new(ErrorKind::Request, e))?;
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![(CONTENT_TYPE.as_str(), "application/json")];
        if let Some(a) = &auth {
            headers.push((AUTHORIZATION.as_str(), a.as_str()));
        }
        self.send(Method::POST, path, &headers, Bytes::from(bytes)).await
    }
}

/// Opens a TCP connection and does the HTTP/1 handshake; the connection's driver runs as a
/// task that ends when the connection does.
async fn open(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, ClientError> {
    let stream =
        TcpStream::connect(addr).await.map_err(|e| ClientError::new(ErrorKind::Connect, format!("{addr}: {e}")))?;
    stream.set_nodelay(true).map_err(|e| ClientError::new(ErrorKind::Connect, e))?;
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| ClientError::new(ErrorKind::Connect, e))?;
    tokio::spawn(async move {
        // Ends with the connection; its error (if any) surfaces on the next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// The socket address of a control plane's base URL: `http://host:port`, optionally
/// followed by `/` or `/v1` (what `writ serve` prints). Only plain `http` is spoken.
pub fn resolve_base_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("{url:?}: only http:// URLs are supported (no TLS in this client)"))?;
    let authority = rest.trim_end_matches('/').trim_end_matches("/v1").trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        anyhow::bail!("{url:?}: give the server's base URL, http://host:port");
    }
    resolve_authority(url, authority)
}

/// The socket address and the path (with its query; `/` when the URL has none) of a plain
/// `http://host[:port][/path]` URL.
pub fn resolve_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("{url:?}: only http:// URLs are supported (no TLS in this client)"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    if authority.is_empty() || authority.contains('@') || path.contains('#') || path.contains(char::is_whitespace) {
        anyhow::bail!("{url:?}: give a URL http://host[:port][/path]");
    }
    Ok((resolve_authority(url, authority)?, path))
}

/// `host[:port]` (port 80 by default) resolved to its first address.
fn resolve_authority(url: &str, authority: &str) -> anyhow::Result<SocketAddr> {
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("{url:?}: cannot resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{url:?}: {with_port} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for url in
            ["http://127.0.0.1:7070", "http://127.0.0.1:7070/", "http://127.0.0.1:7070/v1", "http://127.0.0.1:7070/v1/"]
        {
            assert_eq!(resolve_base_url(url).unwrap(), "127.0.0.1:7070".parse().unwrap(), "{url}");
        }
        assert_eq!(resolve_base_url("http://[::1]:8080").unwrap(), "[::1]:8080".parse().unwrap());
        assert_eq!(resolve_base_url("http://127.0.0.1").unwrap(), "127.0.0.1:80".parse().unwrap());
        for bad in ["https://127.0.0.1:7070", "127.0.0.1:7070", "http://", "http://127.0.0.1:7070/v2", "http://u@h:1"] {
            assert!(resolve_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_with_paths() {
        let at = |url: &str| resolve_url(url).unwrap();
        let local: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        assert_eq!(at("http://127.0.0.1:7070"), (local, "/".to_owned()));
        assert_eq!(at("http://127.0.0.1:7070/.well-known/jwks.json"), (local, "/.well-known/jwks.json".to_owned()));
        assert_eq!(at("http://127.0.0.1:7070/k?v=1"), (local, "/k?v=1".to_owned()));
        for bad in ["https://127.0.0.1:7070/k", "file:///etc/passwd", "http:///k", "http://u@h:1/k", "http://h:1/a b"] {
            assert!(resolve_url(bad).is_err(), "{bad}");
        }
    }
}
