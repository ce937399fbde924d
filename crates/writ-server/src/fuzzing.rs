//! Fuzzing hooks, not part of the API: the body parsers of the operator routes, exactly as
//! the handlers call them, for the targets in `fuzz/` (as rustls exposes its own in
//! `internal`). Hidden from the documentation and free to change with the handlers; each
//! returns what the handler would hand the engine, or the error it would answer.

use writ_engine::ExecStatus;
use writ_policy::Bundle;

use crate::ApiError;
use crate::schema::ApprovalBody;

/// `POST /v1/bundles`: the bundle built from the upload's parts, its signature (not yet
/// checked) and whether to activate it.
pub fn upload_body(body: &[u8]) -> Result<(Bundle, String, bool), ApiError> {
    crate::admin::parse_upload(body).map(|(up, bundle)| (bundle, up.signature, up.activate))
}

/// `POST /v1/approvals/{id}/approve|reject`: the reason.
pub fn approval_body(body: &[u8]) -> Result<String, ApiError> {
    crate::admin::parse::<ApprovalBody>(body, "approval").map(|b| b.reason)
}

/// `POST /v1/outcomes`: the writ id, the status, the exit code and the detail.
pub fn outcome_body(body: &[u8]) -> Result<(String, ExecStatus, Option<i64>, String), ApiError> {
    crate::admin::parse_outcome(body).map(|(o, status)| (o.jti, status, o.exit_code, o.detail))
}
