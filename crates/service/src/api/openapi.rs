//! The OpenAPI document, generated from the handlers' annotations.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{deliveries, events, webhooks};

/// The API description served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Smart AI Hub webhook service",
        description = "Register webhook endpoints, publish events, read delivery logs. Errors are `{success: false, error: {code, message, details?}, message}`.",
    ),
    paths(
        webhooks::create, webhooks::list, webhooks::get_one, webhooks::update, webhooks::delete,
        webhooks::toggle, webhooks::rotate_secret, webhooks::reveal_secret, webhooks::event_types,
        deliveries::list, deliveries::get_one, deliveries::retry, deliveries::replay,
        deliveries::webhook_stats, deliveries::overall_stats, deliveries::test_send,
        events::trigger, events::create_event, events::batch,
        crate::portal::link::create_link, crate::portal::stats::hourly_stats,
    ),
    components(schemas(webhooks::WebhookView, webhooks::WebhookBody, deliveries::ReplayBody, deliveries::TestBody, super::error::FieldProblem, crate::portal::link::LinkBody)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "internal",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as served: the handlers' annotations name the `data` of a
/// success, while every answer is wrapped in the envelope of `error.rs`; and
/// the layers in front of every handler (authentication, rate limit, JSON
/// body extraction) answer errors that the handlers do not annotate. Both are
/// added here once, so that the document matches what the wire carries.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("ErrorBody".into(), error_body_schema());
        schemas.insert("PageMeta".into(), page_meta_schema());
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in item.values_mut().filter_map(Value::as_object_mut) {
            complete_operation(operation);
        }
    }
    add_aliases(paths);
    unique_operation_ids(paths);
    doc
}

/// One handler serving two methods (`PUT` and `PATCH` of a webhook) has one
/// operation id in its annotation; OpenAPI wants each operation's id unique
/// (client generators name their functions by it), so a repeat gets its
/// method appended.
fn unique_operation_ids(paths: &mut Map<String, Value>) {
    let mut seen = std::collections::HashSet::new();
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (method, operation) in item.iter_mut() {
            let Some(Value::String(id)) = operation.get_mut("operationId") else {
                continue;
            };
            if !seen.insert(id.clone()) {
                id.push('_');
                id.push_str(method);
                seen.insert(id.clone());
            }
        }
    }
}

/// Routes served under a second name, because the platform's front end
/// calls them so (platform-compatibility.md), as `(alias, documented route)`.
const ALIASES: &[(&str, &str)] = &[
    (
        "/api/v1/webhooks/{id}/regenerate-secret",
        "/api/v1/webhooks/{id}/rotate-secret",
    ),
    (
        "/api/v1/webhooks/{id}/deliveries",
        "/api/v1/webhooks/{id}/logs",
    ),
    ("/api/v1/webhooks/event-types", "/api/v1/event-types"),
];

/// Documents each alias as a copy of its route, with an operation id of
/// its own (they must be unique) and a line saying what it is an alias of.
fn add_aliases(paths: &mut Map<String, Value>) {
    for (alias, route) in ALIASES {
        let Some(mut item) = paths.get(*route).cloned() else {
            continue;
        };
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|methods| methods.values_mut())
            .filter_map(Value::as_object_mut)
        {
            if let Some(Value::String(id)) = operation.get_mut("operationId") {
                id.push_str("_alias");
            }
            operation.insert(
                "description".into(),
                Value::String(format!("Alias of `{route}`, the same operation.")),
            );
        }
        paths.insert((*alias).to_string(), item);
    }
}

/// Responses of the layers in front of every handler.
const COMMON_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid query, path or body"),
    (
        "401",
        "Missing, malformed, expired or wrongly signed credentials",
    ),
    (
        "429",
        "Rate limit exceeded; see Retry-After and the RateLimit headers",
    ),
];

/// Responses of the JSON body extractor, for operations that take a body.
const BODY_ERRORS: &[(&str, &str)] = &[
    ("413", "Body larger than the limit"),
    ("415", "Body is not application/json"),
];

fn complete_operation(operation: &mut Map<String, Value>) {
    let takes_body = operation.contains_key("requestBody");
    let Some(responses) = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        if status.starts_with('2') {
            let data = response
                .get("content")
                .and_then(|c| c.get("application/json"))
                .and_then(|c| c.get("schema"))
                .cloned()
                .unwrap_or_else(|| json!({}));
            response.insert(
                "content".into(),
                json!({"application/json": {"schema": success_envelope(data)}}),
            );
        } else if !response.contains_key("content") {
            response.insert("content".into(), error_content());
        }
    }
    let extra = COMMON_ERRORS
        .iter()
        .chain(if takes_body { BODY_ERRORS } else { &[] });
    for (status, description) in extra {
        responses
            .entry(status.to_string())
            .or_insert_with(|| json!({"description": description, "content": error_content()}));
    }
}

fn success_envelope(data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["success", "data"],
        "properties": {
            "success": {"type": "boolean", "const": true},
            "data": data,
            "message": {"type": "string"},
            "meta": {"$ref": "#/components/schemas/PageMeta"},
        },
    })
}

fn error_content() -> Value {
    json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}})
}

fn error_body_schema() -> Value {
    json!({
        "type": "object",
        "description": "Every error: a machine-readable code and a message; details name invalid fields.",
        "required": ["success", "error", "message"],
        "properties": {
            "success": {"type": "boolean", "const": false},
            "message": {"type": "string"},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}},
                },
            },
        },
    })
}

fn page_meta_schema() -> Value {
    json!({
        "type": "object",
        "description": "Paging of a list.",
        "properties": {
            "total": {"type": "integer", "minimum": 0},
            "page": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1},
            "offset": {"type": "integer", "minimum": 0},
            "hasMore": {"type": "boolean"},
        },
    })
}
