//! Authentication of the control plane's own callers: the `Authorization: Bearer` credential
//! of administrative routes (an operator) and of outcome reports (the workload the writ was
//! issued to, or an operator), checked by the engine's identity layer. No credential or an
//! invalid one is 401; a valid credential for another role is 403.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use writ_core::ReasonCode;
use writ_engine::AuthFailure;
use writ_identity::Role;

use crate::AppState;
use crate::error::ApiError;

/// An authenticated operator: its SPIFFE ID.
#[derive(Clone, Debug)]
pub struct Operator(pub String);

/// An authenticated caller of an outcome report: a workload or an operator.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// SPIFFE ID.
    pub subject: String,
    /// Whether it authenticated as an operator.
    pub operator: bool,
}

/// The bearer token of the request: `None` when there is no `Authorization` header, an
/// error when the header is not `Bearer <token>`.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(malformed());
    }
    Ok(Some(token.trim()))
}

fn malformed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        ReasonCode::IdentityMalformed,
        "the Authorization header must be `Bearer <credential>`",
    )
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        Ok(Operator(state.engine.authenticate_operator(token)?))
    }
}

impl FromRequestParts<AppState> for Reporter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        match state.engine.authenticate_operator(token) {
            Ok(subject) => Ok(Reporter { subject, operator: true }),
            Err(AuthFailure::Forbidden(_)) => {
                let subject = state.engine.authenticate(token, Role::Workload)?;
                Ok(Reporter { subject, operator: false })
            }
            Err(e) => Err(e.into()),
        }
    }
}
