//! Writ key rotation: one path (`Engine::rotate_writ_key_with`) that stores the key,
//! records the rotation, undoes the key when the record fails and publishes; recorded,
//! without downtime (old writs keep verifying), refused when it would drop or reorder a
//! published key; and on open, a key the log never recorded does not sign.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::Value;
use writ_core::request_digest;
use writ_engine::{EngineError, Entry, KeyError, WritKeyStore, WritSigner};

use crate::harness::*;

fn kid_of(writ: &str) -> String {
    let header: Value = serde_json::from_slice(&B64URL.decode(writ.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn kids(h: &Harness) -> Vec<String> {
    h.engine.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

fn kid_of_seed(seed: [u8; 32]) -> String {
    WritSigner::from_seeds("writ", &[seed]).unwrap().kids().remove(0)
}

/// A key store in memory: it starts with the harness's key, hands out `[4; 32]`, `[5; 32]`,
/// … (or, once, whatever `next_add` says), and its removal can be made to fail.
pub(crate) struct MemoryKeys {
    seeds: Mutex<Vec<[u8; 32]>>,
    next_add: Mutex<Option<Vec<[u8; 32]>>>,
    fail_remove: AtomicBool,
    pub(crate) published: Mutex<Option<Value>>,
}

impl MemoryKeys {
    pub(crate) fn new() -> MemoryKeys {
        MemoryKeys {
            seeds: Mutex::new(vec![[3; 32]]),
            next_add: Mutex::new(None),
            fail_remove: AtomicBool::new(false),
            published: Mutex::new(None),
        }
    }

    fn seeds(&self) -> Vec<[u8; 32]> {
        self.seeds.lock().unwrap().clone()
    }
}

impl WritKeyStore for MemoryKeys {
    fn add(&self) -> Result<Vec<[u8; 32]>, String> {
        let mut seeds = self.seeds.lock().unwrap();
        match self.next_add.lock().unwrap().take() {
            Some(given) => *seeds = given,
            None => {
                let next = [4 + seeds.len() as u8 - 1; 32];
                seeds.push(next);
            }
        }
        Ok(seeds.clone())
    }
    fn remove_newest(&self) -> Result<(), String> {
        if self.fail_remove.load(Ordering::SeqCst) {
            return Err("read-only key store".into());
        }
        self.seeds.lock().unwrap().pop();
        Ok(())
    }
    fn published(&self, jwks: &Value) -> Result<(), String> {
        *self.published.lock().unwrap() = Some(jwks.clone());
        Ok(())
    }
}

#[test]
fn a_rotated_key_signs_new_writs_and_old_writs_still_verify() {
    let h = Harness::new();
    let store = MemoryKeys::new();
    let req = write_request(&h);
    let digest = request_digest("write", "fs:/zones/billing", &req["arguments"]).unwrap();
    let old = assert_allowed(&h.authorize(&req));
    let before = kids(&h);
    assert_eq!(before.len(), 1);

    let r = rt().block_on(h.engine.rotate_writ_key_with(&store, Some("spiffe://demo.example/operator/alice"))).unwrap();
    let after = kids(&h);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0], before[0]);
    assert_eq!(after[1], r.kid);
    assert_eq!(r.kid, kid_of_seed([4; 32]));
    assert_eq!(r.kids, after);
    assert_eq!(r.warning, None);
    // The store holds the new key and was handed the keys to publish.
    assert_eq!(store.seeds(), vec![[3; 32], [4; 32]]);
    assert_eq!(store.published.lock().unwrap().as_ref(), Some(&h.engine.jwks()));

    // Recorded, with key ids only.
    let size = h.engine.log().size();
    assert_eq!(r.log_index, size - 1);
    let bytes = h.engine.log().entries(r.log_index, r.log_index + 1).unwrap().remove(0);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains(&hex::encode([4u8; 32])), "a secret in the log: {text}");
    match serde_json::from_slice::<Entry>(&bytes).unwrap() {
        Entry::KeyRotation { kid: k, kids, operator, .. } => {
            assert_eq!(k, r.kid);
            assert_eq!(kids, after);
            assert_eq!(operator.as_deref(), Some("spiffe://demo.example/operator/alice"));
        }
        other => panic!("not a rotation: {other:?}"),
    }

    // New writs carry the new kid; the old writ, signed before, still verifies.
    let new = assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(kid_of(&new), r.kid);
    assert_eq!(kid_of(&old), before[0]);
    h.engine.verify(&old, &digest).unwrap();
    h.engine.verify(&new, &digest).unwrap();
}

#[test]
fn a_rotation_that_drops_reorders_or_repeats_keys_is_refused_and_not_recorded() {
    let h = Harness::new();
    let size = h.engine.log().size();
    let before = kids(&h);
    for seeds in [vec![], vec![[3; 32]], vec![[4; 32]], vec![[4; 32], [3; 32]], vec![[5; 32], [3; 32], [4; 32]]] {
        let store = MemoryKeys::new();
        *store.next_add.lock().unwrap() = Some(seeds.clone());
        let err = rt().block_on(h.engine.rotate_writ_key_with(&store, None)).unwrap_err();
        assert!(matches!(err, EngineError::RotationShape | EngineError::Key(_)), "{seeds:?}: {err:?}");
        assert_eq!(h.engine.log().size(), size, "{seeds:?} was recorded");
        assert_eq!(kids(&h), before);
        assert_eq!(store.published.lock().unwrap().as_ref(), None, "{seeds:?} was published");
    }
    // Writs still come from the present key.
    let writ = assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(kid_of(&writ), before[0]);
}

/// The log unwritable: the rotation fails, the key store is as before (the new key was
/// removed again), nothing is published, and the old key still signs.
#[test]
fn a_rotation_that_cannot_be_recorded_takes_its_key_out_of_the_store() {
    let h = Harness::new();
    let store = MemoryKeys::new();
    let before = kids(&h);
    let size = h.engine.log().size();
    h.store_fails.store(true, Ordering::SeqCst);
    let err = rt().block_on(h.engine.rotate_writ_key_with(&store, None)).unwrap_err();
    assert!(matches!(err, EngineError::Log(_)), "{err:?}");
    h.store_fails.store(false, Ordering::SeqCst);
    assert_eq!(kids(&h), before);
    assert_eq!(store.seeds(), vec![[3; 32]]);
    assert_eq!(store.published.lock().unwrap().as_ref(), None);
    assert_eq!(h.engine.log().size(), size);
    let writ = assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(kid_of(&writ), before[0]);
}

/// A rotation whose record fails and whose key cannot be removed either: the error says
/// both, and the key left in the store never signs: the next open refuses the store.
#[test]
fn a_key_left_by_a_failed_rotation_is_refused_at_the_next_open() {
    let h = Harness::new();
    let store = MemoryKeys::new();
    store.fail_remove.store(true, Ordering::SeqCst);
    h.store_fails.store(true, Ordering::SeqCst);
    let err = rt().block_on(h.engine.rotate_writ_key_with(&store, None)).unwrap_err();
    assert!(
        matches!(&err, EngineError::Key(KeyError::NotUndone { failure, .. }) if matches!(**failure, EngineError::Log(_))),
        "{err:?}"
    );
    assert!(err.detail().contains("could not be removed"), "{}", err.detail());
    assert_eq!(store.seeds(), vec![[3; 32], [4; 32]]);

    let Harness { engine, dir, .. } = h;
    drop(engine);
    let (err, _dir) = Harness::open_with(dir, None, &store.seeds()).err().unwrap();
    let EngineError::Key(KeyError::NoRotationRecorded { kids }) = &err else { panic!("{err:?}") };
    assert_eq!(kids.get(1), Some(&kid_of_seed([4; 32])));
    assert!(err.detail().contains("no key rotation"), "{}", err.detail());
}

/// `keys/writ.keys` edited behind the log's back: a key appended to the store (before any
/// rotation, or after the recorded ones) makes the open fail, so it never signs; the
/// recorded keys open, and a store that lost the newest recorded key opens and signs with
/// the newest it holds (a recorded key), the missing key's writs no longer verifying.
#[test]
fn a_key_added_to_the_store_behind_the_logs_back_never_signs() {
    // Reopened with a fresh development issuer each time (the policy key is the same).
    let h = Harness::new();
    let Harness { engine, dir, .. } = h;
    drop(engine);
    let planted = [9; 32];

    // No rotation recorded: only the first key may sign.
    let (err, dir) = Harness::open_with(dir, None, &[[3; 32], planted]).err().unwrap();
    assert!(
        matches!(&err, EngineError::Key(KeyError::NoRotationRecorded { kids }) if kids.contains(&kid_of_seed(planted))),
        "{err:?}"
    );

    // One recorded rotation to [3, 4]; then [3, 4, planted] and [4, 3] are refused.
    let h = Harness::open_with(dir, None, &[[3; 32]]).map_err(|(e, _)| e).unwrap();
    let store = MemoryKeys::new();
    let r = rt().block_on(h.engine.rotate_writ_key_with(&store, None)).unwrap();
    let Harness { engine, dir, .. } = h;
    drop(engine);
    let mut dir = dir;
    for seeds in [vec![[3; 32], [4; 32], planted], vec![[4; 32], [3; 32]], vec![[3; 32], planted], vec![planted]] {
        let (err, back) = Harness::open_with(dir, None, &seeds).err().unwrap();
        assert!(
            matches!(&err, EngineError::Key(KeyError::Unrecorded { index, .. } | KeyError::Order { index, .. }) if *index == r.log_index),
            "{err:?}"
        );
        dir = back;
    }

    // The recorded keys open and the newest signs.
    let h = Harness::open_with(dir, None, &[[3; 32], [4; 32]]).map_err(|(e, _)| e).unwrap();
    let signed_by_new = assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(kid_of(&signed_by_new), r.kid);
    let Harness { engine, dir, .. } = h;
    drop(engine);

    // The newest recorded key lost: the older recorded key signs; the lost key's writ fails.
    let h = Harness::open_with(dir, None, &[[3; 32]]).map_err(|(e, _)| e).unwrap();
    let writ = assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(kid_of(&writ), kid_of_seed([3; 32]));
    let req = write_request(&h);
    let digest = request_digest("write", "fs:/zones/billing", &req["arguments"]).unwrap();
    let rejected = h.engine.verify(&signed_by_new, &digest).unwrap_err();
    assert_eq!(rejected.reason, writ_core::ReasonCode::WritBadSignature, "{rejected:?}");
}
