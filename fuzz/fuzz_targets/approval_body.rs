//! `POST /v1/approvals/{id}/approve|reject` bodies from untrusted bytes, through the
//! handler's own parser (`writ_server::fuzzing::approval_body`): never panics; a body that
//! parses is `{"reason": <string>}` and nothing else, so the reason re-encodes to a body
//! that parses to the same reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_server::fuzzing::approval_body;

fuzz_target!(|data: &[u8]| {
    let Ok(reason) = approval_body(data) else {
        return;
    };
    let again = serde_json::to_vec(&serde_json::json!({ "reason": reason })).expect("serializes");
    assert_eq!(approval_body(&again).ok(), Some(reason));
});
