//! Operations routes: `/health`, `/metrics`, `/api/v1/openapi.json` (the
//! reference page that renders it, `/docs`, is the portal's).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::metrics::Sampled;
use crate::store::StoreError;

/// `GET /health`: 200 when the store answers, 503 with the reason otherwise.
pub async fn health(State(state): State<AppState>) -> Response {
    let postgres = state.config.database_url.is_some();
    let store = if postgres { "postgres" } else { "sqlite" };
    match state.store.health().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(
                json!({"status": "ok", "store": store, "version": env!("CARGO_PKG_VERSION")}),
            ),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            let reason = match &e {
                // Said as it is: the operator's fix is space, not a restart.
                StoreError::DiskFull(_) => "the disk holding the store is full".to_string(),
                _ => unhealthy_reason(postgres, &e.to_string()),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "store": store, "reason": reason})),
            )
                .into_response()
        }
    }
}

/// Why the store failed its health check, in words safe for anyone who can
/// reach `/health`. The store's own message can name hosts, files or SQL, so
/// it is classified here and never echoed (it goes to the log above).
fn unhealthy_reason(postgres: bool, detail: &str) -> String {
    if !postgres {
        return "the embedded store is unavailable (see the service log)".into();
    }
    let detail = detail.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| detail.contains(n));
    let why = if has(&["connection refused"]) {
        "PostgreSQL unreachable: connection refused"
    } else if has(&["no answer within", "timed out", "deadline has elapsed"]) {
        "PostgreSQL unreachable: no answer in time"
    } else if has(&["(28p01)", "(28000)", "password authentication"]) {
        "PostgreSQL refused the login: authentication failed"
    } else if has(&["(3d000)"]) {
        "PostgreSQL unreachable: the database does not exist"
    } else if has(&["(53300)", "too many connections"]) {
        "PostgreSQL refused the connection: too many connections"
    } else if has(&["(57p"]) {
        "PostgreSQL unreachable: the server is shutting down or restarting"
    } else if has(&["stayed busy"]) {
        "PostgreSQL too slow: every pooled connection stayed busy (DATABASE_POOL_SIZE)"
    } else if has(&["writer"]) {
        "PostgreSQL writer unavailable"
    } else if has(&[
        "connection closed",
        "unexpected eof",
        "connection reset",
        "broken pipe",
        "is unreachable",
    ]) {
        "PostgreSQL unreachable: connection lost"
    } else {
        "PostgreSQL did not answer the health check (see the service log)"
    };
    why.to_string()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let sampled = Sampled {
        window: state.engine.window_usage(),
        connections: state.engine.connection_usage(),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&sampled),
    )
        .into_response()
}

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(super::openapi::document)
}

/// `GET /api/v1/openapi.json`
pub async fn openapi_json() -> Response {
    axum::Json(document().clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::unhealthy_reason;

    #[test]
    fn reasons_name_the_cause_and_never_echo_the_detail() {
        let refused = "store unavailable: PostgreSQL is unreachable: error connecting to server: \
                       Connection refused (os error 111)";
        assert_eq!(
            unhealthy_reason(true, refused),
            "PostgreSQL unreachable: connection refused"
        );
        let auth = "store unavailable: PostgreSQL is unreachable: password authentication \
                    failed for user \"webhooks\" (28P01)";
        let reason = unhealthy_reason(true, auth);
        assert_eq!(
            reason,
            "PostgreSQL refused the login: authentication failed"
        );
        assert!(!reason.contains("webhooks"));
        let odd = "store unavailable: something about postgres://u:secret@db/x";
        assert!(!unhealthy_reason(true, odd).contains("secret"));
        assert!(!unhealthy_reason(false, "cannot create /var/lib/x").contains("/var"));
    }
}
