//! Policy bundles from untrusted bytes. The first byte picks the mode: `0`, the rest is a
//! `POST /v1/bundles` body, through the handler's own parser
//! (`writ_server::fuzzing::upload_body`: the upload's JSON, then `Bundle::from_parts`);
//! `1`, the rest is the bundle's parts (manifest, policies, schema, and optionally entities
//! and tests) separated by NUL bytes, through `Bundle::from_parts`.
//!
//! Properties: nothing panics; a bundle that builds is rebuilt from its own parts with the
//! same digest and manifest; its signature check against a fixed policy key never panics
//! (and never passes: the fuzzer cannot sign); compiling it (Cedar's parsers and strict
//! validation) never panics, and a bundle that compiles runs its own test cases (at most 8)
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_log::NoteSigner;
use writ_policy::{Bundle, verify_bundle_signature};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (bundle, signature) = match mode {
        0 => match writ_server::fuzzing::upload_body(rest) {
            Ok((bundle, signature, _activate)) => (bundle, signature),
            Err(_) => return,
        },
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let parts: Vec<&str> = text.split('\0').collect();
            let (manifest, policies, schema) = match parts.as_slice() {
                [m, p, s, ..] => (*m, *p, *s),
                _ => return,
            };
            match Bundle::from_parts(manifest, policies, schema, parts.get(3).copied(), parts.get(4).copied()) {
                Ok(bundle) => (bundle, String::new()),
                Err(_) => return,
            }
        }
        _ => return,
    };
    let (m, p, s, e, t) = bundle.parts();
    let again = Bundle::from_parts(&m, &p, &s, e.as_deref(), t.as_deref()).expect("a bundle's own parts build");
    assert_eq!(again.digest(), bundle.digest(), "the digest changes across its own parts");
    assert_eq!(again.manifest(), bundle.manifest());
    let key = NoteSigner::from_seed("fuzz.example/policy", [11; 32]).expect("key").verifier();
    assert!(verify_bundle_signature(&bundle, &signature, &[key]).is_err(), "a forged bundle signature verified");
    if let Ok(compiled) = bundle.compile()
        && bundle.tests().len() <= 8
    {
        let _ = compiled.run_tests(bundle.tests());
    }
});
