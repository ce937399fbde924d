//! The API's error answer: a status, a stable reason code (SPEC.md §6) and a human message,
//! as `{"error": code, "message": text}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use writ_core::ReasonCode;
use writ_engine::{AuthFailure, EngineError};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: ReasonCode,
    pub(crate) message: String,
}

/// The JSON body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable reason code (SPEC.md §6).
    #[schema(example = "request.malformed")]
    pub error: String,
    /// What went wrong, for humans.
    pub message: String,
}

impl ApiError {
    /// An answer with this status, reason and message.
    pub fn new(status: StatusCode, reason: ReasonCode, message: impl Into<String>) -> Self {
        ApiError { status, reason, message: message.into() }
    }

    /// 400 `request.malformed`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ReasonCode::RequestMalformed, message)
    }

    /// 404 `request.malformed`: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ReasonCode::RequestMalformed, message)
    }

    /// 413 `request.malformed`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ReasonCode::RequestMalformed,
            format!("the body exceeds {limit} bytes"),
        )
    }

    /// 503 `log.unavailable`.
    pub fn log_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ReasonCode::LogUnavailable, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.status {
            // Overload and timeouts are answered by design; they are counted in the metrics.
            StatusCode::SERVICE_UNAVAILABLE => {
                tracing::debug!(reason = %self.reason, message = %self.message, "answered 503");
            }
            s if s.is_server_error() => {
                tracing::error!(status = s.as_u16(), reason = %self.reason, message = %self.message, "server error");
            }
            _ => {}
        }
        let mut resp =
            (self.status, axum::Json(json!({ "error": self.reason, "message": self.message }))).into_response();
        match self.status {
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
            writ_log::Error::OutOfRange(m) => ApiError::bad_request(m),
            other => ApiError::log_unavailable(other.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::Invalid(_) | EngineError::BundleUntrusted(_) => StatusCode::BAD_REQUEST,
            EngineError::Log(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Key(_) | EngineError::Corrupt(_) | EngineError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.reason(), e.to_string())
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
