//! Writ key rotation: recorded, without downtime (old writs keep verifying), and refused
//! when it would drop or reorder a published key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::Value;
use writ_core::request_digest;
use writ_engine::{EngineError, Entry};

use crate::harness::*;

fn kid_of(writ: &str) -> String {
    let header: Value = serde_json::from_slice(&B64URL.decode(writ.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn kids(h: &Harness) -> Vec<String> {
    h.engine.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_rotated_key_signs_new_writs_and_old_writs_still_verify() {
    let h = Harness::new();
    let req = write_request(&h);
    let digest = request_digest("write", "fs:/zones/billing", &req["arguments"]).unwrap();
    let old = assert_allowed(&h.authorize(&req));
    let before = kids(&h);
    assert_eq!(before.len(), 1);

    let (kid, index) = rt()
        .block_on(h.engine.rotate_writ_key(&[[3; 32], [4; 32]], Some("spiffe://demo.example/operator/alice")))
        .unwrap();
    let after = kids(&h);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0], before[0]);
    assert_eq!(after[1], kid);

    // Recorded, with key ids only.
    let size = h.engine.log().size();
    assert_eq!(index, size - 1);
    let bytes = h.engine.log().entries(index, index + 1).unwrap().remove(0);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains(&hex::encode([4u8; 32])), "a secret in the log: {text}");
    match serde_json::from_slice::<Entry>(&bytes).unwrap() {
        Entry::KeyRotation { kid: k, kids, operator, .. } => {
            assert_eq!(k, kid);
            assert_eq!(kids, after);
            assert_eq!(operator.as_deref(), Some("spiffe://demo.example/operator/alice"));
        }
        other => panic!("not a rotation: {other:?}"),
    }

    // New writs carry the new kid; the old writ, signed before, still verifies.
    let new = assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(kid_of(&new), kid);
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
        let err = rt().block_on(h.engine.rotate_writ_key(&seeds, None)).unwrap_err();
        assert!(matches!(err, EngineError::Invalid(_) | EngineError::Key(_)), "{seeds:?}: {err:?}");
        assert_eq!(h.engine.log().size(), size, "{seeds:?} was recorded");
        assert_eq!(kids(&h), before);
    }
    // Writs still come from the present key.
    let writ = assert_allowed(&h.authorize(&write_request(&h)));
    assert_eq!(kid_of(&writ), before[0]);
}

#[test]
fn a_rotation_is_not_applied_when_it_cannot_be_recorded() {
    let h = Harness::new();
    let before = kids(&h);
    h.store_fails.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = rt().block_on(h.engine.rotate_writ_key(&[[3; 32], [4; 32]], None)).unwrap_err();
    assert!(matches!(err, EngineError::Log(_)), "{err:?}");
    h.store_fails.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(kids(&h), before);
}
