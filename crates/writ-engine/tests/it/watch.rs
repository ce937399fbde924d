//! The verification loop (issue 17), hostile first: a stored entry altered on disk, the
//! active bundle altered in its stored activation, a checkpoint rolled back or forged in
//! the store, and signing keys that are not the published ones are each found by the loop;
//! the node then denies every decision (unrecorded, with the failed check's reason code)
//! and refuses approvals, and recovers only once a later run passes. A loop running beside
//! concurrent appends raises no false alarm.

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use writ_core::ReasonCode;
use writ_engine::{EngineError, VerificationConfig, VerificationState, VerificationStatus};
use writ_log::{Checkpoint, Hash, NoteSigner, SignedCheckpoint};

use crate::harness::*;

fn db(h: &Harness) -> Connection {
    let c = Connection::open(h.dir.path().join("log.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

fn entry_bytes(h: &Harness, index: u64) -> Vec<u8> {
    db(h).query_row("SELECT data FROM entries WHERE idx = ?1", params![index as i64], |r| r.get(0)).unwrap()
}

fn set_entry_bytes(h: &Harness, index: u64, bytes: &[u8]) {
    let n = db(h).execute("UPDATE entries SET data = ?2 WHERE idx = ?1", params![index as i64, bytes]).unwrap();
    assert_eq!(n, 1);
}

/// Changes the first `from` in entry `index` to `to` (same length), directly in the database.
fn tamper(h: &Harness, index: u64, from: &str, to: &str) -> Vec<u8> {
    let original = entry_bytes(h, index);
    let text = String::from_utf8(original.clone()).unwrap();
    assert!(text.contains(from), "entry {index} holds no {from:?}: {text}");
    set_entry_bytes(h, index, text.replacen(from, to, 1).as_bytes());
    original
}

fn configure(h: &Harness, sample: usize) {
    h.engine.configure_verification(VerificationConfig { sample, ..VerificationConfig::default() });
}

#[track_caller]
fn assert_ok(s: &VerificationStatus) {
    assert_eq!(s.state, VerificationState::Ok, "{s:?}");
    assert!(s.problems.is_empty(), "{s:?}");
}

#[track_caller]
fn assert_failed(s: &VerificationStatus, check: &str, says: &str) {
    assert_eq!(s.state, VerificationState::Failed, "{s:?}");
    assert!(
        s.problems.iter().any(|p| p.check == check && p.detail.contains(says)),
        "expected a {check} problem saying {says:?}: {s:?}"
    );
}

/// While failed: a deny with `reason` naming `check`, not recorded; no approval.
#[track_caller]
fn assert_fails_closed(h: &Harness, reason: ReasonCode, check: &str) {
    let size = h.engine.log().size();
    let d = h.authorize(&write_request(h));
    assert_denied(&d, reason);
    assert!(d.detail.contains(&format!("({check} check)")), "{}", d.detail);
    assert_eq!(d.log_index, None, "nothing is appended while the node cannot vouch for itself");
    // An unparseable request too.
    let d = rt().block_on(h.engine.authorize(b"{not json"));
    assert_denied(&d, reason);
    assert_eq!(h.engine.log().size(), size);
    let refused =
        rt().block_on(h.engine.resolve_approval("any", true, Some("spiffe://demo.example/operator/alice"), "ok"));
    assert!(matches!(refused, Err(EngineError::IntegrityFailed { .. })), "{refused:?}");
}

#[test]
fn an_entry_altered_on_disk_is_found_and_every_decision_denied_until_it_is_restored() {
    let h = Harness::new();
    configure(&h, 0);
    assert_ok(&h.engine.verify_now());
    let d = h.authorize(&write_request(&h));
    let writ = assert_allowed(&d);
    let index = d.log_index.unwrap();
    // The decision appended since the last run, altered in the database: its resource.
    let original = tamper(&h, index, "/zones/billing/out.csv", "/zones/payroll/out.csv");
    let s = h.engine.verify_now();
    assert_failed(&s, "log", "do not hash to the tree this log served: an entry was altered");
    assert_eq!(s.verified_size, index, "the altered entry is not counted as verified");
    assert_fails_closed(&h, ReasonCode::LogUnavailable, "log");
    // A writ issued before is not vouched for either (and its single use is not spent).
    let refused = h.engine.verify(&writ, &digest_of(&write_request(&h))).unwrap_err();
    assert_eq!(refused.reason, ReasonCode::LogUnavailable, "{refused:?}");
    assert!(refused.detail.contains("(log check)"), "{}", refused.detail);
    // Still failed on the next run: nothing but the fix recovers.
    assert_failed(&h.engine.verify_now(), "log", "");
    set_entry_bytes(&h, index, &original);
    let s = h.engine.verify_now();
    assert_ok(&s);
    assert_eq!(s.verified_size, h.engine.log().size());
    assert!(s.last_ok.is_some() && s.runs == 4, "{s:?}");
    h.engine.verify(&writ, &digest_of(&write_request(&h))).unwrap();
    assert_allowed(&h.authorize(&write_request(&h)));
}

#[test]
fn an_old_entry_altered_later_is_found_by_the_sample() {
    let h = Harness::new();
    configure(&h, 0);
    let d = h.authorize(&write_request(&h));
    assert_allowed(&d);
    for _ in 0..300 {
        h.authorize(&write_request(&h));
    }
    assert_ok(&h.engine.verify_now());
    // Verified once, then altered: the run does not read it again unless sampled.
    let index = d.log_index.unwrap();
    let original = tamper(&h, index, "\"outcome\":\"allow\"", "\"outcome\":\"deny!\"");
    assert_ok(&h.engine.verify_now());
    // Sampling every entry (the log holds fewer than the sample) finds it by inclusion proof.
    configure(&h, 10_000);
    let s = h.engine.verify_now();
    assert_failed(&s, "log", &format!("entry {index} (re-verified by sample)"));
    assert_fails_closed(&h, ReasonCode::LogUnavailable, "log");
    // Found in review: the next run drew another sample, passed, and the node answered again
    // on top of the log it had just seen tampered. The entry found is re-verified by every
    // run until it verifies.
    configure(&h, 0);
    for _ in 0..3 {
        assert_failed(&h.engine.verify_now(), "log", &format!("entry {index} (re-verified by sample)"));
        assert_fails_closed(&h, ReasonCode::LogUnavailable, "log");
    }
    set_entry_bytes(&h, index, &original);
    assert_ok(&h.engine.verify_now());
    assert_allowed(&h.authorize(&write_request(&h)));
}

#[test]
fn the_active_bundle_altered_in_its_stored_activation_is_found() {
    let h = Harness::new();
    configure(&h, 0);
    assert_ok(&h.engine.verify_now());
    let activation: i64 = db(&h)
        .query_row("SELECT idx FROM entries WHERE data LIKE '%\"kind\":\"activation\"%' ORDER BY idx DESC", [], |r| {
            r.get(0)
        })
        .unwrap();
    let activation = activation as u64;
    // The policy text: a zone renamed inside the stored bundle (still valid JSON).
    let original = tamper(&h, activation, "billing", "billinx");
    let s = h.engine.verify_now();
    assert_failed(&s, "bundle", "the active bundle stored in entry");
    // Still in the log's unfinished tile, so the log check, which rehashes it, finds it too
    // and speaks first: an altered entry is the log's problem before the bundle's.
    assert_failed(&s, "log", "an entry was altered");
    assert_fails_closed(&h, ReasonCode::LogUnavailable, "log");
    set_entry_bytes(&h, activation, &original);
    assert_ok(&h.engine.verify_now());

    // Once in a full tile, only the bundle check reads it again (the sample is off here).
    for _ in 0..300 {
        h.authorize(&write_request(&h));
    }
    assert_ok(&h.engine.verify_now());
    tamper(&h, activation, "billing", "billinx");
    let s = h.engine.verify_now();
    assert_failed(&s, "bundle", "not to the bundle in force");
    assert_eq!(s.problems.len(), 1, "{s:?}");
    assert_fails_closed(&h, ReasonCode::PolicyBundleUntrusted, "bundle");
    set_entry_bytes(&h, activation, &original);
    assert_ok(&h.engine.verify_now());
    assert_allowed(&h.authorize(&write_request(&h)));

    // The signature recorded with it altered (one character of the signed note).
    let text = String::from_utf8(entry_bytes(&h, activation)).unwrap();
    let sig_at = text.find("\"signature\":\"").unwrap() + 13;
    let mut forged = text.clone().into_bytes();
    forged[sig_at + 30] = if forged[sig_at + 30] == b'A' { b'B' } else { b'A' };
    set_entry_bytes(&h, activation, &forged);
    assert_failed(&h.engine.verify_now(), "bundle", "signature");
    assert_fails_closed(&h, ReasonCode::PolicyBundleUntrusted, "bundle");
    set_entry_bytes(&h, activation, text.as_bytes());
    assert_ok(&h.engine.verify_now());
}

fn checkpoints(h: &Harness) -> Vec<(i64, String)> {
    let c = db(h);
    let mut q = c.prepare("SELECT size, note FROM checkpoints ORDER BY size").unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_checkpoint_rolled_back_or_forged_in_the_store_is_found() {
    let h = Harness::new();
    configure(&h, 0);
    for _ in 0..3 {
        h.authorize(&write_request(&h));
    }
    rt().block_on(h.engine.log().checkpoint_now()).unwrap();
    for _ in 0..3 {
        h.authorize(&write_request(&h));
    }
    rt().block_on(h.engine.log().checkpoint_now()).unwrap();
    assert_ok(&h.engine.verify_now());
    let stored = checkpoints(&h);
    assert!(stored.len() >= 2, "{stored:?}");
    let (newest_size, newest_note) = stored.last().cloned().unwrap();

    // Rolled back: the newest checkpoint removed, an older one is the newest again.
    db(&h).execute("DELETE FROM checkpoints WHERE size = ?1", params![newest_size]).unwrap();
    assert_failed(&h.engine.verify_now(), "checkpoint", "rolled back");
    assert_fails_closed(&h, ReasonCode::LogUnavailable, "checkpoint");
    db(&h).execute("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)", params![newest_size, newest_note]).unwrap();
    assert_ok(&h.engine.verify_now());

    // Forged with the log's own key: a checkpoint of the same size signing another root,
    // that is inconsistent with the one verified before.
    let key = NoteSigner::from_seed("writ.test/log", [1; 32]).unwrap();
    let forged = SignedCheckpoint::sign(
        Checkpoint {
            origin: "writ.test/log".into(),
            size: newest_size as u64,
            root: Hash::leaf(b"forged"),
            extensions: vec![],
        },
        &key,
    )
    .unwrap();
    db(&h).execute("UPDATE checkpoints SET note = ?2 WHERE size = ?1", params![newest_size, forged.note()]).unwrap();
    assert_failed(&h.engine.verify_now(), "checkpoint", "does not hash to the root its checkpoint signs");
    assert_fails_closed(&h, ReasonCode::LogUnavailable, "checkpoint");

    // Not signed by the log key at all.
    let other = NoteSigner::from_seed("writ.test/log", [9; 32]).unwrap();
    let unsigned = SignedCheckpoint::sign(
        Checkpoint {
            origin: "writ.test/log".into(),
            size: newest_size as u64,
            root: Hash::leaf(b"x"),
            extensions: vec![],
        },
        &other,
    )
    .unwrap();
    db(&h).execute("UPDATE checkpoints SET note = ?2 WHERE size = ?1", params![newest_size, unsigned.note()]).unwrap();
    assert_failed(&h.engine.verify_now(), "checkpoint", "does not verify");
    db(&h).execute("UPDATE checkpoints SET note = ?2 WHERE size = ?1", params![newest_size, newest_note]).unwrap();
    assert_ok(&h.engine.verify_now());
    assert_allowed(&h.authorize(&write_request(&h)));
}

#[test]
fn signing_keys_must_be_exactly_the_published_ones() {
    let h = Harness::new();
    let published = Arc::new(Mutex::new(h.engine.jwks()));
    let read = published.clone();
    h.engine.configure_verification(VerificationConfig {
        sample: 4,
        published_jwks: Some(Arc::new(move || Ok(read.lock().unwrap().clone()))),
    });
    assert_ok(&h.engine.verify_now());
    // A key slipped into the published JWKS that the control plane does not sign with: an
    // enforcement point would accept writs it never issued.
    let mut doc = h.engine.jwks();
    let mut extra = doc["keys"][0].clone();
    extra["kid"] = json!("intruder");
    extra["x"] = json!("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    doc["keys"].as_array_mut().unwrap().push(extra);
    *published.lock().unwrap() = doc;
    assert_failed(&h.engine.verify_now(), "keys", "published but not signing [intruder]");
    assert_fails_closed(&h, ReasonCode::Internal, "keys");
    // The signing key not published: enforcement points would refuse its writs.
    *published.lock().unwrap() = json!({"keys": []});
    assert_failed(&h.engine.verify_now(), "keys", "signing but not published");
    *published.lock().unwrap() = Value::Null;
    assert_failed(&h.engine.verify_now(), "keys", "no keys array");
    *published.lock().unwrap() = h.engine.jwks();
    assert_ok(&h.engine.verify_now());
    assert_allowed(&h.authorize(&write_request(&h)));
}

#[test]
fn pending_until_the_first_run_and_decisions_answered_meanwhile() {
    let h = Harness::new();
    let s = h.engine.verification();
    assert_eq!((s.state, s.runs, s.last_run), (VerificationState::Pending, 0, None));
    assert_allowed(&h.authorize(&write_request(&h)));
    let s = h.engine.verify_now();
    assert_ok(&s);
    assert_eq!(s.verified_size, h.engine.log().size(), "the first run covers the whole log");
}

#[test]
fn no_false_alarm_while_decisions_are_appended_beside_the_loop() {
    let h = Harness::new();
    configure(&h, 8);
    let engine = &h.engine;
    let bodies: Vec<Vec<u8>> = (0..400)
        .map(|i| {
            serde_json::to_vec(&request(
                &h,
                &format!("billing-{}", i % 8),
                "read",
                "fs:/r",
                json!({"path": format!("/r/{i}")}),
            ))
            .unwrap()
        })
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let runs = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut runs = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                runs.push(engine.verify_now());
            }
            runs
        });
        rt().block_on(async {
            let mut tasks = Vec::new();
            for chunk in bodies.chunks(50) {
                let chunk = chunk.to_vec();
                tasks.push(async move {
                    for b in chunk {
                        let d = engine.authorize(&b).await;
                        assert!(d.log_index.is_some(), "{d:?}");
                    }
                });
            }
            futures_util::future::join_all(tasks).await;
        });
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        checker.join().unwrap()
    });
    assert!(runs.len() >= 2, "the loop ran beside the appends: {} runs", runs.len());
    for r in &runs {
        assert_ok(r);
    }
    let last = h.engine.verify_now();
    assert_ok(&last);
    assert_eq!(last.verified_size, h.engine.log().size());
}

/// Regression (CI, stop 23): the contract test rotated the writ key twice while a run was
/// under way, and the run compared the keys signing at its end with the rotations recorded
/// at its start: "the writ key store holds 3 keys but the log records no key rotation". The
/// node then refused every decision until the next run. Rotations beside the loop must
/// raise no alarm, whatever the published JWKS shows at that moment.
#[test]
fn no_false_alarm_while_the_writ_key_rotates_beside_the_loop() {
    let h = Harness::new();
    let store = Arc::new(crate::keys::MemoryKeys::new());
    let engine = &h.engine;
    // As `writ serve` reads `trust/jwks.json`: what the store was last handed to publish.
    let first = engine.jwks();
    let held = store.clone();
    engine.configure_verification(VerificationConfig {
        sample: 8,
        published_jwks: Some(Arc::new(move || {
            Ok(held.published.lock().unwrap().clone().unwrap_or_else(|| first.clone()))
        })),
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    let runs = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut runs = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                runs.push(engine.verify_now());
            }
            runs
        });
        // Ends the checker even when an assertion below fails (else the scope waits forever).
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _done = Done(&done);
        rt().block_on(async {
            for i in 0..40 {
                // Decisions between rotations make each run's log check take a while.
                for j in 0..5 {
                    let body = serde_json::to_vec(&request(
                        &h,
                        "billing-1",
                        "read",
                        "fs:/r",
                        json!({"path": format!("/r/{i}/{j}")}),
                    ))
                    .unwrap();
                    let d = engine.authorize(&body).await;
                    assert!(d.log_index.is_some(), "{d:?}");
                }
                engine.rotate_writ_key_with(&*store, None).await.unwrap();
            }
        });
        drop(_done);
        checker.join().unwrap()
    });
    assert!(runs.len() >= 2, "the loop ran beside the rotations: {} runs", runs.len());
    for r in &runs {
        assert_ok(r);
    }
    assert_ok(&h.engine.verify_now());
    assert_eq!(h.engine.jwks()["keys"].as_array().unwrap().len(), 41);
}
