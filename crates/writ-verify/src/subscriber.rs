//! The feed subscriber: keeps a [`SharedFeed`] up to date from the control plane's
//! revocation feed over server-sent events (the WHATWG HTML "Server-sent events" format,
//! `text/event-stream`).
//!
//! It loads the feed keys (`/.well-known/writ-feed-keys.json`), takes the current snapshot
//! (`GET /v1/feed/snapshot`) as its first view, then reads `GET /v1/feed/stream`, resuming
//! with `Last-Event-ID: <the size of the snapshot in force>` after a break, so that the
//! control plane resends a snapshot only if something changed meanwhile. Every document is verified
//! before it is applied; a document signed by an unknown feed key triggers one bounded key
//! refresh ([`KeyCache`]). A stream silent for longer than the idle timeout (heartbeats
//! come every second) is dropped; every break is followed by a reconnection after a
//! backoff that doubles from 100 ms up to 5 s and starts over once a document arrives.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Applied, ControlPlane, Error, FeedVerifier, KeyCache, KeyUse, SharedFeed, StaticSource};

/// The longest line of the event stream accepted.
const MAX_LINE: usize = crate::MAX_FEED_DOCUMENT_LEN + 64;

/// Heartbeats in a row naming a change the view lacks before the stream is resumed for its
/// snapshot (heartbeats come every second).
const MAX_BEHIND: u32 = 3;

/// How the subscriber behaves.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// The control plane's name (`iss` of its feed documents).
    pub issuer: String,
    /// A stream with no event for this long is dropped and reopened.
    pub idle_timeout: Duration,
    /// The first wait before reconnecting.
    pub backoff_min: Duration,
    /// The longest wait before reconnecting.
    pub backoff_max: Duration,
    /// The minimum interval between two feed key fetches, in seconds.
    pub key_min_interval: u64,
    /// The feed keys pinned (a JWKS document, `use` `writ-feed`): when set, they are never
    /// fetched from the control plane, so a party that can answer for it over plain HTTP
    /// still cannot sign feed documents.
    pub pinned_keys: Option<Vec<u8>>,
}

impl FeedConfig {
    /// Defaults for the control plane named `issuer`.
    pub fn new(issuer: &str) -> Self {
        FeedConfig {
            issuer: issuer.to_owned(),
            idle_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            key_min_interval: crate::DEFAULT_MIN_REFRESH_INTERVAL,
            pinned_keys: None,
        }
    }
}

/// What the subscriber is doing, for health reporting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedStatus {
    /// Not connected yet.
    Starting,
    /// Reading the stream.
    Connected,
    /// The last attempt failed with this; reconnecting after a backoff.
    Retrying(String),
}

/// A task keeping a [`SharedFeed`] up to date; stopped when dropped.
#[derive(Debug)]
pub struct FeedSubscriber {
    feed: SharedFeed,
    status: watch::Receiver<FeedStatus>,
    task: JoinHandle<()>,
}

impl Drop for FeedSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FeedSubscriber {
    /// Starts following the feed of the control plane `cp` into `feed` (on the current
    /// Tokio runtime).
    pub fn spawn(cp: ControlPlane, config: FeedConfig, feed: SharedFeed) -> FeedSubscriber {
        let (status_tx, status) = watch::channel(FeedStatus::Starting);
        let keys = match &config.pinned_keys {
            Some(jwks) => KeyCache::new(StaticSource(jwks.clone()), KeyUse::Feed),
            None => KeyCache::new(cp.feed_keys(), KeyUse::Feed),
        };
        let keys = Arc::new(keys.with_min_interval(config.key_min_interval));
        let task = tokio::spawn(follow(cp, config, feed.clone(), keys, status_tx));
        FeedSubscriber { feed, status, task }
    }

    /// The view it keeps.
    pub fn feed(&self) -> &SharedFeed {
        &self.feed
    }

    /// Told when the active bundle changes.
    pub fn bundle_changes(&self) -> watch::Receiver<Option<String>> {
        self.feed.bundle_changes()
    }

    /// Its status.
    pub fn status(&self) -> watch::Receiver<FeedStatus> {
        self.status.clone()
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn follow(
    cp: ControlPlane,
    config: FeedConfig,
    feed: SharedFeed,
    keys: Arc<KeyCache>,
    status: watch::Sender<FeedStatus>,
) {
    let mut backoff = config.backoff_min;
    loop {
        let mut progressed = false;
        let result = session(&cp, &config, &feed, &keys, &status, &mut progressed).await;
        if progressed {
            backoff = config.backoff_min;
        }
        let why = match result {
            Ok(()) => "the stream ended".to_owned(),
            Err(e) => e.to_string(),
        };
        status.send_replace(FeedStatus::Retrying(why));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// Verifies a document, refreshing the feed keys once (within the bound) for an unknown kid.
async fn verify(keys: &KeyCache, issuer: &str, document: &str) -> Result<crate::FeedDocument, Error> {
    let verifier = FeedVerifier::new(issuer, (*keys.current()).clone());
    if let Some(kid) = verifier.unknown_kid(document) {
        let set = keys.refresh_unless(unix_now(), |k| k.contains(&kid)).await?;
        return FeedVerifier::new(issuer, (*set).clone()).verify(document);
    }
    verifier.verify(document)
}

async fn session(
    cp: &ControlPlane,
    config: &FeedConfig,
    feed: &SharedFeed,
    keys: &KeyCache,
    status: &watch::Sender<FeedStatus>,
    progressed: &mut bool,
) -> Result<(), Error> {
    if keys.current().is_empty() {
        keys.load(unix_now()).await?;
    }
    if feed.snapshot_size().is_none() {
        let doc = verify(keys, &config.issuer, &cp.snapshot().await?).await?;
        feed.apply(doc, unix_now())?;
        *progressed = true;
    }
    // Resume from the snapshot in force, not from a heartbeat's size: a change recorded just
    // before a heartbeat may have had its snapshot still on the way when the stream broke.
    let from = feed.snapshot_size().unwrap_or(0).to_string();
    let response = cp.open("/v1/feed/stream", &[("accept", "text/event-stream"), ("last-event-id", &from)]).await?;
    let fail = |why: String| Error::Fetch { what: "/v1/feed/stream".into(), why };
    if response.status() != StatusCode::OK {
        // The stream is refused (every slot taken, perhaps by clients that hold them on
        // purpose): the view is kept fresh from the snapshot route, which holds no slot,
        // each time the stream is retried (at most `backoff_max` apart, well inside the
        // staleness bound), so that a full stream route never makes this point refuse
        // every writ as stale.
        let refused = fail(format!("status {}", response.status()));
        let doc = verify(keys, &config.issuer, &cp.snapshot().await?).await?;
        feed.apply(doc, unix_now())?;
        return Err(refused);
    }
    status.send_replace(FeedStatus::Connected);
    let mut body = response.into_body();
    let mut parser = SseParser::default();
    // Heartbeats in a row that name a change the view's snapshot lacks.
    let mut behind = 0_u32;
    loop {
        let frame = match tokio::time::timeout(config.idle_timeout, body.frame()).await {
            Err(_) => return Err(fail(format!("no event for {:?}", config.idle_timeout))),
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => frame.map_err(|e| fail(e.to_string()))?,
        };
        let Ok(data) = frame.into_data() else { continue };
        for event in parser.push(&data).map_err(fail)? {
            if event.data.is_empty() || !matches!(event.event.as_str(), "snapshot" | "heartbeat") {
                continue;
            }
            let doc = verify(keys, &config.issuer, &event.data).await?;
            if feed.apply(doc, unix_now())? == Applied::Behind {
                // A change's snapshot may trail its first heartbeat by a moment; one that
                // never comes (lost, or held back on the way) is asked for again by
                // resuming, which sends the snapshot the view lacks. Meanwhile the view
                // ages: fail closed.
                behind += 1;
                if behind >= MAX_BEHIND {
                    return Err(fail(format!("{behind} heartbeats named a change whose snapshot never came")));
                }
                continue;
            }
            behind = 0;
            *progressed = true;
        }
    }
}

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event` field (`message` if none).
    pub event: String,
    /// Its `id`, if any.
    pub id: Option<String>,
    /// Its `data` lines joined by newlines.
    pub data: String,
}

/// An incremental `text/event-stream` parser, bounded in line length.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    id: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8(line).map_err(|_| "an event stream line that is not UTF-8".to_owned())?;
                if let Some(e) = self.line_done(&line)? {
                    out.push(e);
                }
            } else {
                if self.line.len() >= MAX_LINE {
                    return Err("an event stream line too long".into());
                }
                self.line.push(b);
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &str) -> Result<Option<SseEvent>, String> {
        if line.is_empty() {
            let Some(data) = self.data.take() else { return Ok(None) };
            let event = std::mem::take(&mut self.event);
            let event = if event.is_empty() { "message".to_owned() } else { event };
            return Ok(Some(SseEvent { event, id: self.id.clone(), data }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => match &mut self.data {
                // Each line is bounded, and so is the event they make: `data:` lines with no
                // blank line between them grew one event without end.
                Some(d) if d.len().saturating_add(value.len()) >= MAX_LINE => {
                    return Err("an event stream event too long".into());
                }
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }
}
