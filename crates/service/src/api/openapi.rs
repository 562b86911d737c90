//! The OpenAPI document, generated from the handlers' annotations.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use webhook_domain::event_type::{MAX_SUBSCRIPTION_PATTERNS, catalogue};
use webhook_domain::ids::MAX_ID_LEN;
use webhook_domain::webhook::{MAX_DESCRIPTION_LEN, MAX_SECRET_LEN, MAX_URL_LEN, MIN_SECRET_LEN};

use super::events::MAX_BATCH_EVENTS;
use super::extract::{MAX_LIMIT, MAX_PAGE};
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
        super::controls::filter_test,
        deliveries::list, deliveries::get_one, deliveries::retry, deliveries::replay,
        deliveries::webhook_stats, deliveries::overall_stats, deliveries::test_send, super::ordering::get_ordering,
        events::trigger, events::create_event, events::batch,
        crate::portal::link::create_link, crate::portal::stats::hourly_stats,
        crate::portal::stats::platform_hourly_stats,
    ),
    components(schemas(webhooks::WebhookView, webhooks::CircuitBody, super::controls::ControlsView, super::controls::FilterTestBody, webhooks::WebhookBody, webhooks::ToggleBody, deliveries::ReplayBody, deliveries::TestBody, super::error::FieldProblem, crate::portal::link::LinkBody)),
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

/// Merges the properties of the structs a schema flattens (utoipa writes
/// them as an `allOf` of references) into the schema itself, so that the
/// body is one object whose every field is listed in `properties`, which
/// `additionalProperties: false` and the field constraints below rely on.
fn inline_flattened(schemas: &mut Map<String, Value>, names: &[&str]) {
    for name in names {
        let Some(parts) = schemas
            .get_mut(*name)
            .and_then(Value::as_object_mut)
            .and_then(|s| s.remove("allOf"))
        else {
            continue;
        };
        let mut properties = Map::new();
        let mut required = Vec::new();
        for part in parts.as_array().into_iter().flatten() {
            // A flattened struct is a `$ref`, possibly wrapped in a `oneOf`.
            let reference = part
                .get("$ref")
                .or_else(|| part.pointer("/oneOf/0/$ref"))
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"));
            let source = match reference {
                Some(target) => schemas.get(target).cloned().unwrap_or(Value::Null),
                None => part.clone(),
            };
            if let Some(props) = source.get("properties").and_then(Value::as_object) {
                properties.extend(props.clone());
            }
            if let Some(list) = source.get("required").and_then(Value::as_array) {
                required.extend(list.iter().cloned());
            }
        }
        if let Some(schema) = schemas.get_mut(*name).and_then(Value::as_object_mut) {
            schema.insert("type".into(), json!("object"));
            schema.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".into(), Value::Array(required));
            }
        }
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
        super::controls::add_examples(schemas);
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        inline_flattened(schemas, &["WebhookBody", "WebhookView"]);
        constrain_bodies(schemas);
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in item.values_mut().filter_map(Value::as_object_mut) {
            complete_operation(operation);
            constrain_parameters(operation);
        }
    }
    for (path, schema) in [
        ("/api/v1/webhooks", "WebhookCreateBody"),
        ("/internal/webhooks/trigger", "EventBody"),
        ("/api/v1/events", "EventBody"),
        ("/internal/events/batch", "BatchBody"),
    ] {
        if let Some(body) = paths
            .get_mut(path)
            .and_then(|item| item.get_mut("post"))
            .and_then(|op| op.pointer_mut("/requestBody/content/application~1json"))
        {
            body["schema"] = json!({ "$ref": format!("#/components/schemas/{schema}") });
        }
    }
    // Actions whose body is optional (`OptionalJson`).
    for path in [
        "/api/v1/webhooks/{id}/toggle",
        "/api/v1/webhooks/{id}/rotate-secret",
        "/api/v1/webhooks/{id}/deliveries/{deliveryId}/retry",
        "/api/v1/webhooks/{id}/test",
    ] {
        if let Some(body) = paths
            .get_mut(path)
            .and_then(|item| item.pointer_mut("/post/requestBody"))
            .and_then(Value::as_object_mut)
        {
            body.insert("required".into(), Value::Bool(false));
        }
    }
    for (path, method) in [
        ("/api/v1/webhooks/{id}/rotate-secret", "post"),
        (
            "/api/v1/webhooks/{id}/deliveries/{deliveryId}/retry",
            "post",
        ),
    ] {
        if let Some(body) = paths
            .get_mut(path)
            .and_then(|item| item.get_mut(method))
            .and_then(|op| op.pointer_mut("/requestBody/content/application~1json"))
        {
            body["schema"] = json!({"$ref": "#/components/schemas/NoFields"});
        }
    }
    add_aliases(paths);
    unique_operation_ids(paths);
    link_created_webhook(paths);
    link_test_delivery(paths);
    doc
}

/// OpenAPI links from a test send's `deliveryId` to the operations on that
/// delivery: a test send is the one way a client makes a delivery exist.
fn link_test_delivery(paths: &mut Map<String, Value>) {
    // The operation ids of `deliveries::get_one` and `deliveries::retry`.
    let links: Map<String, Value> = ["get_delivery", "retry"]
        .into_iter()
        .map(|id| {
            let link = json!({
                "operationId": id,
                "parameters": {
                    "id": "$request.path.id",
                    "deliveryId": "$response.body#/data/deliveryId",
                },
            });
            (id.to_string(), link)
        })
        .collect();
    if let Some(sent) = paths
        .get_mut("/api/v1/webhooks/{id}/test")
        .and_then(|item| item.pointer_mut("/post/responses/200"))
        .and_then(Value::as_object_mut)
    {
        sent.insert("links".into(), Value::Object(links));
    }
}

/// What the server checks of the query parameters, by name (the same names
/// mean the same thing on every route), so that a client generated from the
/// document, or a tester, does not send what is refused.
fn constrain_parameters(operation: &mut Map<String, Value>) {
    let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for parameter in parameters.iter_mut().filter(|p| p["in"] == "query") {
        let schema = match parameter["name"].as_str() {
            Some("limit") => json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
            Some("page") => json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            Some("offset") => json!({"type": "integer", "minimum": 0, "maximum": u64::MAX / 2}),
            Some("window") => json!({
                "type": "string",
                // parse_duration: digits, then ms (the default), s, m, h or d.
                // At most 11 digits, so that even days fit in milliseconds.
                // Empty: the default.
                "pattern": "^([0-9]{1,11} ?(ms|s|m|h|d)?)?$",
                "example": "24h",
            }),
            Some("status") => {
                json!({"type": "string", "enum": ["pending", "retrying", "delivered", "failed"]})
            }
            // Empty: no bound.
            Some("since" | "until") => json!({"anyOf": [
                timestamp_schema(),
                {"type": "string", "maxLength": 0},
            ]}),
            _ => continue,
        };
        parameter["schema"] = schema;
    }
}

/// What `parse_timestamp` reads: RFC 3339, or unix seconds (up to 10
/// digits) or milliseconds.
fn timestamp_schema() -> Value {
    json!({"anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[0-9]{1,15}$"},
    ]})
}

/// Every entry a subscription may hold: the types, the `category.*`
/// patterns and `*`.
fn subscription_entries() -> Vec<String> {
    let mut categories: Vec<&str> = catalogue().iter().map(|t| t.category).collect();
    categories.dedup();
    catalogue()
        .iter()
        .map(|t| t.name.to_string())
        .chain(categories.iter().map(|c| format!("{c}.*")))
        .chain(std::iter::once("*".to_string()))
        .collect()
}

/// The URLs `WebhookUrl` takes as written, in every mode: https (plain http
/// only in `--dev` or for allow-listed destinations), a host name of DNS labels whose
/// last starts with a letter (numeric hosts are IP literals, checked
/// against the address policy), an optional port, then a path or query of
/// the characters RFC 3986 allows, which the URL parser keeps as they are
/// (so that the 2048 characters hold after its normalisation too). The
/// server takes more than this, and checks more (every resolved address).
const URL_PATTERN: &str = r"^https://([A-Za-z0-9-]{1,63}\.)*[A-Za-z][A-Za-z0-9-]{0,62}\.?(:[1-9][0-9]{0,3})?([/?][A-Za-z0-9\-._~:/?\[\]@!$&()*+,;=%]*)?$";

/// The bodies' constraints that the derived schemas leave out: lengths and
/// closed sets of values, unknown fields refused (`additionalProperties`),
/// and a create body of its own, which requires `url` and the event types
/// under either of their names.
fn constrain_bodies(schemas: &mut Map<String, Value>) {
    let types = json!({
        "type": ["array", "null"],
        "minItems": 1,
        "maxItems": MAX_SUBSCRIPTION_PATTERNS,
        "items": {"type": "string", "enum": subscription_entries()},
    });
    let names: Vec<&str> = catalogue().iter().map(|t| t.name).collect();
    let mut set = |schema: &str, field: &str, value: Value| {
        if let Some(property) = schemas
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut)
        {
            for (key, value) in value.as_object().into_iter().flatten() {
                property.insert(key.clone(), value.clone());
            }
        }
    };
    set(
        "WebhookBody",
        "url",
        // One less than the limit: the parser adds the `/` of an empty path.
        json!({"maxLength": MAX_URL_LEN - 1, "pattern": URL_PATTERN}),
    );
    set("WebhookBody", "eventTypes", types.clone());
    set("WebhookBody", "events", types);
    set(
        "WebhookBody",
        "secret",
        json!({"minLength": MIN_SECRET_LEN, "maxLength": MAX_SECRET_LEN, "pattern": "^[!-~]*$"}),
    );
    set(
        "WebhookBody",
        "description",
        // Control characters but tab and line breaks are refused.
        json!({"maxLength": MAX_DESCRIPTION_LEN, "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"}),
    );
    set(
        "WebhookBody",
        "scope",
        json!({"enum": ["user", "all", null]}),
    );
    // Absent or null: `user.created`.
    let mut test_types = json!(names);
    if let Some(list) = test_types.as_array_mut() {
        list.push(Value::Null);
    }
    set("TestBody", "eventType", json!({ "enum": test_types }));
    set("ReplayBody", "since", timestamp_schema());
    set(
        "ReplayBody",
        "until",
        json!({"anyOf": [timestamp_schema(), {"type": "null"}]}),
    );
    set(
        "ReplayBody",
        "status",
        json!({"enum": ["pending", "retrying", "delivered", "failed", "all", null]}),
    );
    for name in ["WebhookBody", "TestBody", "ReplayBody", "ToggleBody"] {
        if let Some(schema) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            schema.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    if let Some(schema) = schemas.get_mut("ReplayBody").and_then(Value::as_object_mut) {
        schema.insert("required".into(), json!(["since"]));
    }
    // Read by `OptionalJson`: `null` reads as no fields. (The toggle's body
    // is documented as an optional `ToggleBody`, which allows null already.)
    if let Some(schema) = schemas.get_mut("TestBody").and_then(Value::as_object_mut) {
        schema.insert("type".into(), json!(["object", "null"]));
    }
    // `events` is another name for `eventTypes`: two different lists are
    // refused (the same list under both names is tolerated).
    if let Some(schema) = schemas
        .get_mut("WebhookBody")
        .and_then(Value::as_object_mut)
    {
        schema.insert(
            "not".into(),
            json!({
                "required": ["eventTypes", "events"],
                "properties": {"eventTypes": {"type": "array"}, "events": {"type": "array"}},
            }),
        );
    }
    if let Some(mut create) = schemas.get("WebhookBody").cloned() {
        create["description"] =
            json!("A new webhook: `url` and `eventTypes` (or its alias `events`) are required.");
        create["required"] = json!(["url"]);
        if let Some(url) = create.pointer_mut("/properties/url") {
            url["type"] = json!("string");
        }
        create["anyOf"] = json!([
            {"required": ["eventTypes"], "properties": {"eventTypes": {"type": "array"}}},
            {"required": ["events"], "properties": {"events": {"type": "array"}}},
        ]);
        schemas.insert("WebhookCreateBody".into(), create);
    }
    schemas.insert("EventBody".into(), event_body_schema(&names));
    schemas.insert(
        "BatchBody".into(),
        json!({
            "type": "object",
            "required": ["events"],
            "properties": {"events": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_EVENTS,
                "items": {"$ref": "#/components/schemas/EventBody"},
                "description": "Each event is checked on its own and answered at its index.",
            }},
        }),
    );
    schemas.insert(
        "NoFields".into(),
        json!({
            "type": ["object", "null"],
            "description": "No fields: send no body, `{}` or `null`.",
            "additionalProperties": false,
        }),
    );
}

/// An event as the producers post it. Unknown top-level fields are ignored
/// on the ingest routes (so `additionalProperties` is left open).
fn event_body_schema(names: &[&str]) -> Value {
    json!({
        "type": "object",
        "required": ["eventType", "userId", "data"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": format!("^[A-Za-z0-9_.:-]{{1,{MAX_ID_LEN}}}$"),
                "description": "Your own event id (idempotent on POST /api/v1/events); generated when absent.",
            },
            "eventType": {"type": "string", "enum": names},
            "userId": {
                "type": "string",
                "maxLength": MAX_ID_LEN,
                // Not blank, no control characters.
                "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
            },
            "data": {"type": "object", "description": "The payload, sent to receivers as written (at most 128 levels deep)."},
            "metadata": {"type": ["object", "null"], "description": "`service` and `timestamp` are filled in when absent."},
        },
    })
}

/// OpenAPI links from the `id` of a created webhook to every operation on
/// `/api/v1/webhooks/{id}...` that needs no other path parameter, so that
/// clients and stateful testers can follow a webhook from its creation.
fn link_created_webhook(paths: &mut Map<String, Value>) {
    let mut links = Map::new();
    for (path, item) in paths.iter() {
        if !path.starts_with("/api/v1/webhooks/{id}") || path.matches('{').count() != 1 {
            continue;
        }
        for operation in item.as_object().into_iter().flat_map(|m| m.values()) {
            let Some(id) = operation["operationId"].as_str() else {
                continue;
            };
            if id.ends_with("_alias") {
                continue;
            }
            links.insert(
                id.to_string(),
                json!({
                    "operationId": id,
                    "parameters": {"id": "$response.body#/data/id"},
                    "description": format!("The created webhook's `id` as `{{id}}` of {path}"),
                }),
            );
        }
    }
    if let Some(created) = paths
        .get_mut("/api/v1/webhooks")
        .and_then(|item| item.pointer_mut("/post/responses/201"))
        .and_then(Value::as_object_mut)
    {
        created.insert("links".into(), Value::Object(links));
    }
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
    // 400 covers a refused request of every kind: the document says what
    // the server checks, but not every check (a URL's destination, say).
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
            "total": {"type": "integer", "minimum": 0,
                      "description": "Rows matching. A delivery log counts up to 10,000 (or one past the page, if further): at that count, totalExact is false and total means at least."},
            "page": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1},
            "offset": {"type": "integer", "minimum": 0},
            "hasMore": {"type": "boolean"},
            "totalExact": {"type": "boolean", "description": "Delivery logs only: false when the count stopped at its cap."},
        },
    })
}
