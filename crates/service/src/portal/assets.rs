//! The portal's files, embedded in the binary: no CDN, no other host, so
//! the portal works on a network without internet access.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use webhook_domain::retry::{MAX_RETRIES, format_duration};

use super::headers;
use crate::api::AppState;
use crate::api::controls::{MAX_RATE_LIMIT, MAX_RETRY_WAIT};
use crate::api::error::ApiError;

/// `(name, content type, contents)` of every file under `/portal/assets/`.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../portal/app.js")),
    ("api.js", JS, include_str!("../../portal/api.js")),
    ("dom.js", JS, include_str!("../../portal/dom.js")),
    ("chart.js", JS, include_str!("../../portal/chart.js")),
    (
        "endpoints.js",
        JS,
        include_str!("../../portal/endpoints.js"),
    ),
    (
        "endpoint-options.js",
        JS,
        include_str!("../../portal/endpoint-options.js"),
    ),
    (
        "deliveries.js",
        JS,
        include_str!("../../portal/deliveries.js"),
    ),
    (
        "catalogue.js",
        JS,
        include_str!("../../portal/catalogue.js"),
    ),
    ("overview.js", JS, include_str!("../../portal/overview.js")),
    ("snippets.js", JS, include_str!("../../portal/snippets.js")),
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_str!("../../portal/portal.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../portal/icon.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

const SHELL: &str = include_str!("../../portal/index.html");

fn with_headers(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers::apply(response.headers_mut(), &state.config.portal.frame_ancestors);
    response
}

/// `GET /`: the portal.
pub async fn root() -> Redirect {
    Redirect::to("/portal")
}

/// `GET /portal`: the application shell.
pub async fn shell(State(state): State<AppState>) -> Response {
    with_headers(&state, "text/html; charset=utf-8", SHELL)
}

/// `GET /portal/assets/{name}`.
pub async fn file(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => with_headers(&state, content_type, body),
        None => ApiError::not_found("Portal file").into_response(),
    }
}

/// `GET /portal/config.json`: the theme (title, brand colour) the pages
/// apply, and the bounds of a webhook's delivery controls, which the
/// endpoint form shows beside its fields (the API enforces them).
pub async fn config(State(state): State<AppState>) -> Response {
    let mut response = axum::Json(json!({
        "title": state.config.portal.title,
        "brandColor": state.config.portal.brand_color,
        "limits": {
            "maxRateLimitPerSecond": MAX_RATE_LIMIT,
            "maxRetryWaits": MAX_RETRIES,
            "maxRetryWait": format_duration(MAX_RETRY_WAIT),
            "maxTimeoutMs": state.config.delivery.max_endpoint_timeout.as_millis() as u64,
        },
    }))
    .into_response();
    headers::apply(response.headers_mut(), &state.config.portal.frame_ancestors);
    response
}
