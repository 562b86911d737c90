//! A webhook's delivery controls in the API: reading them from a create or
//! update body (every refusal names the field and what is allowed), showing
//! them in reads, and `POST /api/v1/webhooks/filter-test`.

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use webhook_domain::filter::PayloadFilter;
use webhook_domain::ordering::{DeliveryOrder, FIFO, OrderingKey};
use webhook_domain::retry::{MAX_RETRIES, RetrySchedule};

use super::AppState;
use super::error::{ApiError, FieldProblem, ok};
use super::extract::{KnownFields, StrictJson};
use crate::auth::Principal;
use crate::store::{ControlsPatch, DeliveryControls};

/// Highest `rateLimitPerSecond` accepted.
pub const MAX_RATE_LIMIT: u64 = 10_000;
/// Longest single wait of a webhook's retry schedule, as for `WEBHOOK_RETRY_SCHEDULE`.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30 * 86_400);

/// The controls of a create or update body, as sent (`null` kept as
/// `Some(Value::Null)`, which clears a control).
#[derive(Debug, Default)]
pub struct ControlsBody {
    /// `filter`.
    pub filter: Option<Value>,
    /// `rateLimitPerSecond`.
    pub rate_limit_per_second: Option<Value>,
    /// `retrySchedule`.
    pub retry_schedule: Option<Value>,
    /// `timeoutMs`.
    pub timeout_ms: Option<Value>,
    /// `ordering`.
    pub ordering: Option<Value>,
    /// `orderingKey`.
    pub ordering_key: Option<Value>,
}

fn problem(field: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// A whole number in `1..=max`, or a problem naming `field`.
fn whole(field: &str, value: &Value, max: u64, unit: &str) -> Result<u64, FieldProblem> {
    value
        .as_u64()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            problem(
                field,
                format!("{field} must be a whole number of {unit} from 1 to {max}, or null"),
            )
        })
}

fn retry_schedule(value: &Value) -> Result<RetrySchedule, FieldProblem> {
    const FIELD: &str = "retrySchedule";
    let text = match value {
        Value::Array(items) => {
            let entries: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            match entries {
                Some(entries) if !entries.iter().any(|e| e.contains(',')) => entries.join(","),
                _ => {
                    return Err(problem(
                        FIELD,
                        "retrySchedule must be an array of durations such as [\"5s\", \"1m\", \"10m\"], or null",
                    ));
                }
            }
        }
        // The setting's own syntax, `5s,1m,10m`, is accepted as well.
        Value::String(text) => text.clone(),
        _ => {
            return Err(problem(
                FIELD,
                "retrySchedule must be an array of durations such as [\"5s\", \"1m\", \"10m\"], or null",
            ));
        }
    };
    let schedule = RetrySchedule::parse(&text).map_err(|e| {
        problem(
            FIELD,
            format!("retrySchedule: {e} (1 to {MAX_RETRIES} waits of ms, s, m, h or d)"),
        )
    })?;
    if schedule.delays().iter().any(|d| *d > MAX_RETRY_WAIT) {
        return Err(problem(
            FIELD,
            "retrySchedule: each wait may be at most 30d",
        ));
    }
    Ok(schedule)
}

/// `ordering` with its `orderingKey`: `Some(None)` clears the ordering.
///
/// `orderingKey` says what one order covers, so it means something only
/// with `"ordering": "fifo"` in the same body; alone it is refused rather
/// than guessed at.
fn ordering(
    ordering: Option<Value>,
    key: Option<Value>,
) -> Result<Option<Option<DeliveryOrder>>, FieldProblem> {
    const KEY_VALUES: &str = "orderingKey must be \"webhook\" or \"userId\"";
    let key = match key {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            Some(OrderingKey::parse(&text).map_err(|_| problem("orderingKey", KEY_VALUES))?)
        }
        Some(_) => return Err(problem("orderingKey", KEY_VALUES)),
    };
    match ordering {
        None | Some(Value::Null) if key.is_some() => Err(problem(
            "orderingKey",
            "orderingKey needs \"ordering\": \"fifo\" in the same body",
        )),
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) if text == FIFO => {
            Ok(Some(Some(DeliveryOrder::Fifo(key.unwrap_or_default()))))
        }
        Some(_) => Err(problem(
            "ordering",
            "ordering must be \"fifo\" (deliveries one at a time, in acknowledgement order) or null",
        )),
    }
}

impl ControlsBody {
    /// Validates every control sent, adding a problem per bad one.
    pub fn parse(self, max_timeout: Duration, problems: &mut Vec<FieldProblem>) -> ControlsPatch {
        let mut patch = ControlsPatch::default();
        match self.filter {
            None => {}
            Some(Value::Null) => patch.filter = Some(None),
            Some(document) => match PayloadFilter::parse(document) {
                Ok(filter) => patch.filter = Some(Some(filter)),
                Err(e) => problems.push(problem(&format!("filter{}", e.path), e.to_string())),
            },
        }
        match self.rate_limit_per_second {
            None => {}
            Some(Value::Null) => patch.rate_limit_per_second = Some(None),
            Some(v) => match whole(
                "rateLimitPerSecond",
                &v,
                MAX_RATE_LIMIT,
                "deliveries a second",
            ) {
                // Within u32 by the bound just checked.
                Ok(n) => patch.rate_limit_per_second = Some(Some(n as u32)),
                Err(p) => problems.push(p),
            },
        }
        match self.retry_schedule {
            None => {}
            Some(Value::Null) => patch.retry_schedule = Some(None),
            Some(v) => match retry_schedule(&v) {
                Ok(s) => patch.retry_schedule = Some(Some(s)),
                Err(p) => problems.push(p),
            },
        }
        match self.timeout_ms {
            None => {}
            Some(Value::Null) => patch.timeout = Some(None),
            Some(v) => {
                let max = max_timeout.as_millis() as u64;
                match whole("timeoutMs", &v, max, "milliseconds") {
                    Ok(ms) => patch.timeout = Some(Some(Duration::from_millis(ms))),
                    Err(p) => problems.push(p),
                }
            }
        }
        match ordering(self.ordering, self.ordering_key) {
            Ok(change) => patch.ordering = change,
            Err(p) => problems.push(p),
        }
        patch
    }
}

/// A webhook's delivery controls as reads show them (`null`: as the service is configured).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlsView {
    /// Payload filter: only matching events are delivered.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Most deliveries started per second.
    #[schema(example = 50)]
    pub rate_limit_per_second: Option<u32>,
    /// Waits before each retry (overrides `WEBHOOK_RETRY_SCHEDULE`).
    #[schema(example = json!(["5s", "1m", "10m"]))]
    pub retry_schedule: Option<Vec<String>>,
    /// Whole-attempt timeout (overrides `WEBHOOK_TIMEOUT`).
    #[schema(example = 5000)]
    pub timeout_ms: Option<u64>,
    /// `"fifo"`: one delivery at a time, in acknowledgement order.
    #[schema(example = "fifo")]
    pub ordering: Option<String>,
    /// What one FIFO order covers: `"webhook"` or `"userId"`.
    #[schema(example = "userId")]
    pub ordering_key: Option<String>,
}

impl From<&DeliveryControls> for ControlsView {
    fn from(c: &DeliveryControls) -> Self {
        ControlsView {
            filter: c.filter.as_ref().map(|f| f.document().clone()),
            rate_limit_per_second: c.rate_limit_per_second,
            retry_schedule: c.retry_schedule.as_ref().map(|s| {
                s.delays()
                    .iter()
                    .map(|d| webhook_domain::retry::format_duration(*d))
                    .collect()
            }),
            timeout_ms: c.timeout.map(|t| t.as_millis() as u64),
            ordering: c.ordering.map(|o| o.to_string()),
            ordering_key: c.ordering.map(|o| o.key().as_str().to_owned()),
        }
    }
}

/// The example filter of the OpenAPI document.
fn example_filter() -> Value {
    json!({"data": {"balance": {"$lt": 10}, "plan": {"$in": ["pro", "team"]}}})
}

/// Adds the examples of object-typed fields, which utoipa leaves out of
/// the document (it keeps them for scalars and arrays only).
pub(super) fn add_examples(schemas: &mut serde_json::Map<String, Value>) {
    let examples = [
        ("WebhookBody", "filter", example_filter()),
        ("ControlsView", "filter", example_filter()),
        ("WebhookView", "filter", example_filter()),
        ("FilterTestBody", "filter", example_filter()),
        (
            "FilterTestBody",
            "event",
            json!({"eventType": "credit.low_balance", "userId": "user_1", "data": {"balance": 5, "plan": "pro"}}),
        ),
    ];
    for (schema, field, example) in examples {
        if let Some(property) = schemas.get_mut(schema).and_then(|s| property_mut(s, field)) {
            property.insert("example".into(), example);
        }
    }
}

/// `field`'s schema among `schema`'s properties, or those of its `allOf`
/// parts (a body with flattened fields is documented as an `allOf`).
fn property_mut<'a>(
    schema: &'a mut Value,
    field: &str,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    if schema.pointer(&format!("/properties/{field}")).is_some() {
        return schema
            .pointer_mut(&format!("/properties/{field}"))
            .and_then(Value::as_object_mut);
    }
    schema
        .get_mut("allOf")?
        .as_array_mut()?
        .iter_mut()
        .find_map(|part| {
            part.pointer_mut(&format!("/properties/{field}"))
                .and_then(Value::as_object_mut)
        })
}

/// Body of `POST /api/v1/webhooks/filter-test`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct FilterTestBody {
    /// The filter to try.
    #[schema(value_type = Object)]
    filter: Option<Value>,
    /// A sample envelope: `id`, `eventType`, `userId`, `data`, `metadata`.
    #[schema(value_type = Object)]
    event: Option<Value>,
}

impl KnownFields for FilterTestBody {
    const FIELDS: &'static [&'static str] = &["filter", "event"];
}

/// `POST /api/v1/webhooks/filter-test`: whether a filter matches a sample event.
#[utoipa::path(post, path = "/api/v1/webhooks/filter-test", tag = "webhooks", request_body = FilterTestBody,
    responses((status = 200, description = "`{matches: bool}`"),
              (status = 400, description = "The filter is invalid (the problem names its path and operator) or the event is not an object")),
    security(("bearer" = [])))]
pub async fn filter_test(
    State(_state): State<AppState>,
    Extension(_p): Extension<Principal>,
    StrictJson(body): StrictJson<FilterTestBody>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let filter = match body.filter {
        None | Some(Value::Null) => {
            problems.push(problem("filter", "filter is required (a JSON object)"));
            None
        }
        Some(document) => match PayloadFilter::parse(document) {
            Ok(f) => Some(f),
            Err(e) => {
                problems.push(problem(&format!("filter{}", e.path), e.to_string()));
                None
            }
        },
    };
    let event = match body.event {
        Some(event @ Value::Object(_)) => Some(event),
        _ => {
            problems.push(problem(
                "event",
                "event is required: a JSON object shaped like the envelope (id, eventType, userId, data, metadata)",
            ));
            None
        }
    };
    let (Some(filter), Some(event)) = (filter, event) else {
        return Err(ApiError::validation(problems));
    };
    Ok(ok(
        StatusCode::OK,
        json!({"matches": filter.matches(&event)}),
        None,
        None,
    ))
}
