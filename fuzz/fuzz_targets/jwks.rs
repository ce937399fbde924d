//! JWK Sets from untrusted bytes: one issuer's `jwks` added to a trust bundle
//! (`TrustBundle::add`), each key alone (`writ_identity::fuzzing::parse_jwk`), and the writ
//! JWKS an enforcement point trusts (`WritVerifier::new`). Never panics; a set that loads
//! round-trips through the bundle's JSON form to an equal bundle, and a key that loads
//! loads again from its own output, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use writ_engine::WritVerifier;
use writ_identity::{BundleEntry, Role, TrustBundle};

fuzz_target!(|data: &[u8]| {
    let Ok(jwks) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = WritVerifier::new("https://writ.fuzz.example", &jwks, "writ-fuzz", 30);
    if let Some(keys) = jwks.get("keys").and_then(Value::as_array) {
        for key in keys {
            if let Value::Object(members) = key
                && let Ok((alg, loaded)) = writ_identity::fuzzing::parse_jwk(members.clone())
            {
                let Value::Object(again) = loaded.clone() else { panic!("a loaded JWK is an object") };
                assert_eq!(writ_identity::fuzzing::parse_jwk(again).ok(), Some((alg, loaded)));
            }
        }
    }
    let entry = BundleEntry {
        trust_domain: "fuzz.example".into(),
        issuer: "https://issuer.fuzz.example".into(),
        roles: vec![Role::Workload],
        jwks,
    };
    let mut bundle = TrustBundle::new();
    if bundle.add(entry).is_ok() {
        let again = TrustBundle::from_json(bundle.to_json().as_bytes()).expect("a bundle's own JSON parses");
        assert_eq!(again.to_value(), bundle.to_value());
    }
});
