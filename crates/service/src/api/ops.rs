//! Operations routes: `/health`, `/metrics`, `/api/v1/openapi.json`, `/docs`.

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::AppState;
use super::openapi::ApiDoc;

/// `GET /health`: 200 when the store answers, 503 with the reason otherwise.
pub async fn health(State(state): State<AppState>) -> Response {
    let store = if state.config.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
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
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "store": store, "reason": "the store is unreachable"})),
            )
                .into_response()
        }
    }
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
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
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
