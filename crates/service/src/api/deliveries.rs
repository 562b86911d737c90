//! Delivery logs, redelivery, statistics and test sends of a webhook.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::envelope::Event;
use webhook_domain::event_type::EventType;
use webhook_domain::ids::{DeliveryId, WebhookId};
use webhook_domain::retry::parse_duration;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms, parse_timestamp};

use super::AppState;
use super::error::{ApiError, ok};
use super::extract::{
    KnownFields, MAX_ACTION_BODY, NoFields, OptionalJson, Pagination, StrictJson,
};
use super::webhooks::visible_webhook;
use crate::auth::Principal;
use crate::engine::TestSendError;
use crate::engine::circuit::CircuitView;
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStats, Owner, StatsScope,
};

fn iso(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(format_rfc3339_millis(m)))
        .unwrap_or(Value::Null)
}

/// Whether this instance's circuit breaker holds `d` (it would be due
/// before the probe), and when it is attempted then.
///
/// While the circuit is open, a delivery due before the next probe waits
/// for it: its stored `nextAttemptAt` (in the past) is not when it goes.
/// While the probe is out, everything due waits for its answer.
fn held_by(circuit: &CircuitView, d: &DeliveryRecord, now: i64) -> Option<Option<i64>> {
    if !circuit.holds_deliveries()
        || !matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying)
    {
        return None;
    }
    let due = d.next_attempt_at.unwrap_or(d.created_at);
    match circuit.next_probe_at {
        Some(probe) if due <= probe => Some(Some(probe)),
        None if due <= now => Some(d.next_attempt_at),
        _ => None,
    }
}

fn delivery_json(d: &DeliveryRecord, circuit: &CircuitView, now: i64) -> Value {
    let held = held_by(circuit, d, now);
    let next_attempt_at = held.unwrap_or(d.next_attempt_at);
    json!({
        "id": d.id,
        "eventId": d.event_id,
        "webhookId": d.webhook_id,
        "eventType": d.event_type,
        "userId": d.user_id,
        "status": d.status,
        "attempts": d.attempts,
        "nextAttemptAt": iso(next_attempt_at),
        "heldByCircuit": held.is_some(),
        "lastStatusCode": d.last_status_code,
        "lastErrorKind": d.last_error_kind,
        "lastError": d.last_error,
        "lastDurationMs": d.last_duration_ms,
        "createdAt": iso(Some(d.created_at)),
        "updatedAt": iso(Some(d.updated_at)),
        "deliveredAt": iso(d.delivered_at),
    })
}

/// This instance's circuit breaker of `webhook`.
async fn webhook_circuit(state: &AppState, webhook: &WebhookId) -> CircuitView {
    state
        .engine
        .circuits(vec![webhook.clone()])
        .await
        .pop()
        .unwrap_or(CircuitView::CLOSED)
}

fn headers_object(headers: &[(String, String)]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn attempt_json(a: &AttemptRecord, d: &DeliveryRecord) -> Value {
    let sent = crate::engine::sent_headers(
        &a.request_headers,
        d.event_id.as_str(),
        &d.event_type,
        d.id.as_str(),
        a.attempt,
    );
    json!({
        "attempt": a.attempt,
        "startedAt": iso(Some(a.started_at)),
        "durationMs": a.duration_ms,
        "requestHeaders": headers_object(&sent),
        "statusCode": a.status_code,
        "responseHeaders": headers_object(&a.response_headers),
        "responseBody": a.response_body,
        "errorKind": a.error_kind,
        "errorMessage": a.error_message,
    })
}

fn parse_status(field: &str, text: &str) -> Result<DeliveryStatus, ApiError> {
    DeliveryStatus::parse(text).map_err(|_| {
        ApiError::field(
            field,
            format!("{field} must be one of pending, retrying, delivered, failed"),
        )
    })
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    parse_timestamp(text).ok_or_else(|| {
        ApiError::field(
            field,
            format!("{field} must be an ISO 8601 timestamp or unix time"),
        )
    })
}

fn filter_from_query(q: &HashMap<String, String>) -> Result<DeliveryFilter, ApiError> {
    let get = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    Ok(DeliveryFilter {
        status: get("status")
            .map(|s| parse_status("status", s))
            .transpose()?,
        event_type: get("eventType").map(String::from),
        since: get("since").map(|s| parse_time("since", s)).transpose()?,
        until: get("until").map(|s| parse_time("until", s)).transpose()?,
    })
}

/// `GET /api/v1/webhooks/{id}/logs` (alias `/deliveries`)
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/logs", tag = "deliveries", operation_id = "list_deliveries",
    params(("id" = String, Path), ("status" = Option<String>, Query), ("eventType" = Option<String>, Query),
           ("since" = Option<String>, Query), ("until" = Option<String>, Query),
           ("page" = Option<u32>, Query), ("limit" = Option<u32>, Query), ("offset" = Option<u64>, Query)),
    responses((status = 200, description = "Deliveries, newest first"), (status = 404)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let page = Pagination::from_query(&query)?;
    let filter = filter_from_query(&query)?;
    let result = state
        .store
        .list_deliveries(&webhook, filter, page.limit, page.offset)
        .await?;
    let circuit = webhook_circuit(&state, &webhook.id).await;
    let now = now_ms();
    let items: Vec<Value> = result
        .items
        .iter()
        .map(|d| delivery_json(d, &circuit, now))
        .collect();
    Ok(ok(
        StatusCode::OK,
        items,
        None,
        Some(page.meta_counted_up_to(
            result.total,
            crate::store::log_count_cap(page.limit, page.offset),
        )),
    ))
}

/// `GET /api/v1/webhooks/{id}/deliveries/{deliveryId}`
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries/{deliveryId}", tag = "deliveries", operation_id = "get_delivery",
    params(("id" = String, Path), ("deliveryId" = String, Path)),
    responses((status = 200, description = "The delivery, its event and every attempt"), (status = 404)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let delivery_id =
        DeliveryId::parse(&delivery_id).map_err(|_| ApiError::not_found("Delivery"))?;
    let detail = state
        .store
        .get_delivery(&webhook, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Delivery"))?;
    let circuit = webhook_circuit(&state, &webhook.id).await;
    let mut body = delivery_json(&detail.delivery, &circuit, now_ms());
    body["event"] = serde_json::from_slice(&detail.payload).unwrap_or(Value::Null);
    // A FIFO delivery waiting for an earlier one of its order: that one.
    body["blockedBy"] = json!(detail.blocked_by);
    body["attemptLog"] = Value::Array(
        detail
            .attempts
            .iter()
            .map(|a| attempt_json(a, &detail.delivery))
            .collect(),
    );
    Ok(ok(StatusCode::OK, body, None, None))
}

/// `POST /api/v1/webhooks/{id}/deliveries/{deliveryId}/retry`: redeliver now with the same event id.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{deliveryId}/retry", tag = "deliveries",
    params(("id" = String, Path), ("deliveryId" = String, Path)),
    request_body(content = Option<Object>, description = "None, or `{}`"),
    responses((status = 202, description = "Queued for an immediate attempt"), (status = 404), (status = 409, description = "Being attempted right now")),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, delivery_id)): Path<(String, String)>,
    _: OptionalJson<NoFields, MAX_ACTION_BODY>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let delivery_id =
        DeliveryId::parse(&delivery_id).map_err(|_| ApiError::not_found("Delivery"))?;
    let n = state
        .store
        .requeue(
            &webhook,
            DeliveryFilter::default(),
            Some(delivery_id.clone()),
            now_ms(),
        )
        .await?;
    if n == 0 {
        return match state.store.get_delivery(&webhook, &delivery_id).await? {
            None => Err(ApiError::not_found("Delivery")),
            Some(_) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "DELIVERY_IN_FLIGHT",
                "The delivery is being attempted right now; check its log in a moment",
            )),
        };
    }
    state.engine.wake();
    let message = if webhook.is_active {
        "Delivery queued for an immediate attempt"
    } else {
        "Delivery queued; the webhook is disabled, so it is sent once the webhook is enabled again"
    };
    Ok(ok(
        StatusCode::ACCEPTED,
        json!({"deliveryId": delivery_id, "queued": true}),
        Some(message),
        None,
    ))
}

/// What a replay answers: how many were queued, and when they go out.
fn replay_message(n: u64, webhook_active: bool) -> String {
    if webhook_active {
        format!("{n} deliveries queued for redelivery")
    } else {
        format!(
            "{n} deliveries queued for redelivery; the webhook is disabled, so they are sent once it is enabled again"
        )
    }
}

/// Body of a replay request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReplayBody {
    /// Deliveries created at or after this time (required).
    since: Option<String>,
    /// Created before this time.
    until: Option<String>,
    /// `failed` (default), `delivered`, `retrying`, `pending` or `all`.
    status: Option<String>,
}

impl KnownFields for ReplayBody {
    const FIELDS: &'static [&'static str] = &["since", "until", "status"];
}

/// `POST /api/v1/webhooks/{id}/replay`: redeliver in bulk.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/replay", tag = "deliveries", params(("id" = String, Path)),
    request_body = ReplayBody,
    responses((status = 202, description = "`{replayed: N}`"), (status = 400), (status = 404)),
    security(("bearer" = [])))]
pub async fn replay(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    StrictJson(body): StrictJson<ReplayBody>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let since = match body.since.as_deref() {
        Some(s) => parse_time("since", s)?,
        None => {
            return Err(ApiError::field(
                "since",
                "since is required (ISO 8601 timestamp)",
            ));
        }
    };
    let until = body
        .until
        .as_deref()
        .map(|s| parse_time("until", s))
        .transpose()?;
    let status = match body.status.as_deref() {
        None => Some(DeliveryStatus::Failed),
        Some("all") => None,
        Some(s) => Some(DeliveryStatus::parse(s).map_err(|_| {
            ApiError::field(
                "status",
                "status must be one of pending, retrying, delivered, failed, all",
            )
        })?),
    };
    let filter = DeliveryFilter {
        status,
        event_type: None,
        since: Some(since),
        until,
    };
    let n = state
        .store
        .requeue(&webhook, filter, None, now_ms())
        .await?;
    state.engine.wake();
    Ok(ok(
        StatusCode::ACCEPTED,
        json!({"replayed": n}),
        Some(&replay_message(n, webhook.is_active)),
        None,
    ))
}

fn stats_json(s: DeliveryStats, window: Duration) -> Value {
    let finished = s.delivered + s.failed;
    json!({
        "windowSeconds": window.as_secs(),
        "total": s.pending + s.retrying + s.delivered + s.failed,
        "byStatus": {"pending": s.pending, "retrying": s.retrying, "delivered": s.delivered, "failed": s.failed},
        "successRate": if finished == 0 { Value::Null } else { json!(s.delivered as f64 / finished as f64) },
        "latencyMs": {"p50": s.latency.percentile(0.50), "p95": s.latency.percentile(0.95)},
    })
}

/// The start of a window ending now. A window longer than all of time
/// (`window=18446744073709551615ms`) covers everything rather than wrapping
/// around to a start in the future.
fn window_start(window: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
}

fn window_from_query(q: &HashMap<String, String>) -> Result<Duration, ApiError> {
    match q.get("window").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(Duration::from_secs(24 * 3600)),
        Some(text) => parse_duration(text).map_err(|e| ApiError::field("window", e.to_string())),
    }
}

/// `GET /api/v1/webhooks/{id}/stats`
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/stats", tag = "deliveries",
    params(("id" = String, Path), ("window" = Option<String>, Query, description = "e.g. 1h, 24h (default), 7d")),
    responses((status = 200, description = "Counts by status, success rate and latency p50/p95 over the window; `filteredOut`: events the webhook's filter refused (this instance, since it started)"), (status = 404)),
    security(("bearer" = [])))]
pub async fn webhook_stats(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let window = window_from_query(&query)?;
    let since = window_start(window);
    let stats = state
        .store
        .delivery_stats(StatsScope::Webhook(&webhook), since)
        .await?;
    let mut body = stats_json(stats, window);
    body["webhookId"] = json!(webhook.id);
    // Events its filter refused are not deliveries: counted in memory by
    // the instance that ingested them, since it started.
    body["filteredOut"] = json!(state.metrics.filtered_for(&webhook.id));
    Ok(ok(StatusCode::OK, body, None, None))
}

/// `GET /api/v1/webhooks/stats`: the caller's (an admin's: everyone's) totals and window statistics.
#[utoipa::path(get, path = "/api/v1/webhooks/stats", tag = "deliveries",
    params(("window" = Option<String>, Query)),
    responses((status = 200, description = "totalWebhooks, activeWebhooks, totalDeliveries, successfulDeliveries, failedDeliveries, pendingDeliveries and window statistics")),
    security(("bearer" = [])))]
pub async fn overall_stats(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let window = window_from_query(&query)?;
    let owner = if p.is_admin {
        Owner::Any
    } else {
        Owner::User(&p.user_id)
    };
    let webhooks = state.store.list_webhooks(owner, u32::MAX, 0).await?;
    let active = webhooks.items.iter().filter(|w| w.is_active).count();
    let all_time = state
        .store
        .delivery_stats(StatsScope::Owner(owner), 0)
        .await?;
    let recent = state
        .store
        .delivery_stats(StatsScope::Owner(owner), window_start(window))
        .await?;
    let body = json!({
        "totalWebhooks": webhooks.total,
        "activeWebhooks": active,
        "totalDeliveries": all_time.pending + all_time.retrying + all_time.delivered + all_time.failed,
        "successfulDeliveries": all_time.delivered,
        "failedDeliveries": all_time.failed,
        "pendingDeliveries": all_time.pending + all_time.retrying,
        "window": stats_json(recent, window),
    });
    Ok(ok(StatusCode::OK, body, None, None))
}

/// Body of a test send.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TestBody {
    /// Event type of the test event (default `user.created`).
    #[serde(rename = "eventType")]
    #[schema(value_type = Option<String>)]
    event_type: Option<Value>,
    /// Payload (alias `payload`); default `{}`.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    /// Alias of `data`.
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
}

impl KnownFields for TestBody {
    const FIELDS: &'static [&'static str] = &["eventType", "data", "payload"];
}

/// `POST /api/v1/webhooks/{id}/test`: one synchronous, signed, logged delivery of a test event
/// (the body is optional: without one, a `user.created` test event with empty data).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "deliveries", params(("id" = String, Path)),
    request_body = TestBody,
    responses((status = 200, description = "{success, statusCode, durationMs, responseBody, error?, deliveryId, eventId}, also when the receiver failed"),
              (status = 400), (status = 404)),
    security(("bearer" = [])))]
pub async fn test_send(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<TestBody>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    // A Value rather than a String, so that a wrong type is a 400 naming the field.
    let event_type = match body.event_type {
        None | Some(Value::Null) => EventType::parse("user.created"),
        Some(Value::String(name)) => EventType::parse(&name),
        Some(_) => {
            return Err(ApiError::field(
                "eventType",
                "eventType must be a string naming an event type",
            ));
        }
    }
    .map_err(|e| ApiError::field("eventType", e.to_string()))?;
    // Named as the caller sent it.
    let (field, given) = match (body.data, body.payload) {
        (Some(data), _) => ("data", Some(data)),
        (None, payload) => ("payload", payload),
    };
    let data = match given {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::field(
                field,
                format!("{field} must be a JSON object"),
            ));
        }
    };
    let event = Event::test_event(event_type, webhook.owner_id.clone(), &data, now_ms());
    let event_id = event.id.clone();
    // Stored and claimed like any delivery, but attempted once, right now.
    let report = match state.engine.test_send(event, webhook).await {
        Ok(report) => report,
        Err(TestSendError::Store(e)) => return Err(e.into()),
        Err(e @ TestSendError::Unroutable(_)) => {
            tracing::error!(error = %e, "cannot make a test send");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Internal server error",
            ));
        }
    };
    let result = json!({
        "success": report.status == DeliveryStatus::Delivered,
        "statusCode": report.attempt.status_code,
        "durationMs": report.attempt.duration_ms,
        "responseBody": report.attempt.response_body,
        "error": report.attempt.error_message,
        "errorKind": report.attempt.error_kind,
        "deliveryId": report.delivery_id,
        "eventId": event_id,
    });
    Ok(ok(StatusCode::OK, result, Some("Test delivery sent"), None))
}
