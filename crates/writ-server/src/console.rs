//! The web console (SPEC.md §4's five views): static pages and scripts embedded in the
//! binary, served by `writ serve` itself, reading only the public HTTP API.
//!
//! This module owns the console's routes: `/` redirects to `/console/governance`; each view
//! has its own URL, `/console/{view}` ([`VIEWS`]); its assets are under `/console/assets/`
//! (the console's own CSS and scripts) and `/console/vendor/` (pinned npm libraries with
//! their licences, see `console/vendor/update.sh`). Every file under `crates/writ-server/console/`
//! is compiled into the binary (rust-embed, embedded in debug builds as in release ones), so
//! the README's first command is all it takes; nothing is fetched from elsewhere.
//!
//! Every answer carries its content type (from the file name, among the few kinds served), `X-Content-Type-Options:
//! nosniff`, and a strong `ETag` (the file's SHA-256); a matching `If-None-Match` is `304`
//! (RFC 9110 §13.1.2). `Cache-Control: no-cache` (RFC 9111 §5.2.2.4): a browser revalidates,
//! so a new binary's assets are never stale. Pages carry a Content Security Policy (CSP
//! Level 3) that allows scripts, styles and connections from this origin only: no inline
//! script or style, no frame, no other origin.

use crate::extract::Path;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::Embed;

use crate::AppState;
use crate::error::ApiError;

/// The views, each at `/console/{view}` from `console/{view}.html`.
pub const VIEWS: [&str; 5] = ["governance", "demo", "proof", "health", "lineage"];

/// Where `/` sends a browser.
pub const HOME: &str = "/console/governance";

/// The policy of every page: this origin only, no inline script or style (an element's
/// `style` set from a script through the CSSOM is allowed; a `style` attribute in markup or
/// an injected `<style>` is not).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[derive(Embed)]
#[folder = "console/"]
struct Assets;

/// The console's routes, to merge into the API's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", axum::routing::get(home))
        .route("/console", axum::routing::get(home))
        .route("/console/", axum::routing::get(home))
        .route("/console/{view}", axum::routing::get(view))
        .route("/console/assets/{*path}", axum::routing::get(asset))
        .route("/console/vendor/{*path}", axum::routing::get(vendor))
}

async fn home() -> Redirect {
    Redirect::to(HOME)
}

async fn view(Path(view): Path<String>, headers: HeaderMap) -> Response {
    if !VIEWS.contains(&view.as_str()) {
        return ApiError::not_found(format!("no console view {view}; the views are {}", VIEWS.join(", ")))
            .into_response();
    }
    serve_file(&format!("{view}.html"), &headers, true)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve_file(&format!("assets/{path}"), &headers, false)
}

async fn vendor(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve_file(&format!("vendor/{path}"), &headers, false)
}

/// The media type of a servable file, by its name (RFC 9110 §8.3; text in UTF-8).
fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("map") => "application/json",
        // Licences (LICENSE, LICENSE.md, …) and VERSION.txt.
        _ => "text/plain; charset=utf-8",
    }
}

/// Whether an embedded file is served: the console's pages, scripts, styles, images and the
/// vendored libraries' licences; never the vendoring script or its npm manifests.
fn servable(path: &str) -> bool {
    if path.split('/').any(|part| part.is_empty() || part == "." || part == ".." || part == "node_modules") {
        return false;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let licence = name.starts_with("LICENSE") || name.starts_with("LICENCE") || name.starts_with("COPYING");
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    licence || matches!(ext, Some("html" | "css" | "js" | "mjs" | "svg" | "png" | "txt" | "map"))
}

fn serve_file(path: &str, headers: &HeaderMap, page: bool) -> Response {
    let Some(file) = servable(path).then(|| Assets::get(path)).flatten() else {
        return ApiError::not_found(format!("no console asset {path}")).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let matched = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let content_type = content_type(path);
    let mut response = if matched {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match file.data {
            std::borrow::Cow::Borrowed(b) => axum::body::Body::from(b),
            std::borrow::Cow::Owned(v) => axum::body::Body::from(v),
        };
        (StatusCode::OK, body).into_response()
    };
    let h = response.headers_mut();
    if !matched {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if page {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}
