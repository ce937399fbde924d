//! Trust bundles from untrusted bytes (`TrustBundle::from_json`, what `trust/bundle.json`
//! holds): never panics; a bundle that parses round-trips through its own JSON form to an
//! equal bundle (the same JSON value) with the same trust domains.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_identity::TrustBundle;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = TrustBundle::from_json(data) else {
        return;
    };
    let json = bundle.to_json();
    let again = TrustBundle::from_json(json.as_bytes()).expect("a bundle's own JSON parses");
    assert_eq!(again.to_value(), bundle.to_value());
    assert_eq!(again.to_json(), json, "the JSON form is a fixed point");
    assert_eq!(again.trust_domains(), bundle.trust_domains());
});
