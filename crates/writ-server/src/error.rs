//! The API's error answer: a status, a stable code and a human message, as
//! `{"error": code, "message": text}`; the code is a reason code (SPEC.md §6), or
//! `not_found` for a `404`.
//!
//! What the client is told never carries the server's internals. An error whose cause is the
//! server's own (a failing log store, a key, a corrupt entry, an I/O error: every `5xx`)
//! answers a stable message and a random `error_id`; the cause goes to the server's log
//! under that id (`tracing`), where an operator finds it. Messages about the client's own
//! input (`4xx`) stay as they are: they describe what the client sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use writ_core::ReasonCode;
use writ_engine::{AuthFailure, EngineError};

/// The `error` of a `404`: not a decision's reason code, since nothing was decided.
pub const NOT_FOUND: &str = "not_found";

/// What the `error` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Reason(ReasonCode),
    NotFound,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Reason(r) => r.as_str(),
            Code::NotFound => NOT_FOUND,
        }
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Code,
    message: String,
    // The server's own cause, logged under the answer's error id and never sent.
    cause: Option<String>,
}

/// The answers any route can give when the server, not the request, is at fault: listed
/// first in every route's responses, so that a route's own description of a status wins.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documentation only: the answers are built by `ApiError` and the edge layers")]
pub(crate) enum ServerFailures {
    /// The control plane failed; the cause is in the server's log under `error_id`.
    #[response(
        status = 500,
        description = "The control plane failed (`internal`; the cause is in the server's log under `error_id`)"
    )]
    Internal(#[to_schema] ErrorBody),
    /// Overloaded, timed out, or the log is unavailable.
    #[response(
        status = 503,
        description = "Overloaded or timed out (`Retry-After`), or the log is unavailable (`log.unavailable`)"
    )]
    Unavailable(#[to_schema] ErrorBody),
}

/// The JSON body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable reason code (SPEC.md §6), or `not_found` for a `404`.
    #[schema(example = "request.malformed")]
    pub error: String,
    /// What went wrong, for humans. For a server error, a stable message: the cause is in
    /// the server's log under `error_id`.
    pub message: String,
    /// On every `5xx` (and any answer whose cause the server kept): the id under which the
    /// server logged it (16 hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "9f2c4e1a7b3d5f60")]
    pub error_id: Option<String>,
}

impl ApiError {
    /// An answer with this status, reason and message. The message is sent as it is: for a
    /// cause that is the server's own, use [`ApiError::internal`].
    pub fn new(status: StatusCode, reason: ReasonCode, message: impl Into<String>) -> Self {
        ApiError { status, code: Code::Reason(reason), message: message.into(), cause: None }
    }

    /// A server error whose `cause` is logged, never sent: the client gets a stable message
    /// for `reason` and the error id.
    pub fn internal(status: StatusCode, reason: ReasonCode, cause: impl Into<String>) -> Self {
        let message = match reason {
            ReasonCode::LogUnavailable => "the log is unavailable",
            _ => "internal error",
        };
        ApiError { status, code: Code::Reason(reason), message: message.into(), cause: Some(cause.into()) }
    }

    /// 400 `request.malformed`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ReasonCode::RequestMalformed, message)
    }

    /// 404 `not_found`: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, code: Code::NotFound, message: message.into(), cause: None }
    }

    /// 413 `request.malformed`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ReasonCode::RequestMalformed,
            format!("the body exceeds {limit} bytes"),
        )
    }

    /// 503 `log.unavailable`, the log's failure (`cause`) kept in the server's log.
    pub fn log_unavailable(cause: impl Into<String>) -> Self {
        Self::internal(StatusCode::SERVICE_UNAVAILABLE, ReasonCode::LogUnavailable, cause)
    }
}

/// A fresh error id: 16 hex digits. It names one answer in the server's log; it needs to be
/// unique, not secret.
fn error_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        // A cause withheld from the client is logged under an id, whatever the status.
        let error_id = (status.is_server_error() || self.cause.is_some()).then(error_id);
        if let Some(id) = &error_id {
            let code = self.code.as_str();
            match (&self.cause, status) {
                (Some(cause), _) => {
                    tracing::error!(error_id = %id, status = status.as_u16(), code, cause = %cause, "server error");
                }
                // Overload and timeouts are answered by design (counted in the metrics); their
                // message is the whole story.
                (None, StatusCode::SERVICE_UNAVAILABLE) => {
                    tracing::debug!(error_id = %id, code, message = %self.message, "answered 503");
                }
                (None, _) => {
                    tracing::error!(error_id = %id, status = status.as_u16(), code, message = %self.message, "server error");
                }
            }
        }
        let body = ErrorBody { error: self.code.as_str().to_owned(), message: self.message, error_id };
        let mut resp = (status, axum::Json(body)).into_response();
        match status {
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

impl From<writ_log::Error> for ApiError {
    fn from(e: writ_log::Error) -> Self {
        match e {
            // A range or index the client asked for: its own input.
            writ_log::Error::OutOfRange(m) => ApiError::bad_request(m),
            other => ApiError::log_unavailable(other.to_string()),
        }
    }
}

/// The HTTP answer to each engine error: the status and reason code are decided here, from
/// the variant; the message is the error with its causes (`EngineError::detail`).
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use EngineError as E;
        let text = e.detail();
        match e {
            // About what the client sent or named: said as it is.
            E::NotFound(_) => ApiError::not_found(text),
            E::OutcomeAlreadyRecorded { .. }
            | E::PastDeadline { .. }
            | E::ApprovalAlreadyAnswered { .. }
            | E::PolicyChanged { .. }
            | E::Quarantined { .. }
            | E::Revoked { .. }
            | E::ParentRevoked { .. }
            | E::ParentExpired { .. }
            | E::ShadowIsActive { .. } => ApiError::new(StatusCode::CONFLICT, ReasonCode::RequestMalformed, text),
            E::NotTheSubject { .. } => ApiError::new(StatusCode::FORBIDDEN, ReasonCode::IdentityUntrustedIssuer, text),
            E::TooLong { .. }
            | E::RotationShape
            | E::FromPastEnd { .. }
            | E::ToBeforeFrom { .. }
            | E::NotDecidedBy { .. } => ApiError::bad_request(text),
            E::BundleUntrusted(_) => ApiError::new(StatusCode::BAD_REQUEST, ReasonCode::PolicyBundleUntrusted, text),
            // The node's self-verification failed: unavailable until a later run passes.
            E::IntegrityFailed { reason, .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason, text),
            // The server's own failures: kept in its log.
            E::Log(_) => ApiError::log_unavailable(text),
            _ => ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ReasonCode::Internal, text),
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Unauthenticated(reason, message) => ApiError::new(StatusCode::UNAUTHORIZED, reason, message),
            AuthFailure::Forbidden(message) => {
                ApiError::new(StatusCode::FORBIDDEN, ReasonCode::IdentityUntrustedIssuer, message)
            }
        }
    }
}
