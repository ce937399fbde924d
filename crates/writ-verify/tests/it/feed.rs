//! The revocation feed from a real control plane: a `FeedSubscriber` following
//! `/v1/feed/stream` keeps an enforcement point's view fresh, a revocation
//! (`POST /v1/revocations`) and a quarantine reach it, and the delay from the revocation's
//! request to the refusal at the enforcement point is measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use writ_core::ReasonCode;
use writ_verify::{
    ControlPlane, EnforcementPoint, FeedConfig, FeedStatus, FeedSubscriber, KeyCache, KeyUse, SharedFeed, WritVerifier,
};

use crate::{now, rt, server};

/// Waits until `f` holds, polling every millisecond, for at most `limit`.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    f()
}

#[test]
fn a_revocation_on_the_stream_is_refused_within_the_measured_delay() {
    rt().block_on(async {
        let s = server().await;
        let cp = ControlPlane::new(&s.url).unwrap();
        let keys = Arc::new(KeyCache::new(cp.jwks(), KeyUse::Writ));
        let writs = WritVerifier::with_keys("writ", (*keys.load(now()).await.unwrap()).clone(), "writ-enforcement", 30);
        let feed = SharedFeed::new(30);
        let mut bundles = feed.bundle_changes();
        let subscriber = FeedSubscriber::spawn(cp.clone(), FeedConfig::new("writ"), feed.clone());
        let point = EnforcementPoint::new(writs, feed.clone()).with_key_cache(keys);
        assert!(until(Duration::from_secs(10), || feed.snapshot_size().is_some()).await, "no first snapshot");
        let mut status = subscriber.status();
        assert!(
            tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| *s == FeedStatus::Connected)).await.is_ok(),
            "never connected: {:?}",
            *status.borrow()
        );
        // The active bundle reached the watch.
        assert!(bundles.borrow_and_update().as_deref().is_some_and(|b| b.starts_with("sha256:")));

        // An allowed writ verifies through the feed.
        let (w1, d1) = s.writ("/zones/billing/a").await;
        point.verify(&w1, &d1, now()).await.unwrap();

        // Revoke a second writ, then time its refusal at this enforcement point.
        let (w2, d2) = s.writ("/zones/billing/b").await;
        let claims = point.writs().verify_possession(&w2).unwrap();
        let mut delays = Vec::new();
        let sent = Instant::now();
        assert_eq!(s.post("/v1/revocations", &json!({"jti": claims.jti, "reason": "test"})).await, 200);
        let answered = sent.elapsed();
        let refused = until(Duration::from_secs(10), || {
            feed.check(&claims, now()).is_err_and(|r| r.reason == ReasonCode::WritRevoked)
        })
        .await;
        assert!(refused, "the revocation never reached the enforcement point");
        delays.push((answered, sent.elapsed()));
        let r = point.verify(&w2, &d2, now()).await.unwrap_err();
        assert_eq!(r.reason, ReasonCode::WritRevoked, "{}", r.detail);

        // More rounds for the figure.
        for n in 0..9 {
            let (w, _) = s.writ(&format!("/zones/billing/r{n}")).await;
            let c = point.writs().verify_possession(&w).unwrap();
            let sent = Instant::now();
            assert_eq!(s.post("/v1/revocations", &json!({"jti": c.jti, "reason": "test"})).await, 200);
            let answered = sent.elapsed();
            assert!(until(Duration::from_secs(10), || feed.check(&c, now()).is_err()).await);
            delays.push((answered, sent.elapsed()));
        }
        let mut total: Vec<Duration> = delays.iter().map(|d| d.1).collect();
        total.sort();
        let mut after_answer: Vec<Duration> = delays.iter().map(|d| d.1.saturating_sub(d.0)).collect();
        after_answer.sort();
        println!(
            "revocation → refusal at a stream-fed verifier ({} rounds, debug build): from the POST min {:?} median {:?} \
             max {:?}; after the POST's answer median {:?} max {:?}",
            delays.len(),
            total[0],
            total[total.len() / 2],
            total[total.len() - 1],
            after_answer[after_answer.len() / 2],
            after_answer[after_answer.len() - 1]
        );

        // A quarantine reaches it too: the principal's writs are refused `quarantined`.
        let (w3, d3) = s.writ("/zones/billing/c").await;
        let status = s
            .post(
                "/v1/quarantine/isolate",
                &json!({"subject": "spiffe://demo.example/agent/billing-1", "reason": "test"}),
            )
            .await;
        assert_eq!(status, 200);
        let c3 = point.writs().verify_possession(&w3).unwrap();
        assert!(
            until(Duration::from_secs(10), || feed.check(&c3, now()).is_err_and(|r| r.reason == ReasonCode::Quarantined))
                .await
        );
        assert_eq!(point.verify(&w3, &d3, now()).await.unwrap_err().reason, ReasonCode::Quarantined);
        drop(subscriber);
    });
}

/// A stricter bundle activated at the control plane revokes the outstanding writs it would
/// deny (re-evaluation on activation), and an enforcement point on the stream refuses them
/// with no operator revoking anything.
#[test]
fn an_activation_revokes_what_it_would_deny_and_the_feed_carries_it() {
    rt().block_on(async {
        let s = server().await;
        let cp = ControlPlane::new(&s.url).unwrap();
        let keys = Arc::new(KeyCache::new(cp.jwks(), KeyUse::Writ));
        let writs = WritVerifier::with_keys("writ", (*keys.load(now()).await.unwrap()).clone(), "writ-enforcement", 30);
        let feed = SharedFeed::new(30);
        let _subscriber = FeedSubscriber::spawn(cp.clone(), FeedConfig::new("writ"), feed.clone());
        let point = EnforcementPoint::new(writs, feed.clone()).with_key_cache(keys);
        assert!(until(Duration::from_secs(10), || feed.snapshot_size().is_some()).await, "no first snapshot");
        let (write, write_digest) = s.writ("/zones/billing/a").await;
        let (kept, kept_digest) = s.writ("/zones/billing/b").await;
        let claims = point.writs().verify_possession(&write).unwrap();
        point.verify(&kept, &kept_digest, now()).await.unwrap();

        // Writes to /zones/billing/a are forbidden from now on; /b stays allowed.
        let (manifest, policies, schema, entities, _) = writ_policy::starter_bundle().unwrap().parts();
        let manifest = manifest.replace("\"version\": \"", "\"version\": \"narrower-");
        let policies = format!(
            "{policies}\n@id(\"no-a\")\nforbid (principal, action == Writ::Action::\"write\", resource) when {{ context.arguments has path && context.arguments.path == \"/zones/billing/a\" }};\n"
        );
        let b = writ_policy::Bundle::from_parts(&manifest, &policies, &schema, entities.as_deref(), None).unwrap();
        let sig = writ_policy::sign_bundle(&b, &s.policy_key).unwrap();
        let started = Instant::now();
        let activated = s.engine.activate(&b, &sig, None).await.unwrap();
        let answered = started.elapsed();
        assert_eq!((activated.reevaluation.reevaluated, activated.reevaluation.revoked), (2, 1));
        let refused = until(Duration::from_secs(10), || {
            feed.check(&claims, now()).is_err_and(|r| r.reason == ReasonCode::WritRevoked)
        })
        .await;
        assert!(refused, "the re-evaluation's revocation never reached the enforcement point");
        println!(
            "activation → refusal of a re-evaluated writ at a stream-fed verifier (debug build): activation answered in \
             {answered:?}, refused {:?} after the activation began",
            started.elapsed()
        );
        assert_eq!(point.verify(&write, &write_digest, now()).await.unwrap_err().reason, ReasonCode::WritRevoked);
    });
}

/// A view whose stream stops (the subscriber is gone, so no heartbeat arrives) is refused
/// once older than its maximum staleness; heartbeats keep a quiet feed fresh.
#[test]
fn heartbeats_keep_the_view_fresh_and_silence_makes_it_stale() {
    rt().block_on(async {
        let s = server().await;
        let cp = ControlPlane::new(&s.url).unwrap();
        // A subscriber pinned to another feed key never takes a view from this server.
        let foreign = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "other", "use": "writ-feed",
                                       "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
        let mut config = FeedConfig::new("writ");
        config.pinned_keys = Some(foreign.to_string().into_bytes());
        let rogue = SharedFeed::new(2);
        let pinned_elsewhere = FeedSubscriber::spawn(cp.clone(), config, rogue.clone());
        // The feed keys pinned from what the server publishes.
        let mut config = FeedConfig::new("writ");
        config.pinned_keys = Some(cp.get("/.well-known/writ-feed-keys.json").await.unwrap().to_vec());
        let feed = SharedFeed::new(2);
        let subscriber = FeedSubscriber::spawn(cp, config, feed.clone());
        let (w, _) = s.writ("/zones/billing/a").await;
        let v = WritVerifier::new("writ", &s.engine.jwks(), "writ-enforcement", 30).unwrap();
        let c = v.verify_possession(&w).unwrap();
        assert!(until(Duration::from_secs(10), || feed.check(&c, now()).is_ok()).await);
        assert_eq!(rogue.snapshot_size(), None, "a document signed by an unpinned key was applied");
        assert!(matches!(*pinned_elsewhere.status().borrow(), FeedStatus::Retrying(_) | FeedStatus::Starting));
        drop(pinned_elsewhere);
        // Quiet for longer than the staleness bound: heartbeats keep it fresh.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(feed.check(&c, now()).is_ok(), "{:?}", feed.view().unwrap().age(now()));
        drop(subscriber);
        let stale = until(Duration::from_secs(6), || {
            feed.check(&c, now()).is_err_and(|r| r.reason == ReasonCode::WritRevoked && r.detail.contains("ruled out"))
        })
        .await;
        assert!(stale, "a silent feed must make the view stale");
    });
}

/// Found in review: `/v1/feed/stream` takes no credential and holds a bounded number of
/// streams, so anybody could hold every slot; a subscriber then only retried the stream,
/// its view went stale, and its enforcement point refused every writ. Now a refused stream
/// falls back to the snapshot route at each retry: the view stays fresh while the slot is
/// held.
#[test]
fn a_subscriber_kept_off_the_stream_stays_fresh_from_snapshots() {
    use std::io::{Read as _, Write as _};
    rt().block_on(async {
        let settings = writ_server::FeedSettings {
            max_streams: 1,
            max_age: Duration::from_secs(60),
            heartbeat: Duration::from_millis(100),
            ..writ_server::FeedSettings::default()
        };
        let s = crate::server_with(|state| state.with_feed_settings(settings)).await;
        // A client that takes the only stream slot and keeps it.
        let addr = s.url.trim_start_matches("http://").to_owned();
        let mut squatter = std::net::TcpStream::connect(&addr).unwrap();
        squatter.write_all(b"GET /v1/feed/stream HTTP/1.1\r\nhost: writ\r\n\r\n").unwrap();
        squatter.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = [0u8; 64];
        let n = tokio::task::block_in_place(|| squatter.read(&mut head)).unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
        let cp = ControlPlane::new(&s.url).unwrap();
        let mut config = FeedConfig::new("writ");
        config.backoff_max = Duration::from_millis(400);
        let feed = SharedFeed::new(2);
        let subscriber = FeedSubscriber::spawn(cp, config, feed.clone());
        let (w, _) = s.writ("/zones/billing/a").await;
        let v = WritVerifier::new("writ", &s.engine.jwks(), "writ-enforcement", 30).unwrap();
        let c = v.verify_possession(&w).unwrap();
        assert!(until(Duration::from_secs(10), || feed.check(&c, now()).is_ok()).await, "no first snapshot");
        // Longer than the staleness bound (2 s), kept off the stream all along.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(
                feed.check(&c, now()).is_ok(),
                "stale while the stream was held: {:?}",
                feed.view().unwrap().age(now())
            );
        }
        assert!(matches!(*subscriber.status().borrow(), FeedStatus::Retrying(_)), "the stream was refused all along");
        drop(squatter);
    });
}
