//! Extractors whose rejections are the API's JSON errors (axum's own answer in plain text):
//! a malformed query or path is `400 request.malformed`, an oversized body `413`. Body
//! limits live here, one per extractor: [`Body`] for decisions and operator actions,
//! [`BundleBody`] for bundle uploads (the router's own limit is the larger one).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection, RawPathParamsRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Query<T>` answering a malformed query with a JSON error.
pub(crate) struct Query<T>(pub T);

/// `Path<T>` answering a malformed path parameter, or one longer than [`MAX_PATH_PARAM`]
/// bytes, with a JSON error.
pub(crate) struct Path<T>(pub T);

/// The longest path parameter read (decoded bytes).
pub(crate) const MAX_PATH_PARAM: usize = 256;

/// The raw body, at most `N` bytes, answering an oversized or unreadable one with a JSON
/// error.
pub(crate) struct Limited<const N: usize>(pub Bytes);

/// A decision, verification or operator-action body (64 KiB).
pub(crate) type Body = Limited<{ crate::MAX_BODY }>;

/// A bundle upload (1 MiB).
pub(crate) type BundleBody = Limited<{ crate::MAX_BUNDLE_BODY }>;

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<RawPathParamsRejection> for ApiError {
    fn from(e: RawPathParamsRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(crate::MAX_BUNDLE_BODY)
        } else {
            ApiError::bad_request(e.body_text())
        }
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Query(axum::extract::Query::<T>::from_request_parts(parts, state).await?.0))
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Bounded before anything reads (or echoes) it: no id, digest or asset path is longer.
        let raw = axum::extract::RawPathParams::from_request_parts(parts, state).await?;
        if let Some((name, _)) = raw.iter().find(|(_, v)| v.len() > MAX_PATH_PARAM) {
            return Err(ApiError::bad_request(format!("the path's {name} is longer than {MAX_PATH_PARAM} bytes")));
        }
        Ok(Path(axum::extract::Path::<T>::from_request_parts(parts, state).await?.0))
    }
}

impl<const N: usize, S: Send + Sync> FromRequest<S> for Limited<N> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await?;
        if bytes.len() > N {
            return Err(ApiError::too_large(N));
        }
        Ok(Limited(bytes))
    }
}
