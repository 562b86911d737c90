//! Operations routes: `/health`, `/metrics`, `/api/v1/openapi.json`, `/docs`.

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
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
    let (used, capacity) = state.engine.window_usage();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(used, capacity),
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `GET /docs`: a readable reference rendered from the OpenAPI document (no external assets).
pub async fn docs() -> Html<String> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| render_docs(document())).clone())
}

fn render_docs(doc: &Value) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Webhook service API</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}\
         h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}.op{margin:1em 0;padding:.6em 1em;border:1px solid #e3e3e3;border-radius:6px}\
         .m{font-weight:bold;display:inline-block;min-width:4.5em}code{background:#f4f4f4;padding:0 .2em}\
         td{padding:.1em .6em;vertical-align:top}</style></head><body>",
    );
    let info = &doc["info"];
    let _ = write!(
        html,
        "<h1>{}</h1><p>{}</p><p>Machine-readable: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>. \
         User routes take <code>Authorization: Bearer &lt;JWT&gt;</code>; <code>/internal</code> routes take the internal service secret.</p>",
        escape(info["title"].as_str().unwrap_or("")),
        escape(info["description"].as_str().unwrap_or(""))
    );
    let mut by_tag: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                let mut block = format!(
                    "<div class=\"op\"><span class=\"m\">{}</span><code>{}</code><p>{}</p>",
                    method.to_uppercase(),
                    escape(path),
                    escape(
                        op["description"]
                            .as_str()
                            .or(op["summary"].as_str())
                            .unwrap_or("")
                    )
                );
                if let Some(params) = op["parameters"].as_array() {
                    block.push_str("<table>");
                    for p in params {
                        let _ = write!(
                            block,
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                            escape(p["name"].as_str().unwrap_or("")),
                            escape(p["in"].as_str().unwrap_or("")),
                            escape(p["description"].as_str().unwrap_or(""))
                        );
                    }
                    block.push_str("</table>");
                }
                if let Some(responses) = op["responses"].as_object() {
                    block.push_str("<table>");
                    for (code, r) in responses {
                        let _ = write!(
                            block,
                            "<tr><td>{}</td><td>{}</td></tr>",
                            escape(code),
                            escape(r["description"].as_str().unwrap_or(""))
                        );
                    }
                    block.push_str("</table>");
                }
                block.push_str("</div>");
                by_tag.entry(tag).or_default().push(block);
            }
        }
    }
    for (tag, blocks) in by_tag {
        let _ = write!(html, "<h2>{}</h2>", escape(&tag));
        for b in blocks {
            html.push_str(&b);
        }
    }
    html.push_str("</body></html>");
    html
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
