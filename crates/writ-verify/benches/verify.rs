//! Writ verification on one core, side by side with a bare Ed25519 signature check of the
//! same JWS signing inputs (the same library and function the verifier uses,
//! `ed25519-dalek`'s `verify_strict`), in one run; prints the ratio (issue 15's target:
//! at most 1.3×).
//!
//! `cargo bench -p writ-verify --bench verify` (the summary lines are printed under
//! `--bench`, not under `--test` or `--profile-time`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "bench code")]
#![allow(missing_docs, reason = "bench code")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::json;
use writ_core::RequestDigest;
use writ_verify::{
    DEFAULT_MAX_STALENESS, FEED_TYP, FeedVerifier, FeedView, KeySet, KeyUse, LogRef, Scope, WritClaims, WritVerifier,
};

const NOW: u64 = 1_800_000_000;
const WRITS: usize = 4096;

fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list" || a == "--profile-time")
}

struct Fixture {
    writs: Vec<String>,
    bare: Vec<(Vec<u8>, Signature)>,
    key: VerifyingKey,
    jwks: serde_json::Value,
    digest: RequestDigest,
    feed: FeedView,
}

/// Writs as the control plane signs them (the same header and claims shape, distinct
/// `jti`s: a verifier consumes each).
fn fixture() -> Fixture {
    let sk = SigningKey::from_bytes(&[3; 32]);
    let x = B64URL.encode(sk.verifying_key().to_bytes());
    let kid = "Ltde0E7cjSkRnl6XSXlrxqqxHnqk8e08rsL2mYpIjj0";
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x}]});
    let digest = writ_core::request_digest(
        "read",
        "fs:/zones/billing/report.csv",
        &json!({"path": "/zones/billing/report.csv"}),
    )
    .unwrap();
    let header = B64URL.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string());
    let mut writs = Vec::new();
    let mut bare = Vec::new();
    for n in 0..WRITS {
        let jti = format!("w-{n:032x}");
        let c = WritClaims {
            iss: "writ".into(),
            sub: "spiffe://demo.example/agent/billing-7".into(),
            aud: "writ-enforcement".into(),
            jti: jti.clone(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 60,
            act: "read".into(),
            res: "fs:/zones/billing/report.csv".into(),
            req: digest.to_string(),
            pol: format!("sha256:{}", "1".repeat(64)),
            par: None,
            root: jti,
            dep: 0,
            scp: Scope { zone: "billing".into(), actions: vec!["*".into()] },
            log: LogRef { index: n as u64, leaf: format!("sha256:{}", "2".repeat(64)) },
        };
        let input = format!("{header}.{}", B64URL.encode(serde_json::to_vec(&c).unwrap()));
        let sig = sk.sign(input.as_bytes());
        writs.push(format!("{input}.{}", B64URL.encode(sig.to_bytes())));
        bare.push((input.into_bytes(), sig));
    }
    // A fresh feed view with a few hundred revocations and isolated principals.
    let fk = SigningKey::from_bytes(&[9; 32]);
    let feed_keys = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "f", "x": B64URL.encode(fk.verifying_key().to_bytes())}]});
    let payload = json!({"iss": "writ", "kind": "snapshot", "size": 100, "iat": NOW, "bundle": null,
        "revoked": (0..300).map(|i| json!({"jti": format!("w-revoked-{i}"), "exp": NOW + 60})).collect::<Vec<_>>(),
        "quarantined": (0..100).map(|i| format!("spiffe://demo.example/agent/bad-{i}")).collect::<Vec<_>>(),
        "isolated_lineage": [], "changed_at": 99});
    let input = format!(
        "{}.{}",
        B64URL.encode(json!({"alg": "EdDSA", "typ": FEED_TYP, "kid": "f"}).to_string()),
        B64URL.encode(payload.to_string())
    );
    let doc = format!("{input}.{}", B64URL.encode(fk.sign(input.as_bytes()).to_bytes()));
    let mut feed = FeedView::new(DEFAULT_MAX_STALENESS);
    feed.apply(
        FeedVerifier::new("writ", KeySet::from_value(&feed_keys, KeyUse::Feed).unwrap()).verify(&doc).unwrap(),
        NOW,
    );
    Fixture { writs, bare, key: sk.verifying_key(), jwks, digest, feed }
}

fn bench(c: &mut Criterion) {
    let fx = fixture();
    let verifier = || WritVerifier::new("writ", &fx.jwks, "writ-enforcement", 30).unwrap();
    // A verifier marks each writ used: a fresh one (built outside the timing) per pass.
    let verify_n = |n: u64| {
        let mut total = Duration::ZERO;
        let mut done = 0u64;
        while done < n {
            let v = verifier();
            let k = (n - done).min(WRITS as u64) as usize;
            let t = Instant::now();
            for w in &fx.writs[..k] {
                black_box(v.verify_with(black_box(w), &fx.digest, NOW, &|c| fx.feed.check(c, NOW)).unwrap());
            }
            total += t.elapsed();
            done += k as u64;
        }
        total
    };
    let bare_n = |n: u64| {
        let t = Instant::now();
        for i in 0..n as usize {
            let (input, sig) = &fx.bare[i % WRITS];
            fx.key.verify_strict(black_box(input), black_box(sig)).unwrap();
        }
        t.elapsed()
    };
    if benchmarking() {
        // Interleaved rounds, so that a change in the machine's load hits both alike.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            theirs.push(bare_n(8_192) / 8_192);
            ours.push(verify_n(8_192) / 8_192);
        }
        ours.sort();
        theirs.sort();
        let (o, t) = (ours[2], theirs[2]);
        println!(
            "\nwrit-verify, one thread, medians of 5 interleaved rounds of 8,192:\n  \
             WritVerifier::verify_with + FeedView::check: {o:.2?} ({:.0}/s)\n  \
             bare Ed25519 verify_strict of the same JWS:  {t:.2?} ({:.0}/s)\n  ratio {:.3}",
            1.0 / o.as_secs_f64(),
            1.0 / t.as_secs_f64(),
            o.as_secs_f64() / t.as_secs_f64()
        );
    }
    let mut g = c.benchmark_group("writ-verify");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    g.bench_function("WritVerifier::verify_with + FeedView::check", |b| b.iter_custom(verify_n));
    g.bench_function("bare Ed25519 verify_strict", |b| b.iter_custom(bare_n));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
