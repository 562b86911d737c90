//! Ingest routes: `/internal/webhooks/trigger`, `/internal/events/batch` and
//! `/api/v1/events`. Each answers only after the events and their deliveries
//! are durably committed.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use webhook_domain::envelope::{Event, EventInput, ValidationErrors};
use webhook_domain::ids::{DeliveryId, EventId};
use webhook_domain::timefmt::now_ms;

use super::AppState;
use super::error::{ApiError, FieldProblem, ok};
use super::extract::{ApiJson, MAX_BATCH_BODY, MAX_BODY, bad_field};
use crate::engine::Accepted;

/// Events per batch request at most.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Largest event accepted, in bytes of its JSON text: the trigger route's
/// body limit, applied to each event of a batch as well, so that no route
/// stores an event another would refuse.
pub const MAX_EVENT: usize = MAX_BODY;

/// The field of a problem with a batch's event as a whole (its size, its shape).
const WHOLE_EVENT: &str = "event";

/// The problems of one event, each naming its field.
fn problems(errors: ValidationErrors) -> Vec<FieldProblem> {
    errors
        .0
        .into_iter()
        .map(|e| FieldProblem::new(e.field, e.message))
        .collect()
}

fn invalid(errors: ValidationErrors) -> ApiError {
    // An unknown type's message lists the known ones; `GET /api/v1/event-types`
    // has them with descriptions. The producers log errors and drop them.
    ApiError::validation(problems(errors))
}

/// Reads and checks one event of a batch, or says what is wrong with it,
/// as a single event on the trigger route would be told (413 aside).
fn batch_event(raw: &RawValue, now: i64) -> Result<Event, Vec<FieldProblem>> {
    let len = raw.get().len();
    if len > MAX_EVENT {
        return Err(vec![FieldProblem::new(
            WHOLE_EVENT,
            format!(
                "event is {len} bytes of JSON; at most {MAX_EVENT} bytes ({} KiB) are accepted per event, as on /internal/webhooks/trigger",
                MAX_EVENT / 1024
            ),
        )]);
    }
    let input = serde_json::from_str::<EventInput>(raw.get()).map_err(|e| {
        vec![match bad_field::<EventInput>(raw.get().as_bytes()) {
            Some((field, problem)) => FieldProblem::new(&field, format!("{field}: {problem}")),
            None => FieldProblem::new(
                WHOLE_EVENT,
                format!("event is not an object of the expected shape: {e}"),
            ),
        }]
    })?;
    input.validate(now).map_err(problems)
}

/// What one stored event answers: `{eventId, deliveries, deliveryIds, duplicate}`,
/// plus `index` and `success` in a batch's results.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedBody<'a> {
    event_id: &'a EventId,
    deliveries: usize,
    delivery_ids: &'a [DeliveryId],
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
}

impl<'a> AcceptedBody<'a> {
    fn new(a: &'a Accepted) -> Self {
        AcceptedBody {
            event_id: &a.event_id,
            deliveries: a.deliveries.len(),
            delivery_ids: &a.deliveries,
            duplicate: a.duplicate,
            index: None,
            success: None,
        }
    }
}

/// One entry of a batch's `results`, in request order.
#[derive(Serialize)]
#[serde(untagged)]
enum BatchResult<'a> {
    Accepted(AcceptedBody<'a>),
    Rejected {
        index: usize,
        success: bool,
        errors: Vec<FieldProblem>,
    },
}

/// The `data` of a batch answer.
#[derive(Serialize)]
struct BatchSummary<'a> {
    accepted: usize,
    rejected: usize,
    results: Vec<BatchResult<'a>>,
}

async fn ingest_one(state: &AppState, input: EventInput) -> Result<Response, ApiError> {
    let event = input.validate(now_ms()).map_err(|e| {
        state.metrics.events_rejected.fetch_add(1, Relaxed);
        invalid(e)
    })?;
    let accepted = state.engine.ingest(vec![event]).await?;
    let Some(a) = accepted.first() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
        ));
    };
    if a.duplicate {
        Ok(ok(
            StatusCode::OK,
            AcceptedBody::new(a),
            Some("Duplicate event id: the first event was kept and is not delivered again"),
            None,
        ))
    } else {
        Ok(ok(
            StatusCode::ACCEPTED,
            AcceptedBody::new(a),
            Some("Event accepted"),
            None,
        ))
    }
}

/// `POST /internal/webhooks/trigger`: the route the platform's producers call.
#[utoipa::path(post, path = "/internal/webhooks/trigger", tag = "ingest",
    request_body(content = Object, description = "{eventType, userId, data, metadata?}"),
    responses((status = 202, description = "Stored durably with its deliveries: {eventId, deliveries}"),
              (status = 400, description = "Invalid event, naming each bad field (unknown types list the known ones)"),
              (status = 413, description = "Body over 1 MiB"),
              (status = 503, description = "Store unavailable; the event was not stored")),
    security(("internal" = [])))]
pub async fn trigger(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<Response, ApiError> {
    ingest_one(&state, input).await
}

/// `POST /api/v1/events`: the same body plus an optional `id` (idempotent); admin token or internal secret.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    request_body(content = Object, description = "{id?, eventType, userId, data, metadata?}"),
    responses((status = 202, description = "Stored durably"), (status = 200, description = "Duplicate id: the first event"),
              (status = 400), (status = 403, description = "Not an admin")),
    security(("bearer" = []), ("internal" = [])))]
pub async fn create_event(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<Response, ApiError> {
    ingest_one(&state, input).await
}

/// Body of the batch route.
#[derive(Debug, Deserialize)]
pub struct BatchBody {
    /// Kept as raw JSON text, each parsed on its own below: a `Value` first
    /// built every event's payload twice (the tree, then the event's copy).
    events: Option<Vec<Box<RawValue>>>,
}

/// `POST /internal/events/batch`: up to 1000 events, each validated on its own.
#[utoipa::path(post, path = "/internal/events/batch", tag = "ingest",
    request_body(content = Object, description = "{events: [{eventType, userId, data, metadata?, id?}, ...]}"),
    responses((status = 202, description = "At least one event stored; a result per event"),
              (status = 400, description = "No valid event; a result per event")),
    security(("internal" = [])))]
pub async fn batch(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BatchBody, MAX_BATCH_BODY>,
) -> Result<Response, ApiError> {
    let Some(events) = body.events else {
        return Err(ApiError::field(
            "events",
            "events is required (an array of events)",
        ));
    };
    if events.is_empty() {
        return Err(ApiError::field(
            "events",
            "events must contain at least one event",
        ));
    }
    let events_len = events.len();
    if events_len > MAX_BATCH_EVENTS {
        return Err(ApiError::field(
            "events",
            format!(
                "events has {} entries; at most {MAX_BATCH_EVENTS} are accepted per request",
                events_len
            ),
        ));
    }
    let now = now_ms();
    // Rejections in request order; the accepted slots are filled after the commit.
    let mut rejections: Vec<Option<Vec<FieldProblem>>> = Vec::with_capacity(events_len);
    let mut valid: Vec<Event> = Vec::with_capacity(events_len);
    for raw in events {
        match batch_event(&raw, now) {
            Ok(event) => {
                valid.push(event);
                rejections.push(None);
            }
            Err(errors) => {
                state.metrics.events_rejected.fetch_add(1, Relaxed);
                rejections.push(Some(errors));
            }
        }
    }
    let accepted_count = valid.len();
    let accepted = if accepted_count > 0 {
        state.engine.ingest(valid).await?
    } else {
        Vec::new()
    };
    let mut stored = accepted.iter();
    let results = rejections
        .into_iter()
        .enumerate()
        .filter_map(|(index, rejection)| match rejection {
            Some(errors) => Some(BatchResult::Rejected {
                index,
                success: false,
                errors,
            }),
            None => stored.next().map(|a| {
                BatchResult::Accepted(AcceptedBody {
                    index: Some(index),
                    success: Some(true),
                    ..AcceptedBody::new(a)
                })
            }),
        })
        .collect();
    let rejected = events_len - accepted_count;
    let summary = BatchSummary {
        accepted: accepted_count,
        rejected,
        results,
    };
    if accepted_count == 0 {
        // The same `details` as every other error: each problem, its field
        // prefixed with the event's place in the batch.
        let details = summary
            .results
            .into_iter()
            .filter_map(|result| match result {
                BatchResult::Rejected { index, errors, .. } => Some((index, errors)),
                BatchResult::Accepted(_) => None,
            })
            .flat_map(|(index, errors)| {
                errors.into_iter().map(move |p| {
                    let field = if p.field == WHOLE_EVENT {
                        format!("events[{index}]")
                    } else {
                        format!("events[{index}].{}", p.field)
                    };
                    FieldProblem::new(field, p.message)
                })
            })
            .collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("No event in the batch is valid ({rejected} rejected); see error.details"),
        )
        .with_details(details));
    }
    Ok(ok(
        StatusCode::ACCEPTED,
        summary,
        Some(&format!(
            "{accepted_count} events accepted, {rejected} rejected"
        )),
        None,
    ))
}
