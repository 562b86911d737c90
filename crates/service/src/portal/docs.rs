//! `/docs`: the API reference, the service's OpenAPI document rendered by
//! the vendored Swagger UI (`portal/vendor/swagger-ui`). Everything comes
//! from the binary, like the portal's own files.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::headers;
use crate::api::AppState;
use crate::api::error::ApiError;

const PAGE: &str = include_str!("../../portal/docs.html");

/// `(name, content type, contents)` of every file under `/docs/assets/`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_str!("../../portal/vendor/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_str!("../../portal/vendor/swagger-ui/swagger-ui.css"),
    ),
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("../../portal/docs.js"),
    ),
    (
        "docs.css",
        "text/css; charset=utf-8",
        include_str!("../../portal/docs.css"),
    ),
    (
        "LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../../portal/vendor/swagger-ui/LICENSE"),
    ),
];

fn respond(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers::apply(h, &state.config.portal.frame_ancestors);
    response
}

/// `GET /docs`: the reference page.
pub async fn page(State(state): State<AppState>) -> Response {
    respond(&state, "text/html; charset=utf-8", PAGE)
}

/// `GET /docs/assets/{name}`.
pub async fn file(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => respond(&state, content_type, body),
        None => ApiError::not_found("Documentation file").into_response(),
    }
}
