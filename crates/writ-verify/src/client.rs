//! The control plane over plain HTTP/1.1 (hyper, one connection per request, no TLS: put
//! the control plane on loopback or behind a TLS-terminating sidecar), in the house style
//! of `writ`'s own client: bounded bodies, a timeout on every request, nothing re-sent.
//!
//! Paths: the writ keys `/.well-known/jwks.json` (RFC 7517 JWKS), the feed keys
//! `/.well-known/writ-feed-keys.json`, the feed `/v1/feed/snapshot` and `/v1/feed/stream`
//! (server-sent events, read by [`crate::FeedSubscriber`]).

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::refresh::{Fetching, KeySource};
use crate::{Error, MAX_FEED_DOCUMENT_LEN};

/// How long one request may take by default.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer body read whole.
const MAX_BODY: usize = MAX_FEED_DOCUMENT_LEN + 1024;

/// Where the control plane is: `http://host[:port][/prefix]`.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    authority: String,
    prefix: String,
    timeout: Duration,
}

impl ControlPlane {
    /// The control plane at `url` (plain `http://` only).
    pub fn new(url: &str) -> Result<Self, Error> {
        let bad = |why| Error::Url { url: url.to_owned(), why };
        let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// URLs (no TLS in this client)"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') || prefix.contains(['?', '#']) {
            return Err(bad("expected http://host[:port][/prefix]"));
        }
        let authority =
            if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']') {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            };
        Ok(ControlPlane { authority, prefix: prefix.trim_end_matches('/').to_owned(), timeout: DEFAULT_HTTP_TIMEOUT })
    }

    /// Sets the time one request may take (connecting, sending, reading the answer's head and,
    /// except for the stream, its body).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The writ keys (`/.well-known/jwks.json`) as a [`KeySource`].
    pub fn jwks(&self) -> HttpSource {
        HttpSource { cp: self.clone(), path: "/.well-known/jwks.json" }
    }

    /// The feed keys (`/.well-known/writ-feed-keys.json`) as a [`KeySource`].
    pub fn feed_keys(&self) -> HttpSource {
        HttpSource { cp: self.clone(), path: "/.well-known/writ-feed-keys.json" }
    }

    /// The current feed snapshot (`GET /v1/feed/snapshot`), the JWS not yet verified.
    pub async fn snapshot(&self) -> Result<String, Error> {
        let body = self.get("/v1/feed/snapshot").await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            snapshot: String,
        }
        let a: Answer = writ_core::json::from_slice(&body)
            .map_err(|e| Error::Fetch { what: "/v1/feed/snapshot".into(), why: format!("answer: {e}") })?;
        Ok(a.snapshot)
    }

    /// `GET path` (under the prefix), the whole body of a 200 answer.
    pub async fn get(&self, path: &str) -> Result<Bytes, Error> {
        let fail = |why: String| Error::Fetch { what: path.to_owned(), why };
        let exchange = async {
            let response = self.send(path, &[]).await?;
            let status = response.status();
            if status != StatusCode::OK {
                return Err(fail(format!("status {status}")));
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the answer: {e}")))?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
    }

    /// Opens `GET path` and hands back the answer once its head arrived (the timeout covers
    /// the head only: a stream's body is read by the caller).
    pub(crate) async fn open(&self, path: &str, headers: &[(&str, &str)]) -> Result<hyper::Response<Incoming>, Error> {
        tokio::time::timeout(self.timeout, self.send(path, headers))
            .await
            .map_err(|_| Error::Fetch { what: path.to_owned(), why: format!("no answer within {:?}", self.timeout) })?
    }

    async fn send(&self, path: &str, headers: &[(&str, &str)]) -> Result<hyper::Response<Incoming>, Error> {
        let fail = |why: String| Error::Fetch { what: path.to_owned(), why };
        let stream = TcpStream::connect(&self.authority).await.map_err(|e| fail(format!("connecting: {e}")))?;
        stream.set_nodelay(true).map_err(|e| fail(format!("connecting: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("handshake: {e}")))?;
        // The connection task ends when the answer is read or dropped.
        tokio::spawn(conn);
        let host = HeaderValue::from_str(&self.authority).map_err(|e| fail(e.to_string()))?;
        let mut builder = Request::get(format!("{}{path}", self.prefix)).header(HOST, host).header(ACCEPT, "*/*");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Empty::new()).map_err(|e| fail(e.to_string()))?;
        sender.send_request(request).await.map_err(|e| fail(e.to_string()))
    }
}

/// A JWKS fetched from the control plane.
#[derive(Clone, Debug)]
pub struct HttpSource {
    cp: ControlPlane,
    path: &'static str,
}

impl KeySource for HttpSource {
    fn fetch(&self) -> Fetching<'_> {
        Box::pin(async move { self.cp.get(self.path).await.map(|b| b.to_vec()) })
    }
}
