//! `POST /v1/outcomes` bodies from untrusted bytes, through the handler's own parser
//! (`writ_server::fuzzing::outcome_body`): never panics; a body that parses re-encodes to
//! a body that parses to the same report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_engine::ExecStatus;
use writ_server::fuzzing::outcome_body;

fuzz_target!(|data: &[u8]| {
    let Ok((jti, status, exit_code, detail)) = outcome_body(data) else {
        return;
    };
    let status_text = match status {
        ExecStatus::Succeeded => "succeeded",
        ExecStatus::Failed => "failed",
        ExecStatus::NotRun => "not_run",
        ExecStatus::Stopped => "stopped",
    };
    let body = serde_json::json!({ "jti": jti, "status": status_text, "exit_code": exit_code, "detail": detail });
    let again = outcome_body(&serde_json::to_vec(&body).expect("serializes")).expect("its re-encoding parses");
    assert_eq!(again, (jti, status, exit_code, detail));
});
