//! Execution requests from untrusted bytes (`ExecutionRequest::parse` with the default
//! limits, what `POST /v1/authorize` and `POST /v1/verify` read): parsing never panics, and a
//! request that parses re-validates, has a digest, and serializes to JSON that parses back
//! to the same request with the same digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_core::{ExecutionRequest, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(request) = ExecutionRequest::parse(data, &limits) else {
        return;
    };
    assert!(request.validate(&limits).is_ok(), "a parsed request re-validates");
    let digest = request.digest().expect("a parsed request has a digest");
    let json = serde_json::to_vec(&request).expect("a parsed request serializes");
    // Its own serialization may be longer than the body (`1e2` is written `100.0`).
    let unbounded = Limits { max_body: usize::MAX, ..Limits::default() };
    let again = ExecutionRequest::parse(&json, &unbounded).expect("a request's own serialization parses");
    assert_eq!(again, request, "re-parsing its serialization changes the request");
    assert_eq!(again.digest().expect("digest"), digest, "the digest is stable across a re-parse");
});
